//! pgwarden keeps a PostgreSQL server's connection slots safe. This crate is the Rust library
//! face of it (and the `pgwarden` binary): one well-behaved pool per process, with hard caps,
//! lifetimes, leak detection and statistics, built from a layered configuration.
//!
//! # Layout
//! - [`config`]: the typed settings, layered defaults < file < environment < flags, validated.
//! - [`admin`]: the HTTP admin face (`/health`, `/ready`, `/metrics`) over a running proxy.
//! - [`Warden`] (`warden.rs`): the facade — `connection().await`, `fetch_*`, `execute`,
//!   `health_check`, `stats`, `shutdown`; PostgreSQL and Redis pools with one lifecycle.
//! - [`global`] (`global.rs`): the optional process-wide instance.
//! - [`pg`]: the PostgreSQL connector on tokio-postgres; its socket is watched by the protocol
//!   crate's transaction tracker so a connection dropped mid-transaction is never reused dirty.
//! - [`OrphanCleaner`] (`orphans.rs`): orphan cleanup — backends of crashed earlier instances,
//!   terminated; used by [`Warden`] and by `pgwarden serve`.
//! - `redis_pool.rs`: the Redis connector on the `redis` crate.
//! - [`Error`] (`error.rs`): what callers get back, with SQLSTATEs where the server gave one.
//!
//! The pool itself is the generic `pgwarden-pool` crate; its statistics and events are
//! re-exported here.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), pgwarden::Error> {
//! let warden = pgwarden::Warden::from_env()?; // PGWARDEN_UPSTREAM_URL or DATABASE_URL
//! warden.init().await?;
//! let conn = warden.connection().await?;
//! let row = conn.query_one("SELECT 1 + 1", &[]).await?;
//! assert_eq!(row.get::<_, i32>(0), 2);
//! drop(conn); // back to the pool
//! println!("{:?}", warden.stats());
//! warden.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod config;
mod error;
mod global;
mod orphans;
pub mod pg;
mod redis_pool;
pub mod upstream;
mod warden;

pub use error::{ConnectError, Error};
pub use global::{global, init_global};
pub use orphans::OrphanCleaner;
pub use pg::{PgConnection, PgConnector};
pub use pgwarden_pool::{clock, CloseReport, PoolError, PoolEvent, PoolStats, PoolStatus};
pub use redis_pool::RedisConnector;
pub use warden::{
    OrphanReport, PgGuard, RedisGuard, ShutdownReport, Warden, WardenStats, POSTGRES, REDIS,
};
