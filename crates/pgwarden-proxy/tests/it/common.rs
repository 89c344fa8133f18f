//! Shared set-up: a cluster, a proxy in front of it, clients.

use std::net::SocketAddr;
use std::time::Duration;

use pgwarden_proxy::{AuthType, Proxy, ProxyConfig, ProxyHandle};
use pgwarden_testkit::PgCluster;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The database proxied clients use, so `pg_stat_activity` can count their server
/// connections apart from the test's own superuser connection.
pub const APP_DB: &str = "app";

/// A cluster with an `app` database owned by `postgres`.
pub fn cluster() -> PgCluster {
    cluster_with(PgCluster::builder())
}

pub fn cluster_with(builder: pgwarden_testkit::PgClusterBuilder) -> PgCluster {
    let cluster = builder.start().expect("start PostgreSQL");
    cluster
        .create_database(APP_DB, "postgres")
        .expect("create app database");
    cluster
}

/// Trust-auth proxy settings in front of `cluster`, listening on a free port.
pub fn config(cluster: &PgCluster) -> ProxyConfig {
    let mut config = ProxyConfig::new(cluster.host(), cluster.port());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.auth_type = AuthType::Trust;
    config.default_pool_size = 3;
    config.query_wait_timeout = Duration::from_secs(20);
    config
}

/// A running proxy; stops (draining) when dropped.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub handle: ProxyHandle,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<pgwarden_proxy::ProxyStats>>,
}

impl RunningProxy {
    pub async fn start(config: ProxyConfig) -> RunningProxy {
        let proxy = Proxy::bind(config, None).await.expect("bind proxy");
        let addr = proxy.local_addr();
        let handle = proxy.handle();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(proxy.run(shutdown.clone(), Duration::from_secs(5)));
        RunningProxy {
            addr,
            handle,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, db: &str, user: &str) -> String {
        format!(
            "postgres://{user}@{}:{}/{db}",
            self.addr.ip(),
            self.addr.port()
        )
    }

    /// Shuts down and returns the final statistics.
    pub async fn stop(mut self) -> pgwarden_proxy::ProxyStats {
        self.shutdown.cancel();
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A tokio-postgres client through the proxy (as `postgres` to `app`).
pub async fn client(proxy: &RunningProxy) -> Client {
    client_url(&proxy.url(APP_DB, "postgres")).await
}

pub async fn client_url(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Server connections to the `app` database right now, as PostgreSQL counts them.
pub async fn app_backends(cluster: &PgCluster) -> i64 {
    let admin = cluster.connect_superuser().await;
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
            &[&APP_DB],
        )
        .await
        .unwrap()
        .get(0)
}

/// Counts client backends in `pg_stat_activity` every 2 ms while a test runs, so a cap is
/// checked during the load and not only after it.
pub struct BackendSampler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<(i64, u64)>,
}

/// Client backends of the `app` database (the proxy's server connections).
pub const APP_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = 'app' AND backend_type = 'client backend'";

/// Every client backend but the sampler's own (also counts logins to other databases).
pub const ALL_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";

impl BackendSampler {
    /// Starts sampling `count_sql` (one of the constants above) on a superuser connection.
    pub async fn start(cluster: &PgCluster, count_sql: &'static str) -> BackendSampler {
        let admin = cluster.connect_superuser().await;
        let stop = CancellationToken::new();
        let done = stop.clone();
        let task = tokio::spawn(async move {
            let (mut most, mut samples) = (0i64, 0u64);
            while !done.is_cancelled() {
                let n: i64 = admin.query_one(count_sql, &[]).await.unwrap().get(0);
                most = most.max(n);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (most, samples)
        });
        BackendSampler { stop, task }
    }

    /// Stops sampling: the most backends seen, and how many samples were taken.
    pub async fn finish(self) -> (i64, u64) {
        self.stop.cancel();
        self.task.await.unwrap()
    }
}
