//! Shutdown signals for sessions, cheap to watch on every turn of the forwarding loop.
//!
//! A `CancellationToken` future costs two lock round trips to create, poll and drop, and the
//! forwarding loop would create one per turn (several per transaction). Instead each session
//! registers its task's waker once, at login; the forwarding loop checks a flag (one atomic
//! load) and the proxy, when it fires a signal, sets the flag and wakes every registered
//! session.
//!
//! Ordering: [`Signals::fire`] sets the flag before it takes the registry's lock, and a
//! session registers under that lock before it first checks the flag. A session registered
//! first is woken; one registering later sees the flag set.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use parking_lot::Mutex;

/// Shutdown has started: idle clients are told and disconnected.
pub(crate) const SHUTDOWN: u8 = 1;
/// The drain timeout expired: every client still connected is disconnected.
pub(crate) const DRAIN_EXPIRED: u8 = 2;

/// The signals fired so far and the sessions to wake.
#[derive(Default)]
pub(crate) struct Signals {
    fired: AtomicU8,
    wakers: Mutex<HashMap<u64, Waker>>,
}

impl Signals {
    /// Raises `signal` and wakes every registered session.
    pub(crate) fn fire(&self, signal: u8) {
        self.fired.fetch_or(signal, Ordering::SeqCst);
        self.nudge();
    }

    /// Wakes every registered session (after a signal is raised, and on each tick of the
    /// parker's idle clock, see `crate::client::park`).
    pub(crate) fn nudge(&self) {
        let wakers: Vec<Waker> = self.wakers.lock().values().cloned().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether `signal` has been raised.
    pub(crate) fn is_set(&self, signal: u8) -> bool {
        self.fired.load(Ordering::SeqCst) & signal != 0
    }

    /// Registers the calling task, which is woken whenever a signal fires, until the returned
    /// guard is dropped. Call from the task's own future (not from inside a combinator that
    /// polls with a waker of its own).
    pub(crate) async fn subscribe(self: &Arc<Self>, id: u64) -> Subscription {
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        self.wakers.lock().insert(id, waker);
        Subscription {
            signals: Arc::clone(self),
            id,
        }
    }

    /// Completes once `signal` is raised. It registers no waker itself: only a task holding a
    /// [`Subscription`] is woken when it fires. (Sessions check [`Signals::is_set`] in their
    /// own poll functions.)
    #[cfg(test)]
    pub(crate) async fn raised(&self, signal: u8) {
        poll_fn(|_| {
            if self.is_set(signal) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A registered session; dropping it unregisters.
pub(crate) struct Subscription {
    signals: Arc<Signals>,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut wakers = self.signals.wakers.lock();
        wakers.remove(&self.id);
        // A map never shrinks by itself: after a burst of logins (every new session is
        // subscribed until it parks) its table would stay sized for the burst, 25 bytes a
        // slot. Shrunk once it is an eighth full, to twice what it holds: amortised, each
        // removal pays for at most a few moves.
        if wakers.capacity() >= SHRINK_ABOVE && wakers.len() * 8 < wakers.capacity() {
            let keep = wakers.len() * 2;
            wakers.shrink_to(keep);
        }
    }
}

/// Capacity under which the registry is never shrunk (its table is then at most ~100 KiB).
const SHRINK_ABOVE: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_subscribed_task_is_woken_by_fire_and_unregistered_on_drop() {
        let signals = Arc::new(Signals::default());
        let s = Arc::clone(&signals);
        let task = tokio::spawn(async move {
            let _sub = s.subscribe(7).await;
            s.raised(SHUTDOWN).await;
            assert!(!s.is_set(DRAIN_EXPIRED));
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(signals.wakers.lock().len(), 1);
        assert!(!task.is_finished());
        signals.fire(SHUTDOWN);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("woken")
            .expect("no panic");
        assert!(signals.wakers.lock().is_empty());
        // A late subscriber sees the flag at once.
        let _late = signals.subscribe(8).await;
        tokio::time::timeout(Duration::from_secs(1), signals.raised(SHUTDOWN))
            .await
            .expect("already raised");
    }

    #[tokio::test]
    async fn the_registry_gives_back_its_table_after_a_burst() {
        let signals = Arc::new(Signals::default());
        let mut subs = Vec::new();
        for id in 0..20_000 {
            subs.push(signals.subscribe(id).await);
        }
        let burst = signals.wakers.lock().capacity();
        assert!(burst >= 20_000);
        // The burst parks but for a few: the table follows.
        subs.truncate(100);
        let after = signals.wakers.lock().capacity();
        assert!(after <= SHRINK_ABOVE, "{after} of {burst}");
        // Those left are still registered.
        assert_eq!(signals.wakers.lock().len(), 100);
        subs.clear();
        assert!(signals.wakers.lock().is_empty());
    }
}
