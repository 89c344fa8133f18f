//! [`RedisServer`]: a throwaway redis-server on a free loopback port, keeping nothing on disk.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::port_open;
use crate::{free_port, Error};

/// A running redis-server; killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    pub fn start() -> Result<RedisServer, Error> {
        let dir = crate::proc::temp_dir("redis")?;
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            dir,
        };
        server.start_again()?;
        Ok(server)
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Whether the server process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill9(&mut self) -> Result<(), Error> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts it again on the same port.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        let bin = if std::path::Path::new("/usr/bin/redis-server").exists() {
            "/usr/bin/redis-server".to_string()
        } else {
            "redis-server".to_string()
        };
        let child = Command::new(&bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Missing {
                what: format!("redis-server ({e})"),
                hint: "run `make deps` or `apt-get install redis-server`".into(),
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_open(self.port) {
            if Instant::now() > deadline || !self.is_running() {
                return Err(Error::Command {
                    what: "redis-server".into(),
                    detail: "did not start listening".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
