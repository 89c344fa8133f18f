//! Redis for the pool: a connector on the `redis` crate, so one [`Warden`](crate::Warden) can hold
//! a PostgreSQL pool and a Redis pool with one lifecycle and one statistics view.

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client};
use pgwarden_pool::Connector;

use crate::error::{ConnectError, Error};

/// The pool's connector for Redis.
#[derive(Debug, Clone)]
pub struct RedisConnector {
    client: Client,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl RedisConnector {
    /// Builds a connector for `url` (`redis://host:port/db`).
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Result<Self, Error> {
        let client = Client::open(url).map_err(|e| Error::InvalidUrl {
            reason: format!("redis url: {e}"),
        })?;
        Ok(RedisConnector {
            client,
            connect_timeout,
            command_timeout,
        })
    }
}

impl Connector for RedisConnector {
    type Connection = MultiplexedConnection;
    type Error = ConnectError;

    async fn connect(&self) -> Result<MultiplexedConnection, ConnectError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.command_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(ConnectError::Redis)
    }

    async fn ping(&self, conn: &mut MultiplexedConnection) -> Result<(), ConnectError> {
        ::redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .map(drop)
            .map_err(ConnectError::Redis)
    }

    fn is_broken(&self, _conn: &MultiplexedConnection) -> bool {
        // The multiplexed connection reports a dead socket on the next command; the pool's
        // checkout ping (for connections idle past the threshold) catches it before reuse.
        false
    }

    async fn close(&self, conn: MultiplexedConnection) {
        drop(conn);
    }

    fn error_kind(&self, err: &ConnectError) -> &'static str {
        err.kind()
    }
}
