//! [`PgLoginProbe`]: the library's upstream probe. A TCP connect first (cheap; tells refused,
//! timeout and DNS apart), then, when the last login is more than a minute old, the last
//! probe failed, or the check was forced (`force_check()`, `reset()`), a real login — the only
//! way to tell a wrong password (28P01) or a missing database (3D000) from an outage.

use std::time::Duration;

use parking_lot::Mutex;
use pgwarden_resilience::{Failure, FailureKind, Probe, TcpProbe};
use tokio::time::Instant;

use super::PgConnector;

/// How long a successful login vouches for the credentials while TCP probes keep succeeding.
const LOGIN_EVERY: Duration = Duration::from_secs(60);

/// See the module documentation.
#[derive(Debug)]
pub struct PgLoginProbe {
    tcp: TcpProbe,
    connector: PgConnector,
    /// When a login last succeeded; `None` after a failed probe.
    last_login: Mutex<Option<Instant>>,
}

impl PgLoginProbe {
    /// A probe of `connector`'s server; `timeout` bounds each step.
    pub fn new(connector: PgConnector, timeout: Duration) -> PgLoginProbe {
        PgLoginProbe {
            tcp: TcpProbe {
                host: connector.host().to_string(),
                port: connector.port(),
                probe_timeout: timeout,
            },
            connector,
            last_login: Mutex::new(None),
        }
    }

    async fn login(&self) -> Result<(), Failure> {
        match tokio::time::timeout(self.tcp.probe_timeout, self.connector.connect_unpooled()).await
        {
            Ok(Ok(conn)) => {
                conn.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(e.failure()),
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!("login did not finish within {:?}", self.tcp.probe_timeout),
            )),
        }
    }
}

impl PgLoginProbe {
    /// TCP, then a login unless one succeeded within [`LOGIN_EVERY`] and `trust_recent_login`.
    async fn check(&self, trust_recent_login: bool) -> Result<(), Failure> {
        let result = async {
            self.tcp.probe().await?;
            let fresh = trust_recent_login
                && self
                    .last_login
                    .lock()
                    .is_some_and(|at| at.elapsed() < LOGIN_EVERY);
            if !fresh {
                self.login().await?;
                *self.last_login.lock() = Some(Instant::now());
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            *self.last_login.lock() = None;
        }
        result
    }
}

impl Probe for PgLoginProbe {
    async fn probe(&self) -> Result<(), Failure> {
        self.check(true).await
    }

    /// Always logs in: a forced check must see a password changed a moment ago.
    async fn probe_uncached(&self) -> Result<(), Failure> {
        self.check(false).await
    }
}
