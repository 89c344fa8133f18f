//! [`RedisServer`]: a throwaway redis-server on a free loopback port, keeping nothing on disk.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proc::{port_open, redis_ping};
use crate::{free_port, Error};

/// How long a start may take.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or killed) redis-server on 127.0.0.1 (`--save "" --appendonly no`); killed
/// when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Mutex<Option<Child>>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers `PING`.
    pub fn start() -> Result<RedisServer, Error> {
        let dir = crate::proc::temp_dir("redis")?;
        let mut server = RedisServer {
            port: free_port(),
            child: Mutex::new(None),
            dir,
        };
        server.start_again()?;
        Ok(server)
    }

    /// The TCP port (stays the same across [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// What the server wrote to its log so far.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the server process runs.
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server with SIGKILL and waits until it is gone and the port is closed.
    pub fn kill9(&mut self) -> Result<(), Error> {
        let taken = self.child().take();
        if let Some(mut child) = taken {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_open(self.port) {
            if Instant::now() > deadline {
                return Err(Error::Command {
                    what: format!("killing redis-server on port {}", self.port),
                    detail: "the port is still open after 10s".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Stops the server gracefully (SIGTERM; redis-server closes its clients and exits), waits
    /// until it is gone and the port is closed; falls back to SIGKILL after 10 s.
    pub fn stop(&mut self) -> Result<(), Error> {
        let taken = self.child().take();
        if let Some(mut child) = taken {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            *self.child() = Some(child);
        }
        self.kill9()
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again) on the same port.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        self.start_again()
    }

    /// Starts it again on the same port; waits until it answers `PING`. Does nothing when it
    /// runs.
    pub fn start_again(&mut self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        let bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("redis-server"));
        let log_path = self.dir.path().join("redis.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io("open redis log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open redis log", e))?;
        let child = Command::new(&bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Missing {
                        what: bin.display().to_string(),
                        hint: "install it with `make deps` or `apt-get install redis-server`"
                            .into(),
                    }
                } else {
                    Error::io(&format!("spawn {}", bin.display()), e)
                }
            })?;
        *self.child() = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !redis_ping(self.port) {
            let exited = !self.is_running();
            if exited || Instant::now() > deadline {
                let _ = self.kill9();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Error::Command {
                    what: format!("{} (port {})", bin.display(), self.port),
                    detail: format!(
                        "{}; log:\n{}",
                        if exited {
                            "exited during start-up"
                        } else {
                            "not answering PING"
                        },
                        log.trim()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
