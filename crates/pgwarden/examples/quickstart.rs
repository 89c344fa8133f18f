//! The library quickstart: one process-wide pool (max 3, min 1) in front of a real PostgreSQL.
//!
//! Uses `PGWARDEN_UPSTREAM_URL` (or `DATABASE_URL`) when set; otherwise starts a throwaway
//! cluster on a free port for the length of the run.
//!
//! ```text
//! cargo run -p pgwarden --example quickstart
//! ```

use std::time::Duration;

use pgwarden::config::{LoadOptions, Settings};
use pgwarden_testkit::PgCluster;

fn main() -> anyhow::Result<()> {
    let given = std::env::var("PGWARDEN_UPSTREAM_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok();
    // Kept alive until the end of main; dropping it stops the throwaway cluster.
    let mut cluster = None;
    let url = match given {
        Some(url) => url,
        None => {
            println!("starting a throwaway PostgreSQL cluster ...");
            let c = PgCluster::builder().start()?;
            let url = c.url("postgres", "postgres");
            println!("  listening on 127.0.0.1:{}", c.port());
            cluster = Some(c);
            url
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(url))?;
    drop(cluster);
    Ok(())
}

async fn run(url: String) -> anyhow::Result<()> {
    let mut options = LoadOptions::from_process();
    options.flags = vec![
        ("upstream.url".into(), url),
        ("pool.max_size".into(), "3".into()),
        ("pool.min_size".into(), "1".into()),
    ];
    let settings = Settings::load(&options)?.settings;

    let (warden, installed) = pgwarden::init_global(settings)?;
    let again = pgwarden::global()?;
    println!(
        "singleton: installed {installed}, the same instance everywhere: {}",
        std::ptr::eq(warden, again)
    );

    warden.init().await?;
    let s = warden.postgres_pool().status();
    println!(
        "pool after init: size {}, idle {}, in use {}, max {}",
        s.size, s.idle, s.in_use, s.max_size
    );

    let conn = warden.connection().await?;
    let s = warden.postgres_pool().status();
    println!(
        "guard acquired (backend pid {}): size {}, idle {}, in use {}",
        conn.backend_pid(),
        s.size,
        s.idle,
        s.in_use
    );
    let row = conn.query_one("SELECT 1 + 1", &[]).await?;
    println!("SELECT 1 + 1 = {}", row.get::<_, i32>(0));
    drop(conn);
    let s = warden.postgres_pool().status();
    println!(
        "guard released: size {}, idle {}, in use {}",
        s.size, s.idle, s.in_use
    );

    let latency = warden.health_check().await?;
    println!("health check: SELECT 1 in {latency:?}");

    let stats = warden.postgres_pool().stats();
    println!("final stats: {stats:#?}");
    let report = warden.shutdown(Duration::from_secs(5)).await;
    println!("shutdown: {:?}", report.resources);
    Ok(())
}
