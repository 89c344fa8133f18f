//! [`Pool`]: the public API, and the shared core its handles, guards and tasks point at.

use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, PoolConfig};
use crate::connector::Connector;
use crate::error::PoolError;
use crate::event::PoolEvent;
use crate::guard::Pooled;
use crate::state::{ConnMeta, Slot, State};
use crate::stats::{Counters, PoolStats, PoolStatus};

/// What every handle, guard and background task of one pool shares.
pub(crate) struct Shared<C: Connector> {
    pub(crate) connector: C,
    pub(crate) config: PoolConfig,
    pub(crate) state: Mutex<State<C::Connection>>,
    pub(crate) counters: Counters,
    pub(crate) events: broadcast::Sender<PoolEvent>,
    /// Stops the maintenance task and connect retries.
    pub(crate) cancel: CancellationToken,
    /// Woken whenever a connection leaves use while closing.
    pub(crate) returned: Notify,
    /// Connections closed after `close` started (returned late or opened late).
    pub(crate) closed_while_closing: std::sync::atomic::AtomicU64,
    /// Wakes the waiter reaper when an earlier deadline arrives.
    pub(crate) reaper: Notify,
    /// Every task the pool starts (connects, resets, graceful closes, maintenance); `close`
    /// waits for them within its deadline.
    pub(crate) background: tokio_util::task::TaskTracker,
}

/// The shortest checkout ping allowed, even when the caller's deadline is nearer: a ping cut
/// shorter would close healthy connections.
const MIN_PING: Duration = Duration::from_millis(100);

/// A connection being checked for a caller. If the caller is cancelled mid-check, dropping
/// this closes the connection (its stream may be mid-reply) and frees its place.
struct Vetting<'a, C: Connector> {
    shared: &'a Arc<Shared<C>>,
    slot: Option<Slot<C::Connection>>,
}

impl<C: Connector> Drop for Vetting<'_, C> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.shared.discard(slot, "cancelled", false);
        }
    }
}

/// A checkout in progress: the future [`Pool::get`] and its siblings return. Written by hand
/// rather than as an `async fn`, so a queued caller's whole state is this struct (the
/// receiving end of its hand-off, its deadline): a caller woken by a hand-off reads a few
/// words, not the nested state of an `async fn`. Dropping it gives up the wait; a connection
/// handed over in the meantime goes back to the pool.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<C: Connector> {
    /// Moved into the guard when the checkout succeeds.
    shared: Option<Arc<Shared<C>>>,
    location: &'static Location<'static>,
    timeout: Duration,
    key: u64,
    /// Read at the first poll.
    started: Option<Instant>,
    /// After a connection failed its check the caller waits again at the front of the queue:
    /// it keeps the place it had.
    retry: bool,
    step: Step<C>,
}

/// Where an [`Acquire`] is.
enum Step<C: Connector> {
    /// Not polled yet, or looking again after a connection failed its check.
    Look,
    /// Queued (FIFO) for a hand-off.
    Queued(oneshot::Receiver<crate::state::Handoff<C::Connection>>),
    /// Pinging a connection idle for long (rare, so boxed), checked out at the instant kept.
    Ping(PingVet<C::Connection>, Instant),
    /// Finished.
    Done,
}

/// A connection taken for a caller, and when it was taken.
type Found<T> = (Slot<T>, Instant);

type PingVet<T> = Pin<Box<dyn Future<Output = Option<Slot<T>>> + Send>>;

impl<C: Connector> Drop for Acquire<C> {
    fn drop(&mut self) {
        if let Step::Queued(rx) = &mut self.step {
            rx.close();
            if let Ok(crate::state::Handoff::Conn(slot)) = rx.try_recv() {
                if let Some(shared) = &self.shared {
                    shared.put_back(slot);
                }
            }
        }
    }
}

impl<C: Connector> Acquire<C> {
    fn new(
        shared: Arc<Shared<C>>,
        location: &'static Location<'static>,
        timeout: Duration,
        key: u64,
    ) -> Self {
        Acquire {
            shared: Some(shared),
            location,
            timeout,
            key,
            started: None,
            retry: false,
            step: Step::Look,
        }
    }

    fn shared(&self) -> &Arc<Shared<C>> {
        self.shared.as_ref().expect("taken only when done")
    }

    /// Ends the checkout with `result`.
    fn done(&mut self, result: Result<Pooled<C>, PoolError>) -> Poll<Result<Pooled<C>, PoolError>> {
        self.step = Step::Done;
        Poll::Ready(result)
    }

    /// After a connection failed its check: the timeout error when the deadline has passed,
    /// else `None` and the caller looks again from the front of the queue.
    fn give_up(&mut self, started: Instant) -> Option<PoolError> {
        if Instant::now() >= started + self.timeout {
            return Some(self.shared().timed_out(started.elapsed()));
        }
        self.retry = true;
        self.step = Step::Look;
        None
    }

    /// Takes an idle connection (checked out at `started`), or queues the caller.
    fn look(&mut self, started: Instant) -> Result<Option<Found<C::Connection>>, PoolError> {
        let shared = self.shared();
        let (rx, may_grow) = {
            let mut st = shared.state.lock();
            if st.closed {
                return Err(PoolError::Closed {
                    pool: shared.config.name.clone(),
                });
            }
            if let Some(slot) = st.idle.pop_back() {
                st.in_use += 1;
                if shared.config.leak_threshold.is_some() {
                    st.note_checkout(slot.meta.id, self.location, started);
                }
                return Ok(Some((slot, started)));
            }
            if st.open == 0 {
                if let Some(reason) = shared.connector.unavailable() {
                    return Err(PoolError::Unavailable {
                        pool: shared.config.name.clone(),
                        reason,
                    });
                }
            }
            let deadline = started + self.timeout;
            let (tx, rx) = oneshot::channel();
            let waiter = crate::state::Waiter {
                tx,
                location: self.location,
                deadline,
                key: self.key,
            };
            if self.retry {
                st.waiters.push_front(waiter);
            } else {
                st.waiters.push_back(waiter);
            }
            // Wake the reaper only if this deadline comes before its current one (with one
            // timeout for all, never while others are waiting).
            if st.reaper_target.is_none_or(|t| deadline < t) {
                st.reaper_target = Some(deadline);
                shared.reaper.notify_one();
            }
            // Only when the pool may grow is a connect worth considering.
            (rx, st.open + st.connecting < shared.config.max_size)
        };
        if may_grow {
            shared.spawn_connects();
        }
        // No timer per wait: the pool's reaper drops waiters past their deadline, which ends
        // this wait with an error (see `tasks::reap_waiters`).
        self.step = Step::Queued(rx);
        Ok(None)
    }
}

impl<C: Connector> Future for Acquire<C> {
    type Output = Result<Pooled<C>, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let started = *this.started.get_or_insert_with(crate::clock::now);
        loop {
            let (slot, now) = match &mut this.step {
                Step::Look => match this.look(started) {
                    Ok(Some(found)) => found,
                    Ok(None) => continue,
                    Err(e) => return this.done(Err(e)),
                },
                Step::Queued(rx) => {
                    let outcome = std::task::ready!(Pin::new(rx).poll(cx));
                    // The receiver is spent: nothing for `drop` to put back.
                    this.step = Step::Look;
                    let shared = this.shared();
                    match outcome {
                        // Registered for leak detection by the handoff.
                        Ok(crate::state::Handoff::Conn(slot)) => (slot, crate::clock::now()),
                        Ok(crate::state::Handoff::Failed(kind, error)) => {
                            let pool = shared.config.name.clone();
                            return this.done(Err(PoolError::ConnectFailed { pool, kind, error }));
                        }
                        Ok(crate::state::Handoff::Cancelled) => {
                            let pool = shared.config.name.clone();
                            return this.done(Err(PoolError::Cancelled { pool }));
                        }
                        Err(_) if shared.state.lock().closed => {
                            let pool = shared.config.name.clone();
                            return this.done(Err(PoolError::Closed { pool }));
                        }
                        Err(_) => {
                            let e = shared.timed_out(started.elapsed());
                            return this.done(Err(e));
                        }
                    }
                }
                Step::Ping(ping, now) => {
                    let now = *now;
                    let vetted = std::task::ready!(ping.as_mut().poll(cx));
                    this.step = Step::Look;
                    match vetted {
                        Some(slot) => {
                            let shared = this.shared.take().expect("taken only when done");
                            return this.done(Ok(shared.into_guard(slot, started, now)));
                        }
                        None => {
                            if let Some(e) = this.give_up(started) {
                                return this.done(Err(e));
                            }
                            continue;
                        }
                    }
                }
                Step::Done => panic!("Acquire polled after completion"),
            };
            match this.shared().vet(slot, now) {
                Vet::Ready(slot) => {
                    // The guard takes this checkout's handle on the pool: no reference count
                    // traffic.
                    let shared = this.shared.take().expect("taken only when done");
                    return this.done(Ok(shared.into_guard(slot, started, now)));
                }
                Vet::Closed => {
                    if let Some(e) = this.give_up(started) {
                        return this.done(Err(e));
                    }
                }
                Vet::Ping(slot) => {
                    // Rare (a connection idle past `check_after_idle`): boxed, so the ping's
                    // state is not part of every checkout.
                    let shared = Arc::clone(this.shared());
                    let deadline = started + this.timeout;
                    let ping = async move { shared.ping_vet(slot, now, deadline).await };
                    this.step = Step::Ping(Box::pin(ping), now);
                }
            }
        }
    }
}

/// What [`Shared::vet`] decided about a connection about to be handed out.
enum Vet<T> {
    /// Fit to use as it is.
    Ready(Slot<T>),
    /// Closed (expired or broken); the caller looks again.
    Closed,
    /// Idle for long: ping it first.
    Ping(Slot<T>),
}

/// A pool of connections made by `C`. Cheap to clone; all clones are the same pool. The
/// maintenance task stops when the pool is closed or the last handle is dropped.
pub struct Pool<C: Connector> {
    pub(crate) shared: Arc<Shared<C>>,
    /// Dropped with the last handle: cancels the maintenance task.
    _owner: Arc<OwnerToken>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            shared: Arc::clone(&self.shared),
            _owner: Arc::clone(&self._owner),
        }
    }
}

impl<C: Connector> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("name", &self.shared.config.name)
            .field("status", &self.status())
            .finish()
    }
}

struct OwnerToken(CancellationToken);

impl Drop for OwnerToken {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What [`Pool::close`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReport {
    /// Connections closed.
    pub closed: usize,
    /// Connections still checked out when the deadline passed.
    pub still_checked_out: usize,
    /// How long closing took.
    pub waited: Duration,
}

impl<C: Connector> Pool<C> {
    /// Creates a pool and starts its maintenance task (which opens `min_idle` connections).
    /// Must be called inside a tokio runtime.
    pub fn new(connector: C, config: PoolConfig) -> Result<Pool<C>, ConfigError> {
        config.validate()?;
        let (events, _) = broadcast::channel(256);
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            connector,
            config,
            state: Mutex::new(State::new()),
            counters: Counters::default(),
            events,
            cancel: cancel.clone(),
            returned: Notify::new(),
            closed_while_closing: std::sync::atomic::AtomicU64::new(0),
            background: tokio_util::task::TaskTracker::new(),
            reaper: Notify::new(),
        });
        shared.background.spawn(crate::tasks::reap_waiters(
            Arc::downgrade(&shared),
            cancel.clone(),
        ));
        shared.background.spawn(crate::tasks::maintenance(
            Arc::downgrade(&shared),
            cancel.clone(),
        ));
        shared.spawn_connects();
        Ok(Pool {
            shared,
            _owner: Arc::new(OwnerToken(cancel)),
        })
    }

    /// Checks a connection out, waiting in FIFO order up to the acquire timeout. The caller's
    /// source location is recorded for leak reports.
    #[track_caller]
    pub fn get(&self) -> Acquire<C> {
        self.get_timeout(self.shared.config.acquire_timeout)
    }

    /// Like [`Pool::get`] with another timeout.
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Acquire<C> {
        Acquire::new(Arc::clone(&self.shared), Location::caller(), timeout, 0)
    }

    /// Like [`Pool::get_timeout`], with a wait that [`Pool::cancel_wait`] can end (with
    /// [`PoolError::Cancelled`]) by `key`: a number the caller chooses, unique among the
    /// callers waiting at once, not 0. Nothing is made or locked per wait for it.
    #[track_caller]
    pub fn get_cancellable(&self, timeout: Duration, key: u64) -> Acquire<C> {
        Acquire::new(Arc::clone(&self.shared), Location::caller(), timeout, key)
    }

    /// Ends the wait of the [`Pool::get_cancellable`] caller waiting with `key`: it returns
    /// [`PoolError::Cancelled`]. `false` when no caller with that key is waiting (it got its
    /// connection already, or gave up). Scans the queue: meant for rare events such as a
    /// client's cancel request.
    pub fn cancel_wait(&self, key: u64) -> bool {
        self.shared.state.lock().cancel_waiter(key)
    }

    /// An idle connection fit for use as it is, if there is one now: [`Pool::get`] without
    /// its future (no waiting, no connect). It gets the same checks as `get` (expired and
    /// broken connections are closed and the next one is tried); one idle long enough to want
    /// a ping is left idle for `get`, which pings it. The hot path of a caller that acquires
    /// per transaction: `get` only when this returns `None`.
    #[track_caller]
    pub fn get_now(&self) -> Option<Pooled<C>> {
        let location = Location::caller();
        let shared = &self.shared;
        loop {
            let (slot, now) = {
                let mut st = shared.state.lock();
                if st.closed {
                    return None;
                }
                let slot = st.idle.pop_back()?;
                // Read only now: a caller finding nothing idle (most, under contention) pays
                // for no clock read.
                let now = crate::clock::now();
                st.in_use += 1;
                if shared.config.leak_threshold.is_some() {
                    st.note_checkout(slot.meta.id, location, now);
                }
                (slot, now)
            };
            match shared.vet(slot, now) {
                Vet::Ready(slot) => return Some(Arc::clone(shared).into_guard(slot, now, now)),
                Vet::Closed => continue,
                Vet::Ping(slot) => {
                    shared.put_back_untouched(slot, now);
                    return None;
                }
            }
        }
    }

    /// Counts right now.
    pub fn status(&self) -> PoolStatus {
        self.shared.status()
    }

    /// Everything counted so far.
    pub fn stats(&self) -> PoolStats {
        let c = &self.shared.counters;
        let (status, errors_by_kind, last_error) = {
            let st = self.shared.state.lock();
            (
                self.shared.status_locked(&st),
                st.errors_by_kind.clone(),
                st.last_error.clone(),
            )
        };
        let wait_time = c.wait.snapshot();
        // Every checkout records its wait: the histogram's count is the number of checkouts.
        let acquires = wait_time.count;
        let reused = c.reused.load(Relaxed);
        PoolStats {
            name: self.shared.config.name.clone(),
            status,
            created_total: c.created.load(Relaxed),
            closed_total: c.closed.load(Relaxed),
            recycled_total: c.recycled.load(Relaxed),
            acquires_total: acquires,
            reused_total: reused,
            reuse_ratio: if acquires == 0 {
                0.0
            } else {
                reused as f64 / acquires as f64
            },
            timeouts_total: c.timeouts.load(Relaxed),
            leaks_total: c.leaks.load(Relaxed),
            connect_failures_total: c.connect_failures.load(Relaxed),
            errors_by_kind,
            last_error,
            wait_time,
            use_time: c.use_time.snapshot(),
        }
    }

    /// Lifecycle events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.shared.events.subscribe()
    }

    /// Whether [`Pool::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The settings.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// The connector.
    pub fn connector(&self) -> &C {
        &self.shared.connector
    }

    /// Closes idle connections for which `keep` returns false.
    pub fn retain(&self, mut keep: impl FnMut(&C::Connection, &ConnMeta) -> bool) {
        let dropped: Vec<_> = {
            let mut st = self.shared.state.lock();
            let (kept, dropped): (Vec<_>, Vec<_>) =
                st.idle.drain(..).partition(|s| keep(&s.conn, &s.meta));
            st.idle.extend(kept);
            st.open -= dropped.len();
            dropped
        };
        for slot in dropped {
            self.shared.close_slot(slot, "retained", false);
        }
        self.shared.spawn_connects();
    }

    /// Closes up to `n` idle connections, least recently used first, gracefully (the
    /// connector's `close`), and returns how many it closed. Unlike [`Pool::retain`] no
    /// replacement is opened: the caller wants the room (e.g. a cap shared with other pools).
    pub fn close_idle(&self, n: usize) -> usize {
        let closing: Vec<_> = {
            let mut st = self.shared.state.lock();
            let n = n.min(st.idle.len());
            let closing: Vec<_> = st.idle.drain(..n).collect();
            st.open -= closing.len();
            closing
        };
        let closed = closing.len();
        for slot in closing {
            self.shared.close_slot(slot, "closed to make room", true);
        }
        closed
    }

    /// Starts connects now to bring the pool to `min_idle` (e.g. when the upstream returns).
    pub fn warm(&self) {
        self.shared.spawn_connects();
    }

    /// Refuses new checkouts, closes idle connections, waits up to `deadline` for checked-out
    /// ones to come back (closing them as they do), and stops the background tasks.
    pub async fn close(&self, deadline: Duration) -> CloseReport {
        let started = Instant::now();
        let idle: Vec<_> = {
            let mut st = self.shared.state.lock();
            st.closed = true;
            // Waiting callers get `Closed` when their sender is dropped.
            st.waiters.clear();
            let idle: Vec<_> = st.idle.drain(..).collect();
            st.open -= idle.len();
            idle
        };
        self.shared.cancel.cancel();
        let mut closed = idle.len();
        for slot in idle {
            self.shared.close_slot(slot, "closed", true);
        }
        let end = started + deadline;
        loop {
            let notified = self.shared.returned.notified();
            let (in_use, connecting) = {
                let st = self.shared.state.lock();
                (st.in_use, st.connecting)
            };
            if in_use == 0 && connecting == 0 {
                break;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                break;
            }
        }
        let still = self.shared.state.lock().in_use;
        closed += self.shared.closed_while_closing.swap(0, Relaxed) as usize;
        // Wait (within the deadline) until every graceful close has gone out and the
        // background tasks have stopped.
        self.shared.background.close();
        let _ = tokio::time::timeout_at(
            end.max(Instant::now() + Duration::from_millis(100)),
            self.shared.background.wait(),
        )
        .await;
        CloseReport {
            closed,
            still_checked_out: still,
            waited: started.elapsed(),
        }
    }
}

impl<C: Connector> Shared<C> {
    pub(crate) fn status(&self) -> PoolStatus {
        let st = self.state.lock();
        self.status_locked(&st)
    }

    fn status_locked(&self, st: &State<C::Connection>) -> PoolStatus {
        PoolStatus {
            size: st.open,
            idle: st.idle.len(),
            in_use: st.in_use,
            connecting: st.connecting,
            waiters: st.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
            max_size: self.config.max_size,
            min_idle: self.config.min_idle,
        }
    }

    pub(crate) fn emit(&self, event: PoolEvent) {
        let _ = self.events.send(event);
    }

    /// Starts as many background connects as waiters and `min_idle` call for.
    pub(crate) fn spawn_connects(self: &Arc<Self>) {
        if self.connector.unavailable().is_some() {
            return;
        }
        let n = {
            let mut st = self.state.lock();
            let n = st.connects_needed(
                self.config.max_size,
                self.config.min_idle,
                self.config.max_connecting,
            );
            st.connecting += n;
            n
        };
        for _ in 0..n {
            self.background
                .spawn(crate::tasks::connect(Arc::clone(self)));
        }
    }

    fn timed_out(&self, waited: Duration) -> PoolError {
        self.counters.timeouts.fetch_add(1, Relaxed);
        let last_error = self.state.lock().failing.clone();
        PoolError::Timeout {
            pool: self.config.name.clone(),
            max_size: self.config.max_size,
            waited,
            last_error,
        }
    }

    /// Checks a connection about to be handed out: expired or broken (closed), or idle long
    /// enough to deserve a ping (see [`Shared::ping_vet`]).
    #[inline(always)]
    fn vet(self: &Arc<Self>, slot: Slot<C::Connection>, now: Instant) -> Vet<C::Connection> {
        if slot.meta.expires_at.is_some_and(|at| now >= at) {
            self.discard(slot, "lifetime", true);
            return Vet::Closed;
        }
        if self.connector.is_broken(&slot.conn)
            || self
                .connector
                .went_bad_while_idle(&slot.conn, &slot.meta, now)
        {
            self.discard(slot, "broken", false);
            return Vet::Closed;
        }
        if now.saturating_duration_since(slot.meta.last_checked) <= self.config.check_after_idle {
            return Vet::Ready(slot);
        }
        Vet::Ping(slot)
    }

    /// Pings a connection idle for long, bounded by the caller's deadline (with at least
    /// [`MIN_PING`]). `None` when it was closed instead (the caller looks again). If the
    /// caller is cancelled during the ping, the connection is closed and its place freed.
    async fn ping_vet(
        self: &Arc<Self>,
        slot: Slot<C::Connection>,
        now: Instant,
        deadline: Instant,
    ) -> Option<Slot<C::Connection>> {
        let limit = deadline.saturating_duration_since(now).max(MIN_PING);
        let mut vetting = Vetting {
            shared: self,
            slot: Some(slot),
        };
        let conn = &mut vetting.slot.as_mut().expect("just set").conn;
        let outcome = tokio::time::timeout(limit, self.connector.ping(conn)).await;
        let mut slot = vetting.slot.take().expect("taken only here or on drop");
        match outcome {
            Ok(Ok(())) => {
                slot.meta.last_checked = Instant::now();
                Some(slot)
            }
            Ok(Err(e)) => {
                let kind = self.connector.error_kind(&e);
                self.report_error(kind, format!("ping failed: {e}"));
                self.discard(slot, "ping_failed", false);
                None
            }
            Err(_) => {
                self.report_error("timeout", format!("ping took longer than {limit:?}"));
                self.discard(slot, "ping_failed", false);
                None
            }
        }
    }

    /// Counts an error (ping, reset, keepalive) and tells subscribers.
    pub(crate) fn report_error(&self, kind: &'static str, message: String) {
        self.state.lock().record_error(kind, message.clone());
        self.emit(PoolEvent::Error { message });
    }

    /// Turns a slot already counted in `in_use` into a guard that keeps this handle on the
    /// pool.
    fn into_guard(
        self: Arc<Self>,
        mut slot: Slot<C::Connection>,
        started: Instant,
        now: Instant,
    ) -> Pooled<C> {
        if slot.meta.uses > 0 {
            self.counters.reused.fetch_add(1, Relaxed);
        }
        slot.meta.uses += 1;
        // An acquire served at once passes the same instant twice: no clock arithmetic.
        let waited = if now == started {
            Duration::ZERO
        } else {
            now.saturating_duration_since(started)
        };
        self.counters.wait.record(waited);
        Pooled::new(self, slot, now)
    }

    /// Puts a healthy connection back: to the oldest waiter, else idle. Closes it instead if
    /// the pool is closed.
    pub(crate) fn put_back(self: &Arc<Self>, slot: Slot<C::Connection>) {
        self.put_back_at(slot, Instant::now());
    }

    /// [`Shared::put_back`] with the current time already read.
    pub(crate) fn put_back_at(self: &Arc<Self>, mut slot: Slot<C::Connection>, now: Instant) {
        slot.meta.idle_since = now;
        slot.meta.last_checked = now;
        self.put_back_untouched(slot, now);
    }

    /// Like [`Shared::put_back`] without marking the connection as just used (after a
    /// keepalive ping, which must not keep an unused connection from being reaped).
    pub(crate) fn put_back_untouched(self: &Arc<Self>, slot: Slot<C::Connection>, now: Instant) {
        let closing = {
            let mut st = self.state.lock();
            if self.config.leak_threshold.is_some() {
                st.checkouts.remove(&slot.meta.id);
            }
            if st.closed {
                st.open -= 1;
                st.in_use -= 1;
                Some(slot)
            } else {
                match st.hand_off(slot, now, self.config.leak_threshold.is_some()) {
                    None => None,
                    Some(slot) => {
                        st.in_use -= 1;
                        st.idle.push_back(slot);
                        None
                    }
                }
            }
        };
        if let Some(slot) = closing {
            self.close_slot(slot, "closed", true);
            self.closed_while_closing.fetch_add(1, Relaxed);
            self.returned.notify_waiters();
        }
    }

    /// Closes a connection that was in use (or being checked) and frees its place.
    pub(crate) fn discard(
        self: &Arc<Self>,
        slot: Slot<C::Connection>,
        reason: &'static str,
        recycled: bool,
    ) {
        let closing = {
            let mut st = self.state.lock();
            st.checkouts.remove(&slot.meta.id);
            st.open -= 1;
            st.in_use -= 1;
            st.closed
        };
        if recycled {
            self.counters.recycled.fetch_add(1, Relaxed);
        }
        self.close_slot(slot, reason, true);
        if closing {
            self.closed_while_closing.fetch_add(1, Relaxed);
            self.returned.notify_waiters();
        } else {
            self.spawn_connects();
        }
    }

    /// Closes a connection no longer counted anywhere (in the background when possible).
    pub(crate) fn close_slot(
        self: &Arc<Self>,
        slot: Slot<C::Connection>,
        reason: &'static str,
        graceful: bool,
    ) {
        self.counters.closed.fetch_add(1, Relaxed);
        self.emit(PoolEvent::Disconnected {
            id: slot.meta.id,
            reason,
        });
        if graceful && tokio::runtime::Handle::try_current().is_ok() {
            let shared = Arc::clone(self);
            self.background
                .spawn(async move { shared.connector.close(slot.conn).await });
            return;
        }
        drop(slot);
    }

    /// A new connection's facts.
    pub(crate) fn new_meta(&self, st: &mut State<C::Connection>) -> ConnMeta {
        let now = Instant::now();
        let id = st.next_id;
        st.next_id += 1;
        let expires_at = self.config.max_lifetime.map(|life| {
            let cut = life.mul_f64(self.config.lifetime_jitter * rand::random::<f64>());
            now + life.saturating_sub(cut)
        });
        ConnMeta {
            id,
            created_at: now,
            uses: 0,
            idle_since: now,
            last_checked: now,
            expires_at,
            keepalive_jitter: rand::random::<f64>() * 0.25,
        }
    }
}
