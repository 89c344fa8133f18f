//! The resolved, validated settings: what the rest of pgwarden codes against. Every value here
//! has passed validation; nothing is optional except what may truly be absent (the Redis URL).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::mask::mask_secrets;

/// The profile whose defaults apply. Set by `environment = "..."` in the file,
/// `PGWARDEN_ENV`, or `--env`; default `development`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Generous idle timeout (300s) and a short leak threshold (30s) to catch leaks early.
    /// Spelled `development` or `dev`.
    #[default]
    #[serde(alias = "dev")]
    Development,
    /// Short idle timeout (60s) to give server slots back, leak threshold 60s.
    /// Spelled `production` or `prod`.
    #[serde(alias = "prod")]
    Production,
}

impl Environment {
    /// The canonical lowercase name: `development` or `production`.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `development`, `dev`, `production`, `prod`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected development (dev) or production (prod), got {0:?}")]
pub struct UnknownEnvironment(pub String);

impl FromStr for Environment {
    type Err = UnknownEnvironment;

    /// Case-insensitive; surrounding whitespace is ignored.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err(UnknownEnvironment(text.to_string())),
        }
    }
}

/// The whole effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The profile whose defaults were applied.
    pub environment: Environment,
    /// The PostgreSQL server behind the pool.
    pub upstream: UpstreamSettings,
    /// The PostgreSQL pool.
    pub pool: PoolSettings,
    /// The optional Redis pool.
    pub redis: RedisSettings,
    /// Reconnection backoff towards an unavailable upstream.
    pub retry: RetrySettings,
    /// The wire-protocol pooling proxy.
    pub proxy: ProxySettings,
    /// Probing, breaker, start-up and orphan cleanup.
    pub resilience: ResilienceSettings,
    /// The HTTP admin listener (health, readiness, metrics).
    pub admin: AdminSettings,
    /// The proxy's routing table (`[databases]`): client database name (`*` = any other) ->
    /// where its server connections go. Default empty (every name goes to `upstream.url`'s
    /// server under the client's own database and user names).
    pub databases: BTreeMap<String, super::databases::DatabaseSettings>,
}

/// The PostgreSQL server behind the pool (`[upstream]`).
#[derive(Clone, PartialEq)]
pub struct UpstreamSettings {
    /// Connection URL (or libpq key/value string); has at least one host.
    /// Default `postgres://postgres@127.0.0.1:5432/postgres`.
    pub url: String,
    /// `application_name` sent at startup. Default `pgwarden`.
    pub application_name: String,
    /// Time allowed to open one server connection. Default 5s, > 0.
    pub connect_timeout: Duration,
    /// Time allowed for one command. Default 30s, > 0.
    pub command_timeout: Duration,
    /// Server parameters applied at startup (`-c name=value`). Default empty.
    pub server_settings: BTreeMap<String, String>,
}

impl fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("url", &mask_secrets(&self.url))
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("server_settings", &self.server_settings)
            .finish()
    }
}

/// The PostgreSQL pool (`[pool]`). A zero duration disables the feature where noted.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSettings {
    /// Hard cap on open server connections. Default 10, >= 1.
    pub max_size: usize,
    /// Idle connections kept open. Default 1, <= `max_size`.
    pub min_size: usize,
    /// Idle connections older than this are closed. Development 300s, production 60s; 0 disables.
    pub idle_timeout: Duration,
    /// Connections older than this are closed when returned. Default 30m; 0 disables.
    pub max_lifetime: Duration,
    /// Checkouts after which a connection is closed. Default 0 (unlimited).
    pub max_uses: u64,
    /// How long a caller waits for a connection. Default 5s, > 0.
    pub acquire_timeout: Duration,
    /// Connections being opened at once. Default 2, >= 1.
    pub max_connecting: usize,
    /// A checkout held longer than this is logged as a leak. Development 30s, production 60s;
    /// 0 disables.
    pub leak_threshold: Duration,
    /// Idle connections are pinged this often. Default 120s; 0 disables.
    pub keepalive_interval: Duration,
    /// A connection idle longer than this is checked before being handed out. Default 1s.
    pub check_after_idle: Duration,
}

/// The optional Redis pool (`[redis]`).
#[derive(Clone, PartialEq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL. Default none (no Redis pool).
    pub url: Option<String>,
    /// Hard cap on open Redis connections. Default 4, >= 1.
    pub max_size: usize,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.url.as_deref().map(mask_secrets))
            .field("max_size", &self.max_size)
            .finish()
    }
}

/// Reconnection backoff towards an unavailable upstream (`[retry]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// First delay after a failure. Default 10s, > 0.
    pub initial_delay: Duration,
    /// Upper bound of the delay. Default 600s, >= `initial_delay`.
    pub max_delay: Duration,
    /// Growth factor between attempts. Default 2.0, >= 1.
    pub multiplier: f64,
}

/// The wire-protocol pooling proxy (`[proxy]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Address to listen on. Default `127.0.0.1:6432`.
    pub listen: std::net::SocketAddr,
    /// `transaction` (default) or `session`.
    pub pool_mode: String,
    /// `scram-sha-256` (default), `md5` or `trust`.
    pub auth_type: String,
    /// PgBouncer-format userlist. Default none.
    pub auth_file: Option<std::path::PathBuf>,
    /// Query returning (user, secret) for `$1`. Default none.
    pub auth_query: Option<String>,
    /// Clients connected at once. Default 1000, >= 1.
    pub max_client_conn: usize,
    /// Server connections per database; 0 = no cap. Default 0.
    pub max_db_connections: usize,
    /// Longest a client waits for a server connection. Default 30s, > 0.
    pub query_wait_timeout: Duration,
    /// Longest from connect to logged in. Default 15s, > 0.
    pub client_login_timeout: Duration,
    /// Idle-in-transaction clients are disconnected after this; 0 disables. Default 0.
    pub idle_transaction_timeout: Duration,
    /// Queries running longer are cancelled; 0 disables. Default 0.
    pub query_timeout: Duration,
    /// Reset between sessions in session mode. Default `DISCARD ALL`.
    pub server_reset_query: String,
    /// Threads moving bytes: 1 = a single-threaded (current-thread) runtime, N = N worker
    /// threads, 0 = one per CPU. Default 1.
    pub workers: usize,
    /// Allow trust authentication on a non-loopback listener. Default false.
    pub allow_trust_remote: bool,
    /// Prepared statements kept per server connection before the oldest is closed.
    /// Default 200, >= 1.
    pub max_prepared_statements: usize,
    /// Transaction mode: answer a plain `BEGIN` locally and send it right before the
    /// transaction's first statement. Default true.
    pub defer_begin: bool,
    /// TLS towards clients: `disable`, `allow` (default) or `require` (needs a certificate).
    pub tls_mode: String,
    /// PEM certificate chain presented to clients. Default none (no TLS).
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert_file`. Default none.
    pub tls_key_file: Option<std::path::PathBuf>,
}

/// Probing, breaker, start-up and orphan cleanup (`[resilience]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResilienceSettings {
    /// Time allowed for one TCP probe. Default 2s, > 0.
    pub probe_timeout: Duration,
    /// How long a successful probe is trusted. Default 5s.
    pub probe_cache: Duration,
    /// Probe cadence while healthy. Default 10s, > 0.
    pub health_interval: Duration,
    /// Development: failures before background probing pauses. Default 5, >= 1.
    pub dev_pause_after: usize,
    /// Consecutive connect failures that open the breaker. Default 5, >= 1.
    pub breaker_threshold: usize,
    /// Exit at start-up if the upstream cannot be reached. Default false.
    pub require_upstream: bool,
    /// Start-up attempts. Default 5, >= 1.
    pub startup_attempts: usize,
    /// First delay between start-up attempts. Default 1s, > 0.
    pub startup_initial_delay: Duration,
    /// Largest delay between start-up attempts. Default 30s.
    pub startup_max_delay: Duration,
    /// Idle time after which another instance's backend is an orphan. Default 5m.
    pub orphan_idle_threshold: Duration,
    /// Terminate orphans at start-up. Default true.
    pub orphan_cleanup: bool,
}

/// The HTTP admin listener of `pgwarden serve` (`[admin]`): `/health`, `/ready`, `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Address to listen on, e.g. `127.0.0.1:9187`. Default none: no admin listener.
    pub listen: Option<std::net::SocketAddr>,
}
