//! What the admin face reads: an [`AdminSnapshot`] taken fresh for every request from an
//! [`AdminSource`] that the embedding program (the `pgwarden` binary, a library user)
//! implements. The admin crate depends only on the pool and resilience crates, so the proxy's
//! counters arrive as the small [`ProxyCounters`] defined here.

use pgwarden_pool::PoolStats;
use pgwarden_resilience::StatusSummary;

/// The proxy as a whole: what `pgwarden serve` counts besides its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxyCounters {
    /// Clients logged in since start.
    pub clients_total: u64,
    /// Clients connected now.
    pub clients_active: u64,
    /// Of those, idle clients parked without a task of their own.
    pub clients_parked: u64,
    /// Clients refused at `max_client_conn`.
    pub clients_refused: u64,
    /// Server connection checkouts completed (transactions in transaction mode).
    pub transactions_total: u64,
}

/// Everything one request renders, taken at one moment.
#[derive(Debug, Clone, Default)]
pub struct AdminSnapshot {
    /// Every pool's statistics (the proxy's per-(database, user) pools, a library's pool).
    pub pools: Vec<PoolStats>,
    /// The proxy's own counters; `None` when there is no proxy (a library user's pool).
    pub proxy: Option<ProxyCounters>,
    /// The upstream monitor's view; `None` when nothing monitors the upstream.
    pub upstream: Option<StatusSummary>,
    /// True once shutdown has begun: `/ready` fails so load balancers stop sending clients
    /// while sessions drain.
    pub shutting_down: bool,
}

/// Where the admin server gets its data. Called once per request, so an implementation reads
/// its live counters (cheap atomics and short locks) rather than caching.
///
/// Any `Fn() -> AdminSnapshot` closure is a source.
pub trait AdminSource: Send + Sync + 'static {
    /// The state right now.
    fn snapshot(&self) -> AdminSnapshot;
}

impl<F> AdminSource for F
where
    F: Fn() -> AdminSnapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> AdminSnapshot {
        self()
    }
}
