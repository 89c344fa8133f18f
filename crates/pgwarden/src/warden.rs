//! [`Warden`]: the facade a Rust application holds — one PostgreSQL pool (and optionally one Redis
//! pool) built from the layered configuration, with one lifecycle and one statistics view.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pgwarden_pool::{CloseReport, Pool, PoolConfig, PoolStats, Pooled};
use pgwarden_resilience::{InstanceTag, Prober, ProberHandle, StatusSummary, TransitionEvent};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, ToStatement};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::error::Error;
use crate::orphans::OrphanCleaner;
pub use crate::orphans::OrphanReport;
use crate::pg::PgConnector;
use crate::redis_pool::RedisConnector;

/// A PostgreSQL connection checked out of the pool. Derefs to [`PgConnection`](crate::PgConnection);
/// dropping it returns the connection (rolled back first if it was left inside a transaction).
pub type PgGuard = Pooled<PgConnector>;
/// A Redis connection checked out of the pool. Derefs to `redis::aio::MultiplexedConnection`.
pub type RedisGuard = Pooled<RedisConnector>;

/// The name of the PostgreSQL resource in statistics and error messages.
pub const POSTGRES: &str = "postgres";
/// The name of the Redis resource in statistics and error messages.
pub const REDIS: &str = "redis";

/// One application's pools, built from [`Settings`]. Pools are created on first use (inside a
/// tokio runtime) and reused afterwards; [`Warden::init`] creates and warms the PostgreSQL pool
/// up front.
pub struct Warden {
    settings: Settings,
    /// Validated at construction, cloned into the pool when it is first needed.
    pg_connector: PgConnector,
    pg_config: PoolConfig,
    postgres: OnceLock<Pool<PgConnector>>,
    redis_connector: Option<RedisConnector>,
    redis_config: PoolConfig,
    redis: OnceLock<Pool<RedisConnector>>,
    shutting_down: AtomicBool,
    /// This instance's tag, carried as `application_name` by every server connection.
    tag: InstanceTag,
    /// The upstream's prober, started with the PostgreSQL pool.
    upstream: OnceLock<UpstreamWatch>,
    /// Runs orphan cleanups and keeps the last report.
    orphans: OrphanCleaner,
}

/// The running prober and what stops it.
struct UpstreamWatch {
    handle: ProberHandle,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Warden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warden")
            .field("database", &self.pg_connector.database())
            .field("user", &self.pg_connector.user())
            .finish_non_exhaustive()
    }
}

/// Per-resource statistics of a [`Warden`], keyed by resource name (`postgres`, `redis`).
#[derive(Debug, Clone)]
pub struct WardenStats {
    /// Statistics of each pool created so far.
    pub resources: BTreeMap<&'static str, PoolStats>,
}

/// What [`Warden::shutdown`] did, per resource.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// The close report of each pool created so far.
    pub resources: BTreeMap<&'static str, CloseReport>,
}

impl Warden {
    /// Validates `settings` and builds the facade. Nothing is connected yet.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        let up = &settings.upstream;
        let tag = InstanceTag::new(&up.application_name);
        let pg_connector = crate::upstream::pg_connector(&settings, &tag.application_name())?;
        let pg_config = pool_config(POSTGRES, &settings);
        pg_config
            .validate()
            .map_err(|e| Error::InvalidSetting(e.to_string()))?;
        let redis_connector = match &settings.redis.url {
            Some(url) => Some(RedisConnector::new(
                url,
                up.connect_timeout,
                up.command_timeout,
            )?),
            None => None,
        };
        let mut redis_config = pool_config(REDIS, &settings);
        redis_config.max_size = settings.redis.max_size.max(1);
        redis_config.min_idle = 0;
        let orphans = OrphanCleaner::new(
            pg_connector.clone(),
            tag.clone(),
            settings.resilience.orphan_idle_threshold,
        );
        Ok(Warden {
            settings,
            pg_connector,
            pg_config,
            postgres: OnceLock::new(),
            redis_connector,
            redis_config,
            redis: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            tag,
            upstream: OnceLock::new(),
            orphans,
        })
    }

    /// Builds the facade from the process environment (and `PGWARDEN_CONFIG`, if set).
    pub fn from_env() -> Result<Self, Error> {
        Warden::new(Settings::from_env()?)
    }

    /// The effective settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The PostgreSQL pool, created on first use together with the upstream's prober. Must be
    /// called inside a tokio runtime.
    pub fn postgres_pool(&self) -> &Pool<PgConnector> {
        self.postgres.get_or_init(|| {
            let watch = self.upstream_watch();
            let connector = self
                .pg_connector
                .clone()
                .with_upstream(watch.handle.clone());
            let pool = Pool::new(connector, self.pg_config.clone())
                .expect("pool configuration validated in Warden::new");
            tokio::spawn(warm_on_recovery(
                pool.clone(),
                watch.handle.clone(),
                watch.cancel.clone(),
            ));
            pool
        })
    }

    fn upstream_watch(&self) -> &UpstreamWatch {
        self.upstream.get_or_init(|| {
            let probe = self.login_probe();
            let prober = Prober::new(probe, crate::upstream::monitor_config(&self.settings));
            let handle = prober.handle();
            let cancel = CancellationToken::new();
            tokio::spawn(prober.run(cancel.clone()));
            UpstreamWatch { handle, cancel }
        })
    }

    fn login_probe(&self) -> crate::pg::PgLoginProbe {
        crate::upstream::login_probe(&self.pg_connector, self.tag.name(), &self.settings)
    }

    /// The upstream's status: state, consecutive failures, retry delay, breaker, last error.
    /// `None` before the PostgreSQL pool exists.
    pub fn upstream_status(&self) -> Option<StatusSummary> {
        self.upstream.get().map(|w| w.handle.summary())
    }

    /// The upstream's prober (created with the pool): `reset()`, `force_check()`, transitions.
    pub fn upstream(&self) -> &ProberHandle {
        &self.upstream_watch().handle
    }

    /// This instance's `application_name` (`{name}#{instance id}`).
    pub fn instance_tag(&self) -> &InstanceTag {
        &self.tag
    }

    /// The last orphan cleanup's report, if one ran. Its counts also appear in
    /// [`Warden::upstream_status`] (`last_orphan_cleanup`).
    pub fn last_orphan_report(&self) -> Option<OrphanReport> {
        self.orphans.last()
    }

    /// Finds backends left by other (crashed) instances of this application — tagged with
    /// exactly our name and another instance id, idle (or idle in transaction) longer than
    /// `orphan_idle_threshold` — and terminates them. Other applications' backends (including
    /// names that merely start with ours) and this instance's own are never touched. Without the
    /// privilege, logs one warning naming the grant that would allow it.
    pub async fn cleanup_orphans(&self) -> Result<OrphanReport, Error> {
        self.orphans.run(Some(self.upstream())).await
    }

    /// Creates the PostgreSQL pool and waits (up to the connect timeout) until `min_size`
    /// connections are open and idle. Returns the pool's error if they could not be opened.
    pub async fn init(&self) -> Result<(), Error> {
        let probe = self.login_probe();
        let policy = crate::upstream::startup_policy(&self.settings);
        match crate::upstream::wait_for_upstream(&probe, &policy).await {
            crate::upstream::StartupOutcome::Ready => {}
            crate::upstream::StartupOutcome::Degraded(_) => {
                // Start without it; the prober keeps looking, the pool warms on recovery, and
                // the orphan cleanup start-up would have done runs then.
                self.postgres_pool();
                if self.settings.resilience.orphan_cleanup {
                    let watch = self.upstream_watch();
                    tokio::spawn(
                        self.orphans
                            .clone()
                            .run_on_recovery(watch.handle.clone(), watch.cancel.clone()),
                    );
                }
                return Ok(());
            }
            crate::upstream::StartupOutcome::Refused(failure) => {
                return Err(Error::UpstreamRequired(failure))
            }
        }
        if self.settings.resilience.orphan_cleanup {
            if let Err(e) = self.cleanup_orphans().await {
                tracing::warn!(error = %e, "orphan cleanup failed");
            }
        }
        let pool = self.postgres_pool();
        let want = self.pg_config.min_idle;
        let deadline = Instant::now() + self.settings.upstream.connect_timeout;
        loop {
            let status = pool.status();
            if status.idle + status.in_use >= want {
                return Ok(());
            }
            if Instant::now() >= deadline {
                // Let the pool explain why: an acquire carries the last connect error.
                drop(self.connection().await?);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Checks a PostgreSQL connection out of the pool, waiting FIFO up to the acquire timeout.
    /// The caller's source location is recorded for leak warnings.
    #[track_caller]
    pub fn connection(&self) -> impl Future<Output = Result<PgGuard, Error>> + Send + '_ {
        // No closure here: `#[track_caller]` only reaches `get` through direct calls.
        let get = if self.shutting_down.load(Ordering::Acquire) {
            None
        } else {
            Some(self.postgres_pool().get())
        };
        async move {
            match get {
                Some(get) => Ok(get.await?),
                None => Err(Error::ShuttingDown),
            }
        }
    }

    /// Checks a Redis connection out of its pool (created on first use).
    #[track_caller]
    pub fn redis(&self) -> impl Future<Output = Result<RedisGuard, Error>> + Send + '_ {
        let get = match (
            &self.redis_connector,
            self.shutting_down.load(Ordering::Acquire),
        ) {
            (_, true) => Err(Error::ShuttingDown),
            (None, false) => Err(Error::RedisNotConfigured),
            (Some(connector), false) => Ok(self
                .redis
                .get_or_init(|| {
                    Pool::new(connector.clone(), self.redis_config.clone())
                        .expect("pool configuration validated in Warden::new")
                })
                .get()),
        };
        async move { Ok(get?.await?) }
    }

    /// Runs a statement on a pooled connection and returns all rows.
    pub async fn fetch_all<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.connection().await?.query(statement, params).await
    }

    /// Runs a statement on a pooled connection and returns its single row.
    pub async fn fetch_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.connection().await?.query_one(statement, params).await
    }

    /// Runs a statement on a pooled connection and returns at most one row.
    pub async fn fetch_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.connection().await?.query_opt(statement, params).await
    }

    /// Runs a statement on a pooled connection and returns the number of rows affected.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error>
    where
        T: ?Sized + ToStatement,
    {
        self.connection().await?.execute(statement, params).await
    }

    /// Runs `SELECT 1` on a pooled connection; returns how long the round trip took.
    pub async fn health_check(&self) -> Result<Duration, Error> {
        let conn = self.connection().await?;
        let started = Instant::now();
        conn.simple_query("SELECT 1").await?;
        Ok(started.elapsed())
    }

    /// Statistics of every pool created so far.
    pub fn stats(&self) -> WardenStats {
        let mut resources = BTreeMap::new();
        if let Some(pool) = self.postgres.get() {
            resources.insert(POSTGRES, pool.stats());
        }
        if let Some(pool) = self.redis.get() {
            resources.insert(REDIS, pool.stats());
        }
        WardenStats { resources }
    }

    /// Refuses new checkouts, waits up to `deadline` for checked-out connections to come back,
    /// and closes every connection (PostgreSQL connections get a Terminate message).
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.shutting_down.store(true, Ordering::Release);
        if let Some(watch) = self.upstream.get() {
            watch.cancel.cancel();
        }
        let mut resources = BTreeMap::new();
        if let Some(pool) = self.postgres.get() {
            resources.insert(POSTGRES, pool.close(deadline).await);
        }
        if let Some(pool) = self.redis.get() {
            resources.insert(REDIS, pool.close(deadline).await);
        }
        ShutdownReport { resources }
    }
}

/// Warms the pool to `min_idle` the moment the upstream is seen again.
async fn warm_on_recovery(
    pool: Pool<PgConnector>,
    upstream: ProberHandle,
    cancel: CancellationToken,
) {
    let mut transitions = upstream.subscribe();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            t = transitions.recv() => match t {
                Ok(t) if matches!(t.event, TransitionEvent::Available { .. }) => pool.warm(),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => pool.warm(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Maps the configuration onto the pool core's settings; a zero duration or count disables.
fn pool_config(name: &str, settings: &Settings) -> PoolConfig {
    let p = &settings.pool;
    let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
    PoolConfig {
        name: name.to_string(),
        max_size: p.max_size,
        min_idle: p.min_size,
        idle_timeout: nonzero(p.idle_timeout),
        max_lifetime: nonzero(p.max_lifetime),
        max_uses: (p.max_uses > 0).then_some(p.max_uses),
        acquire_timeout: p.acquire_timeout,
        check_after_idle: p.check_after_idle,
        keepalive_interval: nonzero(p.keepalive_interval),
        max_connecting: p.max_connecting,
        leak_threshold: nonzero(p.leak_threshold),
        ..PoolConfig::default()
    }
}
