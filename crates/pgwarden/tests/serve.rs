//! `pgwarden serve` as a user runs it: a TOML file in front of a real, throwaway PostgreSQL,
//! clients through the proxy.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgwarden_testkit::{free_port, PgCluster};
use tokio_postgres::NoTls;

/// A `pgwarden serve` process, killed when dropped (also when the test panics).
struct Serve(Child);

impl Serve {
    fn start(config: &Path) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env_clear()
            .env("PGWARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start pgwarden serve");
        Serve(child)
    }

    /// Threads of the process right now, as Linux counts them.
    fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.0.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connects with a deadline while the proxy starts.
async fn connect(url: &str) -> tokio_postgres::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio_postgres::connect(url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                return client;
            }
            Err(e) if Instant::now() > deadline => panic!("connect {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn a_databases_alias_reaches_its_target_database_on_one_worker() {
    let cluster = PgCluster::start().expect("start PostgreSQL");
    cluster
        .create_database("target_db", "postgres")
        .expect("create target_db");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgwarden.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\n\
             url = \"{}\"\n\
             [pool]\n\
             min_size = 0\n\
             [proxy]\n\
             listen = \"127.0.0.1:{port}\"\n\
             auth_type = \"trust\"\n\
             workers = 1\n\
             [databases]\n\
             alias = \"dbname=target_db\"\n\
             tabled = {{ dbname = \"target_db\", pool_size = 1 }}\n",
            cluster.url("postgres", "postgres")
        ),
    )
    .unwrap();
    let serve = Serve::start(&config);

    for alias in ["alias", "tabled"] {
        let client = connect(&format!("postgres://postgres@127.0.0.1:{port}/{alias}")).await;
        let db: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(db, "target_db", "through the alias {alias}");
    }
    // A name without an entry passes through unchanged.
    let client = connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
    let db: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "postgres");

    // proxy.workers = 1: a current-thread runtime, no worker threads besides the main one.
    let threads = serve.threads();
    assert!(
        (1..=2).contains(&threads),
        "{threads} threads with workers = 1"
    );
}
