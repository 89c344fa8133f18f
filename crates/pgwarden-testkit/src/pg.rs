//! [`PgCluster`]: a throwaway PostgreSQL cluster on a free loopback port.
//!
//! `initdb` runs once per test process into a template directory; each cluster copies it
//! (much faster than a fresh initdb on two cores). The postmaster is our child process, so
//! `kill9` is exact. Running as root, every PostgreSQL binary runs as the `postgres` system
//! user (PostgreSQL refuses root) with directories that user owns.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::proc::{as_pg_user, chown_tree, copy_tree, port_open, run_checked, send_signal};
use crate::{free_port, Error};

/// How the cluster authenticates loopback TCP connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// No passwords (`trust`).
    Trust,
    /// `scram-sha-256` for everyone; the superuser `postgres` gets this password.
    Password {
        /// The superuser's password.
        superuser_password: String,
    },
}

/// Settings of a cluster to start.
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    max_connections: u32,
    settings: Vec<(String, String)>,
    auth: Auth,
}

impl PgClusterBuilder {
    /// `max_connections` (default 100).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Any other `postgresql.conf` setting (value written as given; quote strings yourself).
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.push((key.to_string(), value.to_string()));
        self
    }

    /// Authentication (default trust).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Creates and starts the cluster; waits until it accepts connections.
    pub fn start(self) -> Result<PgCluster, Error> {
        PgCluster::create(self)
    }
}

/// A running (or stopped) throwaway cluster; dropped = killed and removed.
#[derive(Debug)]
pub struct PgCluster {
    root: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    auth: Auth,
    child: Option<Child>,
}

/// The template data directory, made once per process.
static TEMPLATE: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();

fn template(bin: &Path) -> Result<PathBuf, Error> {
    let made = TEMPLATE.get_or_init(|| {
        let dir = crate::proc::temp_dir("template").map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        chown_tree(dir.path()).map_err(|e| e.to_string())?;
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
            "-D",
        ])
        .arg(&data);
        as_pg_user(&mut cmd);
        run_checked(&mut cmd, "initdb").map_err(|e| e.to_string())?;
        Ok((dir, data))
    });
    match made {
        Ok((_, data)) => Ok(data.clone()),
        Err(e) => Err(Error::Command {
            what: "initdb (template)".into(),
            detail: e.clone(),
        }),
    }
}

impl PgCluster {
    /// A builder with defaults: trust auth, max_connections 100.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder {
            max_connections: 100,
            settings: Vec::new(),
            auth: Auth::Trust,
        }
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
            "\n# pgwarden-testkit\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = ''\nmax_connections = {}\nfsync = off\n\
             full_page_writes = off\nshared_buffers = '32MB'\n\
             logging_collector = off\nlog_min_messages = warning\n",
            b.max_connections
        );
        for (k, v) in &b.settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        append(&data.join("postgresql.conf"), &conf)?;
        fs::write(
            data.join("pg_hba.conf"),
            "host all all 127.0.0.1/32 trust\n",
        )
        .map_err(|e| Error::io("write pg_hba.conf", e))?;
        chown_tree(root.path())?;
        let mut cluster = PgCluster {
            root,
            data,
            bin,
            port,
            auth: Auth::Trust,
            child: None,
        };
        cluster.start_again()?;
        if let Auth::Password { superuser_password } = &b.auth {
            let escaped = superuser_password.replace('\'', "''");
            cluster.psql(&format!("ALTER ROLE postgres PASSWORD '{escaped}'"))?;
            fs::write(
                cluster.data.join("pg_hba.conf"),
                "host all all 127.0.0.1/32 scram-sha-256\n",
            )
            .map_err(|e| Error::io("write pg_hba.conf", e))?;
            cluster.psql("SELECT pg_reload_conf()")?;
            cluster.auth = b.auth.clone();
            // The reload is asynchronous: wait until a password-less login is refused.
            let deadline = Instant::now() + Duration::from_secs(10);
            while cluster.psql_with(&[], "SELECT 1").is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(cluster)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// `postgres://user@127.0.0.1:port/db` (no password).
    pub fn url(&self, db: &str, user: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// `postgres://user:password@127.0.0.1:port/db`.
    pub fn url_with_password(&self, db: &str, user: &str, password: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// The superuser's URL (with its password under [`Auth::Password`]).
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

    /// The server log so far.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the postmaster is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the server (again) on the same port and data; waits until it accepts logins.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        let stale = self.data.join("postmaster.pid");
        if stale.exists() {
            let _ = fs::remove_file(&stale);
        }
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| Error::io("open server log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open server log", e))?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        as_pg_user(&mut cmd);
        let child = cmd.spawn().map_err(|e| Error::io("spawn postgres", e))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if port_open(self.port) && self.psql_with(&[], "SELECT 1").is_ok() {
                return Ok(());
            }
            if !self.is_running() {
                return Err(Error::Command {
                    what: "postgres".into(),
                    detail: format!("exited during start-up; log:\n{}", self.log_tail()),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Command {
                    what: "postgres".into(),
                    detail: format!("not ready after 60s; log:\n{}", self.log_tail()),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn log_tail(&self) -> String {
        let log = self.log_contents();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server gracefully (fast shutdown: sessions are disconnected).
    pub fn stop(&mut self) -> Result<(), Error> {
        self.signal_and_wait("INT", Duration::from_secs(30))
    }

    /// Kills the postmaster with SIGKILL, then waits until its children are gone and the port
    /// is closed.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let backends = self.child_pids();
        self.signal_and_wait("KILL", Duration::from_secs(10))?;
        // Orphaned backends notice the dead postmaster on their own; make sure they are gone.
        for pid in backends {
            let _ = send_signal(pid, "KILL");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_open(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops and starts again.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.start_again()
    }

    fn child_pids(&self) -> Vec<u32> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let parent = child.id();
        let mut pids = Vec::new();
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                // Field 4 (after the parenthesised command) is the parent pid.
                let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                let ppid = after
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Ok(());
        }
        let pid = child.id();
        send_signal(pid, signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn psql_with(&self, extra: &[&str], sql: &str) -> Result<String, Error> {
        let psql = if self.bin.join("psql").exists() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let mut cmd = Command::new(psql);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(extra)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGPASSWORD");
        if let Auth::Password { superuser_password } = &self.auth {
            cmd.env("PGPASSWORD", superuser_password);
        }
        run_checked(&mut cmd, "psql").map(|out| out.trim().to_string())
    }

    /// Runs SQL as the superuser with psql; returns trimmed output (`-A -t`).
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        self.psql_with(&[], sql)
    }

    /// A tokio-postgres client as the superuser (its connection task is spawned).
    ///
    /// # Panics
    /// When the cluster does not accept the login: a test cannot go on without it.
    pub async fn connect_superuser(&self) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.superuser_url(), tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("connect to the test cluster as superuser: {e}"));
        tokio::spawn(connection);
        client
    }

    /// Backends whose application_name is `LIKE` the pattern (excluding the asking one).
    ///
    /// # Panics
    /// When the cluster cannot be asked.
    pub async fn count_backends(&self, application_name_like: &str) -> i64 {
        let client = self.connect_superuser().await;
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1 AND pid <> pg_backend_pid()",
                &[&application_name_like],
            )
            .await
            .unwrap_or_else(|e| panic!("count backends: {e}"))
            .get(0)
    }

    /// Creates a login role.
    pub fn create_role(
        &self,
        name: &str,
        password: Option<&str>,
        superuser: bool,
    ) -> Result<(), Error> {
        let mut sql = format!("CREATE ROLE \"{}\" LOGIN", name.replace('"', "\"\""));
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
            "CREATE DATABASE \"{}\" OWNER \"{}\"",
            name.replace('"', "\"\""),
            owner.replace('"', "\"\"")
        ))
        .map(drop)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Immediate shutdown; the temp dir is removed after.
        let _ = self.signal_and_wait("QUIT", Duration::from_secs(5));
    }
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
