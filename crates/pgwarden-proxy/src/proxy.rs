//! [`Proxy`]: the listener, the state every session shares, and the orderly shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use pgwarden_pool::PoolStats;
use pgwarden_resilience::ProberHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth_query::AuthQuery;
use crate::cancel::CancelRegistry;
use crate::client::park::Parker;
use crate::config::ProxyConfig;
use crate::pools::PoolSet;
use crate::signals::Signals;
use crate::tls::{TlsError, TlsMode};
use crate::userlist::{Userlist, UserlistError};

/// Counters of the proxy as a whole.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) clients_total: AtomicU64,
    pub(crate) clients_active: AtomicU64,
    pub(crate) transactions_total: AtomicU64,
    pub(crate) clients_refused: AtomicU64,
}

/// What every session shares.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) pools: PoolSet,
    pub(crate) cancels: Arc<CancelRegistry>,
    pub(crate) userlist: Userlist,
    pub(crate) upstream: Option<ProberHandle>,
    pub(crate) stats: Counters,
    /// The connection `auth_query` lookups share.
    pub(crate) auth_query: AuthQuery,
    /// Fires when the drain timeout expires: every client still connected (inside a
    /// transaction, or holding a server connection in session mode) is told and disconnected.
    pub(crate) drain_expired: CancellationToken,
    /// Fires when shutdown starts: idle clients are told and disconnected.
    pub(crate) shutdown: CancellationToken,
    /// The same two events for logged-in sessions, watched without a lock on every turn of
    /// the forwarding loop (see [`crate::signals`]).
    pub(crate) signals: Arc<Signals>,
    /// Clients idle long enough to give up their task (see `crate::client::park`).
    pub(crate) parker: Arc<Parker>,
    /// Answers SSLRequest with `S` when set (a certificate is configured and `tls_mode` is
    /// not `disable`).
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// Sessions run on a current-thread runtime (set by [`Proxy::run`]): see
    /// `ClientStream::poll_read_idle`.
    pub(crate) single_threaded: AtomicBool,
}

/// A snapshot of the proxy's state.
#[derive(Debug, Clone)]
pub struct ProxyStats {
    /// Clients logged in since start.
    pub clients_total: u64,
    /// Clients connected now.
    pub clients_active: u64,
    /// Of those, clients idle long enough to have given up their task (parked).
    pub clients_parked: u64,
    /// Clients refused at `max_client_conn`.
    pub clients_refused: u64,
    /// Server connection checkouts completed (transactions in transaction mode).
    pub transactions_total: u64,
    /// Each pool's statistics.
    pub pools: Vec<PoolStats>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The settings contradict each other.
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// The userlist could not be loaded.
    #[error(transparent)]
    Userlist(#[from] UserlistError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound proxy; [`Proxy::run`] serves until shutdown.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
}

/// A cheap handle for statistics and shutdown while [`Proxy::run`] runs.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Current statistics.
    pub fn stats(&self) -> ProxyStats {
        stats(&self.shared)
    }
}

fn stats(shared: &Shared) -> ProxyStats {
    ProxyStats {
        clients_total: shared.stats.clients_total.load(Relaxed),
        clients_active: shared.stats.clients_active.load(Relaxed),
        clients_parked: shared.parker.parked() as u64,
        clients_refused: shared.stats.clients_refused.load(Relaxed),
        transactions_total: shared.stats.transactions_total.load(Relaxed),
        pools: shared.pools.stats(),
    }
}

impl Proxy {
    /// Validates `config`, loads the userlist and binds the listener. `upstream` (optional)
    /// is the upstream's monitor: connects are gated by it and report to it.
    pub async fn bind(
        config: ProxyConfig,
        upstream: Option<ProberHandle>,
    ) -> Result<Proxy, StartError> {
        config.validate().map_err(StartError::Config)?;
        let userlist = match &config.auth_file {
            Some(path) => Userlist::load(path)?,
            None => Userlist::default(),
        };
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) if config.tls_mode != TlsMode::Disable => Some(
                tokio_rustls::TlsAcceptor::from(crate::tls::server_config(cert, key)?),
            ),
            _ => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Proxy {
            shared: Arc::new(Shared {
                config,
                pools: PoolSet::default(),
                cancels: Arc::new(CancelRegistry::default()),
                userlist,
                upstream,
                stats: Counters::default(),
                auth_query: AuthQuery::default(),
                drain_expired: CancellationToken::new(),
                shutdown: CancellationToken::new(),
                signals: Arc::new(Signals::default()),
                parker: Arc::new(Parker::default()),
                tls,
                single_threaded: AtomicBool::new(false),
            }),
            listener,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// A handle for statistics.
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves clients until `shutdown` fires, then drains: stops accepting, tells idle clients,
    /// lets clients inside a transaction finish it (up to `drain_timeout`), and closes every
    /// server connection with Terminate. Returns the final statistics.
    pub async fn run(self, shutdown: CancellationToken, drain_timeout: Duration) -> ProxyStats {
        let sessions = TaskTracker::new();
        // Every session task runs on the runtime running this.
        let flavor = tokio::runtime::Handle::current().runtime_flavor();
        self.shared.single_threaded.store(
            flavor == tokio::runtime::RuntimeFlavor::CurrentThread,
            Relaxed,
        );
        let parker = tokio::spawn(
            Arc::clone(&self.shared.parker).run(Arc::clone(&self.shared), sessions.clone()),
        );
        let limit = Arc::new(Semaphore::new(self.shared.config.max_client_conn));
        tracing::info!(
            listen = %self.local_addr(),
            upstream = %format!("{}:{}", self.shared.config.upstream.host, self.shared.config.upstream.port),
            mode = self.shared.config.pool_mode.as_str(),
            "pgwarden proxy listening"
        );
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let permit = Arc::clone(&limit).try_acquire_owned().ok();
                        if permit.is_none() {
                            self.shared.stats.clients_refused.fetch_add(1, Relaxed);
                        }
                        sessions.spawn(crate::client::run_session(
                            stream,
                            peer,
                            Arc::clone(&self.shared),
                            permit,
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(self.listener);
        self.shared.shutdown.cancel();
        self.shared.signals.fire(crate::signals::SHUTDOWN);
        // Parked clients are told too, and drained like the others.
        let _ = parker.await;
        self.shared.parker.resume_all(&self.shared, &sessions);
        sessions.close();
        let drained = tokio::time::timeout(drain_timeout, sessions.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                still_connected = self.shared.stats.clients_active.load(Relaxed),
                "drain timeout expired with clients inside transactions or sessions; disconnecting them"
            );
            // Each is told (FATAL 57P01) and its server connection closed (a transaction
            // left open is rolled back by PostgreSQL).
            self.shared.drain_expired.cancel();
            self.shared.signals.fire(crate::signals::DRAIN_EXPIRED);
            let _ = tokio::time::timeout(Duration::from_secs(2), sessions.wait()).await;
        }
        let remaining = drain_timeout.saturating_sub(Duration::from_millis(0));
        for pool in self.shared.pools.all() {
            pool.pool.close(remaining.min(Duration::from_secs(5))).await;
        }
        self.shared.auth_query.close().await;
        stats(&self.shared)
    }
}
