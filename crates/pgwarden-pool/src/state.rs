//! The locked bookkeeping: idle connections, FIFO waiters, counts and checkouts. Every change
//! happens under one mutex, never across an `.await`, and no I/O happens here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
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
    /// Fraction (0 to 0.25, drawn at random when opened) taken off the keepalive interval,
    /// so idle connections are not all pinged in the same tick.
    pub(crate) keepalive_jitter: f64,
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

/// The failure of a connect, shared by every waiter told about it.
pub(crate) type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// What a waiter receives.
#[derive(Debug)]
pub(crate) enum Handoff<T> {
    /// A connection.
    Conn(Slot<T>),
    /// A connect failure that waiting longer would not cure (see
    /// [`crate::Connector::fails_waiters`]).
    Failed(&'static str, SharedError),
    /// The wait was ended by [`crate::Pool::cancel_wait`].
    Cancelled,
}

/// A caller waiting for a connection: where to send it, and where the caller is (so the
/// checkout is registered for leak detection in the same critical section as the handoff).
#[derive(Debug)]
pub(crate) struct Waiter<T> {
    pub(crate) tx: oneshot::Sender<Handoff<T>>,
    pub(crate) location: &'static Location<'static>,
    /// When the caller gives up; the reaper drops the sender then.
    pub(crate) deadline: Instant,
    /// The caller's key for [`crate::Pool::cancel_wait`] (0: none).
    pub(crate) key: u64,
}

/// Connection ids are unique counters: hashing them is wasted work on the hot path.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Checked-out connections by id.
pub(crate) type Checkouts = HashMap<u64, Checkout, BuildHasherDefault<IdHasher>>;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct State<T> {
    /// Idle connections; the back is the most recently returned (handed out first, so the
    /// front ages out under `idle_timeout`).
    pub(crate) idle: VecDeque<Slot<T>>,
    /// Callers waiting, oldest first.
    pub(crate) waiters: VecDeque<Waiter<T>>,
    /// The deadline the reaper sleeps until; `None` while it has nothing to wait for.
    pub(crate) reaper_target: Option<Instant>,
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
    pub(crate) checkouts: Checkouts,
    pub(crate) next_id: u64,
}

impl<T> State<T> {
    pub(crate) fn new() -> Self {
        State {
            idle: VecDeque::new(),
            waiters: VecDeque::new(),
            reaper_target: None,
            open: 0,
            connecting: 0,
            in_use: 0,
            closed: false,
            consecutive_failures: 0,
            failing: None,
            last_error: None,
            errors_by_kind: BTreeMap::new(),
            checkouts: Checkouts::default(),
            next_id: 1,
        }
    }

    /// Registers a checkout for leak detection.
    pub(crate) fn note_checkout(
        &mut self,
        id: u64,
        location: &'static Location<'static>,
        at: Instant,
    ) {
        self.checkouts.insert(
            id,
            Checkout {
                acquired_at: at,
                location,
                reported: false,
            },
        );
    }

    /// How many connects to start now so that waiters and `min_idle` are served, within the
    /// cap and the parallel-connect limit.
    ///
    /// Live waiters are counted only as far as the answer needs (the connects in flight plus
    /// the most this call may start): while a pool grows under a burst of clients, every
    /// acquire asks this, and walking the whole queue each time (a cache miss per waiter) made
    /// the burst quadratic. Waiters whose caller gave up are dropped from the front here; the
    /// rest go at the handoff or when the reaper runs.
    pub(crate) fn connects_needed(
        &mut self,
        max_size: usize,
        min_idle: usize,
        max_connecting: usize,
    ) -> usize {
        if self.closed || self.open + self.connecting >= max_size {
            return 0;
        }
        let room = max_size - (self.open + self.connecting);
        let most = room.min(max_connecting.saturating_sub(self.connecting));
        if most == 0 {
            return 0;
        }
        while self.waiters.front().is_some_and(|w| w.tx.is_closed()) {
            self.waiters.pop_front();
        }
        let live = self
            .waiters
            .iter()
            .filter(|w| !w.tx.is_closed())
            .take(self.connecting + most)
            .count();
        let for_waiters = live.saturating_sub(self.connecting);
        let for_min = min_idle.saturating_sub(self.open + self.connecting);
        for_waiters.max(for_min).min(most)
    }

    /// Hands `slot` to the oldest live waiter (registering the checkout when `track` is set),
    /// or returns it when there is none.
    pub(crate) fn hand_off(
        &mut self,
        mut slot: Slot<T>,
        now: Instant,
        track: bool,
    ) -> Option<Slot<T>> {
        while let Some(waiter) = self.waiters.pop_front() {
            let id = slot.meta.id;
            match waiter.tx.send(Handoff::Conn(slot)) {
                Ok(()) => {
                    if track {
                        self.note_checkout(id, waiter.location, now);
                    }
                    return None;
                }
                Err(Handoff::Conn(back)) => slot = back,
                Err(_) => unreachable!("sent a connection"),
            }
        }
        Some(slot)
    }

    /// Tells every waiter that connects fail with `error`; returns how many heard it.
    pub(crate) fn fail_waiters(&mut self, kind: &'static str, error: &SharedError) -> usize {
        let mut told = 0;
        for waiter in self.waiters.drain(..) {
            if waiter
                .tx
                .send(Handoff::Failed(kind, SharedError::clone(error)))
                .is_ok()
            {
                told += 1;
            }
        }
        told
    }

    /// Ends the wait of the caller waiting with `key` (not 0), if it is still queued.
    pub(crate) fn cancel_waiter(&mut self, key: u64) -> bool {
        if key == 0 {
            return false;
        }
        let Some(at) = self.waiters.iter().position(|w| w.key == key) else {
            return false;
        };
        let waiter = self.waiters.remove(at).expect("found");
        waiter.tx.send(Handoff::Cancelled).is_ok()
    }

    pub(crate) fn record_error(&mut self, kind: &'static str, message: String) {
        *self.errors_by_kind.entry(kind).or_insert(0) += 1;
        self.last_error = Some((message, SystemTime::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued waiter; `live`: its caller still waits (the receiver is returned to keep it
    /// open), else the caller gave up.
    fn queue(st: &mut State<()>, live: bool) -> Option<oneshot::Receiver<Handoff<()>>> {
        let (tx, rx) = oneshot::channel();
        st.waiters.push_back(Waiter {
            tx,
            location: Location::caller(),
            deadline: Instant::now() + std::time::Duration::from_secs(60),
            key: 0,
        });
        live.then_some(rx)
    }

    #[test]
    fn connects_are_counted_for_live_waiters_only() {
        let mut st = State::<()>::new();
        let mut keep = Vec::new();
        // Given up, live, given up, live, live.
        for live in [false, true, false, true, true] {
            keep.push(queue(&mut st, live));
        }
        // Three live waiters: three connects, within the cap and the parallel limit.
        assert_eq!(st.connects_needed(10, 0, 10), 3);
        assert_eq!(st.connects_needed(10, 0, 2), 2, "parallel limit");
        assert_eq!(st.connects_needed(2, 0, 10), 2, "cap");
        // The given-up waiter at the front was dropped, the one between live ones stays
        // (the handoff skips it).
        assert_eq!(st.waiters.len(), 4);
        // Connects in flight serve waiters already.
        st.connecting = 2;
        assert_eq!(st.connects_needed(10, 0, 10), 1);
        st.connecting = 3;
        assert_eq!(st.connects_needed(10, 0, 10), 0);
        // `min_idle` asks for connections of its own.
        st.connecting = 0;
        assert_eq!(st.connects_needed(10, 5, 10), 5);
        // A full pool starts nothing.
        st.open = 10;
        assert_eq!(st.connects_needed(10, 5, 10), 0);
    }

    #[test]
    fn a_long_queue_is_read_only_as_far_as_the_answer_needs() {
        let mut st = State::<()>::new();
        let mut keep = Vec::new();
        for _ in 0..1000 {
            keep.push(queue(&mut st, true));
        }
        assert_eq!(st.connects_needed(10, 0, 4), 4);
        // Callers far down the queue give up; the count stops before reaching them.
        keep.truncate(10);
        assert_eq!(st.connects_needed(10, 0, 4), 4);
        assert_eq!(
            st.waiters.len(),
            1000,
            "the queue past the first live waiters is left alone"
        );
        // All but the first gave up: one connect.
        keep.truncate(1);
        assert_eq!(st.connects_needed(10, 0, 4), 1);
    }
}
