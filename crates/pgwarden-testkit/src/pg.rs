//! [`PgCluster`]: a throwaway PostgreSQL cluster on a free loopback port.
//!
//! `initdb` runs at most once per PostgreSQL installation and user into a template cached
//! under the temp directory (shared by test processes; made in a staging directory and
//! renamed into place, so it is never seen half-made); each cluster copies it, which is much
//! faster than a fresh `initdb` on two cores. The postmaster is our child process, so
//! `kill9` is exact. Running as root, every PostgreSQL binary runs as the `postgres` system
//! user (PostgreSQL refuses root) on directories that user owns.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::proc::{
    as_pg_user, binary, chown_tree, copy_tree, port_open, processes_in, run_checked, send_signal,
    PREFIX,
};
use crate::{free_port, Error};

/// How long a start may take before it fails with the log's tail.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long killed processes may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// How the cluster authenticates loopback TCP connections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No passwords (`trust`).
    #[default]
    Trust,
    /// `scram-sha-256` for everyone; the superuser `postgres` gets this password.
    Password {
        /// The superuser's password.
        superuser_password: String,
    },
}

/// Settings of a cluster to start; from [`PgCluster::builder`].
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    max_connections: u32,
    settings: Vec<(String, String)>,
    auth: Auth,
}

impl Default for PgClusterBuilder {
    fn default() -> Self {
        PgClusterBuilder {
            max_connections: 100,
            settings: Vec::new(),
            auth: Auth::Trust,
        }
    }
}

impl PgClusterBuilder {
    /// `max_connections` (default 100).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Any other `postgresql.conf` setting, appended as `key = value` after the defaults (so
    /// it wins). The value is written as given: quote strings yourself (`"'8MB'"`).
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    /// Authentication (default [`Auth::Trust`]).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Creates and starts the cluster; returns once it accepts logins.
    pub fn start(self) -> Result<PgCluster, Error> {
        PgCluster::create(self)
    }
}

/// A throwaway cluster (running or stopped) on 127.0.0.1 only, no Unix socket.
///
/// Dropping it shuts the server down immediately (SIGQUIT, SIGKILL if that takes too long)
/// and removes its directory — also when a test panics.
#[derive(Debug)]
pub struct PgCluster {
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    auth: Auth,
    child: Mutex<Option<Child>>,
    /// Removed when dropped, after `Drop::drop` has stopped the server.
    root: tempfile::TempDir,
}

/// The name of the cached template directory under the temp dir for the binaries in use,
/// or `None` when there are none.
pub(crate) fn template_cache_name() -> Option<String> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        let bin = crate::pg_bin_dir().ok()?;
        let bin = fs::canonicalize(&bin).unwrap_or(bin);
        let initdb = fs::metadata(bin.join("initdb")).ok()?;
        let mut h = std::hash::DefaultHasher::new();
        "pgwarden-testkit template v2".hash(&mut h);
        bin.hash(&mut h);
        initdb.len().hash(&mut h);
        initdb.modified().ok().hash(&mut h);
        crate::proc::effective_uid().hash(&mut h);
        crate::proc::pg_user().hash(&mut h);
        Some(format!("{PREFIX}template-{:016x}", h.finish()))
    })
    .clone()
}

/// The template data directory: made once (per installation and user, across processes),
/// looked up once per process.
fn template(bin: &Path) -> Result<PathBuf, Error> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| make_template(bin).map_err(|e| e.to_string()))
        .clone()
        .map_err(|detail| Error::Command {
            what: "initdb (template data directory)".into(),
            detail,
        })
}

fn make_template(bin: &Path) -> Result<PathBuf, Error> {
    crate::proc::check_pg_user()?;
    let name = template_cache_name().ok_or_else(|| Error::Missing {
        what: format!("{}", bin.join("initdb").display()),
        hint: crate::INSTALL_HINT.into(),
    })?;
    let cache = std::env::temp_dir().join(name);
    let ready = |dir: &Path| dir.join("complete").exists() && dir.join("data/PG_VERSION").exists();
    if ready(&cache) {
        return Ok(cache.join("data"));
    }
    let staging = crate::proc::temp_dir("staging")?;
    let data = staging.path().join("data");
    chown_tree(staging.path())?;
    let mut cmd = Command::new(bin.join("initdb"));
    cmd.args([
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
        // 1 MB WAL segments instead of 16 MB: less to copy per cluster.
        "--wal-segsize=1",
        "-D",
    ])
    .arg(&data)
    .env_remove("PGDATA");
    as_pg_user(&mut cmd);
    run_checked(&mut cmd, &format!("{}", bin.join("initdb").display()))?;
    fs::write(staging.path().join("complete"), "")
        .map_err(|e| Error::io("write template marker", e))?;
    let staged = staging.keep();
    if fs::rename(&staged, &cache).is_err() {
        // Another process was faster (or the cache is broken): use or replace theirs.
        if !ready(&cache) {
            let _ = fs::remove_dir_all(&cache);
            if fs::rename(&staged, &cache).is_ok() {
                return Ok(cache.join("data"));
            }
        }
        let _ = fs::remove_dir_all(&staged);
        if !ready(&cache) {
            return Err(Error::Command {
                what: "template cache".into(),
                detail: format!("{} could not be set up", cache.display()),
            });
        }
    }
    Ok(cache.join("data"))
}

impl PgCluster {
    /// A builder with defaults: trust auth, `max_connections` 100.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// Starts a cluster with the defaults.
    pub fn start() -> Result<PgCluster, Error> {
        Self::builder().start()
    }

    fn create(b: PgClusterBuilder) -> Result<PgCluster, Error> {
        let bin = crate::pg_bin_dir()?;
        let template = template(&bin)?;
        let root = crate::proc::temp_dir("pg")?;
        let data = root.path().join("data");
        copy_tree(&template, &data)?;
        let port = free_port();
        let mut conf = format!(
            "\n# pgwarden-testkit\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = ''\n\
             max_connections = {}\n\
             fsync = off\n\
             full_page_writes = off\n\
             shared_buffers = '16MB'\n\
             logging_collector = off\n",
            b.max_connections
        );
        for (k, v) in &b.settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data.join("postgresql.conf"), &conf)?;
        write_hba(&data, "trust")?;
        chown_tree(root.path())?;
        let mut cluster = PgCluster {
            root,
            data,
            bin,
            port,
            auth: Auth::Trust,
            child: Mutex::new(None),
        };
        cluster.start_again()?;
        if let Auth::Password { superuser_password } = &b.auth {
            cluster.psql(&format!(
                "ALTER ROLE postgres PASSWORD '{}'",
                superuser_password.replace('\'', "''")
            ))?;
            write_hba(&cluster.data, "scram-sha-256")?;
            cluster.psql("SELECT pg_reload_conf()")?;
            // The reload is asynchronous: wait until a login without password is refused.
            let deadline = Instant::now() + Duration::from_secs(10);
            while cluster.psql_as(None, "SELECT 1").is_ok() {
                if Instant::now() > deadline {
                    return Err(Error::Command {
                        what: "pg_reload_conf()".into(),
                        detail: "scram-sha-256 in pg_hba.conf did not take effect within 10s"
                            .into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            cluster.auth = b.auth.clone();
            cluster.psql("SELECT 1")?;
        }
        Ok(cluster)
    }

    /// The TCP port (stays the same across [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// `postgres://user@127.0.0.1:port/db` (no password).
    pub fn url(&self, db: &str, user: &str) -> String {
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            encode(user),
            self.port,
            encode(db)
        )
    }

    /// `postgres://user:password@127.0.0.1:port/db` (percent-encoded where needed).
    pub fn url_with_password(&self, db: &str, user: &str, password: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            encode(user),
            encode(password),
            self.port,
            encode(db)
        )
    }

    /// The superuser's URL (`postgres` user and database), with the password under
    /// [`Auth::Password`].
    pub fn superuser_url(&self) -> String {
        match &self.auth {
            Auth::Trust => self.url("postgres", "postgres"),
            Auth::Password { superuser_password } => {
                self.url_with_password("postgres", "postgres", superuser_password)
            }
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of the PostgreSQL binaries used.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("server.log")
    }

    /// The server log so far (the postmaster's stdout and stderr, across restarts).
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log_contents();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the postmaster runs.
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the server (again) on the same port and data; returns once a real login and
    /// `SELECT 1` succeed. Does nothing when it runs.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        // Leftovers of a kill: orphaned backends and a stale postmaster.pid.
        self.kill_leftovers()?;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| Error::io("open server log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open server log", e))?;
        let postgres = self.bin.join("postgres");
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D")
            .arg(&self.data)
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        as_pg_user(&mut cmd);
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Missing {
                    what: postgres.display().to_string(),
                    hint: crate::INSTALL_HINT.into(),
                }
            } else {
                Error::io(&format!("spawn {}", postgres.display()), e)
            }
        })?;
        *self.child() = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if port_open(self.port) && self.psql("SELECT 1").is_ok() {
                return Ok(());
            }
            if !self.is_running() {
                self.child().take();
                return Err(Error::Command {
                    what: format!("{} (port {})", postgres.display(), self.port),
                    detail: format!("exited during start-up; server log:\n{}", self.log_tail()),
                });
            }
            if Instant::now() > deadline {
                let _ = self.kill9();
                return Err(Error::Command {
                    what: format!("{} (port {})", postgres.display(), self.port),
                    detail: format!(
                        "not accepting connections after {START_TIMEOUT:?}; server log:\n{}",
                        self.log_tail()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the postmaster alone (SIGSTOP): running backends go on, the port still accepts
    /// connections into its backlog, but nothing is answered, no backend is started and no
    /// cancel request is acted on until [`thaw`](Self::thaw). For slow-server tests.
    pub fn freeze_postmaster(&self) {
        if let Some(child) = self.child().as_ref() {
            send_signal(child.id(), "STOP");
        }
    }

    /// Lets a frozen postmaster go on (SIGCONT).
    pub fn thaw(&self) {
        if let Some(child) = self.child().as_ref() {
            send_signal(child.id(), "CONT");
        }
    }

    /// Stops the server like `pg_ctl stop -m fast` (sessions are disconnected, a shutdown
    /// checkpoint is written) and waits until it is gone.
    pub fn stop(&mut self) -> Result<(), Error> {
        let taken = self.child().take();
        if let Some(mut child) = taken {
            if matches!(child.try_wait(), Ok(None)) {
                send_signal(child.id(), "INT");
                // A frozen postmaster (see `freeze_postmaster`) acts on it once let go.
                send_signal(child.id(), "CONT");
                if !wait_exit(&mut child, STOP_TIMEOUT) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        self.kill_leftovers()
    }

    /// Kills the postmaster with SIGKILL (a crash), then makes sure its backends and
    /// auxiliary processes are gone too, the port is closed and no stale `postmaster.pid`
    /// is left; [`start_again`](Self::start_again) then runs crash recovery.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let taken = self.child().take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_leftovers()
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.start_again()
    }

    /// SIGKILLs every process still working in our data directory (only ever this cluster's
    /// processes), waits until none is left and the port is closed, removes a stale
    /// `postmaster.pid`.
    fn kill_leftovers(&self) -> Result<(), Error> {
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let pids = processes_in(&self.data);
            for &pid in &pids {
                send_signal(pid, "KILL");
            }
            if pids.is_empty() && !port_open(self.port) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Command {
                    what: format!("stopping the cluster on port {}", self.port),
                    detail: format!(
                        "processes {pids:?} or a listener on the port still there after \
                         {KILL_TIMEOUT:?}"
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // No process of ours is left, so a postmaster.pid is stale.
        let pid_file = self.data.join("postmaster.pid");
        if pid_file.exists() {
            let _ = fs::remove_file(&pid_file);
        }
        Ok(())
    }

    /// psql as the superuser, with `password` if given (never prompting).
    fn psql_as(&self, password: Option<&str>, sql: &str) -> Result<String, Error> {
        let mut cmd = Command::new(binary(&self.bin, "psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql);
        for var in [
            "PGPASSWORD",
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGOPTIONS",
            "PGSSLMODE",
            "PGREQUIRESSL",
            "PGTARGETSESSIONATTRS",
            "PGAPPNAME",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("PGCONNECT_TIMEOUT", "5")
            .env("PGGSSENCMODE", "disable")
            .env("PGPASSFILE", self.root.path().join("no-pgpass"));
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        let shown: String = sql.chars().take(200).collect();
        run_checked(&mut cmd, &format!("psql -c {shown:?} (port {})", self.port))
            .map(|out| out.trim().to_string())
    }

    /// Runs SQL as the superuser with psql (`-X -A -t -q -v ON_ERROR_STOP=1`); returns its
    /// trimmed output. The error carries psql's stderr.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        let password = match &self.auth {
            Auth::Trust => None,
            Auth::Password { superuser_password } => Some(superuser_password.as_str()),
        };
        self.psql_as(password, sql)
    }

    /// A tokio-postgres client as the superuser; its connection task is spawned.
    pub async fn try_connect_superuser(&self) -> Result<tokio_postgres::Client, Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.superuser_url(), tokio_postgres::NoTls)
                .await
                .map_err(|e| Error::Command {
                    what: format!("connect as superuser to port {}", self.port),
                    detail: e.to_string(),
                })?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// [`try_connect_superuser`](Self::try_connect_superuser) for tests: a test cannot go
    /// on without it.
    ///
    /// # Panics
    /// When the cluster does not accept the login.
    pub async fn connect_superuser(&self) -> tokio_postgres::Client {
        self.try_connect_superuser()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Backends whose `application_name` is `LIKE` the pattern, not counting the asking one.
    pub async fn try_count_backends(&self, application_name_like: &str) -> Result<i64, Error> {
        let client = self.try_connect_superuser().await?;
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
                &[&application_name_like],
            )
            .await
            .map_err(|e| Error::Command {
                what: "count backends".into(),
                detail: e.to_string(),
            })?;
        Ok(row.get(0))
    }

    /// [`try_count_backends`](Self::try_count_backends) for tests.
    ///
    /// # Panics
    /// When the cluster cannot be asked.
    pub async fn count_backends(&self, application_name_like: &str) -> i64 {
        self.try_count_backends(application_name_like)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a `LOGIN` role, optionally with a password and as superuser.
    pub fn create_role(
        &self,
        name: &str,
        password: Option<&str>,
        superuser: bool,
    ) -> Result<(), Error> {
        let mut sql = format!("CREATE ROLE {} LOGIN", ident(name));
        if superuser {
            sql.push_str(" SUPERUSER");
        }
        if let Some(p) = password {
            sql.push_str(&format!(" PASSWORD '{}'", p.replace('\'', "''")));
        }
        self.psql(&sql).map(drop)
    }

    /// Creates a database owned by `owner`.
    pub fn create_database(&self, name: &str, owner: &str) -> Result<(), Error> {
        self.psql(&format!(
            "CREATE DATABASE {} OWNER {}",
            ident(name),
            ident(owner)
        ))
        .map(drop)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate shutdown, SIGKILL if it hangs; the directory is removed afterwards.
        let taken = self.child().take();
        if let Some(mut child) = taken {
            if matches!(child.try_wait(), Ok(None)) {
                send_signal(child.id(), "QUIT");
                if !wait_exit(&mut child, Duration::from_secs(5)) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let _ = self.kill_leftovers();
    }
}

/// Waits up to `timeout` for the child to exit (and reaps it).
fn wait_exit(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() > deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn write_hba(data: &Path, method: &str) -> Result<(), Error> {
    let path = data.join("pg_hba.conf");
    fs::write(&path, format!("host all all 127.0.0.1/32 {method}\n"))
        .map_err(|e| Error::io("write pg_hba.conf", e))
}

fn append(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open postgresql.conf", e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io("write postgresql.conf", e))
}

/// A quoted SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for URL parts).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn url_parts_are_encoded() {
        assert_eq!(encode("app_user-1.x~"), "app_user-1.x~");
        assert_eq!(encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
    }
}
