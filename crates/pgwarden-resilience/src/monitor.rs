//! The upstream status state machine: Unknown / Available / Unavailable.
//!
//! Fed probe outcomes and client demand with `now`, it answers with at most one
//! [`Transition`] per state change and says when to probe next
//! ([`UpstreamMonitor::next_probe_at`]). It never sleeps and never logs; the
//! [`crate::Prober`] driver does both.
//!
//! Cadence: every `health_interval` while healthy; on the backoff schedule while
//! unavailable (forever in production); at the schedule's cap for configuration
//! problems; not at all in development after `dev_pause_after` failures, until a
//! client asks or [`UpstreamMonitor::reset`] is called. A failed client attempt brings the
//! next probe forward even while the upstream looks healthy (passive detection), at most one
//! probe in flight and not while a success is still cached.

use std::time::{Duration, Instant};

use crate::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker, Unavailable};
use crate::failure::Failure;
use crate::schedule::{RetryConfig, RetrySchedule};
use crate::status::{Environment, OrphanCleanup, StatusSummary, UpstreamState};
use crate::transition::{Transition, TransitionEvent};

/// Settings of an [`UpstreamMonitor`].
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    /// Development pauses after a few failures; production probes forever. Default production.
    pub environment: Environment,
    /// Probe cadence while healthy. Default 10 s.
    pub health_interval: Duration,
    /// How long a success is trusted without a new probe ([`UpstreamMonitor::cached_available`]).
    /// Default 5 s.
    pub success_cache: Duration,
    /// Development only: consecutive failures before background probing pauses. Default 5.
    pub dev_pause_after: u32,
    /// Probe backoff while unavailable. Default 10 s doubling to 600 s, ±10 % jitter.
    pub retry: RetryConfig,
    /// The breaker guarding client attempts. Default: opens after 5 failures.
    pub breaker: BreakerConfig,
}

impl Default for MonitorConfig {
    fn default() -> MonitorConfig {
        MonitorConfig {
            environment: Environment::Production,
            health_interval: Duration::from_secs(10),
            success_cache: Duration::from_secs(5),
            dev_pause_after: 5,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Tracks whether the upstream is there and when to look again.
#[derive(Debug, Clone)]
pub struct UpstreamMonitor {
    config: MonitorConfig,
    state: UpstreamState,
    /// When `state` last changed.
    changed_at: Option<Instant>,
    /// When the current outage began (first failure after a success or start).
    outage_since: Option<Instant>,
    schedule: RetrySchedule,
    breaker: CircuitBreaker,
    consecutive_failures: u32,
    /// The wait chosen after the last failure; cleared by success.
    retry_delay: Option<Duration>,
    last_error: Option<Failure>,
    last_success: Option<Instant>,
    next_probe_at: Option<Instant>,
    /// Development: background probing stopped.
    paused: bool,
    /// Development: the pause was announced; later pauses in the same outage are silent.
    pause_announced: bool,
    /// When the last probe finished, to rate-limit probes asked for by client demand.
    last_probe_at: Option<Instant>,
    /// A probe has started and not finished ([`UpstreamMonitor::begin_probe`]).
    probe_in_flight: bool,
    /// The next probe must not rely on cached results (after `force_check` or `reset`).
    uncached_probe: bool,
    /// The last orphan cleanup, as reported by the caller that ran it.
    last_orphan_cleanup: Option<OrphanCleanup>,
}

/// While unavailable, client demand triggers a probe at most this often, so a returning
/// database is noticed within half a second whatever the backoff delay. Recovery takes this
/// plus a probe, a connect and the query: at 1 s it could miss a one-second recovery goal
/// when the previous probe ran just before the server came back.
pub const DEMAND_PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl UpstreamMonitor {
    /// A monitor in state `Unknown` whose first probe is due at `now`.
    pub fn new(config: MonitorConfig, now: Instant) -> UpstreamMonitor {
        UpstreamMonitor {
            schedule: RetrySchedule::new(config.retry.clone()),
            breaker: CircuitBreaker::new(config.breaker.clone()),
            config,
            state: UpstreamState::Unknown,
            changed_at: None,
            outage_since: None,
            consecutive_failures: 0,
            retry_delay: None,
            last_error: None,
            last_success: None,
            next_probe_at: Some(now),
            paused: false,
            pause_announced: false,
            last_probe_at: None,
            probe_in_flight: false,
            uncached_probe: false,
            last_orphan_cleanup: None,
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> UpstreamState {
        self.state
    }

    /// When the next background probe is due; `None` while paused (development).
    pub fn next_probe_at(&self) -> Option<Instant> {
        self.next_probe_at
    }

    /// True if a background probe is due at `now`.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.next_probe_at.is_some_and(|at| at <= now)
    }

    /// True within `success_cache` of the last success while available: callers may skip a check.
    pub fn cached_available(&self, now: Instant) -> bool {
        self.state == UpstreamState::Available
            && self
                .last_success
                .is_some_and(|at| now.saturating_duration_since(at) < self.config.success_cache)
    }

    /// Call when a probe starts. Returns true when it must not rely on anything cached (a
    /// remembered login, say): the first probe after [`UpstreamMonitor::force_check`] or
    /// [`UpstreamMonitor::reset`]. Until its outcome is reported, client failures do not
    /// schedule another probe.
    pub fn begin_probe(&mut self, _now: Instant) -> bool {
        self.probe_in_flight = true;
        std::mem::take(&mut self.uncached_probe)
    }

    /// Call when a probe (or any attempt that proves the upstream is there) succeeded.
    pub fn on_probe_success(&mut self, now: Instant) -> Option<Transition> {
        self.probe_in_flight = false;
        self.last_probe_at = Some(now);
        self.breaker.on_success(now);
        self.schedule.reset();
        self.consecutive_failures = 0;
        self.retry_delay = None;
        self.last_success = Some(now);
        self.paused = false;
        self.pause_announced = false;
        self.next_probe_at = Some(now + self.config.health_interval);
        let outage = self
            .outage_since
            .take()
            .map(|since| now.saturating_duration_since(since));
        self.change_state(
            now,
            UpstreamState::Available,
            TransitionEvent::Available { outage },
        )
    }

    /// Call when a probe failed. Returns a transition only if the state or the failure kind changed,
    /// or when development mode pauses probing for the first time in this outage.
    pub fn on_probe_failure(&mut self, now: Instant, failure: Failure) -> Option<Transition> {
        // The probe acts as the breaker's trial when one is due.
        self.probe_in_flight = false;
        self.last_probe_at = Some(now);
        let _ = self.breaker.allow(now);
        self.breaker.on_failure(now, &failure);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.outage_since.get_or_insert(now);
        let configuration = failure.kind.is_configuration_problem();
        let delay = if configuration {
            self.config.retry.cap
        } else {
            self.schedule.next_delay()
        };
        self.retry_delay = Some(delay);
        self.next_probe_at = Some(now + delay);
        self.last_error = Some(failure.clone());

        let to = UpstreamState::Unavailable {
            reason: failure.kind,
        };
        let pause = self.config.environment == Environment::Development
            && self.consecutive_failures >= self.config.dev_pause_after.max(1);
        if pause {
            self.paused = true;
            self.next_probe_at = None;
            if !self.pause_announced {
                self.pause_announced = true;
                let consecutive_failures = self.consecutive_failures;
                let event = TransitionEvent::ProbingPaused {
                    failure,
                    consecutive_failures,
                };
                return Some(self.force_transition(now, to, event));
            }
        }
        let event = if configuration {
            TransitionEvent::ConfigurationError {
                failure,
                retry_in: delay,
            }
        } else {
            TransitionEvent::Unavailable {
                failure,
                retry_in: delay,
            }
        };
        self.change_state(now, to, event)
    }

    /// Call when a client wants the upstream. Resumes paused probing (a probe becomes due now).
    /// While the upstream is suspect (unavailable, or the breaker not closed), brings the next
    /// probe forward to now, or to [`DEMAND_PROBE_INTERVAL`] after the last probe, so a
    /// returning database is noticed within half a second whatever the backoff delay
    /// (configuration problems excepted: those wait for their slow schedule). Returns true when
    /// the schedule changed or a probe is due: the driver should wake.
    pub fn on_client_demand(&mut self, now: Instant) -> bool {
        let mut changed = false;
        if self.paused {
            self.paused = false;
            self.next_probe_at = Some(now);
            changed = true;
        }
        changed |= self.bring_probe_forward(now);
        changed || self.probe_due(now)
    }

    /// True while the upstream is unavailable or unknown, or the breaker is not closed.
    fn suspect(&self) -> bool {
        !matches!(self.state, UpstreamState::Available)
            || self.breaker.state() != BreakerState::Closed
    }

    /// The earliest a probe asked for by clients may run: now, but not within
    /// [`DEMAND_PROBE_INTERVAL`] of the previous probe.
    fn earliest_demand_probe(&self, now: Instant) -> Instant {
        self.last_probe_at
            .map_or(now, |at| (at + DEMAND_PROBE_INTERVAL).max(now))
    }

    /// See [`UpstreamMonitor::on_client_demand`].
    fn bring_probe_forward(&mut self, now: Instant) -> bool {
        let configuration = matches!(self.state, UpstreamState::Unavailable { reason } if reason.is_configuration_problem());
        if !self.suspect() || configuration || self.paused {
            return false;
        }
        let earliest = self.earliest_demand_probe(now);
        self.move_next_probe_to(earliest)
    }

    /// A client attempt failed while the upstream looked healthy: probe as soon as the last
    /// success is no longer cached (and not within [`DEMAND_PROBE_INTERVAL`] of the previous
    /// probe), unless a probe is already running.
    fn confirm_failure_soon(&mut self, now: Instant) -> bool {
        if self.probe_in_flight || self.paused {
            return false;
        }
        let cache_ends = self
            .last_success
            .map_or(now, |at| at + self.config.success_cache);
        let earliest = self.earliest_demand_probe(now).max(cache_ends);
        self.move_next_probe_to(earliest)
    }

    /// Moves the next probe earlier, to `earliest`; never later. True if it moved.
    fn move_next_probe_to(&mut self, earliest: Instant) -> bool {
        match self.next_probe_at {
            Some(at) if at > earliest => {
                self.next_probe_at = Some(earliest);
                true
            }
            _ => false,
        }
    }

    /// Asks the breaker whether a client attempt may go ahead; while it is open the error says
    /// since when, why, and when the next try is.
    pub fn admit(&mut self, now: Instant) -> Result<Admission, Unavailable> {
        self.breaker.check(now)
    }

    /// Reports a client attempt's success: the upstream is evidently there.
    pub fn on_client_success(&mut self, now: Instant) -> Option<Transition> {
        // A probe running meanwhile is still running.
        let in_flight = self.probe_in_flight;
        let transition = self.on_probe_success(now);
        self.probe_in_flight = in_flight;
        transition
    }

    /// Reports a client attempt's failure to the breaker, and brings the next probe forward
    /// (passive detection). While the upstream is suspect, as for client demand; while it looks
    /// healthy, to when the last success stops being cached ([`MonitorConfig::success_cache`]),
    /// so a crash is noticed within seconds instead of at the next `health_interval` tick or
    /// after `failure_threshold` failures. At most one probe per [`DEMAND_PROBE_INTERVAL`], none
    /// while one is in flight. No transition is produced here: the probe stays the authority on
    /// state. Returns true when the schedule moved or a probe is due: the driver should wake.
    pub fn on_client_failure(&mut self, now: Instant, failure: &Failure) -> bool {
        self.breaker.on_failure(now, failure);
        let moved = if self.suspect() {
            self.bring_probe_forward(now)
        } else {
            self.confirm_failure_soon(now)
        };
        moved || self.probe_due(now)
    }

    /// Whether the breaker would admit a client attempt now, without taking its half-open
    /// trial (see [`CircuitBreaker::peek`]).
    pub fn peek_admit(&self, now: Instant) -> Result<(), Unavailable> {
        self.breaker.peek(now)
    }

    /// Probe now, keeping the failure count and backoff position. The probe bypasses caches
    /// (see [`UpstreamMonitor::begin_probe`]) and the last success is no longer trusted
    /// ([`UpstreamMonitor::cached_available`] is false until a probe succeeds).
    pub fn force_check(&mut self, now: Instant) {
        self.paused = false;
        self.uncached_probe = true;
        self.last_success = None;
        self.next_probe_at = Some(now);
    }

    /// Forget failures (count, backoff, breaker, pause) and probe now, bypassing caches like
    /// [`UpstreamMonitor::force_check`]. The state is kept, so a recovery still reports the
    /// outage length.
    pub fn reset(&mut self, now: Instant) {
        self.uncached_probe = true;
        self.last_success = None;
        self.schedule.reset();
        self.breaker.reset();
        self.consecutive_failures = 0;
        self.retry_delay = None;
        self.paused = false;
        self.pause_announced = false;
        self.next_probe_at = Some(now);
    }

    /// Records what the latest orphan cleanup found and did, for [`StatusSummary`].
    pub fn on_orphan_cleanup(&mut self, cleanup: OrphanCleanup) {
        self.last_orphan_cleanup = Some(cleanup);
    }

    /// A snapshot for status pages.
    pub fn summary(&self, now: Instant) -> StatusSummary {
        StatusSummary {
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            current_retry_delay: self.retry_delay,
            next_probe_in: self
                .next_probe_at
                .map(|at| at.saturating_duration_since(now)),
            will_retry: self.next_probe_at.is_some(),
            environment: self.config.environment,
            breaker: self.breaker.state(),
            last_error: self.last_error.clone(),
            changed_at: self.changed_at,
            last_orphan_cleanup: self.last_orphan_cleanup.clone(),
        }
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    fn change_state(
        &mut self,
        now: Instant,
        to: UpstreamState,
        event: TransitionEvent,
    ) -> Option<Transition> {
        (self.state != to).then(|| self.force_transition(now, to, event))
    }

    fn force_transition(
        &mut self,
        now: Instant,
        to: UpstreamState,
        event: TransitionEvent,
    ) -> Transition {
        let from = std::mem::replace(&mut self.state, to);
        if from != to {
            self.changed_at = Some(now);
        }
        Transition {
            at: now,
            from,
            to,
            event,
            environment: self.config.environment,
        }
    }
}

#[cfg(test)]
mod tests;
