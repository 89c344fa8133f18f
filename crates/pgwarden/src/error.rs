//! The library's error types: what a caller of the facade can get back, and why a connect failed.

use std::time::Duration;

use pgwarden_resilience::FailureKind;

/// Why opening one server connection failed. Carried into the pool's statistics and into the
/// acquire-timeout error, so a caller sees "password authentication failed", not a bare timeout.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TCP connection could not be made (refused, unreachable, unknown host).
    #[error("could not connect to the upstream: {0}")]
    Io(#[source] std::io::Error),
    /// The server answered with an error during startup or authentication.
    #[error("{}", describe_postgres(.0))]
    Postgres(#[source] tokio_postgres::Error),
    /// Connect plus authentication took longer than the connect timeout.
    #[error("connecting to the upstream timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// A connection that came back mid-transaction could not be rolled back to idle.
    #[error("connection still inside a transaction after ROLLBACK")]
    Dirty,
    /// A Redis connection failed.
    #[error("redis: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// The circuit breaker refused the attempt (the upstream is known to be away).
    #[error("{0}")]
    Unavailable(String),
}

impl ConnectError {
    /// The classified cause, for the breaker and for statistics.
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            ConnectError::Io(e) => FailureKind::from_io_error(e),
            ConnectError::Postgres(e) => {
                if let Some(code) = e.code() {
                    if let Some(kind) = FailureKind::from_sqlstate(code.code()) {
                        return kind;
                    }
                }
                match std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>())
                {
                    Some(io) => FailureKind::from_io_error(io),
                    None => FailureKind::Other,
                }
            }
            ConnectError::Timeout(_) => FailureKind::Timeout,
            ConnectError::Dirty | ConnectError::Unavailable(_) => FailureKind::Other,
            ConnectError::Redis(e) if e.is_connection_refusal() => FailureKind::Refused,
            ConnectError::Redis(e) if e.is_timeout() => FailureKind::Timeout,
            ConnectError::Redis(_) => FailureKind::Other,
        }
    }

    /// A bounded label for metrics and statistics.
    pub fn kind(&self) -> &'static str {
        self.failure_kind().label()
    }

    /// The classified failure, for the breaker and the monitor.
    pub fn failure(&self) -> pgwarden_resilience::Failure {
        pgwarden_resilience::Failure::new(self.failure_kind(), self.to_string())
    }
}

/// tokio-postgres prints "db error" for server errors; show the server's own words and SQLSTATE.
fn describe_postgres(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Everything the facade can return.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be had from the pool (timeout, closed pool).
    #[error(transparent)]
    Pool(#[from] pgwarden_pool::PoolError),
    /// The server rejected a statement, or the connection broke while running it.
    #[error("{}", describe_postgres(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A statement ran longer than the command timeout and was cancelled on the server.
    #[error("statement cancelled after the command timeout of {}", humantime::format_duration(*.timeout))]
    CommandTimeout {
        /// The configured command timeout.
        timeout: Duration,
    },
    /// A Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The upstream URL could not be used.
    #[error("invalid upstream url: {reason}")]
    InvalidUrl {
        /// What is wrong with it (never the password).
        reason: String,
    },
    /// A setting is out of range for the pool core.
    #[error("invalid pool setting: {0}")]
    InvalidSetting(String),
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A Redis pool was asked for but no Redis URL is configured.
    #[error("no redis url configured (set PGWARDEN_REDIS_URL or [redis] url)")]
    RedisNotConfigured,
    /// `shutdown()` has been called; no new connections are handed out.
    #[error("pgwarden is shutting down")]
    ShuttingDown,
    /// A connection outside the pool (maintenance) could not be opened.
    #[error("cannot connect: {0}")]
    Connect(#[from] ConnectError),
    /// `require_upstream` is set and the upstream did not answer within the start-up attempts.
    #[error("upstream required (require_upstream = true) but unavailable: {0}")]
    UpstreamRequired(pgwarden_resilience::Failure),
}

impl Error {
    /// The SQLSTATE of a server error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Postgres(e) => e.code().map(|c| c.code()),
            Error::CommandTimeout { .. } => Some("57014"),
            _ => None,
        }
    }
}
