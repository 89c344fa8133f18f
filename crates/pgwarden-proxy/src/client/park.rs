//! Parking idle clients: a client idle for a second or more gives up its task.
//!
//! A logged-in client waiting between transactions would otherwise keep a task (its future,
//! the scheduler's bookkeeping) and the whole session state (buffers' headers, the server
//! connection slot, the reply plan, the batch log) alive for nothing. Once idle for about a
//! second, the session keeps only what outlives a transaction ([`IdleSession`]: its pool, its
//! prepared statements, its parameters, its cancel key) and its socket; the task ends. The
//! socket's readiness is watched with a small waker that names the client: when the client
//! sends something (or hangs up) the [`Parker`] starts a task for it again, which serves it as
//! before. Clients that keep working are never parked and pay nothing for this but an atomic
//! load per idle wait; a parked client pays one task start when it comes back.
//!
//! Timing without a timer per client: the parker's task advances a tick every second and
//! nudges every session task (through the shutdown signals' registry); an idle session parks
//! once two ticks passed since it went idle.
//!
//! At shutdown every parked client is resumed on the proxy's session tracker, where it hears
//! the same `57P01` as any idle client, so the drain waits for it like for the others.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::task::TaskTracker;

use super::IdleSession;
use crate::proxy::Shared;

/// How often the idle clock ticks; a session parks after two ticks idle (1–2 s).
const TICK: Duration = Duration::from_secs(1);

/// A parked client: what its session keeps, its socket, its place under `max_client_conn`.
///
/// Its size is most of what an idle client costs (with tokio's registration of the socket
/// and the maps' slots), so it holds nothing a parked client can do without: see
/// `a_parked_client_stays_small`.
pub(crate) struct Parked {
    pub(crate) session: IdleSession,
    pub(crate) client: TcpStream,
    pub(crate) peer: PeerAddr,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// A client's address kept in 16 bytes rather than a `SocketAddr`'s 32 (an IPv6 address goes
/// to the heap: loopback and private networks are mostly IPv4).
pub(crate) enum PeerAddr {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        match addr {
            SocketAddr::V4(v4) => PeerAddr::V4(v4),
            SocketAddr::V6(v6) => PeerAddr::V6(Box::new(v6)),
        }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(addr: PeerAddr) -> SocketAddr {
        match addr {
            PeerAddr::V4(v4) => SocketAddr::V4(v4),
            PeerAddr::V6(v6) => SocketAddr::V6(*v6),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Parked clients by session id.
    parked: HashMap<u64, Box<Parked>>,
    /// Set at shutdown: nobody parks any more.
    closed: bool,
}

/// The parked clients and the task that brings them back.
#[derive(Default)]
pub(crate) struct Parker {
    inner: Mutex<Inner>,
    /// Session ids whose socket became ready.
    ready: Mutex<Vec<u64>>,
    wake_up: Notify,
    /// The idle clock (see the module documentation).
    tick: AtomicU64,
}

/// Wakes the parker for one parked client.
struct ReadyWaker {
    id: u64,
    parker: Weak<Parker>,
}

impl Wake for ReadyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(parker) = self.parker.upgrade() {
            parker.ready.lock().push(self.id);
            parker.wake_up.notify_one();
        }
    }
}

impl Parker {
    /// The idle clock's current tick.
    pub(crate) fn tick(&self) -> u64 {
        self.tick.load(Ordering::Relaxed)
    }

    /// Whether a session idle since tick `since` should park. A waiting session asks again
    /// whenever it is polled: the parker's task nudges every session at each tick.
    pub(crate) fn is_due(&self, since: u64) -> bool {
        self.tick() >= since + 2
    }

    /// Parks a client. Gives it back when it must go on at once: its socket is already
    /// readable (or failed), or the proxy is shutting down.
    pub(crate) fn park(self: &Arc<Self>, parked: Box<Parked>) -> Option<Box<Parked>> {
        let id = parked.session.id;
        let mut inner = self.inner.lock();
        if inner.closed {
            return Some(parked);
        }
        // In the map before the waker is registered, so a wake-up (possibly on another
        // thread) always finds it.
        let entry = inner.parked.entry(id).insert_entry(parked);
        let waker = Waker::from(Arc::new(ReadyWaker {
            id,
            parker: Arc::downgrade(self),
        }));
        match entry
            .get()
            .client
            .poll_read_ready(&mut Context::from_waker(&waker))
        {
            Poll::Pending => None,
            Poll::Ready(_) => Some(entry.remove()),
        }
    }

    /// How many clients are parked now.
    pub(crate) fn parked(&self) -> usize {
        self.inner.lock().parked.len()
    }

    /// Closes the parker and resumes every parked client on `sessions` (at shutdown: each
    /// hears why and is disconnected, within the drain).
    pub(crate) fn resume_all(&self, shared: &Arc<Shared>, sessions: &TaskTracker) {
        let all: Vec<Box<Parked>> = {
            let mut inner = self.inner.lock();
            inner.closed = true;
            inner.parked.drain().map(|(_, p)| p).collect()
        };
        for parked in all {
            sessions.spawn(super::resume(Arc::clone(shared), *parked));
        }
    }

    /// The parker's task: advances the idle clock and resumes clients whose socket became
    /// ready, until the proxy shuts down (then [`Parker::resume_all`] takes over).
    pub(crate) async fn run(self: Arc<Self>, shared: Arc<Shared>, sessions: TaskTracker) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => return,
                _ = self.wake_up.notified() => {
                    let ids = std::mem::take(&mut *self.ready.lock());
                    for id in ids {
                        let parked = self.inner.lock().parked.remove(&id);
                        if let Some(parked) = parked {
                            sessions.spawn(super::resume(Arc::clone(&shared), *parked));
                        }
                    }
                }
                _ = ticks.tick() => {
                    self.tick.fetch_add(1, Ordering::Relaxed);
                    shared.signals.nudge();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What 10,000 idle clients cost is mostly this (docs/BENCHMARKS.md, round 21): a field
    /// added here is paid by every parked client. (tokio's `TcpStream` is 32 bytes in a
    /// release build, 40 in a debug one.)
    #[test]
    fn a_parked_client_stays_small() {
        let ours = std::mem::size_of::<Parked>() - std::mem::size_of::<TcpStream>();
        assert!(ours <= 112, "{ours}");
        assert_eq!(std::mem::size_of::<PeerAddr>(), 16);
    }

    #[test]
    fn peer_addresses_round_trip() {
        for addr in ["127.0.0.1:5432", "[::1]:6432", "[fe80::1%2]:1"] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(SocketAddr::from(PeerAddr::from(addr)), addr);
        }
    }
}
