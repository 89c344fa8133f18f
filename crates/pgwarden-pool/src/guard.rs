//! [`Pooled`]: a checked-out connection. Dropping it always gives the connection back: clean
//! ones to the next waiter or the idle list, dirty ones through a reset, broken ones closed
//! (and replaced), also when the holder panics or its task is cancelled.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tokio::time::Instant;

use crate::connector::{Connector, ReleaseState};
use crate::pool::Shared;
use crate::state::{ConnMeta, Slot};

/// See the module documentation.
pub struct Pooled<C: Connector> {
    shared: Arc<Shared<C>>,
    slot: Option<Slot<C::Connection>>,
    acquired_at: Instant,
    broken: bool,
}

impl<C: Connector> std::fmt::Debug for Pooled<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("pool", &self.shared.config.name)
            .field("id", &self.id())
            .finish()
    }
}

impl<C: Connector> Pooled<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>, slot: Slot<C::Connection>, now: Instant) -> Self {
        Pooled {
            shared,
            slot: Some(slot),
            acquired_at: now,
            broken: false,
        }
    }

    fn slot(&self) -> &Slot<C::Connection> {
        self.slot.as_ref().expect("present until drop or detach")
    }

    /// Marks the connection unusable: it is closed instead of returned.
    pub fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// When this checkout began.
    pub fn acquired_at(&self) -> std::time::Instant {
        self.acquired_at.into_std()
    }

    /// The connection's id within its pool.
    pub fn id(&self) -> u64 {
        self.slot().meta.id
    }

    /// The connection's facts.
    pub fn meta(&self) -> &ConnMeta {
        &self.slot().meta
    }

    /// Takes the connection out of the pool for good; its place is freed.
    pub fn detach(mut self) -> C::Connection {
        self.finish_checkout(Instant::now(), true);
        let slot = self.slot.take().expect("present until drop or detach");
        {
            let mut st = self.shared.state.lock();
            st.open -= 1;
            st.in_use -= 1;
        }
        self.shared.spawn_connects();
        slot.conn
    }

    /// Records the use time and unregisters the checkout (unless the caller's next locked
    /// step does that anyway).
    fn finish_checkout(&self, now: Instant, unregister: bool) {
        let held = now.saturating_duration_since(self.acquired_at);
        self.shared.counters.use_time.record(held);
        if unregister && self.shared.config.leak_threshold.is_some() {
            if let Some(slot) = &self.slot {
                self.shared.state.lock().checkouts.remove(&slot.meta.id);
            }
        }
    }
}

impl<C: Connector> Deref for Pooled<C> {
    type Target = C::Connection;
    fn deref(&self) -> &C::Connection {
        &self.slot().conn
    }
}

impl<C: Connector> DerefMut for Pooled<C> {
    fn deref_mut(&mut self) -> &mut C::Connection {
        &mut self
            .slot
            .as_mut()
            .expect("present until drop or detach")
            .conn
    }
}

impl<C: Connector> Drop for Pooled<C> {
    fn drop(&mut self) {
        if self.slot.is_none() {
            return;
        }
        let now = crate::clock::now();
        let slot = self.slot.take().expect("checked above");
        self.shared
            .counters
            .use_time
            .record(now.saturating_duration_since(self.acquired_at));
        let shared = &self.shared;
        let state = if self.broken || shared.connector.is_broken(&slot.conn) {
            ReleaseState::Broken
        } else {
            shared.connector.release_state(&slot.conn)
        };
        let worn_out = shared
            .config
            .max_uses
            .is_some_and(|max| slot.meta.uses >= max);
        let expired = slot.meta.expires_at.is_some_and(|at| now >= at);
        match state {
            ReleaseState::Broken => shared.discard(slot, "broken", false),
            ReleaseState::Clean if worn_out => shared.discard(slot, "max_uses", true),
            ReleaseState::Clean if expired => shared.discard(slot, "lifetime", true),
            ReleaseState::Clean => shared.put_back_at(slot, now),
            ReleaseState::NeedsReset => match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    // Not held by a caller any more, whatever the reset takes.
                    shared.state.lock().checkouts.remove(&slot.meta.id);
                    let shared = Arc::clone(shared);
                    let tasks = shared.background.clone();
                    tasks.spawn_on(
                        async move {
                            let mut slot = slot;
                            match shared.connector.reset(&mut slot.conn).await {
                                Ok(()) if worn_out => shared.discard(slot, "max_uses", true),
                                Ok(()) if expired => shared.discard(slot, "lifetime", true),
                                Ok(()) => shared.put_back(slot),
                                Err(e) => {
                                    let kind = shared.connector.error_kind(&e);
                                    shared.report_error(kind, format!("reset failed: {e}"));
                                    shared.discard(slot, "reset_failed", false);
                                }
                            }
                        },
                        &handle,
                    );
                }
                // No runtime (process exit): the connection cannot be reset; drop it.
                Err(_) => shared.discard(slot, "broken", false),
            },
        }
    }
}
