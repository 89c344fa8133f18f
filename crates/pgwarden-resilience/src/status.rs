//! What the monitor knows about the upstream: its state and a status snapshot.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use crate::breaker::BreakerState;
use crate::failure::{Failure, FailureKind};

/// Whether the upstream database is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamState {
    /// No probe has finished yet.
    Unknown,
    /// The last probe (or client attempt) succeeded.
    Available,
    /// The last probe failed for `reason`.
    Unavailable {
        /// Why; a change of kind is reported as a transition, a repeat is not.
        reason: FailureKind,
    },
}

impl UpstreamState {
    /// A bounded label for metrics: `unknown`, `available`, `unavailable`.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamState::Unknown => "unknown",
            UpstreamState::Available => "available",
            UpstreamState::Unavailable { .. } => "unavailable",
        }
    }
}

impl fmt::Display for UpstreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamState::Unavailable { reason } => write!(f, "unavailable ({reason})"),
            other => f.write_str(other.label()),
        }
    }
}

/// How persistent the monitor is while the upstream is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Environment {
    /// A laptop: after a few failures assume there is no database on purpose and pause
    /// background probing until a client asks.
    Development,
    /// A server: keep probing forever on the backoff schedule.
    #[default]
    Production,
}

impl Environment {
    /// A bounded label: `development`, `production`.
    pub fn label(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Production => "production",
        }
    }
}

/// What the latest orphan cleanup found and did (see [`crate::select_orphans`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanCleanup {
    /// Backends of other (dead) instances idle past the threshold.
    pub found: usize,
    /// Of those, terminated.
    pub terminated: usize,
    /// Of those, not terminated for lack of privilege (`pg_signal_backend`).
    pub denied: usize,
    /// When the cleanup finished (wall clock, for people).
    pub at: SystemTime,
}

/// A snapshot of the monitor for status pages and logs (`ProberHandle::summary`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSummary {
    /// Current state.
    pub state: UpstreamState,
    /// Failed probes since the last success (or `reset`).
    pub consecutive_failures: u32,
    /// The wait chosen after the last failure; `None` while healthy.
    pub current_retry_delay: Option<Duration>,
    /// Time until the next background probe; `None` when paused.
    pub next_probe_in: Option<Duration>,
    /// Whether a background probe is scheduled at all (false while paused in development).
    pub will_retry: bool,
    /// Development or production behaviour.
    pub environment: Environment,
    /// State of the circuit breaker guarding client attempts.
    pub breaker: BreakerState,
    /// The most recent failure, kept after recovery for the status page.
    pub last_error: Option<Failure>,
    /// When the state last changed; `None` while still `Unknown`.
    pub changed_at: Option<Instant>,
    /// The latest orphan cleanup; `None` until one ran (and reported itself).
    pub last_orphan_cleanup: Option<OrphanCleanup>,
}
