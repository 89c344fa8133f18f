//! The proxy's resolved settings: where to listen, where the upstream is, how to pool and how
//! to authenticate clients. The binary builds this from the layered configuration; tests build
//! it directly. Names follow PgBouncer's where the meaning is the same.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::tls::TlsMode;

/// When a server connection goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// After each transaction (ReadyForQuery with status Idle). The default.
    Transaction,
    /// When the client disconnects; the connection is reset with the reset query first.
    Session,
}

impl PoolMode {
    /// The mode's configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Transaction => "transaction",
            PoolMode::Session => "session",
        }
    }
}

impl std::str::FromStr for PoolMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "transaction" => Ok(PoolMode::Transaction),
            "session" => Ok(PoolMode::Session),
            other => Err(format!(
                "unknown pool mode {other:?} (expected transaction or session)"
            )),
        }
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    /// SCRAM-SHA-256 (falls back to md5 for users whose only secret is an md5 hash).
    Scram,
    /// md5 password hashing.
    Md5,
    /// No password; allowed only on loopback listeners unless `allow_trust_remote` is set.
    Trust,
}

impl std::str::FromStr for AuthType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "scram-sha-256" | "scram" => Ok(AuthType::Scram),
            "md5" => Ok(AuthType::Md5),
            "trust" => Ok(AuthType::Trust),
            other => Err(format!(
                "unknown auth type {other:?} (expected scram-sha-256, md5 or trust)"
            )),
        }
    }
}

/// An upstream PostgreSQL server and the credentials pgwarden logs in with. `Debug` shows the
/// password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Default server user when a route names none (the client's user is used otherwise).
    pub user: Option<String>,
    /// Password for server logins when neither the userlist nor SCRAM pass-through gives one.
    pub password: Option<String>,
    /// Database to connect to when a route names none (the client's database otherwise).
    pub database: Option<String>,
}

/// One entry of the `[databases]` table: a client-visible database name mapped elsewhere.
/// `Debug` shows the password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseRoute {
    /// Server to use; `None` means the default upstream.
    pub upstream: Option<Upstream>,
    /// Database name on the server; `None` keeps the client's name.
    pub dbname: Option<String>,
    /// Server user to log in as; `None` keeps the client's user.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// Per-route pool size override.
    pub pool_size: Option<usize>,
}

/// What a password is shown as in `Debug` output.
const MASK: &str = "***";

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field("database", &self.database)
            .finish()
    }
}

impl fmt::Debug for DatabaseRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseRoute")
            .field("upstream", &self.upstream)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Every setting of the proxy. Its secrets live in [`Upstream`] and [`DatabaseRoute`], whose
/// `Debug` masks them, so the derived `Debug` here never shows a password either.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Address to listen on (default `127.0.0.1:6432`).
    pub listen: SocketAddr,
    /// The default upstream.
    pub upstream: Upstream,
    /// Client database name -> route.
    pub databases: BTreeMap<String, DatabaseRoute>,
    /// Pooling mode.
    pub pool_mode: PoolMode,
    /// Server connections per (database, user) pool (default 10).
    pub default_pool_size: usize,
    /// Server connections kept open per pool even when idle (default 0).
    pub min_pool_size: usize,
    /// Cap on server connections per database over all its users; 0 = no cap.
    pub max_db_connections: usize,
    /// Client connections accepted at once (default 1000).
    pub max_client_conn: usize,
    /// Server connections opened at once per pool (default 2).
    pub max_connecting: usize,
    /// Longest a client waits for a server connection (default 30 s).
    pub query_wait_timeout: Duration,
    /// Longest from TCP accept to authenticated (default 15 s).
    pub client_login_timeout: Duration,
    /// Longest a client may sit idle inside a transaction holding a server connection; zero
    /// disables (default 0).
    pub idle_transaction_timeout: Duration,
    /// Longest a request may take, from sending it to the server until its ReadyForQuery;
    /// past it the query is cancelled on the server (the client gets 57014 and stays
    /// connected). Zero disables (default 0).
    pub query_timeout: Duration,
    /// Idle server connections above `min_pool_size` close after this (default 600 s).
    pub server_idle_timeout: Duration,
    /// Server connections are recycled after this age (default 3600 s).
    pub server_lifetime: Duration,
    /// Idle server connections are checked this often (jittered), and get the instance tag
    /// back as their application_name (default 120 s; zero disables).
    pub server_keepalive_interval: Duration,
    /// TCP connect plus login to the server (default 15 s).
    pub server_connect_timeout: Duration,
    /// Query run on a server connection before another session gets it in session mode.
    pub server_reset_query: String,
    /// How clients authenticate.
    pub auth_type: AuthType,
    /// PgBouncer-format userlist: `"user" "secret"` lines (SCRAM secret, md5 hash or password).
    pub auth_file: Option<PathBuf>,
    /// Query run on the upstream (as the upstream user) to find a user's secret, with `$1`
    /// the user name, e.g. `SELECT usename, passwd FROM pg_shadow WHERE usename = $1`.
    pub auth_query: Option<String>,
    /// Allow trust authentication on a non-loopback listener.
    pub allow_trust_remote: bool,
    /// application_name of server connections when the client gives none.
    pub application_name: String,
    /// Largest message accepted from a client (default 256 MiB).
    pub max_message_len: u32,
    /// Prepared statements cached per server connection before the oldest is closed.
    pub max_prepared_statements: usize,
    /// Transaction mode: answer a plain `BEGIN` without a server connection and send it to the
    /// server right before the transaction's first statement, in the same write (one server
    /// round trip less per transaction; no server connection held by a client that opened a
    /// transaction and sent nothing yet). Default on.
    pub defer_begin: bool,
    /// Whether clients may (`allow`, the default) or must (`require`) use TLS; `disable`
    /// answers every SSLRequest with `N`. TLS is offered only with a certificate and key.
    pub tls_mode: TlsMode,
    /// PEM certificate chain (leaf first) presented to clients. Default none (no TLS).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`. Default none.
    pub tls_key_file: Option<PathBuf>,
}

impl ProxyConfig {
    /// Defaults around an upstream `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            upstream: Upstream {
                host: host.into(),
                port,
                user: None,
                password: None,
                database: None,
            },
            databases: BTreeMap::new(),
            pool_mode: PoolMode::Transaction,
            default_pool_size: 10,
            min_pool_size: 0,
            max_db_connections: 0,
            max_client_conn: 1000,
            max_connecting: 2,
            query_wait_timeout: Duration::from_secs(30),
            client_login_timeout: Duration::from_secs(15),
            idle_transaction_timeout: Duration::ZERO,
            query_timeout: Duration::ZERO,
            server_idle_timeout: Duration::from_secs(600),
            server_keepalive_interval: Duration::from_secs(120),
            server_lifetime: Duration::from_secs(3600),
            server_connect_timeout: Duration::from_secs(15),
            server_reset_query: "DISCARD ALL".to_string(),
            auth_type: AuthType::Scram,
            auth_file: None,
            auth_query: None,
            allow_trust_remote: false,
            application_name: "pgwarden".to_string(),
            max_message_len: 256 << 20,
            max_prepared_statements: 200,
            defer_begin: true,
            tls_mode: TlsMode::Allow,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }

    /// Checks combinations a single field cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.default_pool_size == 0 {
            return Err("default_pool_size must be at least 1".into());
        }
        if self.min_pool_size > self.default_pool_size {
            return Err(format!(
                "min_pool_size ({}) is larger than default_pool_size ({})",
                self.min_pool_size, self.default_pool_size
            ));
        }
        if self.auth_type == AuthType::Trust
            && !self.listen.ip().is_loopback()
            && !self.allow_trust_remote
        {
            return Err(format!(
                "auth_type trust on non-loopback listener {} needs allow_trust_remote = true",
                self.listen
            ));
        }
        if self.auth_type != AuthType::Trust
            && self.auth_file.is_none()
            && self.auth_query.is_none()
        {
            return Err("auth_type needs an auth_file or an auth_query to check passwords".into());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err("tls_cert_file is set but tls_key_file is not".into()),
            (None, Some(_)) => return Err("tls_key_file is set but tls_cert_file is not".into()),
            (None, None) if self.tls_mode == TlsMode::Require => {
                return Err("tls_mode require needs tls_cert_file and tls_key_file".into());
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let mut config = ProxyConfig::new("db", 5432);
        config.upstream.user = Some("app".into());
        config.upstream.password = Some("upstream-secret".into());
        config.databases.insert(
            "alias".into(),
            DatabaseRoute {
                upstream: Some(Upstream {
                    password: Some("route-server-secret".into()),
                    ..config.upstream.clone()
                }),
                dbname: Some("target".into()),
                user: Some("ro".into()),
                password: Some("route-secret".into()),
                pool_size: None,
            },
        );
        let shown = format!("{config:?} {config:#?}");
        for secret in ["upstream-secret", "route-server-secret", "route-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("password: Some(\"***\")"), "{shown}");
        assert!(shown.contains("target") && shown.contains("app"), "{shown}");
        let none = format!("{:?}", ProxyConfig::new("db", 5432).upstream);
        assert!(none.contains("password: None"), "{none}");
    }
}
