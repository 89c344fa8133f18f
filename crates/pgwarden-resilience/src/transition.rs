//! A change of upstream state: the one event (and the one log line) per change.

use std::fmt;
use std::time::{Duration, Instant};

use crate::duration_text::DurationText;
use crate::failure::Failure;
use crate::status::{Environment, UpstreamState};

/// How loudly a transition should be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// A state change nobody needs to act on: the first success after start; in development
    /// also recovery and pausing.
    Info,
    /// Degraded (the upstream is away) or, in production, back from being degraded.
    Warn,
    /// A human must act: the settings are wrong.
    Error,
}

/// What happened, with the data a subscriber needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionEvent {
    /// The upstream became unavailable, or the kind of failure changed.
    Unavailable {
        /// The failure that caused it.
        failure: Failure,
        /// Wait before the next probe.
        retry_in: Duration,
    },
    /// The upstream rejects our settings (authentication, missing database); retried slowly.
    ConfigurationError {
        /// The failure that caused it.
        failure: Failure,
        /// Wait before the next probe (the schedule's cap).
        retry_in: Duration,
    },
    /// Development mode gave up probing in the background.
    ProbingPaused {
        /// The latest failure.
        failure: Failure,
        /// Failed probes so far.
        consecutive_failures: u32,
    },
    /// The upstream answered again.
    Available {
        /// How long it was unavailable; `None` on the first success after start.
        outage: Option<Duration>,
    },
}

/// One state change, produced by [`crate::UpstreamMonitor`] at most once per change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// When the change was observed.
    pub at: Instant,
    /// State before.
    pub from: UpstreamState,
    /// State after.
    pub to: UpstreamState,
    /// What happened.
    pub event: TransitionEvent,
    /// The monitor's environment, which decides how loudly a recovery is logged.
    pub environment: Environment,
}

impl Transition {
    /// The log level: error for configuration problems (a human must act), warn for becoming
    /// unavailable and, in production, for every recovery too (an operator watching warnings
    /// sees an outage end as well as begin); info for the first success after start, and in
    /// development for recovery and for pausing.
    pub fn severity(&self) -> Severity {
        match self.event {
            TransitionEvent::ConfigurationError { .. } => Severity::Error,
            TransitionEvent::Unavailable { .. } => Severity::Warn,
            TransitionEvent::Available { outage: Some(_) }
                if self.environment == Environment::Production =>
            {
                Severity::Warn
            }
            TransitionEvent::ProbingPaused { .. } | TransitionEvent::Available { .. } => {
                Severity::Info
            }
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.event {
            TransitionEvent::Unavailable { failure, retry_in } => match self.from {
                UpstreamState::Unavailable { reason } => write!(
                    f,
                    "upstream still unavailable, now {failure} (was: {reason}); next try in {}",
                    DurationText(*retry_in)
                ),
                _ => write!(
                    f,
                    "upstream unavailable: {failure}; next try in {}",
                    DurationText(*retry_in)
                ),
            },
            TransitionEvent::ConfigurationError { failure, retry_in } => write!(
                f,
                "upstream rejects the configured settings: {failure}; fix the configuration \
                 (retrying every {})",
                DurationText(*retry_in)
            ),
            TransitionEvent::ProbingPaused {
                failure,
                consecutive_failures,
            } => write!(
                f,
                "upstream unavailable after {consecutive_failures} attempts ({failure}); \
                 assuming a local setup without a database; background probing paused until \
                 a client asks or reset()"
            ),
            TransitionEvent::Available {
                outage: Some(outage),
            } => {
                write!(
                    f,
                    "upstream available again after {} outage",
                    DurationText(*outage)
                )
            }
            TransitionEvent::Available { outage: None } => f.write_str("upstream available"),
        }
    }
}
