//! Shared set-up: a cluster, a proxy in front of it, clients.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A client speaking the wire protocol byte by byte (trust authentication).
pub struct RawClient {
    stream: TcpStream,
    /// The BackendKeyData the proxy gave this client.
    pub key: (i32, [u8; 4]),
    /// The SQLSTATE of the last ErrorResponse seen by `until_ready`.
    pub last_error: Option<String>,
    /// The transaction status of the last ReadyForQuery (`I`, `T` or `E`).
    pub last_status: u8,
}

impl RawClient {
    pub async fn connect(proxy: &RunningProxy) -> RawClient {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let params = format!("user\0postgres\0database\0{APP_DB}\0\0");
        let mut startup = Vec::new();
        startup.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(params.as_bytes());
        stream.write_all(&startup).await.unwrap();
        let mut client = RawClient {
            stream,
            key: (0, [0; 4]),
            last_error: None,
            last_status: 0,
        };
        client.until_ready().await;
        assert_ne!(client.key.0, 0, "no BackendKeyData in the greeting");
        client
    }

    /// Sends bytes as they are (frames built by the test).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a simple query without waiting for its replies.
    pub async fn send_query(&mut self, sql: &str) {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&(4 + sql.len() as u32 + 1).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.stream.write_all(&msg).await.unwrap();
    }

    /// Sends a simple query; returns the tags of the replies up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> Vec<u8> {
        self.send_query(sql).await;
        self.until_ready().await
    }

    /// Prepares `sql` as the named statement `name` (Parse, Sync).
    pub async fn parse(&mut self, name: &str, sql: &str) {
        let body_len = name.len() + 1 + sql.len() + 1 + 2;
        let mut msg = vec![b'P'];
        msg.extend_from_slice(&(4 + body_len as u32).to_be_bytes());
        for part in [name, sql] {
            msg.extend_from_slice(part.as_bytes());
            msg.push(0);
        }
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        self.stream.write_all(&msg).await.unwrap();
        assert_eq!(self.until_ready().await, b"1Z");
    }

    /// Opens a connection to `proxy` carrying a CancelRequest with this client's key; the
    /// proxy closes it once the cancel is over.
    pub async fn send_cancel(&self, proxy: &RunningProxy) -> TcpStream {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let mut msg = Vec::with_capacity(16);
        msg.extend_from_slice(&16u32.to_be_bytes());
        msg.extend_from_slice(&80_877_102u32.to_be_bytes());
        msg.extend_from_slice(&self.key.0.to_be_bytes());
        msg.extend_from_slice(&self.key.1);
        stream.write_all(&msg).await.unwrap();
        stream
    }

    /// Reads up to ReadyForQuery; returns the tags seen (Authentication, ParameterStatus and
    /// BackendKeyData left out) and keeps the key and the last error's SQLSTATE.
    pub async fn until_ready(&mut self) -> Vec<u8> {
        let mut tags = Vec::new();
        loop {
            let tag = self.read_message().await;
            if !matches!(tag, b'R' | b'S' | b'K') {
                tags.push(tag);
            }
            if tag == b'Z' {
                return tags;
            }
        }
    }

    /// Reads one message; returns its tag and keeps the key and the last error's SQLSTATE.
    pub async fn read_message(&mut self) -> u8 {
        let tag = self
            .stream
            .read_u8()
            .await
            .expect("the proxy closed the connection");
        let len = self.stream.read_u32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        self.stream.read_exact(&mut body).await.unwrap();
        match tag {
            b'K' => {
                let pid = i32::from_be_bytes(body[..4].try_into().unwrap());
                self.key = (pid, body[4..8].try_into().unwrap());
            }
            b'Z' => self.last_status = body[0],
            b'E' => {
                self.last_error = body
                    .split(|b| *b == 0)
                    .find(|f| f.first() == Some(&b'C'))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned());
            }
            _ => {}
        }
        tag
    }
}

/// One frontend message: tag, length, body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(4 + body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}
