//! [`ServerConnector`]: opens, checks, resets and closes server connections for one
//! (database, user) pool. The pool core calls it; nothing else opens server connections.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Mutex, RwLock};
use pgwarden_pool::{ConnMeta, Connector, ReleaseState};
use pgwarden_protocol::TransactionTracker;
use pgwarden_resilience::{FailureKind, ProberHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::db_cap::DatabaseCap;
use super::login::{login, read_frame, ServerCredentials};
use super::{PreparedCache, ServerConnection, ServerError};
use crate::cancel::CancelTarget;
use crate::params::SessionParams;

/// Where and as whom a pool's server connections log in.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Server user.
    pub user: String,
    /// Server database.
    pub database: String,
    /// application_name at login (a client's own is applied per transaction).
    pub application_name: String,
}

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct ServerConnector {
    inner: Arc<Inner>,
}

struct Inner {
    target: ServerTarget,
    credentials: RwLock<ServerCredentials>,
    connect_timeout: Duration,
    reset_query: String,
    /// `max_db_connections`, shared by every pool of the database.
    db_cap: Option<Arc<DatabaseCap>>,
    /// ParameterStatus values of the latest login, replayed to clients at their startup.
    parameters: Mutex<Option<Vec<(String, String)>>>,
    /// The upstream's monitor: gates connects while the breaker is open and hears outcomes.
    upstream: Option<ProberHandle>,
}

impl std::fmt::Debug for ServerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnector")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

impl ServerConnector {
    /// A connector for `target`.
    pub(crate) fn new(
        target: ServerTarget,
        credentials: ServerCredentials,
        connect_timeout: Duration,
        reset_query: String,
        db_cap: Option<Arc<DatabaseCap>>,
        upstream: Option<ProberHandle>,
    ) -> ServerConnector {
        ServerConnector {
            inner: Arc::new(Inner {
                target,
                credentials: RwLock::new(credentials),
                connect_timeout,
                reset_query,
                db_cap,
                parameters: Mutex::new(None),
                upstream,
            }),
        }
    }

    /// The login target.
    pub fn target(&self) -> &ServerTarget {
        &self.inner.target
    }

    /// Replaces the credentials (e.g. SCRAM keys recovered from the first client's login).
    pub fn set_credentials(&self, credentials: ServerCredentials) {
        *self.inner.credentials.write() = credentials;
    }

    /// Whether any credentials are known.
    pub fn has_credentials(&self) -> bool {
        !matches!(*self.inner.credentials.read(), ServerCredentials::None)
    }

    /// ParameterStatus values the server sent at the latest login.
    pub fn server_parameters(&self) -> Option<Vec<(String, String)>> {
        self.inner.parameters.lock().clone()
    }

    /// Whether `other` is this connector (the same pool's).
    pub(crate) fn same_as(&self, other: &ServerConnector) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Connects and logs in; the connection holds `permit` (a slot of the database cap).
    async fn open(
        &self,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<ServerConnection, ServerError> {
        let t = &self.inner.target;
        let mut stream = TcpStream::connect((t.host.as_str(), t.port)).await?;
        stream.set_nodelay(true)?;
        let addr = stream.peer_addr()?;
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        let credentials = self.inner.credentials.read().clone();
        let outcome = login(
            &mut stream,
            &mut rbuf,
            &t.user,
            &t.database,
            &t.application_name,
            &credentials,
        )
        .await?;
        *self.inner.parameters.lock() = Some(outcome.parameters);
        Ok(ServerConnection {
            stream,
            rbuf,
            tracker: TransactionTracker::ready(),
            params: SessionParams::server_default(&t.application_name),
            params_owner: None,
            prepared: PreparedCache::default(),
            cancel: outcome
                .key
                .map(|k| Arc::new(CancelTarget::new(addr, k.process_id, k.secret_key))),
            needs_reset: false,
            broken: false,
            _db_permit: permit,
        })
    }

    /// Sends a simple query and reads up to its ReadyForQuery, discarding the replies.
    async fn run_internal(
        &self,
        conn: &mut ServerConnection,
        sql: &str,
    ) -> Result<(), ServerError> {
        let mut out = BytesMut::with_capacity(sql.len() + 6);
        pgwarden_protocol::query::QueryMessage::Query {
            sql: sql.to_string(),
        }
        .encode(&mut out);
        let work = async {
            conn.stream.write_all(&out).await?;
            let mut error = None;
            loop {
                let frame = read_frame(&mut conn.stream, &mut conn.rbuf).await?;
                match frame.tag {
                    b'E' => error = Some(pgwarden_protocol::response::ErrorFields::decode(&frame)?),
                    b'Z' if frame.body.first() == Some(&b'I') => break,
                    b'Z' => {
                        return Err(ServerError::Auth(
                            "connection still in a transaction after reset".into(),
                        ))
                    }
                    _ => {}
                }
            }
            match error {
                Some(e) => Err(ServerError::Rejected(e)),
                None => Ok(()),
            }
        };
        match tokio::time::timeout(self.inner.connect_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ServerError::Timeout(self.inner.connect_timeout)),
        }
    }
}

/// Whether a failed connect tells something about the upstream's availability, and so counts
/// for the breaker every pool shares: no answer or a broken socket (refused, reset, timeout),
/// or the server saying it cannot take anyone now (too many connections, starting up, shutting
/// down). A missing database, an unknown role, a wrong password, an unsupported authentication
/// method or missing privileges concern one (database, user) pair only; the database cap and
/// the breaker's own refusal are ours.
fn says_upstream_is_away(error: &ServerError) -> bool {
    match error {
        ServerError::Io(_) | ServerError::Timeout(_) => true,
        ServerError::Rejected(_) => matches!(
            error.failure().kind,
            FailureKind::TooManyConnections | FailureKind::StartingUp | FailureKind::ShuttingDown
        ),
        ServerError::Protocol(_)
        | ServerError::Auth(_)
        | ServerError::Unavailable(_)
        | ServerError::DatabaseLimit { .. } => false,
    }
}

impl Connector for ServerConnector {
    /// Boxed: a checkout and a return move a pointer, not the whole connection state.
    type Connection = Box<ServerConnection>;
    type Error = ServerError;

    async fn connect(&self) -> Result<Box<ServerConnection>, ServerError> {
        // Room under max_db_connections first (possibly waiting, possibly closing another
        // pool's idle connection): the connect timeout starts once there is room.
        let permit = match &self.inner.db_cap {
            Some(cap) => Some(cap.acquire(self).await?),
            None => None,
        };
        if let Some(upstream) = &self.inner.upstream {
            // Takes the breaker's half-open trial when one is due; refused while it is open.
            if let Err(unavailable) = upstream.admit() {
                return Err(ServerError::Unavailable(unavailable.to_string()));
            }
        }
        let result = match tokio::time::timeout(self.inner.connect_timeout, self.open(permit)).await
        {
            Ok(result) => result.map(Box::new),
            Err(_) => Err(ServerError::Timeout(self.inner.connect_timeout)),
        };
        if let Some(upstream) = &self.inner.upstream {
            match &result {
                Ok(_) => upstream.report_client_success(),
                Err(e) if says_upstream_is_away(e) => upstream.report_client_failure(&e.failure()),
                // This pool's settings or a client's credentials: the client hears about it,
                // the breaker shared by everyone does not.
                Err(_) => {}
            }
        }
        result
    }

    async fn keepalive(&self, conn: &mut Self::Connection) -> Result<(), ServerError> {
        // A connection idle since the keepalive interval gets its instance tag back if a
        // client's own application_name is still on it, so pg_stat_activity shows the tag on
        // every connection idle long enough to be taken for an orphan (the interval is shorter
        // than orphan_idle_threshold). Doing this here rather than at every release keeps the
        // round trip off the transaction path: a client that names itself (psql, pgbench,
        // JDBC) costs nothing per transaction.
        let app = self.inner.target.application_name.clone();
        match conn.params.restore_application_name(&app) {
            Some(sql) => {
                conn.params_owner = None;
                let result = self.run_internal(conn, &sql).await;
                if result.is_err() {
                    conn.broken = true;
                }
                result
            }
            None => self.ping(conn).await,
        }
    }

    async fn ping(&self, conn: &mut Self::Connection) -> Result<(), ServerError> {
        // An empty query: the cheapest round trip PostgreSQL answers.
        let result = self.run_internal(conn, "").await;
        if result.is_err() {
            conn.broken = true;
        }
        result
    }

    fn is_broken(&self, conn: &Self::Connection) -> bool {
        conn.broken || conn.tracker.is_desynchronized()
    }

    fn went_bad_while_idle(&self, conn: &Self::Connection, meta: &ConnMeta, now: Instant) -> bool {
        // A connection reused within a few milliseconds is on the hot path and had no time
        // to hear anything worth a system call; one that sat longer may hold a FATAL from a
        // server that shut down (57P01) or an EOF. So may a new one: its login can complete
        // just as the server shuts down, leaving the FATAL behind its ReadyForQuery.
        let idle_for = now.saturating_duration_since(meta.idle_since);
        (meta.uses == 0 || idle_for >= Duration::from_millis(5)) && conn.spoke_while_idle()
    }

    fn release_state(&self, conn: &Self::Connection) -> ReleaseState {
        if conn.broken || !conn.tracker.is_idle() {
            // Abandoned mid-transaction or mid-reply: closing is the only safe reset.
            ReleaseState::Broken
        } else if conn.needs_reset {
            ReleaseState::NeedsReset
        } else {
            ReleaseState::Clean
        }
    }

    async fn reset(&self, conn: &mut Self::Connection) -> Result<(), ServerError> {
        let app = &self.inner.target.application_name;
        if conn.needs_reset {
            // Session mode, client gone: the reset query (DISCARD ALL) restores the login
            // parameters, application_name included.
            let query = self.inner.reset_query.clone();
            if !query.trim().is_empty() {
                self.run_internal(conn, &query).await?;
            }
            // What the server still holds afterwards depends on the reset query: forget only
            // what it dropped, so the next client's statements and parameters are set up
            // against what is really there (an empty reset query drops nothing).
            let upper = query.to_ascii_uppercase();
            if upper.contains("DISCARD ALL") || upper.contains("DEALLOCATE ALL") {
                conn.prepared.clear();
            }
            if upper.contains("DISCARD ALL") || upper.contains("RESET ALL") {
                conn.params = SessionParams::server_default(app);
            }
        }
        if let Some(sql) = conn.params.restore_application_name(app) {
            // A client's name is still on it (transaction mode, or a reset query that keeps
            // parameters): only the tag comes back; other parameters stay for the next client.
            self.run_internal(conn, &sql).await?;
        }
        conn.params_owner = None;
        conn.needs_reset = false;
        Ok(())
    }

    async fn close(&self, mut conn: Self::Connection) {
        // Terminate tells PostgreSQL the disconnect is deliberate (no "unexpected EOF" log).
        // Then wait (bounded) for the backend to close its end: it leaves pg_stat_activity
        // before it exits, so once the socket is closed the connection no longer counts
        // against the server's limits, and only then is its max_db_connections place (held by
        // `conn`) given to another connection.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = conn.stream.write_all(b"X\0\0\0\x04").await;
            let _ = conn.stream.shutdown().await;
            super::until_closed(&mut conn.stream).await;
        })
        .await;
    }

    fn fails_waiters(&self, err: &ServerError) -> bool {
        // The pool has no connection to hand back (see the trait), so clients waiting for it
        // hear the refusal, the breaker's verdict or the network error now, as with a direct
        // connection, instead of at query_wait_timeout. Only our own database cap is waited out:
        // another pool of the database will release a connection.
        !matches!(err, ServerError::DatabaseLimit { .. })
    }

    fn error_kind(&self, err: &ServerError) -> &'static str {
        err.failure().kind.label()
    }

    fn unavailable(&self) -> Option<String> {
        let upstream = self.inner.upstream.as_ref()?;
        let unavailable = upstream.would_admit().err()?;
        // A client is asking: let the prober look now rather than on its schedule.
        upstream.client_demand();
        Some(unavailable.to_string())
    }
}

#[cfg(test)]
mod tests {
    use pgwarden_protocol::response::ErrorFields;

    use super::*;

    fn rejected(code: &str) -> ServerError {
        ServerError::Rejected(ErrorFields::new("FATAL", code, "no"))
    }

    #[test]
    fn only_availability_failures_count_for_the_breaker() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        for away in [
            ServerError::Io(refused),
            ServerError::Io(reset),
            ServerError::Timeout(Duration::from_secs(1)),
            rejected("53300"),
            rejected("57P03"),
            rejected("57P01"),
            rejected("57P02"),
        ] {
            assert!(says_upstream_is_away(&away), "{away}");
        }
        for config in [
            rejected("3D000"),
            rejected("28P01"),
            rejected("28000"),
            rejected("42501"),
            rejected("55000"),
            ServerError::Auth("no password known".into()),
            ServerError::Unavailable("breaker open".into()),
            ServerError::DatabaseLimit {
                database: "app".into(),
                max: 1,
            },
        ] {
            assert!(!says_upstream_is_away(&config), "{config}");
        }
    }
}
