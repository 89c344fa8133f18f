//! One authenticated connection to PostgreSQL, owned by a pool and lent to client sessions.
//!
//! - [`login`]: the startup and authentication exchange as a client.
//! - [`connector`]: [`ServerConnector`], the pool core's connector for server connections.
//! - [`db_cap`]: `max_db_connections` over the pools of one database.
//! - this file: [`ServerConnection`] (socket, read buffer, transaction tracker, applied session
//!   parameters, prepared statements it holds) and [`ServerError`].

pub(crate) mod connector;
pub(crate) mod db_cap;
pub(crate) mod login;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use pgwarden_protocol::response::ErrorFields;
use pgwarden_protocol::{ProtocolError, TransactionTracker};
use pgwarden_resilience::{Failure, FailureKind};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

pub use connector::ServerConnector;
pub use login::ServerCredentials;

use crate::cancel::CancelTarget;
use crate::params::SessionParams;

/// Why a server connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Socket failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Connect plus login took longer than `server_connect_timeout`.
    #[error("connecting to the server timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The server refused the login with an ErrorResponse.
    #[error("server refused the login: {} (SQLSTATE {})", .0.message().unwrap_or("?"), .0.code().unwrap_or("?"))]
    Rejected(ErrorFields),
    /// The server broke the protocol.
    #[error("server protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// Authentication could not proceed (no password known, unsupported mechanism).
    #[error("{0}")]
    Auth(String),
    /// The circuit breaker refused the attempt (the upstream is known to be away).
    #[error("{0}")]
    Unavailable(String),
    /// The database already has `max_db_connections` server connections.
    #[error("database \"{database}\" already has max_db_connections ({max}) server connections")]
    DatabaseLimit {
        /// The database.
        database: String,
        /// The cap.
        max: usize,
    },
}

impl ServerError {
    /// Classifies the error for the breaker, metrics and client SQLSTATEs.
    pub fn failure(&self) -> Failure {
        match self {
            ServerError::Io(e) => Failure::from_io_error(e),
            ServerError::Timeout(_) => Failure::new(FailureKind::Timeout, self.to_string()),
            ServerError::Rejected(fields) => {
                Failure::from_sqlstate(fields.code().unwrap_or(""), self.to_string())
            }
            ServerError::Auth(_) => Failure::new(FailureKind::AuthFailed, self.to_string()),
            ServerError::DatabaseLimit { .. } => {
                Failure::new(FailureKind::TooManyConnections, self.to_string())
            }
            ServerError::Protocol(_) | ServerError::Unavailable(_) => {
                Failure::new(FailureKind::Other, self.to_string())
            }
        }
    }
}

/// Server-side prepared statements on one connection, oldest first, with a bound.
#[derive(Debug, Default)]
pub(crate) struct PreparedCache {
    names: HashSet<String>,
    order: VecDeque<String>,
}

impl PreparedCache {
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Records `name`; returns the statement to close if the cache is over `cap`.
    pub(crate) fn insert(&mut self, name: &str, cap: usize) -> Option<String> {
        if !self.names.insert(name.to_string()) {
            return None;
        }
        self.order.push_back(name.to_string());
        if self.order.len() > cap.max(1) {
            let old = self.order.pop_front()?;
            self.names.remove(&old);
            return Some(old);
        }
        None
    }

    pub(crate) fn remove(&mut self, name: &str) {
        if self.names.remove(name) {
            self.order.retain(|n| n != name);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.names.clear();
        self.order.clear();
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct ServerConnection {
    pub(crate) stream: TcpStream,
    /// Bytes read from the server not yet forwarded.
    pub(crate) rbuf: BytesMut,
    /// Owed ReadyForQuery messages and the transaction status: says when the connection is
    /// idle and may serve another client.
    pub(crate) tracker: TransactionTracker,
    /// Session parameters as last applied on this connection.
    pub(crate) params: SessionParams,
    /// Which client session (id, parameter version) `params` was last made to match: when the
    /// same session comes back unchanged, no comparison is needed.
    pub(crate) params_owner: Option<(u64, u64)>,
    /// Statements prepared under pgwarden's server-side names.
    pub(crate) prepared: PreparedCache,
    /// The server's BackendKeyData and where cancels for this backend go, shared with the
    /// slot of the client it serves; counts the cancels on their way.
    pub(crate) cancel: Option<Arc<CancelTarget>>,
    /// Set in session mode when a client used it: reset before the next client.
    pub(crate) needs_reset: bool,
    /// Set when the stream can no longer be trusted (I/O error, protocol violation, abandoned
    /// mid-transaction).
    pub(crate) broken: bool,
    /// Holds a slot of the database-wide cap while the connection exists.
    pub(crate) _db_permit: Option<OwnedSemaphorePermit>,
}

/// Reads from a connection to PostgreSQL until the server closes it (or it fails). Used
/// where the close itself is the answer: after Terminate, and after a CancelRequest (sent
/// once the backend is signalled).
pub(crate) async fn until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 512];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}

impl ServerConnection {
    /// The backend process id on the server.
    pub fn backend_pid(&self) -> Option<i32> {
        self.cancel.as_ref().map(|c| c.process_id())
    }

    /// Whether the connection sits between transactions.
    pub fn is_idle(&self) -> bool {
        !self.broken && self.tracker.is_idle()
    }

    /// Whether the server said something, or hung up, while the connection sat idle in the
    /// pool: a FATAL from a server shutting down (57P01), an idle-session timeout, a closed
    /// socket. Such a connection must not be handed to a client. One non-blocking peek at the
    /// socket itself (the runtime's readiness flag may not have caught up yet); nothing is
    /// consumed.
    pub(crate) fn spoke_while_idle(&self) -> bool {
        if !self.rbuf.is_empty() {
            return true;
        }
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(&self.stream).peek(&mut probe) {
            // Bytes waiting, or 0 = the server closed the connection.
            Ok(_) => true,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}
