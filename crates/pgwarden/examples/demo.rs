//! `make demo`: pgwarden's main job, end to end.
//!
//! 1. Starts a throwaway PostgreSQL cluster (or uses `PGWARDEN_UPSTREAM_URL` if set).
//! 2. Starts `pgwarden serve` in front of it with a cap of 3 server connections.
//! 3. Drives 200 concurrent clients through it for about 20 s (`DEMO_SECONDS`),
//!    printing once a second: clients served, server connections PostgreSQL sees, and
//!    transactions per second.
//! 4. Leaves pgwarden running for your own clients until Ctrl+C (or exits at once with
//!    `DEMO_EXIT=1`), then shuts it down gracefully.
//!
//! The `pgwarden` binary is expected next to this example's directory (`make demo` builds both).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden_testkit::{free_port, PgCluster};
use tokio_postgres::NoTls;

const CLIENTS: usize = 200;
const CAP: usize = 3;

fn main() -> anyhow::Result<()> {
    let given = std::env::var("PGWARDEN_UPSTREAM_URL").ok();
    let mut cluster = None;
    let upstream = match given {
        Some(url) => url,
        None => {
            println!("starting a throwaway PostgreSQL cluster ...");
            let c = PgCluster::builder().max_connections(20).start()?;
            let url = c.url("postgres", "postgres");
            println!(
                "  PostgreSQL {} listening on 127.0.0.1:{}",
                version(&c),
                c.port()
            );
            cluster = Some(c);
            url
        }
    };
    let port = free_port();
    let mut proxy = start_proxy(&upstream, port)?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(&upstream, port));
    stop_proxy(&mut proxy);
    drop(cluster);
    result
}

fn version(c: &PgCluster) -> String {
    c.psql("SHOW server_version").unwrap_or_default()
}

fn pgwarden_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/demo -> target/<profile>/pgwarden
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("pgwarden")
}

fn start_proxy(upstream: &str, port: u16) -> anyhow::Result<Child> {
    let bin = pgwarden_binary();
    println!("starting pgwarden serve (cap {CAP} server connections) on 127.0.0.1:{port} ...");
    let child = Command::new(&bin)
        .arg("serve")
        .arg("--drain-timeout")
        .arg("10s")
        .env("PGWARDEN_UPSTREAM_URL", upstream)
        .env("PGWARDEN_LISTEN", format!("127.0.0.1:{port}"))
        .env("PGWARDEN_POOL_MAX_SIZE", CAP.to_string())
        .env("PGWARDEN_POOL_MIN_SIZE", "1")
        .env("PGWARDEN_AUTH_TYPE", "trust")
        .env("PGWARDEN_PROXY_MAX_CLIENT_CONN", "1000")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e} (run `make demo`)", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            anyhow::bail!("pgwarden did not start listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

fn stop_proxy(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SIGTERM: pgwarden drains and closes every server connection.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    match child.wait() {
        Ok(status) => println!("pgwarden exited: {status}"),
        Err(e) => println!("pgwarden: {e}"),
    }
}

async fn run(upstream: &str, port: u16) -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let upstream_cfg: tokio_postgres::Config = upstream.parse()?;
    let user = upstream_cfg.get_user().unwrap_or("postgres").to_string();
    let db = upstream_cfg.get_dbname().unwrap_or("postgres").to_string();
    let proxy_url = format!("postgres://{user}@127.0.0.1:{port}/{db}?application_name=demo-client");

    let (observer, conn) = tokio_postgres::connect(upstream, NoTls).await?;
    tokio::spawn(conn);

    let done = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    println!("driving {CLIENTS} concurrent clients through pgwarden for {seconds} s ...");
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (url, done, served) = (proxy_url.clone(), done.clone(), served.clone());
        tasks.push(tokio::spawn(async move {
            let (client, conn) = match tokio_postgres::connect(&url, NoTls).await {
                Ok(c) => c,
                Err(e) => return Err(anyhow::anyhow!("client {i}: {e}")),
            };
            tokio::spawn(conn);
            served.fetch_add(1, Ordering::Relaxed);
            let stmt = client.prepare("SELECT $1::int + 1").await?;
            let mut n = 0i32;
            while Instant::now() < stop_at {
                let row = client.query_one(&stmt, &[&n]).await?;
                anyhow::ensure!(row.get::<_, i32>(0) == n + 1, "wrong answer");
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    let mut last = 0;
    let mut peak = 0i64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < stop_at {
        tick.tick().await;
        let total = done.load(Ordering::Relaxed);
        let backends: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await?
            .get(0);
        peak = peak.max(backends);
        println!(
            "  clients served {:>3}/{CLIENTS} | server connections {backends} (cap {CAP}) | {:>6} tx/s | {total} transactions",
            served.load(Ordering::Relaxed),
            total - last,
        );
        last = total;
    }
    for t in tasks {
        t.await??;
    }
    let total = done.load(Ordering::Relaxed);
    println!(
        "done: {CLIENTS} clients, {total} transactions, at most {peak} server connections seen by PostgreSQL (cap {CAP})"
    );
    if std::env::var("DEMO_EXIT").is_ok_and(|v| v == "1") {
        return Ok(());
    }
    println!();
    println!("pgwarden keeps running; connect your own clients:");
    println!("  psql \"{proxy_url}\"");
    println!("press Ctrl+C to stop (pgwarden drains and closes every server connection)");
    tokio::signal::ctrl_c().await?;
    println!();
    Ok(())
}
