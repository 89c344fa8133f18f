//! The thin tokio driver around [`UpstreamMonitor`].
//!
//! [`Prober::run`] sleeps until the monitor's next probe time (tokio time, so paused
//! time works in tests), runs the injected [`Probe`], feeds the outcome back, and for
//! each transition logs exactly one line and publishes it: the current status on a
//! `watch` channel, transitions on a `broadcast` channel. Client demand wakes it early.
//! It stops when its `CancellationToken` is cancelled; the caller owns the task.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::{broadcast, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::breaker::{Admission, Unavailable};
use crate::failure::Failure;
use crate::monitor::{MonitorConfig, UpstreamMonitor};
use crate::probe::Probe;
use crate::status::{OrphanCleanup, StatusSummary, UpstreamState};
use crate::transition::{Severity, Transition, TransitionEvent};

/// Transitions kept for slow broadcast subscribers before they see `Lagged`.
const TRANSITION_BUFFER: usize = 16;

/// State shared between the running driver and its handles.
#[derive(Debug)]
struct Shared {
    /// The state machine; locked briefly, never across an `.await`.
    monitor: Mutex<UpstreamMonitor>,
    /// Wakes the driver when a probe became due earlier than it planned.
    wake: Notify,
    /// Latest status snapshot, refreshed after every probe.
    status: watch::Sender<StatusSummary>,
    /// One message per transition.
    transitions: broadcast::Sender<Transition>,
}

impl Shared {
    fn monitor(&self) -> MutexGuard<'_, UpstreamMonitor> {
        // The monitor has no invariants a panicking holder could break half-way.
        self.monitor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, transition: Option<Transition>, summary: StatusSummary) {
        if let Some(transition) = transition {
            log_transition(&transition);
            // No subscribers is fine: the log line and the watch still carry it.
            let _ = self.transitions.send(transition);
        }
        self.status.send_replace(summary);
    }

    /// Applies `change` to the monitor at the current tokio time and publishes the outcome.
    fn update(&self, change: impl FnOnce(&mut UpstreamMonitor, Instant) -> Option<Transition>) {
        let now = now();
        let (transition, summary) = {
            let mut monitor = self.monitor();
            let transition = change(&mut monitor, now);
            (transition, monitor.summary(now))
        };
        self.publish(transition, summary);
    }
}

/// The current time on tokio's clock (pausable in tests) as a std `Instant`.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Emits the one log line for a transition, at the level its severity asks for.
fn log_transition(transition: &Transition) {
    let state = transition.to.label();
    let kind = match &transition.event {
        TransitionEvent::Unavailable { failure, .. }
        | TransitionEvent::ConfigurationError { failure, .. }
        | TransitionEvent::ProbingPaused { failure, .. } => failure.kind.label(),
        TransitionEvent::Available { .. } => "none",
    };
    match transition.severity() {
        Severity::Error => tracing::error!(state, kind, "{transition}"),
        Severity::Warn => tracing::warn!(state, kind, "{transition}"),
        Severity::Info => tracing::info!(state, kind, "{transition}"),
    }
}

/// Runs probes for one upstream. Create it, take handles, then spawn [`Prober::run`].
#[derive(Debug)]
pub struct Prober<P> {
    probe: P,
    shared: Arc<Shared>,
}

impl<P: Probe> Prober<P> {
    /// A prober whose first probe is due as soon as it runs.
    pub fn new(probe: P, config: MonitorConfig) -> Prober<P> {
        let now = now();
        let monitor = UpstreamMonitor::new(config, now);
        let (status, _) = watch::channel(monitor.summary(now));
        let (transitions, _) = broadcast::channel(TRANSITION_BUFFER);
        let shared = Arc::new(Shared {
            monitor: Mutex::new(monitor),
            wake: Notify::new(),
            status,
            transitions,
        });
        Prober { probe, shared }
    }

    /// A handle for status, subscriptions and client demand; cheap to clone.
    pub fn handle(&self) -> ProberHandle {
        ProberHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Probes until `cancel` fires. A probe in progress is abandoned on cancellation.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let next = self.shared.monitor().next_probe_at();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.shared.wake.notified() => continue,
                _ = sleep_until(next) => {}
            }
            let uncached = {
                let mut monitor = self.shared.monitor();
                if !monitor.probe_due(now()) {
                    continue;
                }
                monitor.begin_probe(now())
            };
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = self.probe(uncached) => outcome,
            };
            self.shared.update(|monitor, now| match outcome {
                Ok(()) => monitor.on_probe_success(now),
                Err(failure) => monitor.on_probe_failure(now, failure),
            });
        }
    }
}

impl<P: Probe> Prober<P> {
    async fn probe(&self, uncached: bool) -> Result<(), crate::Failure> {
        if uncached {
            self.probe.probe_uncached().await
        } else {
            self.probe.probe().await
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing scheduled.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Access to a running [`Prober`]: status, transitions, and the levers.
#[derive(Debug, Clone)]
pub struct ProberHandle {
    shared: Arc<Shared>,
}

impl ProberHandle {
    /// The status, updated after every probe.
    pub fn status(&self) -> watch::Receiver<StatusSummary> {
        self.shared.status.subscribe()
    }

    /// Transitions from now on, one message per state change.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.shared.transitions.subscribe()
    }

    /// A fresh snapshot.
    pub fn summary(&self) -> StatusSummary {
        self.shared.monitor().summary(now())
    }

    /// The current state.
    pub fn state(&self) -> UpstreamState {
        self.shared.monitor().state()
    }

    /// True within the success cache of the last success.
    pub fn cached_available(&self) -> bool {
        self.shared.monitor().cached_available(now())
    }

    /// A client wants the upstream: resumes paused probing (development) right away, and while
    /// the upstream is suspect probes within half a second.
    pub fn client_demand(&self) {
        if self.shared.monitor().on_client_demand(now()) {
            self.shared.wake.notify_one();
        }
    }

    /// Probe now, keeping the backoff position; the probe bypasses its caches
    /// ([`Probe::probe_uncached`]).
    pub fn force_check(&self) {
        self.shared.monitor().force_check(now());
        self.shared.wake.notify_one();
    }

    /// Forget failures and probe now, bypassing caches like [`ProberHandle::force_check`].
    pub fn reset(&self) {
        self.shared.monitor().reset(now());
        self.shared.wake.notify_one();
    }

    /// Asks the breaker whether a client attempt may go ahead.
    pub fn admit(&self) -> Result<Admission, Unavailable> {
        self.shared.monitor().admit(now())
    }

    /// Reports a successful client attempt (may publish a recovery).
    pub fn report_client_success(&self) {
        self.shared
            .update(|monitor, now| monitor.on_client_success(now));
    }

    /// Reports a failed client attempt to the breaker; brings a probe forward to confirm it
    /// (see [`UpstreamMonitor::on_client_failure`]).
    pub fn report_client_failure(&self, failure: &Failure) {
        let due = self.shared.monitor().on_client_failure(now(), failure);
        if due {
            self.shared.wake.notify_one();
        }
    }

    /// Records the latest orphan cleanup for [`StatusSummary::last_orphan_cleanup`] and
    /// publishes the refreshed status.
    pub fn report_orphan_cleanup(&self, cleanup: OrphanCleanup) {
        self.shared.update(|monitor, _| {
            monitor.on_orphan_cleanup(cleanup);
            None
        });
    }

    /// Whether a client attempt would be admitted now, without taking the breaker's half-open
    /// trial; for deciding whether to wait for a new connection at all.
    pub fn would_admit(&self) -> Result<(), Unavailable> {
        self.shared.monitor().peek_admit(now())
    }
}
