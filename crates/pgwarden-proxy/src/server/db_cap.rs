//! [`DatabaseCap`]: `max_db_connections`, the cap on server connections to one database
//! (host, port, database) over all the pools (users) that log in to it.
//!
//! Each server connection holds a permit of the cap while it exists. A pool that needs a
//! connection while the cap is full waits for a permit (up to `query_wait_timeout`) instead of
//! failing, and makes room as PgBouncer does: it closes an idle server connection of another
//! pool of the same database, least recently used first. Connections in use are never taken.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{ServerConnector, ServerError};
use crate::pools::ProxyPool;

/// How often a waiting pool looks again for an idle connection of another pool to close
/// (one may have become idle since it last looked).
const RECHECK: Duration = Duration::from_millis(100);

/// See the module documentation. Shared (in an `Arc`) by every pool of the database.
#[derive(Debug)]
pub(crate) struct DatabaseCap {
    /// The database, for messages.
    database: String,
    /// The cap.
    max: usize,
    /// One permit per server connection allowed.
    permits: Arc<Semaphore>,
    /// Longest a pool waits for a permit (`query_wait_timeout`).
    wait: Duration,
    /// Every pool of the database, to find idle connections to close.
    pools: Mutex<Vec<Weak<ProxyPool>>>,
}

impl DatabaseCap {
    /// A cap of `max` server connections to `database`; pools wait up to `wait` for room.
    pub(crate) fn new(database: String, max: usize, wait: Duration) -> DatabaseCap {
        DatabaseCap {
            database,
            max,
            permits: Arc::new(Semaphore::new(max)),
            wait,
            pools: Mutex::new(Vec::new()),
        }
    }

    /// Adds a pool whose idle connections may be closed to make room for another pool.
    pub(crate) fn register(&self, pool: &Arc<ProxyPool>) {
        let mut pools = self.pools.lock();
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// A permit for one more server connection of `me`'s pool: at once when the cap has room;
    /// otherwise after closing an idle connection of another pool of the database, or when
    /// one closes, up to the wait. [`ServerError::DatabaseLimit`] when the wait runs out.
    pub(crate) async fn acquire(
        &self,
        me: &ServerConnector,
    ) -> Result<OwnedSemaphorePermit, ServerError> {
        let deadline = Instant::now() + self.wait;
        loop {
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                return Ok(permit);
            }
            if self.close_idle_elsewhere(me) {
                tracing::debug!(
                    database = %self.database,
                    max_db_connections = self.max,
                    "closed an idle server connection of another pool to make room"
                );
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ServerError::DatabaseLimit {
                    database: self.database.clone(),
                    max: self.max,
                });
            }
            let until = deadline.min(now + RECHECK);
            if let Ok(Ok(permit)) =
                tokio::time::timeout_at(until, Arc::clone(&self.permits).acquire_owned()).await
            {
                return Ok(permit);
            }
        }
    }

    /// Closes one idle server connection of a pool other than `me`'s (the one with the most
    /// idle connections); whether one was closed. Its permit returns once it is closed.
    fn close_idle_elsewhere(&self, me: &ServerConnector) -> bool {
        let others: Vec<Arc<ProxyPool>> = self
            .pools
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|p| !p.pool.connector().same_as(me))
            .collect();
        others
            .iter()
            .map(|p| (p.pool.status().idle, p))
            .filter(|(idle, _)| *idle > 0)
            .max_by_key(|(idle, _)| *idle)
            .is_some_and(|(_, p)| p.pool.close_idle(1) > 0)
    }
}
