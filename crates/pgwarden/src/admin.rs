//! The HTTP admin face ([`pgwarden_admin`]) wired to pgwarden's parts: [`ProxyAdminSource`]
//! snapshots a running proxy, its upstream prober and the shutdown token for `/health`,
//! `/ready` and `/metrics`.

use pgwarden_proxy::ProxyHandle;
use pgwarden_resilience::ProberHandle;
use tokio_util::sync::CancellationToken;

pub use pgwarden_admin::{
    render, AdminError, AdminServer, AdminSnapshot, AdminSource, ProxyCounters, Readiness,
};

/// An [`AdminSource`] over a running proxy: its pools and counters, the upstream's status (when
/// a prober watches it), and whether `shutdown` has fired (then `/ready` fails while the proxy
/// drains).
#[derive(Clone)]
pub struct ProxyAdminSource {
    proxy: ProxyHandle,
    upstream: Option<ProberHandle>,
    shutdown: CancellationToken,
}

impl ProxyAdminSource {
    /// A source over `proxy`, `upstream` and the token whose cancellation starts shutdown.
    pub fn new(
        proxy: ProxyHandle,
        upstream: Option<ProberHandle>,
        shutdown: CancellationToken,
    ) -> ProxyAdminSource {
        ProxyAdminSource {
            proxy,
            upstream,
            shutdown,
        }
    }
}

impl AdminSource for ProxyAdminSource {
    fn snapshot(&self) -> AdminSnapshot {
        let stats = self.proxy.stats();
        AdminSnapshot {
            pools: stats.pools,
            proxy: Some(ProxyCounters {
                clients_total: stats.clients_total,
                clients_active: stats.clients_active,
                clients_parked: stats.clients_parked,
                clients_refused: stats.clients_refused,
                transactions_total: stats.transactions_total,
            }),
            upstream: self.upstream.as_ref().map(ProberHandle::summary),
            shutting_down: self.shutdown.is_cancelled(),
        }
    }
}
