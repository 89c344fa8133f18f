//! One pooled PostgreSQL connection: a tokio-postgres client, its connection task and the
//! tracker that knows whether it is idle, plus statement helpers bounded by the command timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pgwarden_protocol::{TransactionStatus, TransactionTracker};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, SimpleQueryMessage, Statement, ToStatement};

use crate::error::Error;

/// How long a clean close waits for the server to see Terminate before giving up.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a statement that was cancelled after its timeout may take to give the connection back.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// A PostgreSQL connection owned by a pool.
///
/// Statement methods (`query`, `query_one`, `execute`, `batch_execute`, `simple_query`) are
/// bounded by the command timeout: a statement that runs longer is cancelled on the server and
/// returns [`Error::CommandTimeout`]. [`PgConnection::client`] gives the raw tokio-postgres
/// client for everything else (no timeout applies there).
pub struct PgConnection {
    client: Client,
    /// The task driving the socket; it ends by itself after the client is dropped (sending
    /// Terminate), and `close` awaits it so the server has seen the goodbye.
    driver: Option<JoinHandle<()>>,
    tracker: Arc<Mutex<TransactionTracker>>,
    server_addr: SocketAddr,
    command_timeout: Duration,
    backend_pid: i32,
}

impl std::fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnection")
            .field("server_addr", &self.server_addr)
            .field("backend_pid", &self.backend_pid)
            .finish_non_exhaustive()
    }
}

impl PgConnection {
    pub(crate) fn new(
        client: Client,
        driver: JoinHandle<()>,
        tracker: Arc<Mutex<TransactionTracker>>,
        server_addr: SocketAddr,
        command_timeout: Duration,
        backend_pid: i32,
    ) -> Self {
        PgConnection {
            client,
            driver: Some(driver),
            tracker,
            server_addr,
            command_timeout,
            backend_pid,
        }
    }

    /// The raw tokio-postgres client. Statements sent through it are not bounded by the command
    /// timeout, but the pool still sees their transaction state.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The server process id serving this connection (as in `pg_stat_activity.pid`).
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// The transaction state from the last ReadyForQuery the server sent.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.tracker.lock().transaction_status()
    }

    /// True when no response is owed and no transaction is open.
    pub fn is_idle(&self) -> bool {
        self.tracker.lock().is_idle()
    }

    pub(crate) fn is_desynchronized(&self) -> bool {
        self.tracker.lock().is_desynchronized()
    }

    /// True when the socket is gone.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs a statement and returns its rows, within the command timeout.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.bounded(self.client.query(statement, params)).await
    }

    /// Runs a statement that returns exactly one row, within the command timeout.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.bounded(self.client.query_one(statement, params)).await
    }

    /// Runs a statement that returns at most one row, within the command timeout.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.bounded(self.client.query_opt(statement, params)).await
    }

    /// Runs a statement and returns the number of rows it affected, within the command timeout.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.bounded(self.client.execute(statement, params)).await
    }

    /// Prepares a statement, within the command timeout.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, Error> {
        self.bounded(self.client.prepare(sql)).await
    }

    /// Runs one or more statements with the simple query protocol, within the command timeout.
    pub async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        self.bounded(self.client.batch_execute(sql)).await
    }

    /// Runs statements with the simple query protocol and returns text rows, within the command
    /// timeout.
    pub async fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, Error> {
        self.bounded(self.client.simple_query(sql)).await
    }

    /// Awaits `work` for at most the command timeout. On timeout the statement is cancelled on
    /// the server (a CancelRequest for this backend) and its own error is awaited for a short
    /// grace, so the connection is not left busy behind the caller's back.
    async fn bounded<F, R>(&self, work: F) -> Result<R, Error>
    where
        F: std::future::Future<Output = Result<R, tokio_postgres::Error>>,
    {
        tokio::pin!(work);
        match tokio::time::timeout(self.command_timeout, &mut work).await {
            Ok(result) => result.map_err(Error::from),
            Err(_) => {
                self.cancel_running().await;
                // The server answers the cancelled statement with 57014; wait for it so the
                // connection returns to the pool idle rather than owing a response.
                let _ = tokio::time::timeout(CANCEL_GRACE, work).await;
                Err(Error::CommandTimeout {
                    timeout: self.command_timeout,
                })
            }
        }
    }

    /// Waits up to `limit` for the connection to become idle on its own (replies still on
    /// their way arrive); returns whether it did.
    pub(crate) async fn settles_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_idle() {
            if tokio::time::Instant::now() >= deadline || self.is_closed() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }

    /// Sends a CancelRequest for whatever this connection's backend is running and, like
    /// libpq, waits (at most `CANCEL_GRACE`) until PostgreSQL has acted on it: it closes the
    /// cancel connection once the backend is signalled. A cancel acted on later could hit the
    /// next statement sent on this connection.
    pub(crate) async fn cancel_running(&self) {
        let token = self.client.cancel_token();
        let sent = async {
            match TcpStream::connect(self.server_addr).await {
                Ok(stream) => {
                    if let Err(error) = token
                        .cancel_query_raw(UntilClosed::new(stream), NoTls)
                        .await
                    {
                        tracing::debug!(%error, pid = self.backend_pid, "cancel request failed");
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "could not connect to send a cancel request")
                }
            }
        };
        if tokio::time::timeout(CANCEL_GRACE, sent).await.is_err() {
            tracing::debug!(
                pid = self.backend_pid,
                "the server did not finish a cancel request in time"
            );
        }
    }

    /// Drops the client (its task sends Terminate) and waits briefly for the socket to close.
    pub(crate) async fn close(mut self) {
        let driver = self.driver.take();
        drop(self);
        if let Some(driver) = driver {
            let _ = tokio::time::timeout(CLOSE_GRACE, driver).await;
        }
    }
}

/// A cancel connection whose shutdown completes only once the server has closed its end:
/// tokio-postgres writes the CancelRequest, flushes and shuts down, so with this stream its
/// `cancel_query_raw` returns after PostgreSQL has acted on the request.
struct UntilClosed {
    stream: TcpStream,
    write_closed: bool,
}

impl UntilClosed {
    fn new(stream: TcpStream) -> Self {
        UntilClosed {
            stream,
            write_closed: false,
        }
    }
}

impl tokio::io::AsyncRead for UntilClosed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for UntilClosed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        if !self.write_closed {
            match std::pin::Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => self.write_closed = true,
                other => return other,
            }
        }
        // PostgreSQL sends nothing back; read until it closes (or resets) the connection.
        let mut sink = [0u8; 64];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut sink);
            match std::pin::Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
