//! The one trait a resource kind implements to be pooled: how to open, check, reset and close
//! a connection. The pool knows nothing else about what it holds.

use std::future::Future;

use tokio::time::Instant;

use crate::state::ConnMeta;

/// What a returned connection needs before someone else may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseState {
    /// Ready for the next caller.
    Clean,
    /// Usable after [`Connector::reset`] (e.g. a transaction left open).
    NeedsReset,
    /// Must be closed.
    Broken,
}

/// Opens and maintains connections of one kind. Implementations are cheap to share
/// (the pool holds one and calls it from its background tasks).
pub trait Connector: Send + Sync + 'static {
    /// The pooled resource.
    type Connection: Send + 'static;
    /// What can go wrong opening or checking one.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new connection. Called only from the pool's background tasks, at most
    /// `max_connecting` at a time.
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;

    /// A cheap round trip proving the connection is alive. Called at checkout for connections
    /// idle longer than `check_after_idle`, and by the keepalive.
    fn ping(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The periodic check of an idle connection (every `keepalive_interval`). Default: a
    /// [`Connector::ping`]; a connector may also put the connection back into its idle shape
    /// here (the proxy restores its instance tag), off every caller's path.
    fn keepalive(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.ping(conn)
    }

    /// A synchronous, free check (socket closed, stream out of step).
    fn is_broken(&self, conn: &Self::Connection) -> bool;

    /// Checked at checkout (after [`Connector::is_broken`]): whether something happened to
    /// the connection while it sat idle that makes it unusable (the server hung up or sent an
    /// error while nobody was reading). `meta` says how long it was idle (`now -
    /// meta.idle_since`) and whether it was ever used (`meta.uses == 0`), so a connector can
    /// spend a system call only where it may pay off. `true` closes it and the caller gets
    /// another. Default: `false`.
    fn went_bad_while_idle(
        &self,
        _conn: &Self::Connection,
        _meta: &ConnMeta,
        _now: Instant,
    ) -> bool {
        false
    }

    /// What a returned connection needs. Default: [`ReleaseState::Clean`].
    fn release_state(&self, _conn: &Self::Connection) -> ReleaseState {
        ReleaseState::Clean
    }

    /// Makes a [`ReleaseState::NeedsReset`] connection clean; on error it is closed.
    fn reset(
        &self,
        _conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Closes a connection politely (PostgreSQL: Terminate).
    fn close(&self, conn: Self::Connection) -> impl Future<Output = ()> + Send;

    /// A bounded label for an error, counted in `errors_by_kind`. Default `"other"`.
    fn error_kind(&self, _err: &Self::Error) -> &'static str {
        "other"
    }

    /// Whether a failed connect should end the wait of every caller waiting now, when the
    /// pool has no open connection that could come back to them: a failure that waiting would
    /// not cure (a wrong password, a missing database, the upstream away). Default: `false`
    /// (waiters wait for a later attempt, up to their timeout).
    fn fails_waiters(&self, _err: &Self::Error) -> bool {
        false
    }

    /// The resilience hook: `Some(reason)` while the upstream is known to be away. Then an
    /// acquire that would need a new connection fails fast with
    /// [`crate::PoolError::Unavailable`], and no background connect starts.
    fn unavailable(&self) -> Option<String> {
        None
    }
}
