//! `pgwarden serve` with `admin.listen` set, as an operator's scraper and load balancer see it:
//! `/health`, `/ready` following the upstream (down when the cluster stops, back when it
//! returns) and the drain after SIGTERM, and `/metrics` counting a client's queries.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use pgwarden_testkit::{free_port, PgCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{connect, Serve};

/// A plain HTTP/1.0 GET; `None` while nothing answers, else (status, body).
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Polls `path` until `accept` likes the answer; panics with the last answer after 20 s.
async fn wait_for(
    addr: SocketAddr,
    path: &str,
    what: &str,
    accept: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(addr, path).await;
        if let Some((status, body)) = &answer {
            if accept(*status, body) {
                return (*status, body.clone());
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: waited for {what}, last answer {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the unlabelled sample `name` in a scrape.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn health_ready_and_metrics_follow_the_upstream_and_the_drain() {
    let mut cluster = PgCluster::start().expect("start PostgreSQL");
    let (port, admin_port) = (free_port(), free_port());
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgwarden.toml");
    std::fs::write(
        &config,
        format!(
            "environment = \"production\"\n\
             [upstream]\n\
             url = \"{}\"\n\
             [pool]\n\
             min_size = 0\n\
             [proxy]\n\
             listen = \"127.0.0.1:{port}\"\n\
             auth_type = \"trust\"\n\
             [retry]\n\
             initial_delay = \"200ms\"\n\
             max_delay = \"500ms\"\n\
             [resilience]\n\
             health_interval = \"200ms\"\n\
             probe_timeout = \"500ms\"\n\
             probe_cache = \"0s\"\n",
            cluster.url("postgres", "postgres")
        ),
    )
    .unwrap();
    let serve = Serve::start_with(&config, &[("PGWARDEN_ADMIN_LISTEN", &admin.to_string())]);

    let health = wait_for(admin, "/health", "health", |s, _| s == 200).await;
    assert_eq!(health.1, "ok\n");
    wait_for(admin, "/ready", "ready", |s, b| s == 200 && b == "ok\n").await;

    // A client's queries through the proxy show up in the pool's and the proxy's metrics.
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let client = connect(&url).await;
    for _ in 0..3 {
        client.simple_query("SELECT 1").await.unwrap();
    }
    let (_, metrics) = wait_for(admin, "/metrics", "transactions", |s, b| {
        s == 200 && sample(b, "pgwarden_transactions_total").is_some_and(|n| n >= 3.0)
    })
    .await;
    let pool = r#"pgwarden_pool_connections{pool="postgres/postgres",state="idle"} 1"#;
    assert!(metrics.lines().any(|l| l == pool), "{metrics}");
    assert_eq!(sample(&metrics, "pgwarden_upstream_up"), Some(1.0));
    assert_eq!(sample(&metrics, "pgwarden_clients_active"), Some(1.0));
    assert!(metrics.ends_with("# EOF\n"));
    drop(client);

    // The cluster stops: not ready within a few seconds, with the reason; /health stays 200.
    cluster.stop().unwrap();
    let stopped = Instant::now();
    let (_, reason) = wait_for(admin, "/ready", "unavailable", |s, _| s == 503).await;
    assert!(stopped.elapsed() < Duration::from_secs(5), "{reason}");
    assert!(reason.starts_with("upstream unavailable ("), "{reason}");
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert_eq!(get(admin, "/health").await.unwrap().0, 200);
    let (_, metrics) = get(admin, "/metrics").await.unwrap();
    assert_eq!(sample(&metrics, "pgwarden_upstream_up"), Some(0.0));

    // It returns: ready again.
    cluster.start_again().unwrap();
    wait_for(admin, "/ready", "ready again", |s, _| s == 200).await;

    // SIGTERM while a client is inside a transaction: not ready ("shutting down") during the
    // drain, and the process exits once the transaction ends.
    // (A server connection idle across the restart may hand its first client the FATAL the
    // old server sent it; that client retries on a fresh connection.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let client = loop {
        let client = connect(&url).await;
        // A statement behind the BEGIN, so the transaction holds a server connection.
        match client.simple_query("BEGIN; SELECT 1").await {
            Ok(_) => break client,
            Err(e) => assert!(Instant::now() < deadline, "BEGIN after the restart: {e}"),
        }
    };
    let killed = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (_, reason) = wait_for(admin, "/ready", "shutting down", |s, _| s == 503).await;
    assert_eq!(reason, "shutting down\n");
    client.simple_query("COMMIT").await.unwrap();
    let mut serve = serve;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = serve.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not exit after the drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        get(admin, "/health").await.is_none(),
        "admin listener closed"
    );
}
