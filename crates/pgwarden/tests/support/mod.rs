//! Helpers shared by the test binaries that run the real `pgwarden serve` (`tests/serve.rs`,
//! `tests/admin.rs`): the process, killed when dropped, and a client connect that waits for the
//! proxy to listen.

#![allow(dead_code, unreachable_pub)] // each test binary uses a part; pub for the binaries

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

/// A `pgwarden serve` process, killed when dropped (also when the test panics).
pub struct Serve(pub Child);

impl Serve {
    pub fn start(config: &Path) -> Serve {
        Serve::start_with(config, &[])
    }

    /// [`Serve::start`] with extra environment variables.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env_clear()
            .env("PGWARDEN_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("start pgwarden serve");
        Serve(child)
    }

    /// Starts serve with the TOML `config` written into `dir`, logging at info into a file
    /// whose path is returned.
    pub fn start_logged(dir: &Path, name: &str, config: &str) -> (Serve, PathBuf) {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
            .args(["--config", file.to_str().unwrap(), "serve"])
            .env_clear()
            .env("PGWARDEN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start pgwarden serve");
        (Serve(child), log)
    }

    /// Threads of the process right now, as Linux counts them.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.0.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects with a deadline while the proxy starts.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(e) if Instant::now() > deadline => panic!("connect {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
