//! A scripted connector: connections are numbers; how long connects and pings take, and
//! whether they fail, is set by the test. It counts what a server would see: connections
//! alive, connects in flight at once, pings, polite closes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use pgwarden_pool::{Connector, Pool, PoolConfig};

/// What the "server" sees, shared between the test and the connector.
#[derive(Debug, Default)]
pub(crate) struct Server {
    /// Connections opened and not yet closed or dropped.
    pub(crate) alive: AtomicUsize,
    /// Connects running right now, and the most ever seen at once.
    pub(crate) connecting: AtomicUsize,
    pub(crate) max_connecting_seen: AtomicUsize,
    pub(crate) pings: AtomicU64,
    pub(crate) polite_closes: AtomicU64,
    /// Milliseconds a connect / a ping takes.
    pub(crate) connect_ms: AtomicU64,
    pub(crate) ping_ms: AtomicU64,
    /// The next pings fail.
    pub(crate) ping_fails: AtomicBool,
    /// The next connects fail.
    pub(crate) connect_fails: AtomicBool,
    /// Connect failures end the waits of callers (`Connector::fails_waiters`).
    pub(crate) failures_fail_waiters: AtomicBool,
    next_id: AtomicU64,
}

/// One fake connection: dropping it is the server noticing the socket close.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    server: Arc<Server>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.server.alive.fetch_sub(1, SeqCst);
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Fake(pub Arc<Server>);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FakeError(&'static str);

impl Connector for Fake {
    type Connection = Conn;
    type Error = FakeError;

    async fn connect(&self) -> Result<Conn, FakeError> {
        let s = &self.0;
        let now = s.connecting.fetch_add(1, SeqCst) + 1;
        s.max_connecting_seen.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(s.connect_ms.load(SeqCst))).await;
        s.connecting.fetch_sub(1, SeqCst);
        if s.connect_fails.load(SeqCst) {
            return Err(FakeError("connection refused"));
        }
        s.alive.fetch_add(1, SeqCst);
        Ok(Conn {
            id: s.next_id.fetch_add(1, SeqCst) + 1,
            server: Arc::clone(s),
        })
    }

    async fn ping(&self, _: &mut Conn) -> Result<(), FakeError> {
        self.0.pings.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(self.0.ping_ms.load(SeqCst))).await;
        if self.0.ping_fails.load(SeqCst) {
            Err(FakeError("server closed the connection"))
        } else {
            Ok(())
        }
    }

    fn is_broken(&self, _: &Conn) -> bool {
        false
    }

    async fn close(&self, conn: Conn) {
        self.0.polite_closes.fetch_add(1, SeqCst);
        drop(conn);
    }

    fn fails_waiters(&self, _: &FakeError) -> bool {
        self.0.failures_fail_waiters.load(SeqCst)
    }

    fn error_kind(&self, _: &FakeError) -> &'static str {
        "closed"
    }
}

/// A pool over a fresh fake server.
pub(crate) fn pool(config: PoolConfig) -> (Pool<Fake>, Arc<Server>) {
    let server = Arc::new(Server::default());
    let pool = Pool::new(Fake(Arc::clone(&server)), config).expect("valid config");
    (pool, server)
}

/// Lets background tasks run for `ms` of (paused) time.
pub(crate) async fn run_for(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
