//! One client connection from accept to goodbye.
//!
//! - [`startup`]: negotiation, startup packet, cancel requests, authentication.
//! - [`forward`]: rewriting the client's messages for whichever server connection serves it
//!   (prepared-statement renaming, session parameters) and sorting the server's replies.
//! - this file: [`run_session`], the login sequence and the event loop that moves bytes both
//!   ways, acquires a server connection at the first message of a transaction and releases it
//!   whenever the tracker says the connection is idle (transaction mode: after a server
//!   ReadyForQuery `I`, or after messages the proxy answered itself) or at disconnect (session
//!   mode).

mod forward;
pub(crate) mod park;
mod reprepare;
mod startup;
mod stream;
mod turn;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use pgwarden_pool::{PoolError, Pooled};
use pgwarden_protocol::response::{BackendKeyData, ErrorFields, ParameterStatus, ReadyForQuery};
use pgwarden_protocol::TransactionStatus;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::buffers;
use crate::cancel::{CancelSlot, CancelTarget};
use crate::config::PoolMode;
use crate::params::SessionParams;
use crate::pools::ProxyPool;
use crate::proxy::Shared;
use crate::responses::ResponsePlan;
use crate::server::{ServerConnector, ServerError};
use crate::signals;
use stream::ClientStream;
use turn::{Event, ServerSide, Turn};

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum SessionEnd {
    /// The client closed the connection, sent Terminate, or its socket failed.
    ClientGone,
    /// Tell the client why (FATAL with this SQLSTATE), then close.
    Fatal { code: &'static str, message: String },
    /// Idle long enough: the client is handed to the parker (see [`park`]), the task ends.
    Park,
}

impl From<std::io::Error> for SessionEnd {
    fn from(_: std::io::Error) -> Self {
        SessionEnd::ClientGone
    }
}

/// Shorthand for [`SessionEnd::Fatal`].
pub(crate) fn fatal(code: &'static str, message: impl Into<String>) -> SessionEnd {
    SessionEnd::Fatal {
        code,
        message: message.into(),
    }
}

/// An ErrorResponse, framed.
pub(crate) fn error_message(severity: &str, code: &str, message: &str) -> BytesMut {
    let mut out = BytesMut::with_capacity(message.len() + 32);
    ErrorFields::new(severity, code, message).encode_error(&mut out);
    out
}

/// Server parameters PostgreSQL reports that a client's own startup value overrides.
const CLIENT_REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "search_path",
];

/// What a client holding a server connection (session mode) hears at shutdown, at its next
/// transaction boundary.
const SESSION_SHUTDOWN: &str =
    "terminating connection due to administrator command: pgwarden is shutting down";

/// What a client still connected when the drain timeout expires hears.
const DRAIN_EXPIRED: &str = "terminating connection due to administrator command: \
    pgwarden is shutting down and its drain timeout expired";

/// What a client is told when its server connection fails under it.
const SERVER_CLOSED: &str = "server connection closed unexpectedly; the transaction is lost";

/// Bytes reserved for each read from a client.
const READ_CHUNK: usize = 8 * 1024;

/// Largest amount buffered towards a peer before reading from the other side pauses.
const BACKPRESSURE_LIMIT: usize = 256 * 1024;

/// Serves one accepted client until it leaves. `permit` is `None` when `max_client_conn` is
/// exhausted: the client is told so after its startup packet.
pub(crate) async fn run_session(
    client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let _ = client.set_nodelay(true);
    let mut client = ClientStream::Plain(client);
    let mut buf = buffers::take();
    // Boxed with its timer: the login's state (startup, authentication, a TLS handshake) is
    // freed once the client is in, instead of sizing every session's task for it.
    let login = Box::pin(tokio::time::timeout(
        shared.config.client_login_timeout,
        login(&mut client, &mut buf, &shared, permit.is_some()),
    ))
    .await;
    let result = match login {
        Err(_) => Err(fatal(
            "08006",
            format!(
                "client_login_timeout ({:?}) expired before the login completed",
                shared.config.client_login_timeout
            ),
        )),
        Ok(Ok(None)) => return,
        Ok(Ok(Some(session))) => {
            let mut session = session;
            session.buf_client = buf;
            shared.stats.clients_active.fetch_add(1, Relaxed);
            return serve_client(shared, session, client, peer, permit).await;
        }
        Ok(Err(e)) => Err(e),
    };
    drop(permit);
    goodbye(&mut client, peer, result).await;
}

/// Serves a logged-in client until it leaves or parks (see [`park`]).
async fn serve_client(
    shared: Arc<Shared>,
    mut session: Box<Session>,
    mut client: ClientStream,
    mut peer: SocketAddr,
    mut permit: Option<OwnedSemaphorePermit>,
) {
    let result = loop {
        // `serve` awaited here, the end of the session apart: a woken session's task walks
        // one state machine less.
        let result = session.serve(&mut client).await;
        let result = session.finish(&mut client, result).await;
        let Err(SessionEnd::Park) = result else {
            break result;
        };
        let ClientStream::Plain(tcp) = client else {
            unreachable!("only plain TCP clients park");
        };
        let parked = Box::new(park::Parked {
            session: session.into_idle(),
            client: tcp,
            peer: peer.into(),
            permit,
        });
        let Some(back) = shared.parker.park(parked) else {
            // Parked: the parker starts a task for the client when it sends something.
            return;
        };
        // Readable already, or shutting down: go on in this task.
        let back = *back;
        session = back.session.into_session(&shared);
        client = ClientStream::Plain(back.client);
        peer = back.peer.into();
        permit = back.permit;
    };
    shared.stats.clients_active.fetch_sub(1, Relaxed);
    drop(permit);
    goodbye(&mut client, peer, result).await;
}

/// Serves a parked client again (its socket became readable, or the proxy is shutting down).
/// Not an `async fn`: the task's future is [`serve_client`]'s own, one state machine less for
/// every poll.
pub(crate) fn resume(
    shared: Arc<Shared>,
    parked: park::Parked,
) -> impl Future<Output = ()> + Send + 'static {
    let session = parked.session.into_session(&shared);
    serve_client(
        shared,
        session,
        ClientStream::Plain(parked.client),
        parked.peer.into(),
        parked.permit,
    )
}

/// Says why the session ends (a FATAL ErrorResponse) when there is something to say.
async fn goodbye(client: &mut ClientStream, peer: SocketAddr, result: Result<(), SessionEnd>) {
    if let Err(SessionEnd::ClientGone) = &result {
        tracing::debug!(%peer, "client gone");
    }
    if let Err(SessionEnd::Fatal { code, message }) = result {
        tracing::debug!(%peer, code, %message, "closing client");
        let out = error_message("FATAL", code, &message);
        let goodbye = async {
            client.write_all(&out).await?;
            client.shutdown().await
        };
        // Boxed (with its timer), like every rare step: the task is sized for the idle wait.
        let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), goodbye)).await;
    }
}

use std::sync::atomic::Ordering::Relaxed;

/// Startup, authentication and the greeting; `None` for a cancel request.
async fn login(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    shared: &Arc<Shared>,
    within_limit: bool,
) -> Result<Option<Box<Session>>, SessionEnd> {
    let Some(startup) = startup::read_startup(client, buf, shared).await? else {
        return Ok(None);
    };
    if !within_limit {
        return Err(fatal(
            "53300",
            format!(
                "sorry, too many clients already (pgwarden max_client_conn = {})",
                shared.config.max_client_conn
            ),
        ));
    }
    if shared.shutdown.is_cancelled() {
        return Err(fatal("57P01", "pgwarden is shutting down"));
    }
    if startup.parameter("replication").is_some() {
        return Err(fatal(
            "08P01",
            "pgwarden does not proxy replication connections",
        ));
    }
    let user = startup.user().to_string();
    let database = startup.database().to_string();
    if user.is_empty() {
        return Err(fatal(
            "28000",
            "no PostgreSQL user name specified in startup packet",
        ));
    }
    let keys = startup::authenticate(client, buf, shared, &user, &database).await?;
    let pool = shared
        .pools
        .get_or_create(
            &shared.config,
            &shared.userlist,
            shared.upstream.as_ref(),
            &database,
            &user,
        )
        .map_err(|e| fatal("08006", e))?;
    if let Some(keys) = keys {
        if !pool.pool.connector().has_credentials() {
            pool.pool.connector().set_credentials(keys);
        }
    }
    // The greeting replays the server's ParameterStatus; learn them from a login if needed.
    let server_params = match pool.pool.connector().server_parameters() {
        Some(p) => p,
        None => {
            let conn = acquire(shared, &pool).await?;
            drop(conn);
            pool.pool
                .connector()
                .server_parameters()
                .unwrap_or_default()
        }
    };
    let startup_params = pool.intern_params(SessionParams::from_startup(
        &startup.parameters,
        &shared.config.application_name,
    ));
    let cancel = shared.cancels.register();

    let mut out = BytesMut::with_capacity(1024);
    pgwarden_protocol::auth::Authentication::Ok.encode(&mut out);
    for (name, value) in &server_params {
        let value = CLIENT_REPORTED
            .iter()
            .find(|k| k.eq_ignore_ascii_case(name))
            .and_then(|k| startup_params.literal(k))
            .unwrap_or(value);
        ParameterStatus {
            name: name.clone(),
            value: value.to_string(),
        }
        .encode(&mut out);
    }
    BackendKeyData {
        process_id: cancel.process_id,
        secret_key: Bytes::copy_from_slice(&cancel.secret_key),
    }
    .encode(&mut out);
    ReadyForQuery(TransactionStatus::Idle).encode(&mut out);
    client.write_all(&out).await?;
    shared.stats.clients_total.fetch_add(1, Relaxed);

    // A fresh session is an idle one with nothing kept yet.
    let mut session = IdleSession {
        pool,
        statements: None,
        params: startup_params.clone(),
        startup_params,
        cancel,
        id: NEXT_SESSION_ID.fetch_add(1, Relaxed),
        params_version: 0,
        next_seq: 0,
    }
    .into_session(shared);
    session.just_logged_in = true;
    Ok(Some(session))
}

/// Waits for a server connection of `pool` and maps failures to what the client is told.
/// (While the upstream is known to be away, the pool asks the connector's `unavailable` hook,
/// which tells the prober a client is waiting; a healthy acquire touches no shared lock.)
async fn acquire(shared: &Shared, pool: &ProxyPool) -> Result<Pooled<ServerConnector>, SessionEnd> {
    pool.pool
        .get_timeout(shared.config.query_wait_timeout)
        .await
        .map_err(acquire_failed)
}

/// What a client is told when no server connection could be had for it.
fn acquire_failed(e: PoolError) -> SessionEnd {
    match e {
        PoolError::Timeout { .. } => fatal("53300", format!("pgwarden: query_wait_timeout: {e}")),
        PoolError::Unavailable { .. } => fatal("08006", format!("pgwarden: {e}")),
        PoolError::Closed { .. } => fatal("57P01", "pgwarden is shutting down"),
        // Only a keyed wait is cancelled, and the forwarding loop handles that itself.
        PoolError::Cancelled { .. } => fatal("57014", "canceling statement due to user request"),
        PoolError::ConnectFailed { ref error, .. } => {
            connect_failed(error.downcast_ref::<ServerError>(), &e)
        }
    }
}

/// What a client waiting for a server connection is told when opening one failed in a way
/// waiting would not cure: the server's own refusal (its SQLSTATE and message, as a direct
/// connection would show), or 08006 when the upstream is away.
fn connect_failed(error: Option<&ServerError>, whole: &PoolError) -> SessionEnd {
    match error {
        Some(ServerError::Rejected(fields)) => fatal(
            fields.code().map_or("08006", code_of),
            fields
                .message()
                .unwrap_or("the server refused the login")
                .to_string(),
        ),
        Some(ServerError::Auth(_)) => fatal("28000", format!("pgwarden: {whole}")),
        _ => fatal("08006", format!("pgwarden: {whole}")),
    }
}

/// The SQLSTATEs a server login refusal can carry, as static strings (anything else: 08006).
fn code_of(code: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "28P01", "28000", "3D000", "42501", "53300", "57P03", "57P01", "0A000", "08004", "08P01",
    ];
    KNOWN
        .iter()
        .find(|k| **k == code)
        .copied()
        .unwrap_or("08006")
}

/// A prepared statement as the client named it.
#[derive(Debug, Clone)]
pub(crate) struct ClientStatement {
    /// pgwarden's name for it on server connections (derived from its text and types).
    pub(crate) server_name: Arc<str>,
    /// The Parse body after the statement name: query text and parameter types.
    pub(crate) parse_rest: Bytes,
}

/// A logged-in client.
pub(crate) struct Session {
    shared: Arc<Shared>,
    pool: Arc<ProxyPool>,
    mode: PoolMode,
    /// Bytes from the client not yet handled (at most one partial message after handling).
    buf_client: BytesMut,
    /// Bytes for the server connection, not yet written.
    to_server: BytesMut,
    /// Bytes for the client, not yet written.
    to_client: BytesMut,
    /// The server connection serving the client's current transaction (or session).
    server: Option<Pooled<ServerConnector>>,
    /// Replies owed, in order.
    plan: ResponsePlan,
    /// Client statement name -> statement.
    statements: HashMap<Bytes, ClientStatement>,
    /// The session parameters the client believes it has.
    params: SessionParams,
    /// What `RESET` returns to.
    startup_params: SessionParams,
    cancel: CancelSlot,
    /// Unique among all sessions of the process (never reused).
    id: u64,
    /// Bumped whenever `params` changes.
    params_version: u64,
    /// Text of the unnamed statement when it is a `SET`/`RESET`/`DISCARD` (applied at Bind).
    unnamed_session_sql: Option<String>,
    /// An extended-protocol `SET`/`RESET`/`DISCARD` was bound since the last Sync: realign
    /// the server connection's parameters after that Sync.
    params_fix_due: bool,
    /// The client's messages of the current batch, kept to retry it after a schema change.
    batch: reprepare::BatchLog,
    /// When the request in flight exceeds `query_timeout`: set when a request is sent while
    /// none is outstanding, cleared by every ReadyForQuery (the next one gets its own).
    query_deadline: Option<tokio::time::Instant>,
    /// A cancel for the request in flight was sent at its deadline; none is sent again until
    /// the next ReadyForQuery.
    query_cancelled: bool,
    /// Set by the login: the first idle wait parks at once (see [`park`]).
    just_logged_in: bool,
    /// A cancel ended the wait for a server connection in the middle of an extended-query
    /// batch: the client's messages are dropped up to its Sync, as PostgreSQL does after an
    /// error.
    skip_until_sync: bool,
    /// A CancelRequest ended the last wait for a server connection: the message that waited
    /// fails (see [`Session::take_server_now`]).
    wait_cancelled: bool,
    /// Reads known to be pending (see [`turn::Armed`]).
    armed: turn::Armed,
    /// A transaction the client opened with a plain `BEGIN` that pgwarden answered itself
    /// (transaction mode, `defer_begin`): no server connection is held for it until the
    /// client's next statement, which is sent right behind the `BEGIN` (see
    /// [`Session::answer_transaction_control`]).
    deferred: DeferredTx,
    /// While the deferred `BEGIN` is in flight: how many ReadyForQuery of internal queries
    /// come before its own. Its error, or a ReadyForQuery outside a transaction, ends the
    /// session: the statements behind it would have run outside the transaction.
    begin_in_flight: Option<usize>,
    /// The wait for a server connection in progress, polled by the forwarding loop. Kept here
    /// rather than as a local of the loop: measured, that cost fewer instructions per waiting
    /// transaction (docs/BENCHMARKS.md, round 12).
    acquiring: Option<pgwarden_pool::Acquire<ServerConnector>>,
    /// The sleep of the timer armed (`idle_transaction_timeout` or `query_timeout`), made the
    /// first time one is and moved after: boxed here rather than part of the task's state.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// What a parked session keeps (see [`park`]): everything that outlives a transaction. The
/// rest of [`Session`] (buffers, server connection slot, reply plan, batch log, timers) is
/// empty between transactions and made again on resume.
pub(crate) struct IdleSession {
    pool: Arc<ProxyPool>,
    /// Boxed, and `None` when empty: a map takes 48 bytes even empty, most clients have none.
    #[allow(clippy::box_collection)] // 8 bytes in every parked client instead of 48
    statements: Option<Box<HashMap<Bytes, ClientStatement>>>,
    params: SessionParams,
    startup_params: SessionParams,
    cancel: CancelSlot,
    pub(crate) id: u64,
    params_version: u64,
    next_seq: u64,
}

impl Session {
    /// Keeps what outlives a transaction; call only when [`Session::idle`].
    fn into_idle(self: Box<Self>) -> IdleSession {
        let s = *self;
        IdleSession {
            pool: s.pool,
            statements: (!s.statements.is_empty()).then(|| Box::new(s.statements)),
            params: s.params,
            startup_params: s.startup_params,
            cancel: s.cancel,
            id: s.id,
            params_version: s.params_version,
            next_seq: s.batch.next_seq(),
        }
    }
}

impl IdleSession {
    /// The session again, as it was when it parked.
    fn into_session(self, shared: &Arc<Shared>) -> Box<Session> {
        Box::new(Session {
            shared: Arc::clone(shared),
            pool: self.pool,
            mode: shared.config.pool_mode,
            buf_client: BytesMut::new(),
            to_server: BytesMut::new(),
            to_client: BytesMut::new(),
            server: None,
            plan: ResponsePlan::default(),
            statements: self.statements.map(|s| *s).unwrap_or_default(),
            params: self.params,
            startup_params: self.startup_params,
            cancel: self.cancel,
            id: self.id,
            params_version: self.params_version,
            unnamed_session_sql: None,
            params_fix_due: false,
            batch: reprepare::BatchLog::starting_at(self.next_seq),
            query_deadline: None,
            query_cancelled: false,
            just_logged_in: false,
            skip_until_sync: false,
            wait_cancelled: false,
            armed: turn::Armed::default(),
            deferred: DeferredTx::None,
            begin_in_flight: None,
            acquiring: None,
            timer: None,
        })
    }
}

/// A transaction opened by a `BEGIN` pgwarden answered itself, before any server connection
/// serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeferredTx {
    /// None open (or the open one is on a server connection).
    None,
    /// Open: the next statement takes a server connection and is sent behind a `BEGIN`.
    Open,
    /// Failed before reaching a server (a cancelled wait for a server connection): every
    /// statement fails until `ROLLBACK` (or `COMMIT`, which rolls back), as on the server.
    Failed,
}

/// Source of session ids.
static NEXT_SESSION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Session {
    /// After [`Session::serve`] ended (with `result`): what the client is owed goes out, the
    /// server connection goes back.
    async fn finish(
        &mut self,
        client: &mut ClientStream,
        result: Result<(), SessionEnd>,
    ) -> Result<(), SessionEnd> {
        // Flush what the client is owed (e.g. a final error) before closing.
        if !self.to_client.is_empty() {
            let flush = async {
                client.write_all(&self.to_client).await?;
                client.flush().await
            };
            let _ = Box::pin(tokio::time::timeout(Duration::from_secs(1), flush)).await;
        }
        self.release_server(true);
        result
    }

    /// Whether the client sits between transactions holding nothing: no server connection,
    /// nothing buffered either way.
    fn idle(&self) -> bool {
        self.server.is_none()
            && self.buf_client.is_empty()
            && self.to_client.is_empty()
            && self.to_server.is_empty()
    }

    /// Alternates between waiting for an idle client and forwarding, in one loop. The wait
    /// holds no buffers (they go back to the thread's spares). The forwarding state (a turn's
    /// polls, an acquire in progress) is part of the session's task, not boxed per burst of
    /// activity: that cost an allocation and a copy of the state per transaction. A client idle
    /// for long gives up the task altogether (see [`park`]), so the larger task costs memory
    /// only while the client is active.
    ///
    /// One `async fn` for both (no forwarding loop awaited inside the idle loop): every wake-up
    /// of the task resumes through each nested state machine's state, and with many clients
    /// each of those is a cache miss of its own (measured in docs/BENCHMARKS.md, round 15).
    async fn serve(&mut self, client: &mut ClientStream) -> Result<(), SessionEnd> {
        // Registered once per session: the forwarding loop then watches the shutdown signals
        // with an atomic load per turn, no lock (see `crate::signals`).
        let signals = Arc::clone(&self.shared.signals);
        let parker = Arc::clone(&self.shared.parker);
        let _subscription = signals.subscribe(self.id).await;
        let mut first_wait = std::mem::take(&mut self.just_logged_in);
        let single_threaded = self.shared.single_threaded.load(Relaxed);
        let idle_tx_timeout = self.shared.config.idle_transaction_timeout;
        let query_timeout = self.shared.config.query_timeout;
        // A resumed session may run in another task than the one that armed a read.
        self.armed = turn::Armed::default();
        loop {
            if self.idle() {
                // The buffers go back to this thread's spares for the next active session.
                buffers::give_all([
                    &mut self.buf_client,
                    &mut self.to_server,
                    &mut self.to_client,
                ]);
                self.batch.release_memory();
                // Plain TCP only: a TLS stream may hold decrypted bytes no socket readiness
                // announces. An unnamed statement waiting for its Bind keeps the task too.
                let parkable = !client.is_tls()
                    && self.unnamed_session_sql.is_none()
                    && !self.skip_until_sync
                    && self.deferred == DeferredTx::None;
                let idle_since = parker.tick();
                // Right after login, a client with nothing to say yet parks at once: a burst
                // of logins then never holds a task and a session per client.
                let park_now = parkable && first_wait;
                // A client inside a transaction it opened with a deferred BEGIN is drained like
                // one whose transaction holds a server connection: it may finish it.
                let in_deferred = self.deferred != DeferredTx::None;
                let buf = &mut self.buf_client;
                let armed = &mut self.armed.client;
                // One poll function, checked in this order, rather than a `select!` of four
                // futures: fewer instructions and less code between two transactions.
                let read = std::future::poll_fn(|cx| {
                    if signals.is_set(signals::SHUTDOWN) {
                        if !in_deferred {
                            return Poll::Ready(Err(fatal("57P01", "pgwarden is shutting down")));
                        }
                        if signals.is_set(signals::DRAIN_EXPIRED) {
                            return Poll::Ready(Err(fatal("57P01", DRAIN_EXPIRED)));
                        }
                    }
                    // The forwarding loop's last read of the client left this task's waker
                    // with the socket (the usual case after a transaction): until the socket
                    // is marked ready, polling it again would only register the same waker
                    // once more (see `turn`).
                    let pending = client
                        .plain_tcp()
                        .is_some_and(|tcp| turn::still_pending(tcp, armed));
                    if !pending {
                        if let Poll::Ready(read) =
                            client.poll_read_idle(cx, buf, READ_CHUNK, single_threaded)
                        {
                            return Poll::Ready(read.map_err(SessionEnd::from));
                        }
                    }
                    if park_now || (parkable && parker.is_due(idle_since)) {
                        return Poll::Ready(Err(SessionEnd::Park));
                    }
                    Poll::Pending
                })
                .await?;
                first_wait = false;
                match read {
                    Some(0) => return Err(SessionEnd::ClientGone),
                    Some(_) => {}
                    // A spurious wake-up: wait again.
                    None => continue,
                }
                // The idle wait read the client outside the turn (and may have cleared its
                // readiness).
                self.armed = turn::Armed::default();
            }
            if self.handle_client_messages()? {
                // No server connection was idle for the client's next message: wait for one.
                // The pool's acquire is a plain struct polled right here (no `async fn` of its
                // own, no `select!` beside it): a waiting client woken by the hand-off walks
                // this loop's state machine and the acquire's few words, nothing more.
                let acquiring = self.acquiring.insert(
                    self.pool
                        .pool
                        .get_cancellable(self.shared.config.query_wait_timeout, self.cancel.key()),
                );
                let cancel = &self.cancel;
                let mut wait = None;
                let acquired = std::future::poll_fn(|cx| {
                    let polled = Pin::new(&mut *acquiring).poll(cx);
                    if polled.is_pending() && wait.is_none() {
                        // Queued under the client's key: from now on a cancel for it ends the
                        // wait in the pool (see [`crate::cancel::CancelRegistry::cancel`]);
                        // the client counts as waiting until its cancel target is set.
                        wait = Some(cancel.waiting_for_server());
                    }
                    polled
                })
                .await;
                self.acquiring = None;
                let server = match acquired {
                    Ok(server) => server,
                    Err(PoolError::Cancelled { .. }) => {
                        // The next `take_server_now` fails the message that waited.
                        drop(wait);
                        self.wait_cancelled = true;
                        continue;
                    }
                    Err(e) => return Err(acquire_failed(e)),
                };
                if let Some(target) = &server.cancel {
                    // A cancel meant for the connection's previous transaction is not over
                    // yet: it must not land on this one.
                    if target.busy() {
                        // Boxed: rare, and its timer would otherwise be part of every
                        // session's task.
                        Box::pin(target.wait_idle()).await;
                    }
                }
                let mut target = server.cancel.as_ref().map(Arc::clone);
                // `finish` ends the wait and sets the target under the slot's lock, so no
                // cancel falls in between.
                if wait.is_some_and(|wait| wait.finish(target.take())) {
                    // A cancel during the wait: the connection goes back to the pool unused.
                    self.wait_cancelled = true;
                    continue;
                }
                if target.is_some() {
                    self.cancel.set_target(target);
                }
                self.hold_server(server);
                continue;
            }
            self.write_now(client)?;
            // A message the proxy answered itself (LISTEN refused, DEALLOCATE or Close of a
            // renamed statement, a cached Parse) reads nothing from the server: release here
            // too, or the client would pin an idle server connection until its next query.
            self.maybe_release();
            // Worked out only when its timer is on (it is off by default).
            let idle_tx_armed = !idle_tx_timeout.is_zero()
                && self.server.as_ref().is_some_and(|s| {
                    self.plan.is_empty()
                        && self.to_server.is_empty()
                        && s.tracker.transaction_status() != TransactionStatus::Idle
                });
            let running = self.server.is_some() && !self.plan.is_empty();
            // Between two transactions while holding a server connection (session mode): a
            // shutdown ends the session here, as it ends an idle one in transaction mode. (In
            // transaction mode the connection was just released at such a point.)
            let at_boundary = self.mode == PoolMode::Session
                && self.server.as_ref().is_some_and(|s| {
                    s.is_idle() && s.tracker.transaction_status() == TransactionStatus::Idle
                })
                && self.plan.is_empty()
                && self.to_server.is_empty()
                && self.to_client.is_empty()
                && self.buf_client.is_empty();
            if !running {
                self.query_deadline = None;
                self.query_cancelled = false;
            } else if self.query_deadline.is_none()
                && !self.query_cancelled
                && !query_timeout.is_zero()
            {
                // Measured from when the request went out, not from the last byte seen: a
                // query streaming rows is as much over time as a silent one.
                self.query_deadline = Some(tokio::time::Instant::now() + query_timeout);
            }
            if self.idle() {
                // Between transactions: the idle wait at the top of the loop.
                continue;
            }
            // At most one timer runs (both are off by default): the idle-in-transaction one
            // while nothing is owed, the query one while something is. Its sleep is kept in
            // the session and moved, not part of the task's state.
            let timer = if idle_tx_armed {
                Some((tokio::time::Instant::now() + idle_tx_timeout, true))
            } else {
                self.query_deadline.map(|at| (at, false))
            };
            let mut timer = timer.map(|(at, idle_tx)| {
                let sleep = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                (sleep, idle_tx)
            });
            if self.buf_client.capacity() - self.buf_client.len() < 1024 {
                self.buf_client.reserve(READ_CHUNK);
            }
            let server = self.server.as_deref_mut().map(|server| {
                if server.rbuf.capacity() - server.rbuf.len() < 1024 {
                    server.rbuf.reserve(2 * READ_CHUNK);
                }
                ServerSide {
                    stream: &mut server.stream,
                    rbuf: &mut server.rbuf,
                    at_boundary,
                }
            });
            let mut turn = Turn {
                signals: &signals,
                in_deferred: self.deferred != DeferredTx::None,
                client: &mut *client,
                server,
                to_server: &mut self.to_server,
                to_client: &mut self.to_client,
                buf_client: &mut self.buf_client,
                armed: &mut self.armed,
            };
            let event = std::future::poll_fn(|cx| {
                let polled = turn.poll(cx);
                if polled.is_pending() {
                    if let Some((sleep, idle_tx)) = &mut timer {
                        if sleep.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(match idle_tx {
                                true => Event::IdleInTransaction,
                                false => Event::QueryTimeout,
                            }));
                        }
                    }
                }
                polled
            })
            .await?;
            match event {
                Event::ClientRead(0) => return Err(SessionEnd::ClientGone),
                Event::ClientRead(_) | Event::ClientWrote | Event::ServerWrote => {}
                Event::ServerRead(0) => {
                    if let Some(s) = self.server.as_deref_mut() {
                        s.broken = true;
                    }
                    return Err(fatal("08006", SERVER_CLOSED));
                }
                Event::ServerRead(_) => {
                    self.handle_server_messages()?;
                    self.maybe_release();
                }
                Event::IdleInTransaction => {
                    return Err(fatal(
                        "25P03",
                        format!(
                            "idle_transaction_timeout ({idle_tx_timeout:?}) expired: pgwarden closed \
                             this connection, which held a server connection idle inside a transaction"
                        ),
                    ));
                }
                Event::QueryTimeout => {
                    self.query_deadline = None;
                    self.query_cancelled = true;
                    // Boxed: rare, and its state (a connect, a timer) would otherwise be
                    // part of every session's task.
                    Box::pin(self.cancel_running_query()).await;
                }
                Event::Shutdown if self.server.is_some() => {
                    return Err(fatal("57P01", SESSION_SHUTDOWN))
                }
                Event::Shutdown => return Err(fatal("57P01", "pgwarden is shutting down")),
                // A server connection left mid-transaction is closed, never reused (see
                // `release_server`).
                Event::DrainExpired => return Err(fatal("57P01", DRAIN_EXPIRED)),
            }
        }
    }

    /// Sends what is buffered for either peer right away when its socket takes it (the usual
    /// case: a request or a reply fits the socket buffer), instead of in another turn of the
    /// forwarding loop. What is left (a full socket, a TLS client) is written there.
    fn write_now(&mut self, client: &ClientStream) -> Result<(), SessionEnd> {
        if let Some(server) = self.server.as_deref_mut() {
            if !self.to_server.is_empty() {
                match server.stream.try_write(&self.to_server) {
                    Ok(n) => self.to_server.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        server.broken = true;
                        return Err(fatal("08006", SERVER_CLOSED));
                    }
                }
            }
        }
        if !self.to_client.is_empty() {
            match client.try_write(&self.to_client) {
                Ok(n) => self.to_client.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(SessionEnd::ClientGone),
            }
        }
        Ok(())
    }

    /// Returns the server connection to the pool when the client's transaction is over: in
    /// transaction mode, once nothing is owed or unsent and the tracker says the connection is
    /// idle (last ReadyForQuery `I`, no open extended-query batch). Call it after every batch
    /// of client messages and after every server read.
    fn maybe_release(&mut self) {
        if self.mode == PoolMode::Transaction
            && self.plan.is_empty()
            && self.to_server.is_empty()
            && self.server.as_ref().is_some_and(|s| s.is_idle())
        {
            self.release_server(false);
        }
    }

    fn release_server(&mut self, client_leaving: bool) {
        if let Some(mut server) = self.server.take() {
            self.armed.server = false;
            self.cancel.set_target(None);
            if self.mode == PoolMode::Session && client_leaving {
                server.needs_reset = true;
            }
            if !server.is_idle() {
                server.broken = true;
            }
            self.shared.stats.transactions_total.fetch_add(1, Relaxed);
        }
    }

    /// Takes an idle server connection for the client's next message without waiting, the
    /// usual case (no future built, no lock taken for a cancellable wait). `Some(false)` when a
    /// CancelRequest ended the last wait for one (see [`crate::cancel`]): the message fails
    /// without reaching a server. `None` when the client has to wait
    /// (in [`Session::serve`]).
    pub(super) fn take_server_now(&mut self) -> Option<bool> {
        if std::mem::take(&mut self.wait_cancelled) {
            return Some(false);
        }
        let server = self.pool.pool.get_now()?;
        let target = server.cancel.as_ref().map(Arc::clone);
        if target.as_ref().is_some_and(|t| t.busy()) {
            // A cancel meant for the connection's previous transaction is not over yet: it
            // must not land on this one. Rare: the connection goes back (to the longest
            // waiting client, if any) and this client waits like one that found none idle.
            drop(server);
            return None;
        }
        if target.is_some() {
            self.cancel.set_target(target);
        }
        self.hold_server(server);
        Some(true)
    }

    /// Makes `server` the session's server connection (its cancel target is set already).
    fn hold_server(&mut self, mut server: Pooled<ServerConnector>) {
        // The buffers towards both peers are taken only now: a client queued for a server
        // connection holds just the one its request is in (with hundreds queued, the spares
        // would otherwise run out and be allocated and freed over and over).
        buffers::ensure_all([&mut self.to_server, &mut self.to_client]);
        let owner = (self.id, self.params_version);
        if server.params_owner != Some(owner) {
            if let Some(sql) = self.params.sync_sql(&server.params) {
                forward::push_internal_query(&mut self.to_server, &mut self.plan, &sql);
                server.tracker.frontend_bytes(&self.to_server);
                server.params = self.params.clone();
            }
            server.params_owner = Some(owner);
        }
        self.armed.server = false;
        self.server = Some(server);
    }

    async fn cancel_running_query(&mut self) {
        let Some(cancel) = self
            .server
            .as_ref()
            .and_then(|s| s.cancel.as_ref().map(CancelTarget::begin))
        else {
            return;
        };
        tracing::info!(
            pool = %self.pool.name,
            query_timeout = ?self.shared.config.query_timeout,
            "query_timeout expired; cancelling the query"
        );
        cancel.send().await;
    }
}
