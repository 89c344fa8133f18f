//! Statistics: a point-in-time [`PoolStatus`], cumulative [`PoolStats`], and the fixed-bucket
//! [`Histogram`] used for wait and use times (lock-free to record).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// Counts right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Connections open (idle, in use, or being checked).
    pub size: usize,
    /// Connections idle in the pool.
    pub idle: usize,
    /// Connections checked out (or being pinged or reset).
    pub in_use: usize,
    /// Connections being opened.
    pub connecting: usize,
    /// Callers waiting for a connection.
    pub waiters: usize,
    /// The cap.
    pub max_size: usize,
    /// Connections kept open when idle.
    pub min_idle: usize,
}

/// Upper bounds of the histogram buckets (the last bucket is unbounded).
const BOUNDS_MICROS: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Recorder side of a histogram.
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn record(&self, d: Duration) {
        let micros = d.as_micros() as u64;
        let i = BOUNDS_MICROS.partition_point(|b| *b < micros);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        let mut buckets = Vec::with_capacity(BOUNDS_MICROS.len() + 1);
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            count += n;
            let bound = BOUNDS_MICROS
                .get(i)
                .map_or(Duration::MAX, |m| Duration::from_micros(*m));
            buckets.push((bound, n));
        }
        Histogram {
            buckets,
            count,
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
        }
    }
}

/// A snapshot of a histogram: counts per bucket (upper bound, count), total count and sum.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// `(upper bound, count)`; the last bound is `Duration::MAX`.
    pub buckets: Vec<(Duration, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

impl Histogram {
    /// Mean observation (zero when empty).
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.sum / self.count as u32
        }
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1).
    pub fn quantile(&self, q: f64) -> Duration {
        let target = (q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64;
        let mut seen = 0;
        for (bound, n) in &self.buckets {
            seen += n;
            if seen >= target.max(1) {
                return *bound;
            }
        }
        Duration::ZERO
    }
}

/// Everything a pool has counted since it was created.
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// The pool's name.
    pub name: String,
    /// Counts right now.
    pub status: PoolStatus,
    /// Connections opened.
    pub created_total: u64,
    /// Connections closed, for any reason.
    pub closed_total: u64,
    /// Connections closed for age, use count or idleness.
    pub recycled_total: u64,
    /// Successful checkouts.
    pub acquires_total: u64,
    /// Checkouts served by a connection used before.
    pub reused_total: u64,
    /// `reused_total / acquires_total`.
    pub reuse_ratio: f64,
    /// Checkouts that timed out.
    pub timeouts_total: u64,
    /// Checkouts held past the leak threshold.
    pub leaks_total: u64,
    /// Failed connect attempts.
    pub connect_failures_total: u64,
    /// Errors by the connector's label.
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    /// The last error and when it happened.
    pub last_error: Option<(String, SystemTime)>,
    /// Time callers waited for a connection.
    pub wait_time: Histogram,
    /// Time connections were held.
    pub use_time: Histogram,
}

/// The lock-free counters behind [`PoolStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) created: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) recycled: AtomicU64,
    pub(crate) acquires: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) leaks: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) wait: AtomicHistogram,
    pub(crate) use_time: AtomicHistogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_mean_and_quantiles() {
        let h = AtomicHistogram::default();
        for ms in [1, 1, 1, 40, 2000] {
            h.record(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.quantile(0.5), Duration::from_millis(1));
        assert_eq!(s.quantile(0.8), Duration::from_millis(50));
        assert_eq!(s.quantile(1.0), Duration::from_millis(2500));
        assert_eq!(s.mean(), Duration::from_nanos(408_600_000));
    }
}
