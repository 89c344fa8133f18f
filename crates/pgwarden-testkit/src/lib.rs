//! Throwaway PostgreSQL and Redis servers for pgwarden's tests and benchmarks.
//!
//! # What it gives
//!
//! - [`PgCluster`]: a PostgreSQL cluster of its own on a free loopback port (`127.0.0.1`
//!   only, no Unix socket), trust or SCRAM password auth ([`Auth`]), settable
//!   `max_connections` and any other `postgresql.conf` setting. It can be stopped, crashed
//!   with `kill -9` ([`PgCluster::kill9`]) and started again on the same port and data.
//!   Dropping it shuts it down and removes its directory, also when a test panics.
//! - [`RedisServer`]: the same for `redis-server` (no persistence).
//! - [`free_port`]: a free port never handed out twice in one process.
//!
//! # Usage
//!
//! ```no_run
//! use pgwarden_testkit::{Auth, PgCluster, RedisServer};
//!
//! # async fn demo() -> Result<(), pgwarden_testkit::Error> {
//! // Trust auth, default settings.
//! let cluster = PgCluster::start()?;
//! assert_eq!(cluster.psql("SELECT 1 + 1")?, "2");
//! cluster.create_role("app", Some("secret"), false)?;
//! cluster.create_database("appdb", "app")?;
//! let url = cluster.url_with_password("appdb", "app", "secret");
//! # let _ = url;
//!
//! // Tuned, with SCRAM password auth.
//! let mut cluster = PgCluster::builder()
//!     .max_connections(20)
//!     .setting("idle_session_timeout", "'5s'")
//!     .auth(Auth::Password { superuser_password: "pw".into() })
//!     .start()?;
//! let admin = cluster.connect_superuser().await; // tokio-postgres client
//! # drop(admin);
//! let n = cluster.count_backends("myapp#%").await;
//! # let _ = n;
//!
//! // A crash and a recovery, same port and data.
//! cluster.kill9()?;
//! cluster.start_again()?;
//!
//! let redis = RedisServer::start()?;
//! let url = redis.url(); // redis://127.0.0.1:<port>/
//! # let _ = url;
//! # Ok(())
//! # }
//! ```
//!
//! # How
//!
//! - Binaries come from `PG_BIN`, else `pg_config --bindir`, else the newest
//!   `/usr/lib/postgresql/<version>/bin` ([`pg_bin_dir`]); `redis-server` from `/usr/bin`
//!   or `PATH`. Missing binaries fail with [`Error::Missing`], which says how to install
//!   them (`make deps` or `apt-get install postgresql redis-server`).
//! - `initdb` runs once into a template cached under the temp directory; each cluster is a
//!   copy of it, so a start takes a fraction of a second. Durability against OS crashes is
//!   off (`fsync`, `full_page_writes`); `synchronous_commit` stays on, so every committed
//!   transaction survives [`PgCluster::kill9`].
//! - The postmaster is a direct child process with its output in a log file
//!   ([`PgCluster::log_contents`]); a start waits for a real login and `SELECT 1`.
//! - Running as root (as CI does), PostgreSQL runs as the `postgres` system user, spawned
//!   directly with its uid and gid (so resource limits are kept); directories are given to
//!   that user.
//! - Everything lives in `pgwarden-testkit-*` directories under the temp directory;
//!   directories left behind by killed test processes are swept after an hour.
//! - The system's own PostgreSQL and Redis (ports 5432, 6379) are never used or touched.

mod pg;
mod proc;
mod redis;

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

pub use pg::{Auth, PgCluster, PgClusterBuilder};
pub use redis::RedisServer;

/// How to get the PostgreSQL server binaries.
pub(crate) const INSTALL_HINT: &str = "install PostgreSQL with `make deps` or \
    `apt-get install postgresql`, or point PG_BIN at the directory holding initdb and postgres";

/// Why a throwaway server could not be provided or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary (or the `postgres` user) is not there.
    #[error("{what} not found; {hint}")]
    Missing {
        /// What is missing.
        what: String,
        /// How to install it.
        hint: String,
    },
    /// A command or server failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The command, binary or operation.
        what: String,
        /// Its exit status and stderr, or the server log's tail.
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

/// A free TCP port on 127.0.0.1: never the same twice in this process, never the
/// well-known PostgreSQL, PgBouncer or Redis port (5432, 6432, 6379).
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

/// The directory of the PostgreSQL server binaries: `PG_BIN` if set, else
/// `pg_config --bindir` if it holds `initdb`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn pg_bin_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
        return Err(Error::Missing {
            what: format!("initdb and postgres in PG_BIN={}", dir.display()),
            hint: INSTALL_HINT.into(),
        });
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").exists() && dir.join("postgres").exists() {
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
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::Missing {
            what: "PostgreSQL server binaries (initdb, postgres)".into(),
            hint: INSTALL_HINT.into(),
        })
}
