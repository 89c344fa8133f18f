//! Rendering: names, labels, counters' `_total`, a histogram's cumulative buckets, and the
//! documentation naming every metric.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use pgwarden_pool::{Histogram, PoolStats, PoolStatus};
use pgwarden_resilience::{
    BreakerState, Environment, FailureKind, OrphanCleanup, StatusSummary, UpstreamState,
};

use super::*;

/// A pool with nothing counted (`PoolStats` has no `Default`).
pub(crate) fn empty_pool() -> PoolStats {
    PoolStats {
        name: String::new(),
        status: PoolStatus::default(),
        created_total: 0,
        closed_total: 0,
        recycled_total: 0,
        acquires_total: 0,
        reused_total: 0,
        reuse_ratio: 0.0,
        timeouts_total: 0,
        leaks_total: 0,
        connect_failures_total: 0,
        errors_by_kind: BTreeMap::new(),
        last_error: None,
        wait_time: Histogram::default(),
        use_time: Histogram::default(),
    }
}

/// The pool's bucket layout: `2^i` µs for i < 27, then unbounded; `counts` by index.
fn histogram(counts: &[(usize, u64)], sum: Duration) -> Histogram {
    let mut buckets: Vec<(Duration, u64)> = (0..28)
        .map(|i| {
            let bound = if i < 27 {
                Duration::from_micros(1 << i)
            } else {
                Duration::MAX
            };
            (bound, 0)
        })
        .collect();
    for (i, n) in counts {
        buckets[*i].1 = *n;
    }
    Histogram {
        count: counts.iter().map(|(_, n)| n).sum(),
        buckets,
        sum,
    }
}

fn busy_pool() -> PoolStats {
    PoolStats {
        name: "app/alice".into(),
        status: PoolStatus {
            size: 5,
            idle: 2,
            in_use: 3,
            connecting: 1,
            waiters: 4,
            max_size: 10,
            min_idle: 1,
        },
        created_total: 6,
        closed_total: 1,
        recycled_total: 1,
        acquires_total: 7,
        reused_total: 5,
        timeouts_total: 2,
        connect_failures_total: 3,
        errors_by_kind: BTreeMap::from([("refused", 2), ("timeout", 1)]),
        // 3 waits of about 1 ms (bucket 10 = 1024 µs), 1 beyond the last bound.
        wait_time: histogram(&[(10, 3), (27, 1)], Duration::from_millis(70_003)),
        ..empty_pool()
    }
}

fn outage() -> StatusSummary {
    StatusSummary {
        state: UpstreamState::Unavailable {
            reason: FailureKind::Refused,
        },
        consecutive_failures: 4,
        current_retry_delay: Some(Duration::from_millis(2500)),
        next_probe_in: None,
        will_retry: true,
        environment: Environment::Production,
        breaker: BreakerState::Open,
        last_error: None,
        changed_at: None,
        last_orphan_cleanup: Some(OrphanCleanup {
            found: 3,
            terminated: 2,
            denied: 1,
            at: SystemTime::now(),
        }),
    }
}

fn full_snapshot() -> AdminSnapshot {
    AdminSnapshot {
        pools: vec![busy_pool()],
        proxy: Some(ProxyCounters {
            clients_total: 12,
            clients_active: 3,
            clients_parked: 2,
            clients_refused: 1,
            transactions_total: 40,
        }),
        upstream: Some(outage()),
        shutting_down: false,
    }
}

/// The sample lines (not comments) of `text`.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

fn assert_has(text: &str, line: &str) {
    assert!(
        samples(text).contains(&line),
        "missing {line:?} in:\n{text}"
    );
}

#[test]
fn pool_gauges_and_counters_carry_the_pool_label() {
    let text = render(&full_snapshot());
    for line in [
        r#"pgwarden_pool_connections{pool="app/alice",state="idle"} 2"#,
        r#"pgwarden_pool_connections{pool="app/alice",state="in_use"} 3"#,
        r#"pgwarden_pool_connections{pool="app/alice",state="connecting"} 1"#,
        r#"pgwarden_pool_max_connections{pool="app/alice"} 10"#,
        r#"pgwarden_pool_min_idle_connections{pool="app/alice"} 1"#,
        r#"pgwarden_pool_waiters{pool="app/alice"} 4"#,
        r#"pgwarden_pool_connections_created_total{pool="app/alice"} 6"#,
        r#"pgwarden_pool_connections_closed_total{pool="app/alice"} 1"#,
        r#"pgwarden_pool_connections_recycled_total{pool="app/alice"} 1"#,
        r#"pgwarden_pool_acquires_total{pool="app/alice"} 7"#,
        r#"pgwarden_pool_acquires_reused_total{pool="app/alice"} 5"#,
        r#"pgwarden_pool_acquire_timeouts_total{pool="app/alice"} 2"#,
        r#"pgwarden_pool_leaks_total{pool="app/alice"} 0"#,
        r#"pgwarden_pool_connect_failures_total{pool="app/alice"} 3"#,
        r#"pgwarden_pool_errors_total{pool="app/alice",kind="refused"} 2"#,
        r#"pgwarden_pool_errors_total{pool="app/alice",kind="timeout"} 1"#,
    ] {
        assert_has(&text, line);
    }
    assert!(text.contains("# TYPE pgwarden_pool_acquires counter\n"));
    assert!(text.contains("# TYPE pgwarden_pool_connections gauge\n"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn a_histogram_has_cumulative_buckets_in_seconds_sum_and_count() {
    let text = render(&full_snapshot());
    assert!(text.contains("# TYPE pgwarden_pool_acquire_wait_seconds histogram\n"));
    assert_has(
        &text,
        r#"pgwarden_pool_acquire_wait_seconds_sum{pool="app/alice"} 70.003"#,
    );
    assert_has(
        &text,
        r#"pgwarden_pool_acquire_wait_seconds_count{pool="app/alice"} 4"#,
    );
    let buckets: Vec<&str> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("pgwarden_pool_acquire_wait_seconds_bucket{"))
        .collect();
    assert_eq!(buckets.len(), 28, "{buckets:#?}");
    // Below 1024 µs nothing, from it on 3, and everything at +Inf.
    assert!(buckets[9].ends_with(" 0"), "{}", buckets[9]);
    assert_eq!(
        buckets[10],
        r#"pgwarden_pool_acquire_wait_seconds_bucket{le="0.001024",pool="app/alice"} 3"#
    );
    assert!(buckets[26].ends_with(" 3"), "{}", buckets[26]);
    assert_eq!(
        buckets[27],
        r#"pgwarden_pool_acquire_wait_seconds_bucket{le="+Inf",pool="app/alice"} 4"#
    );
    // The use-time histogram is there, empty.
    assert_has(
        &text,
        r#"pgwarden_pool_use_seconds_count{pool="app/alice"} 0"#,
    );
}

#[test]
fn proxy_and_upstream_families() {
    let text = render(&full_snapshot());
    for line in [
        "pgwarden_clients_active 3",
        "pgwarden_clients_parked 2",
        "pgwarden_clients_total 12",
        "pgwarden_clients_refused_total 1",
        "pgwarden_transactions_total 40",
        "pgwarden_upstream_up 0",
        r#"pgwarden_upstream_state{state="unknown"} 0"#,
        r#"pgwarden_upstream_state{state="available"} 0"#,
        r#"pgwarden_upstream_state{state="unavailable"} 1"#,
        r#"pgwarden_upstream_breaker_state{state="closed"} 0"#,
        r#"pgwarden_upstream_breaker_state{state="open"} 1"#,
        r#"pgwarden_upstream_breaker_state{state="half_open"} 0"#,
        "pgwarden_upstream_consecutive_failures 4",
        "pgwarden_upstream_retry_delay_seconds 2.5",
        "pgwarden_orphans_found_total 3",
        "pgwarden_orphans_terminated_total 2",
        "pgwarden_orphans_denied_total 1",
        "pgwarden_shutting_down 0",
    ] {
        assert_has(&text, line);
    }
}

#[test]
fn absent_sources_leave_their_families_out() {
    let text = render(&AdminSnapshot {
        shutting_down: true,
        ..Default::default()
    });
    assert_has(&text, "pgwarden_shutting_down 1");
    assert!(!text.contains("pgwarden_clients"), "{text}");
    assert!(!text.contains("pgwarden_upstream"), "{text}");
    assert!(!text.contains("pool=\""), "{text}");
}

/// Every sample belongs to a family named in this module, every name is prefixed and unique,
/// and label names are only the bounded ones.
#[test]
fn every_sample_uses_a_declared_name_and_bounded_labels() {
    let names = metric_names();
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate names");
    assert!(names.iter().all(|n| n.starts_with("pgwarden_")));
    let text = render(&full_snapshot());
    for line in samples(&text) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| names.iter().any(|n| n == base))
            .unwrap_or(name);
        assert!(names.iter().any(|n| n == family), "undeclared {name}");
        if let Some(labels) = line.split_once('{').map(|(_, rest)| rest) {
            let labels = labels.split_once('}').unwrap().0;
            for pair in labels.split(',') {
                let key = pair.split_once('=').unwrap().0;
                assert!(
                    ["pool", "state", "kind", "le"].contains(&key),
                    "unbounded label {key} in {line}"
                );
            }
        }
    }
}

#[test]
fn the_documentation_names_every_metric() {
    let doc = include_str!("../../../../docs/metrics.md");
    for name in metric_names() {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/metrics.md lacks `{name}`"
        );
    }
}
