//! Circuit breaker: fail fast while the upstream is known to be down.
//!
//! Closed -> Open after `failure_threshold` consecutive failures. Open -> HalfOpen
//! once the backoff delay since opening has elapsed; in HalfOpen exactly one caller
//! gets a [`Admission::Trial`]. The trial's success closes the breaker (and resets
//! the schedule); its failure reopens it with the next, longer delay.
//!
//! Pure: every method takes `now`; nothing sleeps.

use std::time::{Duration, Instant};

use crate::duration_text::DurationText;
use crate::failure::Failure;
use crate::schedule::{RetryConfig, RetrySchedule};

/// Settings of a [`CircuitBreaker`].
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Default 5; 0 is treated as 1.
    pub failure_threshold: u32,
    /// How long to stay open, growing with each failed trial. Default: 10 s doubling to 600 s.
    pub retry: RetryConfig,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            retry: RetryConfig::default(),
        }
    }
}

/// The breaker's externally visible state (for status pages and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls fail fast until the retry time.
    Open,
    /// One trial call is allowed (or in flight); others fail fast.
    HalfOpen,
}

impl BreakerState {
    /// A bounded label for metrics: `closed`, `open`, `half_open`.
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What a caller may do right now, from [`CircuitBreaker::allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; report the outcome.
    Allowed,
    /// Go ahead as the single half-open trial; the outcome decides Closed or Open again.
    Trial,
    /// Fail fast.
    Rejected {
        /// When the breaker first opened in this outage.
        since: Instant,
        /// When a trial will next be allowed (`now` while a trial is in flight).
        retry_at: Instant,
    },
}

/// The fail-fast error handed to callers while the breaker is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "upstream unavailable since {} ago ({reason}), next try in {}",
    DurationText(*.down_for),
    DurationText(*.retry_in)
)]
pub struct Unavailable {
    /// When the breaker first opened in this outage.
    pub since: Instant,
    /// How long the outage has lasted at the time of the check.
    pub down_for: Duration,
    /// How long until a trial is allowed.
    pub retry_in: Duration,
    /// The most recent failure.
    pub reason: Failure,
}

#[derive(Debug, Clone)]
enum Phase {
    Closed { consecutive: u32 },
    Open { since: Instant, retry_at: Instant },
    HalfOpen { since: Instant, trial_taken: bool },
}

/// A consecutive-failure circuit breaker with exponential reopen delays.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    schedule: RetrySchedule,
    phase: Phase,
    last_failure: Option<Failure>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker {
            threshold: config.failure_threshold.max(1),
            schedule: RetrySchedule::new(config.retry),
            phase: Phase::Closed { consecutive: 0 },
            last_failure: None,
        }
    }

    /// The current state (does not advance Open -> HalfOpen; [`CircuitBreaker::allow`] does).
    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// When the open breaker will allow a trial; `None` unless open.
    pub fn retry_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { retry_at, .. } => Some(retry_at),
            _ => None,
        }
    }

    /// The most recent failure reported, cleared by a success.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    /// Call before each attempt at the upstream.
    pub fn allow(&mut self, now: Instant) -> Admission {
        match self.phase {
            Phase::Closed { .. } => Admission::Allowed,
            Phase::Open { since, retry_at } if now >= retry_at => {
                self.phase = Phase::HalfOpen {
                    since,
                    trial_taken: true,
                };
                Admission::Trial
            }
            Phase::Open { since, retry_at } => Admission::Rejected { since, retry_at },
            Phase::HalfOpen {
                since,
                trial_taken: false,
            } => {
                self.phase = Phase::HalfOpen {
                    since,
                    trial_taken: true,
                };
                Admission::Trial
            }
            Phase::HalfOpen {
                since,
                trial_taken: true,
            } => Admission::Rejected {
                since,
                retry_at: now,
            },
        }
    }

    /// Whether an attempt would be admitted now, without taking the half-open trial: for
    /// callers deciding whether to wait for a connection at all.
    pub fn peek(&self, now: Instant) -> Result<(), Unavailable> {
        let rejected = |since: Instant, retry_at: Instant| Unavailable {
            since,
            down_for: now.saturating_duration_since(since),
            retry_in: retry_at.saturating_duration_since(now),
            reason: self
                .last_failure
                .clone()
                .unwrap_or_else(|| Failure::new(crate::FailureKind::Other, "no failure recorded")),
        };
        match self.phase {
            Phase::Closed { .. } => Ok(()),
            Phase::Open { retry_at, .. } if now >= retry_at => Ok(()),
            Phase::Open { since, retry_at } => Err(rejected(since, retry_at)),
            Phase::HalfOpen {
                trial_taken: false, ..
            } => Ok(()),
            Phase::HalfOpen { since, .. } => Err(rejected(since, now)),
        }
    }

    /// Like [`CircuitBreaker::allow`], but a rejection comes back as the error to hand to the caller.
    pub fn check(&mut self, now: Instant) -> Result<Admission, Unavailable> {
        match self.allow(now) {
            Admission::Rejected { since, retry_at } => Err(Unavailable {
                since,
                down_for: now.saturating_duration_since(since),
                retry_in: retry_at.saturating_duration_since(now),
                reason: self.last_failure.clone().unwrap_or_else(|| {
                    Failure::new(crate::FailureKind::Other, "no failure recorded")
                }),
            }),
            admitted => Ok(admitted),
        }
    }

    /// Call after an attempt succeeded: closes the breaker and resets the schedule.
    pub fn on_success(&mut self, _now: Instant) {
        self.reset();
    }

    /// Call after an attempt failed.
    pub fn on_failure(&mut self, now: Instant, failure: &Failure) {
        self.last_failure = Some(failure.clone());
        match self.phase {
            Phase::Closed { consecutive } => {
                let consecutive = consecutive.saturating_add(1);
                self.phase = if consecutive >= self.threshold {
                    Phase::Open {
                        since: now,
                        retry_at: now + self.schedule.next_delay(),
                    }
                } else {
                    Phase::Closed { consecutive }
                };
            }
            Phase::HalfOpen { since, .. } => {
                self.phase = Phase::Open {
                    since,
                    retry_at: now + self.schedule.next_delay(),
                };
            }
            // A late report from an attempt admitted before opening: keep the timing.
            Phase::Open { .. } => {}
        }
    }

    /// Forget all failures: closed, schedule reset.
    pub fn reset(&mut self) {
        self.phase = Phase::Closed { consecutive: 0 };
        self.schedule.reset();
        self.last_failure = None;
    }
}

#[cfg(test)]
mod tests;
