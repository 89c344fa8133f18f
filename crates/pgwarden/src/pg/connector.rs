//! Opens PostgreSQL connections for the pool: TCP connect with a timeout, startup with
//! `application_name`, `TimeZone=UTC` and the configured server settings, and the release
//! decisions that keep a dirty connection from being reused.

use std::net::SocketAddr;
use std::time::Duration;

use pgwarden_pool::{Connector, ReleaseState};
use pgwarden_resilience::ProberHandle;
use tokio::net::TcpStream;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Config, NoTls, SimpleQueryMessage};

use super::connection::PgConnection;
use super::stream::ObservedStream;
use crate::error::{ConnectError, Error};

/// How long a returned connection that is still finishing gets before its statement is
/// cancelled (see `reset`).
const SETTLE: Duration = Duration::from_millis(100);

/// What a [`PgConnector`] needs to open connections.
#[derive(Clone, Debug)]
pub struct PgConnectorOptions {
    /// Connection URL or key=value string, as libpq accepts it.
    pub url: String,
    /// `application_name` set on every server connection (default `pgwarden`).
    pub application_name: String,
    /// Limit for TCP connect plus startup and authentication.
    pub connect_timeout: Duration,
    /// Limit for one statement run through [`PgConnection`]'s helpers.
    pub command_timeout: Duration,
    /// Server settings sent at startup (`-c key=value`); `TimeZone` defaults to `UTC`.
    pub server_settings: Vec<(String, String)>,
}

/// The pool's connector for PostgreSQL, on tokio-postgres.
#[derive(Debug, Clone)]
pub struct PgConnector {
    config: Config,
    addr_host: String,
    port: u16,
    connect_timeout: Duration,
    command_timeout: Duration,
    /// The upstream's monitor: connects are refused fast while its breaker is open, and every
    /// connect outcome is reported to it (passive detection).
    upstream: Option<ProberHandle>,
}

impl PgConnector {
    /// Checks the options and builds a connector. Only TCP hosts are supported.
    pub fn new(options: PgConnectorOptions) -> Result<Self, Error> {
        let mut config: Config =
            options
                .url
                .parse()
                .map_err(|e: tokio_postgres::Error| Error::InvalidUrl {
                    reason: e.to_string(),
                })?;
        let addr_host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => {
                return Err(Error::InvalidUrl {
                    reason: format!(
                        "unix socket host {} is not supported; use a TCP host",
                        path.display()
                    ),
                })
            }
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        if config.get_user().is_none() {
            config.user("postgres");
        }
        config.application_name(&options.application_name);
        config.ssl_mode(SslMode::Disable);
        config.connect_timeout(options.connect_timeout);
        config.options(startup_options(&options.server_settings));
        Ok(PgConnector {
            config,
            addr_host,
            port,
            connect_timeout: options.connect_timeout,
            command_timeout: options.command_timeout,
            upstream: None,
        })
    }

    /// The same connector gated by (and reporting to) the upstream's monitor.
    pub fn with_upstream(mut self, upstream: ProberHandle) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// The same connector with another `application_name` (e.g. the instance tag).
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    /// Unless the upstream was seen alive within the success cache (5 s), a plain TCP connect
    /// first: a dead server is reported in milliseconds with a classified reason instead of
    /// after a login timeout.
    async fn probe_first(&self) -> Result<(), pgwarden_resilience::Failure> {
        use pgwarden_resilience::Probe;
        match &self.upstream {
            Some(upstream) if !upstream.cached_available() => {
                pgwarden_resilience::TcpProbe {
                    host: self.addr_host.clone(),
                    port: self.port,
                    probe_timeout: self.connect_timeout,
                }
                .probe()
                .await
            }
            _ => Ok(()),
        }
    }

    /// The server's host name or address.
    pub fn host(&self) -> &str {
        &self.addr_host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Opens a connection outside any pool (for maintenance such as orphan cleanup).
    pub async fn connect_unpooled(&self) -> Result<PgConnection, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, self.open()).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout(self.connect_timeout)),
        }
    }

    /// The database this connector logs in to.
    pub fn database(&self) -> &str {
        self.config
            .get_dbname()
            .or_else(|| self.config.get_user())
            .unwrap_or("postgres")
    }

    /// The user this connector logs in as.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }

    /// The `application_name` its connections carry.
    pub fn application_name(&self) -> &str {
        self.config.get_application_name().unwrap_or("pgwarden")
    }

    async fn open(&self) -> Result<PgConnection, ConnectError> {
        let tcp = TcpStream::connect((self.addr_host.as_str(), self.port))
            .await
            .map_err(ConnectError::Io)?;
        let server_addr: SocketAddr = tcp.peer_addr().map_err(ConnectError::Io)?;
        let _ = tcp.set_nodelay(true);
        let (stream, tracker) = ObservedStream::new(tcp);
        let (client, connection) = self
            .config
            .connect_raw(stream, NoTls)
            .await
            .map_err(ConnectError::Postgres)?;
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "server connection ended with an error");
            }
        });
        // The simple protocol on purpose: `query_one` would prepare a named statement whose
        // drop sends Close and Sync without waiting, so the connection would be handed out
        // with a reply still owed (not idle, and a reset on release for nothing).
        let pid = client
            .simple_query("SELECT pg_backend_pid()")
            .await
            .map_err(ConnectError::Postgres)
            .and_then(|messages| {
                messages
                    .iter()
                    .find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => row.get(0)?.parse::<i32>().ok(),
                        _ => None,
                    })
                    .ok_or_else(|| {
                        ConnectError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "SELECT pg_backend_pid() returned no process id",
                        ))
                    })
            });
        let pid = match pid {
            Ok(pid) => pid,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        Ok(PgConnection::new(
            client,
            driver,
            tracker,
            server_addr,
            self.command_timeout,
            pid,
        ))
    }
}

/// Builds the startup `options` string: `-c key=value` pairs, `TimeZone=UTC` unless configured.
fn startup_options(settings: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if !settings
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("timezone"))
    {
        parts.push("-c TimeZone=UTC".to_string());
    }
    for (key, value) in settings {
        // libpq's options syntax: spaces and backslashes inside a value are escaped.
        let value = value.replace('\\', "\\\\").replace(' ', "\\ ");
        parts.push(format!("-c {key}={value}"));
    }
    parts.join(" ")
}

impl Connector for PgConnector {
    type Connection = PgConnection;
    type Error = ConnectError;

    async fn connect(&self) -> Result<PgConnection, ConnectError> {
        if let Some(upstream) = &self.upstream {
            // Takes the breaker's half-open trial when one is due; refused while it is open.
            if let Err(unavailable) = upstream.admit() {
                return Err(ConnectError::Unavailable(unavailable.to_string()));
            }
        }
        let result = match self.probe_first().await {
            Err(failure) => Err(ConnectError::Io(std::io::Error::new(
                match failure.kind {
                    pgwarden_resilience::FailureKind::Refused => {
                        std::io::ErrorKind::ConnectionRefused
                    }
                    pgwarden_resilience::FailureKind::Timeout => std::io::ErrorKind::TimedOut,
                    _ => std::io::ErrorKind::Other,
                },
                failure.message,
            ))),
            Ok(()) => self.connect_unpooled().await,
        };
        if let Some(upstream) = &self.upstream {
            match &result {
                Ok(_) => upstream.report_client_success(),
                Err(e) => upstream.report_client_failure(&e.failure()),
            }
        }
        result
    }

    async fn ping(&self, conn: &mut PgConnection) -> Result<(), ConnectError> {
        // An empty simple query is the cheapest round trip PostgreSQL answers.
        match tokio::time::timeout(self.connect_timeout, conn.client().simple_query("")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ConnectError::Postgres(e)),
            Err(_) => Err(ConnectError::Timeout(self.connect_timeout)),
        }
    }

    fn is_broken(&self, conn: &PgConnection) -> bool {
        conn.is_closed() || conn.is_desynchronized()
    }

    fn release_state(&self, conn: &PgConnection) -> ReleaseState {
        if conn.is_closed() || conn.is_desynchronized() {
            ReleaseState::Broken
        } else if conn.is_idle() {
            ReleaseState::Clean
        } else {
            ReleaseState::NeedsReset
        }
    }

    async fn reset(&self, conn: &mut PgConnection) -> Result<(), ConnectError> {
        // A statement may still be running (the caller's future was dropped mid-query): stop it
        // first, then roll back whatever transaction is open. Often the connection is only
        // finishing (the reply to a statement closed in the background is on its way): it gets
        // a moment first, because a cancel PostgreSQL acts on late would hit the ROLLBACK
        // below instead (the connection would then be closed for nothing).
        if !conn.is_idle() && !conn.settles_within(SETTLE).await {
            conn.cancel_running().await;
        }
        match tokio::time::timeout(
            self.connect_timeout,
            conn.client().batch_execute("ROLLBACK"),
        )
        .await
        {
            Ok(Ok(())) if conn.is_idle() => Ok(()),
            Ok(Ok(())) => Err(ConnectError::Dirty),
            Ok(Err(e)) => Err(ConnectError::Postgres(e)),
            Err(_) => Err(ConnectError::Timeout(self.connect_timeout)),
        }
    }

    async fn close(&self, conn: PgConnection) {
        conn.close().await;
    }

    fn error_kind(&self, err: &ConnectError) -> &'static str {
        err.kind()
    }

    fn unavailable(&self) -> Option<String> {
        let upstream = self.upstream.as_ref()?;
        match upstream.would_admit() {
            Ok(_) => None,
            Err(unavailable) => {
                // A client is asking: let the prober look now rather than on its schedule.
                upstream.client_demand();
                Some(unavailable.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::startup_options;

    #[test]
    fn timezone_defaults_to_utc_and_values_are_escaped() {
        let opts = startup_options(&[("search_path".into(), "a, b".into())]);
        assert_eq!(opts, "-c TimeZone=UTC -c search_path=a,\\ b");
        let opts = startup_options(&[("TimeZone".into(), "Europe/Paris".into())]);
        assert_eq!(opts, "-c TimeZone=Europe/Paris");
    }
}
