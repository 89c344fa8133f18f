//! The probe: one attempt to see whether the upstream is there.
//!
//! [`Probe`] is the injection point: [`TcpProbe`] only checks that something accepts TCP
//! connections; a PostgreSQL login check (which can tell a wrong password from a missing
//! server) plugs in the same way.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::failure::{Failure, FailureKind};

/// One check of the upstream. Implementations may write `async fn probe(&self)`.
pub trait Probe: Send + Sync + 'static {
    /// Checks the upstream once; must finish in bounded time (apply your own timeout).
    fn probe(&self) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Checks the upstream without relying on anything the probe remembers (a recent login,
    /// say); run after `force_check()` and `reset()`. Defaults to [`Probe::probe`], for probes
    /// that cache nothing.
    fn probe_uncached(&self) -> impl Future<Output = Result<(), Failure>> + Send {
        self.probe()
    }
}

/// Checks that `host:port` accepts a TCP connection within `probe_timeout`, then closes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpProbe {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Limit for name lookup plus connect. Default 2 s.
    pub probe_timeout: Duration,
}

impl TcpProbe {
    /// Default for [`TcpProbe::probe_timeout`].
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A probe of `host:port` with the default 2 s timeout.
    pub fn new(host: impl Into<String>, port: u16) -> TcpProbe {
        TcpProbe {
            host: host.into(),
            port,
            probe_timeout: TcpProbe::DEFAULT_TIMEOUT,
        }
    }
}

impl Probe for TcpProbe {
    async fn probe(&self) -> Result<(), Failure> {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        match tokio::time::timeout(self.probe_timeout, connect).await {
            Ok(Ok(_stream)) => Ok(()),
            Ok(Err(error)) => Err(Failure::new(
                FailureKind::from_io_error(&error),
                format!("{}:{}: {error}", self.host, self.port),
            )),
            Err(_elapsed) => Err(Failure::new(
                FailureKind::Timeout,
                format!(
                    "{}:{}: no answer within {:?}",
                    self.host, self.port, self.probe_timeout
                ),
            )),
        }
    }
}
