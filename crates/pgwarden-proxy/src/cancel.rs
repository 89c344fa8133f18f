//! Cancel requests. Each client gets pgwarden's own BackendKeyData; while it holds a server
//! connection, its slot points at that connection's key. A CancelRequest carrying a client's
//! key is forwarded to the server connection serving that client right now, and nowhere else.
//!
//! Like libpq, pgwarden waits for PostgreSQL to close the cancel connection (it has then
//! signalled the backend) before it closes the client's: a driver that waits for that close
//! (libpq, asyncpg) knows its cancel cannot land on its next query. While a cancel is on its
//! way, the server connection it targets is not handed to anyone (see
//! [`CancelTarget::wait_idle`]): a late cancel must never hit another transaction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pgwarden_protocol::startup::{CancelRequest, StartupPacket};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long a forwarded cancel may take (connect, send, PostgreSQL closing its end). Past it
/// the cancel is given up and the server connection may serve again.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a cancel for a client goes while it holds a server connection: one per server
/// connection, shared by the slots pointing at it.
#[derive(Debug)]
pub(crate) struct CancelTarget {
    addr: SocketAddr,
    process_id: i32,
    secret_key: Bytes,
    /// Cancels sent to this backend that PostgreSQL has not finished with.
    in_flight: AtomicU32,
}

impl CancelTarget {
    pub(crate) fn new(addr: SocketAddr, process_id: i32, secret_key: Bytes) -> Self {
        CancelTarget {
            addr,
            process_id,
            secret_key,
            in_flight: AtomicU32::new(0),
        }
    }

    /// The backend's process id.
    pub(crate) fn process_id(&self) -> i32 {
        self.process_id
    }

    /// Whether a cancel for this backend is still on its way.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Waits until no cancel for this backend is on its way (each gives up after
    /// [`CANCEL_TIMEOUT`], so this ends). Called before the connection serves a transaction.
    pub(crate) async fn wait_idle(&self) {
        while self.busy() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Counts a cancel as on its way until the returned guard is dropped. Take it while the
    /// target is still known to serve the client (under the slot's lock), so that the
    /// connection cannot change hands unseen in between.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlightCancel {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightCancel(Arc::clone(self))
    }

    /// Connects, sends the CancelRequest, waits for PostgreSQL to close the connection.
    async fn deliver(&self) -> bool {
        let mut out = BytesMut::with_capacity(16);
        StartupPacket::Cancel(CancelRequest {
            process_id: self.process_id,
            secret_key: self.secret_key.clone(),
        })
        .encode(&mut out);
        let mut stream = match TcpStream::connect(self.addr).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(server = %self.addr, error = %e, "cannot forward cancel request");
                return false;
            }
        };
        if stream.write_all(&out).await.is_err() {
            return false;
        }
        // PostgreSQL answers nothing; it closes the connection once the backend is signalled.
        crate::server::until_closed(&mut stream).await;
        true
    }
}

/// A cancel on its way to a backend (see [`CancelTarget::begin`]).
#[derive(Debug)]
pub(crate) struct InFlightCancel(Arc<CancelTarget>);

impl InFlightCancel {
    /// Sends the CancelRequest and waits until PostgreSQL has acted on it (it closes the
    /// connection then), at most [`CANCEL_TIMEOUT`]. Returns whether it was delivered.
    pub(crate) async fn send(self) -> bool {
        let target = &self.0;
        tokio::time::timeout(CANCEL_TIMEOUT, target.deliver())
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(
                    server = %target.addr,
                    timeout = ?CANCEL_TIMEOUT,
                    "the server did not finish a cancel request in time"
                );
                false
            })
    }
}

impl Drop for InFlightCancel {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One client's registration; removed from the registry when dropped.
#[derive(Debug)]
pub(crate) struct CancelSlot {
    registry: Arc<CancelRegistry>,
    pub(crate) process_id: i32,
    pub(crate) secret_key: [u8; 4],
    state: SharedState,
}

impl CancelSlot {
    /// Points cancels at a server connection (or at nothing).
    pub(crate) fn set_target(&self, target: Option<Arc<CancelTarget>>) {
        self.state.lock().target = target;
    }

    /// The key under which the client waits in a pool ([`pgwarden_pool::Pool::get_cancellable`]):
    /// its process id, unique among connected clients and never 0.
    pub(crate) fn key(&self) -> u64 {
        wait_key(self.process_id)
    }

    /// Marks the client as waiting for a server connection (under [`CancelSlot::key`]) until
    /// the returned guard is finished or dropped: a cancel arriving meanwhile ends the wait in
    /// the pool (see [`CancelRegistry::cancel`]). Two flags in the slot: nothing is made per
    /// wait, and the slot is the line the wait's end touches anyway.
    pub(crate) fn waiting_for_server(&self) -> WaitForServer<'_> {
        let mut state = self.state.lock();
        state.waiting = true;
        state.cancelled = false;
        WaitForServer {
            state: &self.state,
            finished: false,
        }
    }
}

impl Drop for CancelSlot {
    fn drop(&mut self) {
        self.registry.slots.lock().remove(&self.process_id);
    }
}

/// A client waiting for a server connection, as seen by its cancels.
#[derive(Debug)]
pub(crate) struct WaitForServer<'a> {
    state: &'a SharedState,
    /// Ended by [`WaitForServer::finish`]: nothing left for the drop to do.
    finished: bool,
}

impl WaitForServer<'_> {
    /// Ends the wait now that a server connection was got, in one step under the slot's
    /// lock: cancels point at `target` from now on, unless one arrived during the wait (then
    /// they point at nothing and `true` is returned: the connection goes back unused). No
    /// cancel can fall between the end of the wait and the target being set.
    pub(crate) fn finish(mut self, target: Option<Arc<CancelTarget>>) -> bool {
        self.finished = true;
        let mut state = self.state.lock();
        state.waiting = false;
        let cancelled = std::mem::take(&mut state.cancelled);
        state.target = if cancelled { None } else { target };
        cancelled
    }
}

impl Drop for WaitForServer<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.state.lock();
        state.waiting = false;
        state.cancelled = false;
    }
}

/// What a cancel for one client finds (shared by its slot and the registry). Kept small: one
/// per connected client.
#[derive(Debug, Default)]
struct SlotState {
    /// The server connection serving the client right now.
    target: Option<Arc<CancelTarget>>,
    /// The client waits for a server connection: its request has reached no server.
    waiting: bool,
    /// A cancel arrived during the wait (it was ended in the pool, or the connection handed
    /// to the client in the meantime goes back unused).
    cancelled: bool,
}

type SharedState = Arc<Mutex<SlotState>>;

/// A client's key for waits in a pool: its process id (positive, never 0).
fn wait_key(process_id: i32) -> u64 {
    process_id as u64
}

/// Every connected client's key.
#[derive(Debug, Default)]
pub(crate) struct CancelRegistry {
    slots: Mutex<HashMap<i32, ([u8; 4], SharedState)>>,
}

impl CancelRegistry {
    /// Registers a new client under a fresh random key.
    pub(crate) fn register(self: &Arc<Self>) -> CancelSlot {
        let state = SharedState::default();
        let mut slots = self.slots.lock();
        let (process_id, secret_key) = loop {
            let pid = rand::random::<i32>() & 0x7fff_ffff;
            if pid != 0 && !slots.contains_key(&pid) {
                break (pid, rand::random::<[u8; 4]>());
            }
        };
        slots.insert(process_id, (secret_key, Arc::clone(&state)));
        CancelSlot {
            registry: Arc::clone(self),
            process_id,
            secret_key,
            state,
        }
    }

    /// Forwards a client's CancelRequest to the server connection serving it, if any, and
    /// waits until PostgreSQL has acted on it; a client still waiting for a server connection
    /// has its wait ended instead (`end_wait` is called with its key: the caller ends the
    /// pool wait under that key; its request fails with 57014, as PostgreSQL fails a query
    /// cancelled before it ran). A client between requests is left alone, as PostgreSQL
    /// ignores a cancel for an idle backend. Returns whether a cancel took effect or was sent.
    pub(crate) async fn cancel(
        &self,
        request: &CancelRequest,
        end_wait: impl FnOnce(u64) -> bool,
    ) -> bool {
        let state = {
            let slots = self.slots.lock();
            match slots.get(&request.process_id) {
                // Constant-time comparison is unnecessary for a 4-byte key checked once per
                // connection attempt, but a mismatch must never reveal which part was wrong.
                Some((key, state)) if request.secret_key.as_ref() == key.as_slice() => {
                    Arc::clone(state)
                }
                _ => return false,
            }
        };
        let target = {
            let mut state = state.lock();
            if state.waiting {
                // Until the session has its server connection and points its target at it,
                // its request has reached no server. Marked first: if the pool hands it a
                // connection before the wait is ended there, the session sees the mark when
                // it takes the connection and gives it back. The wait is ended under the
                // slot's lock, so the session cannot have begun its next wait (under the same
                // key) in between: this cancel ends this wait and no later one. (Neither the
                // session nor the pool takes a slot's lock while holding a pool's.)
                state.cancelled = true;
                end_wait(wait_key(request.process_id));
                return true;
            }
            state.target.as_ref().map(CancelTarget::begin)
        };
        match target {
            Some(cancel) => cancel.send().await,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(slot: &CancelSlot) -> CancelRequest {
        CancelRequest {
            process_id: slot.process_id,
            secret_key: Bytes::copy_from_slice(&slot.secret_key),
        }
    }

    fn target() -> Arc<CancelTarget> {
        Arc::new(CancelTarget::new(
            "127.0.0.1:1".parse().unwrap(),
            42,
            Bytes::from_static(b"key!"),
        ))
    }

    #[tokio::test]
    async fn a_cancel_ends_only_a_wait_in_progress() {
        let registry = Arc::new(CancelRegistry::default());
        let slot = registry.register();
        let ended = std::cell::Cell::new(None);
        let end = |key| {
            // Under the slot's lock: the session cannot begin its next wait (same key) before
            // this one is ended.
            assert!(slot.state.try_lock().is_none(), "the slot must be locked");
            ended.set(Some(key));
            true
        };

        // A cancel during a wait ends it in the pool under the client's key; the connection
        // got afterwards (handed over before the pool heard) goes back and is not targeted.
        let wait = slot.waiting_for_server();
        assert!(registry.cancel(&request(&slot), end).await);
        assert_eq!(ended.take(), Some(slot.key()));
        assert!(wait.finish(Some(target())), "the cancel must be reported");
        assert!(slot.state.lock().target.is_none());

        // Between waits a cancel for an idle client does nothing and must not cancel the next
        // wait in advance.
        assert!(!registry.cancel(&request(&slot), end).await);
        assert_eq!(ended.take(), None);
        let wait = slot.waiting_for_server();
        let target = target();
        assert!(!wait.finish(Some(Arc::clone(&target))));
        {
            let state = slot.state.lock();
            assert!(state
                .target
                .as_ref()
                .is_some_and(|t| Arc::ptr_eq(t, &target)));
            assert!(!state.waiting && !state.cancelled);
        }

        // A wait dropped unfinished (its acquire failed) leaves nothing waiting either.
        drop(slot.waiting_for_server());
        slot.set_target(None);
        assert!(!registry.cancel(&request(&slot), end).await);
        assert_eq!(ended.take(), None);
    }

    #[test]
    fn a_clients_slot_stays_two_words() {
        // One per connected client, idle ones included: the target and the two flags of a
        // wait.
        assert_eq!(std::mem::size_of::<SlotState>(), 16);
    }
}
