//! The pool's background work: opening connections (never on a caller's path, at most
//! `max_connecting` at once, backing off while they fail) and the maintenance loop (idle
//! reaping, lifetimes, keepalive pings, refilling to `min_idle`, leak detection).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connector::Connector;
use crate::event::PoolEvent;
use crate::pool::Shared;
use crate::state::{SharedError, Slot};

/// First wait after a failed connect; doubles up to [`RETRY_MAX`].
const RETRY_START: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Opens one connection (the caller already counted it in `connecting`).
pub(crate) async fn connect<C: Connector>(shared: Arc<Shared<C>>) {
    let result = tokio::select! {
        r = shared.connector.connect() => Some(r),
        _ = shared.cancel.cancelled() => None,
    };
    match result {
        None => {
            shared.state.lock().connecting -= 1;
            shared.returned.notify_waiters();
        }
        Some(Ok(conn)) => {
            shared.counters.created.fetch_add(1, Relaxed);
            let (slot, recovered) = {
                let mut st = shared.state.lock();
                st.connecting -= 1;
                st.open += 1;
                st.in_use += 1;
                let recovered = st.consecutive_failures > 0;
                st.consecutive_failures = 0;
                st.failing = None;
                let meta = shared.new_meta(&mut st);
                (Slot { conn, meta }, recovered)
            };
            shared.emit(PoolEvent::Connected { id: slot.meta.id });
            if recovered {
                tracing::debug!(pool = %shared.config.name, "connections succeed again");
                shared.emit(PoolEvent::Reconnected);
            }
            shared.put_back(slot);
            shared.spawn_connects();
        }
        Some(Err(e)) => {
            let kind = shared.connector.error_kind(&e);
            let message = e.to_string();
            let tell_waiters = shared.connector.fails_waiters(&e);
            let shared_error: SharedError = std::sync::Arc::new(e);
            shared.counters.connect_failures.fetch_add(1, Relaxed);
            let consecutive = {
                let mut st = shared.state.lock();
                st.consecutive_failures += 1;
                st.failing = Some(message.clone());
                st.record_error(kind, message.clone());
                if tell_waiters && st.open == 0 {
                    st.fail_waiters(kind, &shared_error);
                }
                st.consecutive_failures
            };
            // Outages are reported once by the resilience layer; per-attempt detail is debug.
            tracing::debug!(pool = %shared.config.name, kind, error = %message, consecutive, "cannot open a connection");
            shared.emit(PoolEvent::ConnectFailed {
                error: message,
                kind,
                consecutive,
            });
            let backoff = RETRY_START
                .saturating_mul(1 << consecutive.min(10).saturating_sub(1))
                .min(RETRY_MAX)
                .mul_f64(0.75 + rand::random::<f64>() * 0.5);
            // Keep the connect slot reserved while backing off, so a failing upstream is not
            // stampeded by parallel attempts.
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shared.cancel.cancelled() => {}
            }
            shared.state.lock().connecting -= 1;
            shared.returned.notify_waiters();
            if !shared.cancel.is_cancelled() {
                shared.spawn_connects();
            }
        }
    }
}

/// The maintenance loop; ends when the pool is closed or dropped.
pub(crate) async fn maintenance<C: Connector>(pool: Weak<Shared<C>>, cancel: CancellationToken) {
    let interval = match pool.upgrade() {
        Some(shared) => shared.config.maintenance_interval,
        None => return,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return,
        }
        let Some(shared) = pool.upgrade() else { return };
        run_once(&shared).await;
    }
}

async fn run_once<C: Connector>(shared: &Arc<Shared<C>>) {
    let now = Instant::now();
    let config = &shared.config;
    let mut reap = Vec::new();
    let mut ping = Vec::new();
    let mut leaks = Vec::new();
    {
        let mut st = shared.state.lock();
        if st.closed {
            return;
        }
        if let Some(threshold) = config.leak_threshold {
            for (id, co) in st.checkouts.iter_mut() {
                let held = now.saturating_duration_since(co.acquired_at);
                if !co.reported && held > threshold {
                    co.reported = true;
                    leaks.push((*id, held, co.location));
                }
            }
        }
        // Oldest-returned first: the front of the idle list.
        let mut kept = std::collections::VecDeque::with_capacity(st.idle.len());
        let mut open = st.open;
        while let Some(slot) = st.idle.pop_front() {
            let expired = slot.meta.expires_at.is_some_and(|at| now >= at);
            let idle_for = now.saturating_duration_since(slot.meta.idle_since);
            let too_idle =
                config.idle_timeout.is_some_and(|t| idle_for > t) && open > config.min_idle;
            if expired || too_idle {
                open -= 1;
                reap.push((slot, if expired { "lifetime" } else { "idle" }));
                continue;
            }
            let quiet = now.saturating_duration_since(slot.meta.last_checked);
            let due = config.keepalive_interval.is_some_and(|k| {
                // Jitter drawn per connection so pings spread out.
                quiet > k.mul_f64(1.0 - slot.meta.keepalive_jitter)
            });
            if due {
                ping.push(slot);
            } else {
                kept.push_back(slot);
            }
        }
        st.idle = kept;
        st.open = open;
        st.in_use += ping.len();
    }
    for (id, held, location) in leaks {
        shared.counters.leaks.fetch_add(1, Relaxed);
        tracing::warn!(
            pool = %config.name,
            held = ?held,
            location = %location,
            "connection held longer than the leak threshold ({:?}); acquired at {location}",
            config.leak_threshold.unwrap_or_default()
        );
        shared.emit(PoolEvent::LeakDetected { id, held, location });
    }
    for (slot, reason) in reap {
        shared.counters.recycled.fetch_add(1, Relaxed);
        shared.close_slot(slot, reason, true);
    }
    for mut slot in ping {
        match shared.connector.keepalive(&mut slot.conn).await {
            Ok(()) => {
                slot.meta.last_checked = Instant::now();
                // A ping is not a use: `idle_since` stays, so idle reaping still applies.
                shared.put_back_untouched(slot, Instant::now());
            }
            Err(e) => {
                let kind = shared.connector.error_kind(&e);
                shared.report_error(kind, format!("keepalive ping failed: {e}"));
                shared.discard(slot, "ping_failed", false);
            }
        }
    }
    shared.spawn_connects();
}

/// Ends waits that passed their deadline by dropping their senders (the waiting callers then
/// report a timeout). One sleeping task per pool instead of one timer per wait.
pub(crate) async fn reap_waiters<C: Connector>(pool: Weak<Shared<C>>, cancel: CancellationToken) {
    loop {
        let (target, notified) = {
            let Some(shared) = pool.upgrade() else { return };
            let now = Instant::now();
            let mut st = shared.state.lock();
            st.waiters.retain(|w| w.deadline > now && !w.tx.is_closed());
            let target = st.waiters.iter().map(|w| w.deadline).min();
            st.reaper_target = target;
            drop(st);
            // Register interest before sleeping so a notify in between is not lost.
            let shared2 = Arc::clone(&shared);
            (target, async move { shared2.reaper.notified().await })
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = notified => {}
            _ = async {
                match target {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}
