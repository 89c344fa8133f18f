//! Throwaway PostgreSQL and Redis processes for pgwarden's tests and benchmarks.
//!
//! - [`PgCluster`]: `initdb` once per process into a template, then a copy per cluster on a
//!   free loopback port (`127.0.0.1` only, no Unix socket), trust or password auth, settable
//!   `max_connections` and other settings; stop, `kill -9`, start again on the same port and
//!   data. Killed and removed on drop, also when a test panics.
//! - [`RedisServer`]: the same for redis-server.
//! - [`free_port`]: a free port never handed out twice in one process.
//!
//! Binaries are found through `PG_BIN`, `pg_config --bindir`, or the newest
//! `/usr/lib/postgresql/<version>/bin`. Running as root (as CI does), PostgreSQL runs as the
//! `postgres` system user. The system's own PostgreSQL (port 5432) is never used.
//!
//! ```no_run
//! let cluster = pgwarden_testkit::PgCluster::builder().max_connections(20).start()?;
//! assert_eq!(cluster.psql("SELECT 1 + 1")?, "2");
//! # Ok::<(), pgwarden_testkit::Error>(())
//! ```

mod pg;
mod proc;
mod redis;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

pub use pg::{Auth, PgCluster, PgClusterBuilder};
pub use redis::RedisServer;

/// Why a throwaway server could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary is not installed.
    #[error("{what} not found; {hint}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to install it.
        hint: String,
    },
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The command.
        what: String,
        /// Its status and stderr.
        detail: String,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &str, source: std::io::Error) -> Error {
        Error::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// A free TCP port on 127.0.0.1, never the same twice in this process, never a well-known
/// PostgreSQL, PgBouncer or Redis port.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port == 0 || [5432, 6379, 6432].contains(&port) {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// The directory of the PostgreSQL server binaries.
pub fn pg_bin_dir() -> Result<PathBuf, Error> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::Missing {
            what: "PostgreSQL server binaries (initdb, postgres)".into(),
            hint: "run `make deps` or `apt-get install postgresql`, or set PG_BIN".into(),
        })
}
