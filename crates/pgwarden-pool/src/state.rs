//! The locked bookkeeping: idle connections, FIFO waiters, counts and checkouts. Every change
//! happens under one mutex, never across an `.await`, and no I/O happens here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::Location;
use std::time::SystemTime;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Facts about one connection.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// Unique within the pool.
    pub id: u64,
    /// When it was opened.
    pub created_at: Instant,
    /// Checkouts so far (including the current one).
    pub uses: u64,
    /// When it was last returned (or opened).
    pub idle_since: Instant,
    /// When it was last known alive (returned, pinged or opened).
    pub(crate) last_checked: Instant,
    /// When it must be recycled (lifetime less its jitter).
    pub(crate) expires_at: Option<Instant>,
}

/// A connection with its facts.
#[derive(Debug)]
pub(crate) struct Slot<T> {
    pub(crate) conn: T,
    pub(crate) meta: ConnMeta,
}

/// One checkout, for leak detection.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub(crate) acquired_at: Instant,
    pub(crate) location: &'static Location<'static>,
    pub(crate) reported: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct State<T> {
    /// Idle connections; the back is the most recently returned (handed out first, so the
    /// front ages out under `idle_timeout`).
    pub(crate) idle: VecDeque<Slot<T>>,
    /// Callers waiting, oldest first.
    pub(crate) waiters: VecDeque<oneshot::Sender<Slot<T>>>,
    /// Connections that exist: idle, checked out, or being pinged/reset.
    pub(crate) open: usize,
    /// Connect attempts in flight (or backing off before a retry).
    pub(crate) connecting: usize,
    /// Connections not idle: checked out or being pinged/reset.
    pub(crate) in_use: usize,
    /// No new checkouts; returning connections are closed.
    pub(crate) closed: bool,
    /// Failures in a row of the connect path.
    pub(crate) consecutive_failures: u32,
    /// The last connect error, while connects are failing.
    pub(crate) failing: Option<String>,
    /// The last error of any kind, for statistics.
    pub(crate) last_error: Option<(String, SystemTime)>,
    pub(crate) errors_by_kind: BTreeMap<&'static str, u64>,
    /// Checked-out connections by id.
    pub(crate) checkouts: HashMap<u64, Checkout>,
    pub(crate) next_id: u64,
}

impl<T> State<T> {
    pub(crate) fn new() -> Self {
        State {
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
            open: 0,
            connecting: 0,
            in_use: 0,
            closed: false,
            consecutive_failures: 0,
            failing: None,
            last_error: None,
            errors_by_kind: BTreeMap::new(),
            checkouts: HashMap::new(),
            next_id: 1,
        }
    }

    /// Drops waiters whose caller gave up.
    pub(crate) fn prune_waiters(&mut self) {
        self.waiters.retain(|w| !w.is_closed());
    }

    /// How many connects to start now so that waiters and `min_idle` are served, within the
    /// cap and the parallel-connect limit.
    pub(crate) fn connects_needed(
        &mut self,
        max_size: usize,
        min_idle: usize,
        max_connecting: usize,
    ) -> usize {
        if self.closed {
            return 0;
        }
        self.prune_waiters();
        let for_waiters = self.waiters.len().saturating_sub(self.connecting);
        let for_min = min_idle.saturating_sub(self.open + self.connecting);
        let wanted = for_waiters.max(for_min);
        let room = max_size.saturating_sub(self.open + self.connecting);
        let parallel = max_connecting.saturating_sub(self.connecting);
        wanted.min(room).min(parallel)
    }

    /// Hands `slot` to the oldest live waiter, or returns it when there is none.
    pub(crate) fn hand_off(&mut self, mut slot: Slot<T>) -> Option<Slot<T>> {
        while let Some(waiter) = self.waiters.pop_front() {
            match waiter.send(slot) {
                Ok(()) => return None,
                Err(back) => slot = back,
            }
        }
        Some(slot)
    }

    pub(crate) fn record_error(&mut self, kind: &'static str, message: String) {
        *self.errors_by_kind.entry(kind).or_insert(0) += 1;
        self.last_error = Some((message, SystemTime::now()));
    }
}
