//! A generic async connection pool: hard cap, FIFO waiting, background connects, lifetimes,
//! keepalive, leak detection and statistics. It knows nothing of PostgreSQL: a [`Connector`]
//! opens, checks, resets and closes whatever is pooled.
//!
//! # Layout
//! - [`connector`]: the [`Connector`] trait and [`ReleaseState`].
//! - [`config`]: [`PoolConfig`] and its validation.
//! - `pool`: [`Pool`], the public API, and the shared core.
//! - `state`: the locked bookkeeping (idle list, FIFO waiters, counts, checkouts).
//! - `guard`: [`Pooled`], the checkout guard that always gives its connection back.
//! - `tasks`: background connects and the maintenance loop.
//! - [`clock`]: the time read on the hot path, once per event-loop turn where the runtime
//!   reports its wake-ups.
//! - [`stats`], [`event`], [`error`]: what the pool reports.
//!
//! # Guarantees
//! - Open plus opening connections never exceed `max_size`.
//! - Connections are opened only by background tasks, at most `max_connecting` at a time.
//! - Waiting callers are served in arrival order; a returned connection goes straight to the
//!   oldest waiter.
//! - A guard dropped anywhere (panic, cancelled task) returns its connection; a dirty one is
//!   reset or closed, never handed out dirty.
//!
//! # Example
//! ```
//! use pgwarden_pool::{Connector, Pool, PoolConfig};
//!
//! struct Numbers;
//! impl Connector for Numbers {
//!     type Connection = u32;
//!     type Error = std::io::Error;
//!     async fn connect(&self) -> Result<u32, std::io::Error> { Ok(7) }
//!     async fn ping(&self, _: &mut u32) -> Result<(), std::io::Error> { Ok(()) }
//!     fn is_broken(&self, _: &u32) -> bool { false }
//!     async fn close(&self, _: u32) {}
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pool = Pool::new(Numbers, PoolConfig { max_size: 2, ..PoolConfig::default() }).unwrap();
//! let conn = pool.get().await.unwrap();
//! assert_eq!(*conn, 7);
//! drop(conn);
//! assert_eq!(pool.status().idle, 1);
//! # });
//! ```

pub mod clock;
pub mod config;
pub mod connector;
pub mod error;
pub mod event;
mod guard;
mod pool;
mod state;
pub mod stats;
mod tasks;

pub use config::{ConfigError, PoolConfig};
pub use connector::{Connector, ReleaseState};
pub use error::PoolError;
pub use event::PoolEvent;
pub use guard::Pooled;
pub use pool::{Acquire, CloseReport, Pool};
pub use state::ConnMeta;
pub use stats::{Histogram, PoolStats, PoolStatus};
