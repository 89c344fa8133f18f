//! Start-up policy: how long to wait for the upstream before starting (or giving up).
//!
//! A few quick attempts (default 5, 1 s doubling up to 30 s). When they all fail,
//! `require_upstream` decides between refusing to start and starting degraded
//! (the monitor then keeps probing). A configuration problem ends the attempts at
//! once: waiting does not fix a wrong password.

use std::time::Instant;

use crate::failure::Failure;
use crate::schedule::{RetryConfig, RetrySchedule};

/// Settings for the start-up attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct StartupPolicy {
    /// Attempts before deciding. Default 5; 0 is treated as 1.
    pub attempts: u32,
    /// Wait between attempts. Default 1 s doubling to 30 s, ±10 % jitter.
    pub retry: RetryConfig,
    /// Refuse to start without the upstream (true) or start degraded (false). Default false.
    pub require_upstream: bool,
}

impl Default for StartupPolicy {
    fn default() -> StartupPolicy {
        StartupPolicy {
            attempts: 5,
            retry: RetryConfig::startup(),
            require_upstream: false,
        }
    }
}

impl StartupPolicy {
    /// Begins a start-up sequence; make the first attempt right away.
    pub fn begin(&self) -> StartupAttempts {
        StartupAttempts {
            max_attempts: self.attempts.max(1),
            require_upstream: self.require_upstream,
            schedule: RetrySchedule::new(self.retry.clone()),
            made: 0,
        }
    }
}

/// What to do after a start-up attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupDecision {
    /// The upstream answered: start normally.
    Ready,
    /// Try again at this instant.
    RetryAt(Instant),
    /// Start without the upstream; background probing takes over.
    StartDegraded {
        /// The last failure, to log once.
        failure: Failure,
    },
    /// Do not start (`require_upstream = true`).
    GiveUp {
        /// The last failure, for the exit message.
        failure: Failure,
    },
}

/// One start-up sequence in progress.
#[derive(Debug, Clone)]
pub struct StartupAttempts {
    max_attempts: u32,
    require_upstream: bool,
    schedule: RetrySchedule,
    made: u32,
}

impl StartupAttempts {
    /// Attempts reported so far.
    pub fn attempts_made(&self) -> u32 {
        self.made
    }

    /// Call after a successful attempt.
    pub fn on_success(&mut self, _now: Instant) -> StartupDecision {
        self.made = self.made.saturating_add(1);
        StartupDecision::Ready
    }

    /// Call after a failed attempt.
    pub fn on_failure(&mut self, now: Instant, failure: Failure) -> StartupDecision {
        self.made = self.made.saturating_add(1);
        let exhausted = self.made >= self.max_attempts || failure.kind.is_configuration_problem();
        if !exhausted {
            StartupDecision::RetryAt(now + self.schedule.next_delay())
        } else if self.require_upstream {
            StartupDecision::GiveUp { failure }
        } else {
            StartupDecision::StartDegraded { failure }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::FailureKind;

    fn policy(require_upstream: bool) -> StartupPolicy {
        StartupPolicy {
            retry: RetryConfig::startup().without_jitter(),
            require_upstream,
            ..StartupPolicy::default()
        }
    }

    fn refused() -> Failure {
        Failure::new(FailureKind::Refused, "connection refused")
    }

    #[test]
    fn five_attempts_one_second_doubling_then_give_up() {
        let mut now = Instant::now();
        let mut attempts = policy(true).begin();
        let mut waits = Vec::new();
        let decision = loop {
            match attempts.on_failure(now, refused()) {
                StartupDecision::RetryAt(at) => {
                    waits.push(at - now);
                    now = at;
                }
                other => break other,
            }
        };
        let expected: Vec<_> = [1, 2, 4, 8].into_iter().map(Duration::from_secs).collect();
        assert_eq!(waits, expected);
        assert_eq!(attempts.attempts_made(), 5);
        assert_eq!(decision, StartupDecision::GiveUp { failure: refused() });
    }

    #[test]
    fn without_require_upstream_start_degraded() {
        let now = Instant::now();
        let mut attempts = StartupPolicy {
            attempts: 1,
            ..policy(false)
        }
        .begin();
        assert_eq!(
            attempts.on_failure(now, refused()),
            StartupDecision::StartDegraded { failure: refused() }
        );
    }

    #[test]
    fn success_is_ready_and_configuration_problem_ends_at_once() {
        let now = Instant::now();
        let mut attempts = policy(true).begin();
        assert!(matches!(
            attempts.on_failure(now, refused()),
            StartupDecision::RetryAt(_)
        ));
        assert_eq!(attempts.on_success(now), StartupDecision::Ready);

        let mut attempts = policy(true).begin();
        let missing = Failure::from_sqlstate("3D000", "database \"app\" does not exist");
        assert!(matches!(
            attempts.on_failure(now, missing),
            StartupDecision::GiveUp { .. }
        ));
    }
}
