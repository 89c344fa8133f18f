//! [`PoolEvent`]: lifecycle events for subscribers (logs, metrics, tests).

use std::panic::Location;
use std::time::Duration;

/// Something that happened in a pool.
#[derive(Debug, Clone)]
pub enum PoolEvent {
    /// A connection was opened.
    Connected {
        /// Its id.
        id: u64,
    },
    /// A connection was closed.
    Disconnected {
        /// Its id.
        id: u64,
        /// Why: `broken`, `recycled`, `idle`, `lifetime`, `max_uses`, `ping_failed`,
        /// `reset_failed`, `cancelled` (the caller gave up during its checkout ping), `closed`,
        /// `retained`.
        reason: &'static str,
    },
    /// The first successful connect after one or more failures.
    Reconnected,
    /// A connect attempt failed.
    ConnectFailed {
        /// The error.
        error: String,
        /// The connector's label for it.
        kind: &'static str,
        /// Failures in a row so far.
        consecutive: u32,
    },
    /// A checkout has been held longer than the leak threshold.
    LeakDetected {
        /// The connection's id.
        id: u64,
        /// How long it has been held.
        held: Duration,
        /// Where it was checked out.
        location: &'static Location<'static>,
    },
    /// Another error (ping, reset).
    Error {
        /// What happened.
        message: String,
    },
}
