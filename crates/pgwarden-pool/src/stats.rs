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

/// Buckets: bucket `i` holds observations up to `2^i` microseconds (1 µs .. about 67 s); the
/// last bucket is unbounded. Powers of two make recording a single `leading_zeros`.
const BUCKETS: usize = 28;

/// Upper bound of bucket `i` in microseconds (`None` for the last, unbounded one).
fn bound_micros(i: usize) -> Option<u64> {
    (i + 1 < BUCKETS).then(|| 1u64 << i)
}

/// Recorder side of a histogram.
#[derive(Debug, Default)]
pub(crate) struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn record(&self, d: Duration) {
        let nanos = d.as_nanos() as u64;
        // Smallest i with micros <= 2^i, i.e. ceil(log2(micros)).
        let micros = nanos.div_ceil(1000);
        let i = if micros <= 1 {
            0
        } else {
            (64 - (micros - 1).leading_zeros()) as usize
        };
        self.buckets[i.min(BUCKETS - 1)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        let mut buckets = Vec::with_capacity(BUCKETS);
        let mut count = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            count += n;
            let bound = bound_micros(i).map_or(Duration::MAX, Duration::from_micros);
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
        assert_eq!(s.quantile(0.5), Duration::from_micros(1024));
        assert_eq!(s.quantile(0.8), Duration::from_micros(65_536));
        assert_eq!(s.quantile(1.0), Duration::from_micros(2_097_152));
        let exact = AtomicHistogram::default();
        exact.record(Duration::from_micros(1024));
        exact.record(Duration::from_nanos(1));
        let snap = exact.snapshot();
        assert_eq!(
            snap.buckets[10],
            (Duration::from_micros(1024), 1),
            "inclusive bound"
        );
        assert_eq!(snap.buckets[0].1, 1);
        assert_eq!(s.mean(), Duration::from_nanos(408_600_000));
    }
}
