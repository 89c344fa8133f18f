//! pgwarden's PostgreSQL wire-protocol pooling proxy.
//!
//! Clients connect to the proxy as if it were PostgreSQL; each (database, user) gets one small
//! pool of server connections with a hard cap, lent per transaction (or per session).
//!
//! # Layout
//! - [`config`]: [`ProxyConfig`], every setting, PgBouncer's names where the meaning is the same.
//! - [`proxy`]: [`Proxy`], the listener, shared state and the orderly shutdown.
//! - `client`: one client's session: startup and authentication, then the event loop that
//!   acquires a server connection at the start of a transaction and releases it at its end.
//! - `server`: [`ServerConnection`] and [`ServerConnector`], logging in to PostgreSQL as a
//!   client (trust, md5, SCRAM from a password or pass-through keys).
//! - `responses`: the sans-IO plan of which server replies the client is owed, which lets the
//!   proxy rename, inject and answer prepared-statement messages without confusing drivers.
//! - `params`: session parameters a client expects on whichever server connection serves it.
//! - `pools`: the per-(database, user) pools and routing.
//! - `cancel`: pgwarden's own BackendKeyData per client and cancel forwarding.
//! - [`userlist`]: PgBouncer's `userlist.txt` format.
//! - `auth_query`: the one shared upstream connection per auth database that `auth_query`
//!   lookups run on.
//! - `buffers`: per-thread spare I/O buffers lent to sessions while they are active.
//! - `signals`: shutdown signals sessions watch without a lock.
//! - [`tls`]: TLS towards clients ([`TlsMode`], loading the certificate and key).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use pgwarden_proxy::{AuthType, Proxy, ProxyConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let mut config = ProxyConfig::new("127.0.0.1", 5432);
//! config.listen = "127.0.0.1:6432".parse()?;
//! config.auth_type = AuthType::Trust;
//! config.default_pool_size = 3;
//! let proxy = Proxy::bind(config, None).await?;
//! let shutdown = CancellationToken::new();
//! proxy.run(shutdown, std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

mod auth_query;
mod buffers;
mod cancel;
mod client;
pub mod config;
mod params;
mod pools;
pub mod proxy;
mod responses;
mod server;
mod signals;
pub mod tls;
pub mod userlist;

pub use config::{AuthType, DatabaseRoute, PoolMode, ProxyConfig, Upstream};
pub use pools::ProxyPool;
pub use proxy::{Proxy, ProxyHandle, ProxyStats, StartError};
pub use server::{ServerConnection, ServerConnector, ServerCredentials, ServerError};
pub use tls::{TlsError, TlsMode};
