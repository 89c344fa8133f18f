//! [`PoolError`]: why a checkout failed, with the pool's name, size and the cause.

use std::time::Duration;

/// Why [`crate::Pool::get`] returned no connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    /// No connection became available within the acquire timeout.
    #[error(
        "pool \"{pool}\" (max {max_size}): no connection available after waiting {}{}",
        humanize(*.waited),
        .last_error.as_ref().map(|e| format!("; last connect error: {e}")).unwrap_or_default()
    )]
    Timeout {
        /// The pool's name.
        pool: String,
        /// Its cap.
        max_size: usize,
        /// How long the caller waited.
        waited: Duration,
        /// The most recent connect failure, when connects are failing right now.
        last_error: Option<String>,
    },
    /// The pool is closed (shutting down).
    #[error("pool \"{pool}\" is closed")]
    Closed {
        /// The pool's name.
        pool: String,
    },
    /// A connect failed in a way waiting would not cure, while the pool had no connection
    /// open (the connector's [`fails_waiters`](crate::Connector::fails_waiters) said so: a
    /// wrong password, a missing database, the upstream away). Every caller waiting at that
    /// moment gets it.
    #[error("pool \"{pool}\": cannot open a connection: {error}")]
    ConnectFailed {
        /// The pool's name.
        pool: String,
        /// The connector's label for the error.
        kind: &'static str,
        /// The connector's error (downcast it to the connector's `Error` type for details).
        error: std::sync::Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The wait was ended by [`Pool::cancel_wait`](crate::Pool::cancel_wait) with the
    /// caller's key.
    #[error("pool \"{pool}\": the wait for a connection was cancelled")]
    Cancelled {
        /// The pool's name.
        pool: String,
    },
    /// The upstream is known to be unavailable (the connector's resilience hook said so).
    #[error("pool \"{pool}\": {reason}")]
    Unavailable {
        /// The pool's name.
        pool: String,
        /// The hook's explanation.
        reason: String,
    },
}

/// `300ms`, `5s`, `1.5s`: short and exact enough for people.
pub(crate) fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
