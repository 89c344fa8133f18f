//! Every metric pgwarden exports, by name, and how one [`AdminSnapshot`] becomes OpenMetrics
//! text (the format Prometheus scrapes).
//!
//! Nothing here counts: each scrape takes a fresh snapshot and a [`SnapshotCollector`]
//! encodes it with `prometheus-client`, so the pools' own counters stay the only ones.
//! Names follow Prometheus habits: `pgwarden_` prefix, base units (`_seconds`), counters end
//! in `_total` (the encoder appends it to the names below), and label values are bounded: the
//! pool name, a state, an error kind; never a client address or query text.

use std::fmt;

use pgwarden_pool::{Histogram, PoolStats};
use pgwarden_resilience::{BreakerState, StatusSummary, UpstreamState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::source::{AdminSnapshot, ProxyCounters};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One metric family: its name as given to the encoder, help text and type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Def {
    /// For counters without the `_total` the encoder appends.
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) kind: MetricType,
}

impl Def {
    const fn gauge(name: &'static str, help: &'static str) -> Def {
        Def {
            name,
            help,
            kind: MetricType::Gauge,
        }
    }

    const fn counter(name: &'static str, help: &'static str) -> Def {
        Def {
            name,
            help,
            kind: MetricType::Counter,
        }
    }

    const fn histogram(name: &'static str, help: &'static str) -> Def {
        Def {
            name,
            help,
            kind: MetricType::Histogram,
        }
    }

    /// The name as it appears in the exposition (counters with `_total`).
    pub(crate) fn exposed(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

// Pools (labels: pool).
const POOL_CONNECTIONS: Def = Def::gauge(
    "pgwarden_pool_connections",
    "Server connections of the pool by state (idle, in_use, connecting).",
);
const POOL_MAX_CONNECTIONS: Def = Def::gauge(
    "pgwarden_pool_max_connections",
    "The pool's cap on open connections.",
);
const POOL_MIN_IDLE_CONNECTIONS: Def = Def::gauge(
    "pgwarden_pool_min_idle_connections",
    "Connections the pool keeps open when idle.",
);
const POOL_WAITERS: Def = Def::gauge(
    "pgwarden_pool_waiters",
    "Callers waiting for a connection right now.",
);
const POOL_CREATED: Def = Def::counter("pgwarden_pool_connections_created", "Connections opened.");
const POOL_CLOSED: Def = Def::counter(
    "pgwarden_pool_connections_closed",
    "Connections closed, for any reason.",
);
const POOL_RECYCLED: Def = Def::counter(
    "pgwarden_pool_connections_recycled",
    "Connections closed for age, use count or idleness.",
);
const POOL_ACQUIRES: Def = Def::counter("pgwarden_pool_acquires", "Successful checkouts.");
const POOL_ACQUIRES_REUSED: Def = Def::counter(
    "pgwarden_pool_acquires_reused",
    "Checkouts served by a connection used before.",
);
const POOL_ACQUIRE_TIMEOUTS: Def = Def::counter(
    "pgwarden_pool_acquire_timeouts",
    "Checkouts that timed out waiting for a connection.",
);
const POOL_LEAKS: Def = Def::counter(
    "pgwarden_pool_leaks",
    "Checkouts held past the leak threshold.",
);
const POOL_CONNECT_FAILURES: Def = Def::counter(
    "pgwarden_pool_connect_failures",
    "Failed attempts to open a connection.",
);
const POOL_ERRORS: Def = Def::counter(
    "pgwarden_pool_errors",
    "Errors by the connector's kind label.",
);
const POOL_ACQUIRE_WAIT: Def = Def::histogram(
    "pgwarden_pool_acquire_wait_seconds",
    "Time callers waited for a connection.",
);
const POOL_USE: Def = Def::histogram(
    "pgwarden_pool_use_seconds",
    "Time connections were held by a caller.",
);

// The proxy as a whole.
const CLIENTS_ACTIVE: Def = Def::gauge("pgwarden_clients_active", "Clients connected now.");
const CLIENTS_PARKED: Def = Def::gauge(
    "pgwarden_clients_parked",
    "Connected clients idle long enough to be parked (no task of their own).",
);
const CLIENTS: Def = Def::counter("pgwarden_clients", "Clients logged in since start.");
const CLIENTS_REFUSED: Def = Def::counter(
    "pgwarden_clients_refused",
    "Clients refused at max_client_conn.",
);
const TRANSACTIONS: Def = Def::counter(
    "pgwarden_transactions",
    "Server connection checkouts completed (transactions in transaction mode).",
);

// The upstream monitor.
const UPSTREAM_UP: Def = Def::gauge(
    "pgwarden_upstream_up",
    "1 when the last probe of the upstream succeeded, else 0.",
);
const UPSTREAM_STATE: Def = Def::gauge(
    "pgwarden_upstream_state",
    "1 for the upstream's current state (unknown, available, unavailable), 0 for the others.",
);
const UPSTREAM_BREAKER_STATE: Def = Def::gauge(
    "pgwarden_upstream_breaker_state",
    "1 for the circuit breaker's current state (closed, open, half_open), 0 for the others.",
);
const UPSTREAM_CONSECUTIVE_FAILURES: Def = Def::gauge(
    "pgwarden_upstream_consecutive_failures",
    "Failed probes since the last success.",
);
const UPSTREAM_RETRY_DELAY: Def = Def::gauge(
    "pgwarden_upstream_retry_delay_seconds",
    "The wait chosen after the last failure; 0 while healthy.",
);
const ORPHANS_FOUND: Def = Def::counter(
    "pgwarden_orphans_found",
    "Backends of dead instances found idle past the threshold by the orphan cleanup.",
);
const ORPHANS_TERMINATED: Def = Def::counter(
    "pgwarden_orphans_terminated",
    "Orphaned backends terminated by the orphan cleanup.",
);
const ORPHANS_DENIED: Def = Def::counter(
    "pgwarden_orphans_denied",
    "Orphaned backends not terminated for lack of privilege.",
);

// The process.
const SHUTTING_DOWN: Def = Def::gauge(
    "pgwarden_shutting_down",
    "1 once shutdown has begun (sessions draining), else 0.",
);

/// Every family, in exposition order.
pub(crate) const ALL: &[Def] = &[
    POOL_CONNECTIONS,
    POOL_MAX_CONNECTIONS,
    POOL_MIN_IDLE_CONNECTIONS,
    POOL_WAITERS,
    POOL_CREATED,
    POOL_CLOSED,
    POOL_RECYCLED,
    POOL_ACQUIRES,
    POOL_ACQUIRES_REUSED,
    POOL_ACQUIRE_TIMEOUTS,
    POOL_LEAKS,
    POOL_CONNECT_FAILURES,
    POOL_ERRORS,
    POOL_ACQUIRE_WAIT,
    POOL_USE,
    CLIENTS_ACTIVE,
    CLIENTS_PARKED,
    CLIENTS,
    CLIENTS_REFUSED,
    TRANSACTIONS,
    UPSTREAM_UP,
    UPSTREAM_STATE,
    UPSTREAM_BREAKER_STATE,
    UPSTREAM_CONSECUTIVE_FAILURES,
    UPSTREAM_RETRY_DELAY,
    ORPHANS_FOUND,
    ORPHANS_TERMINATED,
    ORPHANS_DENIED,
    SHUTTING_DOWN,
];

/// Every exported name as a scrape shows it (counters with `_total`; histograms add
/// `_bucket`, `_sum` and `_count` samples under theirs).
pub fn metric_names() -> Vec<String> {
    ALL.iter().map(Def::exposed).collect()
}

/// Renders `snapshot` as OpenMetrics text, ending with `# EOF`.
pub fn render(snapshot: &AdminSnapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

/// Encodes one snapshot; registered afresh for every scrape.
#[derive(Debug)]
pub struct SnapshotCollector(pub AdminSnapshot);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        encode_pools(&mut encoder, &s.pools)?;
        if let Some(proxy) = &s.proxy {
            encode_proxy(&mut encoder, proxy)?;
        }
        if let Some(upstream) = &s.upstream {
            encode_upstream(&mut encoder, upstream)?;
        }
        gauges(
            &mut encoder,
            SHUTTING_DOWN,
            [(vec![], u64::from(s.shutting_down))],
        )
    }
}

/// A label set: (name, value) pairs.
type Labels = Vec<(&'static str, String)>;

fn pool_label(pool: &PoolStats) -> Labels {
    vec![("pool", pool.name.clone())]
}

fn encode_pools(e: &mut DescriptorEncoder, pools: &[PoolStats]) -> fmt::Result {
    let per_pool = |f: fn(&PoolStats) -> u64| -> Vec<(Labels, u64)> {
        pools.iter().map(|p| (pool_label(p), f(p))).collect()
    };
    let states = pools.iter().flat_map(|p| {
        [
            ("idle", p.status.idle),
            ("in_use", p.status.in_use),
            ("connecting", p.status.connecting),
        ]
        .map(|(state, n)| {
            let labels = vec![("pool", p.name.clone()), ("state", state.to_string())];
            (labels, n as u64)
        })
    });
    gauges(e, POOL_CONNECTIONS, states)?;
    gauges(
        e,
        POOL_MAX_CONNECTIONS,
        per_pool(|p| p.status.max_size as u64),
    )?;
    gauges(
        e,
        POOL_MIN_IDLE_CONNECTIONS,
        per_pool(|p| p.status.min_idle as u64),
    )?;
    gauges(e, POOL_WAITERS, per_pool(|p| p.status.waiters as u64))?;
    counters(e, POOL_CREATED, per_pool(|p| p.created_total))?;
    counters(e, POOL_CLOSED, per_pool(|p| p.closed_total))?;
    counters(e, POOL_RECYCLED, per_pool(|p| p.recycled_total))?;
    counters(e, POOL_ACQUIRES, per_pool(|p| p.acquires_total))?;
    counters(e, POOL_ACQUIRES_REUSED, per_pool(|p| p.reused_total))?;
    counters(e, POOL_ACQUIRE_TIMEOUTS, per_pool(|p| p.timeouts_total))?;
    counters(e, POOL_LEAKS, per_pool(|p| p.leaks_total))?;
    counters(
        e,
        POOL_CONNECT_FAILURES,
        per_pool(|p| p.connect_failures_total),
    )?;
    let errors = pools.iter().flat_map(|p| {
        p.errors_by_kind.iter().map(|(kind, n)| {
            let labels = vec![("pool", p.name.clone()), ("kind", kind.to_string())];
            (labels, *n)
        })
    });
    counters(e, POOL_ERRORS, errors)?;
    let waits = pools.iter().map(|p| (pool_label(p), &p.wait_time));
    histograms(e, POOL_ACQUIRE_WAIT, waits)?;
    let uses = pools.iter().map(|p| (pool_label(p), &p.use_time));
    histograms(e, POOL_USE, uses)
}

fn encode_proxy(e: &mut DescriptorEncoder, proxy: &ProxyCounters) -> fmt::Result {
    gauges(e, CLIENTS_ACTIVE, [(vec![], proxy.clients_active)])?;
    gauges(e, CLIENTS_PARKED, [(vec![], proxy.clients_parked)])?;
    counters(e, CLIENTS, [(vec![], proxy.clients_total)])?;
    counters(e, CLIENTS_REFUSED, [(vec![], proxy.clients_refused)])?;
    counters(e, TRANSACTIONS, [(vec![], proxy.transactions_total)])
}

fn encode_upstream(e: &mut DescriptorEncoder, status: &StatusSummary) -> fmt::Result {
    let up = u64::from(status.state == UpstreamState::Available);
    gauges(e, UPSTREAM_UP, [(vec![], up)])?;
    let current = status.state.label();
    let states = ["unknown", "available", "unavailable"].map(|state| {
        (
            vec![("state", state.to_string())],
            u64::from(state == current),
        )
    });
    gauges(e, UPSTREAM_STATE, states)?;
    let breaker = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
    ]
    .map(|state| {
        let labels = vec![("state", state.label().to_string())];
        (labels, u64::from(state == status.breaker))
    });
    gauges(e, UPSTREAM_BREAKER_STATE, breaker)?;
    let failures = u64::from(status.consecutive_failures);
    gauges(e, UPSTREAM_CONSECUTIVE_FAILURES, [(vec![], failures)])?;
    let delay = status.current_retry_delay.unwrap_or_default().as_secs_f64();
    gauges(e, UPSTREAM_RETRY_DELAY, [(vec![], delay)])?;
    // `pgwarden serve` cleans once per start, so the latest cleanup's numbers are the totals
    // since start.
    let cleanup = status.last_orphan_cleanup.as_ref();
    let count = |f: fn(&pgwarden_resilience::OrphanCleanup) -> usize| {
        [(vec![], cleanup.map_or(0, f) as u64)]
    };
    counters(e, ORPHANS_FOUND, count(|c| c.found))?;
    counters(e, ORPHANS_TERMINATED, count(|c| c.terminated))?;
    counters(e, ORPHANS_DENIED, count(|c| c.denied))
}

fn gauges<V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    def: Def,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(def.name, def.help, None, def.kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            family.encode_gauge(&value)?;
        } else {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
    }
    Ok(())
}

fn counters(
    e: &mut DescriptorEncoder,
    def: Def,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(def.name, def.help, None, def.kind)?;
    for (labels, value) in samples {
        if labels.is_empty() {
            family.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        } else {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
    }
    Ok(())
}

fn histograms<'h>(
    e: &mut DescriptorEncoder,
    def: Def,
    samples: impl IntoIterator<Item = (Labels, &'h Histogram)>,
) -> fmt::Result {
    let mut family = e.encode_descriptor(def.name, def.help, None, def.kind)?;
    for (labels, histogram) in samples {
        // The pool's buckets hold counts per bucket (the encoder accumulates them); the last,
        // unbounded one (`Duration::MAX`) becomes `+Inf`.
        let buckets: Vec<(f64, u64)> = histogram
            .buckets
            .iter()
            .map(|(bound, n)| {
                let le = if *bound == std::time::Duration::MAX {
                    f64::MAX
                } else {
                    bound.as_secs_f64()
                };
                (le, *n)
            })
            .collect();
        let sum = histogram.sum.as_secs_f64();
        family
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(sum, histogram.count, &buckets, None)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
