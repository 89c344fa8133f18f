//! pgwarden's HTTP admin face: `/health`, `/ready` and `/metrics` (Prometheus, OpenMetrics
//! text), answered from a fresh [`AdminSnapshot`] per request.
//!
//! This crate depends only on the pool and resilience crates: whoever embeds it (the
//! `pgwarden serve` binary, a library user) implements [`AdminSource`] and hands the pools'
//! [`PoolStats`](pgwarden_pool::PoolStats), the proxy's [`ProxyCounters`], the upstream
//! monitor's [`StatusSummary`](pgwarden_resilience::StatusSummary) and whether shutdown has
//! begun.
//!
//! - `GET /health`: `200 ok` while the process answers.
//! - `GET /ready`: `200 ok` when clients may be sent here, else `503` with a one-line reason
//!   (see [`readiness`] for the rules).
//! - `GET /metrics`: every metric of `docs/metrics.md`.
//!
//! # Layout
//! - `source.rs`: [`AdminSnapshot`], [`ProxyCounters`] and the [`AdminSource`] trait.
//! - `metrics.rs`: every metric name, and [`render`] (a `prometheus-client` collector over one
//!   snapshot; nothing is counted twice).
//! - `ready.rs`: the readiness decision, a pure function of a snapshot and `now`.
//! - `server.rs`: [`AdminServer`], the axum listener that stops on a cancellation token.
//!
//! # Example
//! ```
//! use pgwarden_admin::{render, AdminServer, AdminSnapshot, ProxyCounters};
//! use tokio_util::sync::CancellationToken;
//!
//! let snapshot = || AdminSnapshot {
//!     proxy: Some(ProxyCounters { transactions_total: 3, ..Default::default() }),
//!     ..Default::default()
//! };
//! assert!(render(&snapshot()).contains("pgwarden_transactions_total 3\n"));
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), snapshot).await.unwrap();
//! println!("admin on http://{}/metrics", server.local_addr());
//! let stop = CancellationToken::new();
//! let task = tokio::spawn(server.run(stop.clone()));
//! stop.cancel();
//! task.await.unwrap().unwrap();
//! # });
//! ```

mod metrics;
mod ready;
mod server;
mod source;

pub use metrics::{metric_names, render, SnapshotCollector, CONTENT_TYPE};
pub use ready::{readiness, Readiness};
pub use server::{AdminError, AdminServer};
pub use source::{AdminSnapshot, AdminSource, ProxyCounters};
