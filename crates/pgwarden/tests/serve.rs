//! `pgwarden serve` as a user runs it: a TOML file in front of a real, throwaway PostgreSQL,
//! clients through the proxy; and its resilience: orphans of a crashed instance terminated at
//! start-up, a degraded start that answers clients at once and serves them once the cluster
//! is up, a wrong password in the upstream URL reported once as a configuration error.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden_testkit::{free_port, PgCluster};
use tokio_postgres::NoTls;

use support::{connect, Serve};

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

/// The TOML of a serve instance named `name` in front of `url`, listening on `port`, plus
/// `extra` lines (whole sections).
fn serve_toml(url: &str, name: &str, port: u16, extra: &str) -> String {
    format!(
        "environment = \"production\"\n\
         [upstream]\n\
         url = \"{url}\"\n\
         application_name = \"{name}\"\n\
         [proxy]\n\
         listen = \"127.0.0.1:{port}\"\n\
         auth_type = \"trust\"\n\
         workers = 1\n\
         {extra}"
    )
}

/// The server's backends whose application_name is LIKE `pattern`.
async fn apps_like(admin: &tokio_postgres::Client, pattern: &str) -> Vec<String> {
    admin
        .query(
            "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE $1 ORDER BY 1",
            &[&pattern],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// An idle backend named `app`, held open by the returned client.
async fn plant(cluster: &PgCluster, app: &str) -> tokio_postgres::Client {
    let url = format!(
        "{}?application_name={}",
        cluster.url("postgres", "postgres"),
        app.replace('#', "%23")
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn serve_tags_its_connections_and_terminates_a_crashed_instances_orphans() {
    let cluster = PgCluster::start().expect("start PostgreSQL");
    let admin = cluster.connect_superuser().await;
    let url = cluster.url("postgres", "postgres");
    let dir = tempfile::tempdir().unwrap();
    let settings = "[pool]\nmin_size = 1\nmax_size = 1\nkeepalive_interval = \"1s\"\n\
                    [resilience]\norphan_idle_threshold = \"1s\"\n";

    // A first, live instance with one busy client and one that names itself.
    let port_a = free_port();
    let (_a, _) = Serve::start_logged(
        dir.path(),
        "a",
        &serve_toml(&url, "sidecar", port_a, settings),
    );
    let client_a = connect(&format!("postgres://postgres@127.0.0.1:{port_a}/postgres")).await;
    let named = connect(&format!(
        "postgres://postgres@127.0.0.1:{port_a}/postgres?application_name=my-app"
    ))
    .await;
    let seen: String = named
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, "my-app", "the client's own name while it is served");
    // Idle in the pool, the server connection gets the instance tag back at its next
    // keepalive (1 s here), never on the transaction path.
    let mut tags = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        tags = apps_like(&admin, "sidecar#%").await;
        if tags.len() == 1 && apps_like(&admin, "my-app").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tags.len(), 1, "one pooled connection, tagged: {tags:?}");
    let tag_a = tags[0].clone();
    assert!(apps_like(&admin, "my-app").await.is_empty());
    let (prefix, id) = tag_a.split_once('#').unwrap();
    assert_eq!(prefix, "sidecar");
    assert!(
        id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{tag_a}"
    );
    // Clients without a name of their own run under the tag (what SHOW returns, too).
    let shown: String = client_a
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, tag_a);

    // A's client keeps its server connection busy, so A's backend is never idle for long.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let busy = {
        let (stop, failures) = (stop.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if client_a.simple_query("SELECT 1").await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // A crashed instance left two idle backends; another application has one.
    let mut planted = Vec::new();
    for app in ["sidecar#deadbeef", "sidecar#deadbeef", "someone-else"] {
        planted.push(plant(&cluster, app).await);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A second instance starts and cleans up before it listens.
    let port_b = free_port();
    let (_b, log_b) = Serve::start_logged(
        dir.path(),
        "b",
        &serve_toml(&url, "sidecar", port_b, settings),
    );
    let client_b = connect(&format!("postgres://postgres@127.0.0.1:{port_b}/postgres")).await;
    client_b.simple_query("SELECT 1").await.unwrap();

    assert!(
        apps_like(&admin, "sidecar#deadbeef").await.is_empty(),
        "orphans terminated: {:?}",
        apps_like(&admin, "%").await
    );
    assert_eq!(apps_like(&admin, "someone-else").await.len(), 1);
    assert!(planted[2].simple_query("SELECT 1").await.is_ok());
    assert!(planted[0].simple_query("SELECT 1").await.is_err());
    let left = apps_like(&admin, "sidecar#%").await;
    assert_eq!(
        left.iter().filter(|a| **a == tag_a).count(),
        1,
        "the live instance's connection spared: {left:?}"
    );
    assert_eq!(left.len(), 2, "A's and B's own: {left:?}");
    stop.store(true, Ordering::Relaxed);
    busy.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "A's client never noticed"
    );
    let log = std::fs::read_to_string(&log_b).unwrap();
    assert!(
        log.contains("terminated 2 orphaned server connections left by earlier instances"),
        "{log}"
    );
}

#[tokio::test]
async fn serve_starts_without_the_upstream_and_serves_once_it_is_up() {
    let mut cluster = PgCluster::start().expect("start PostgreSQL");
    cluster.stop().unwrap();
    let url = cluster.url("postgres", "postgres");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (serve, log) = Serve::start_logged(
        dir.path(),
        "degraded",
        &serve_toml(
            &url,
            "degraded",
            port,
            "[pool]\nmin_size = 1\n[resilience]\nstartup_attempts = 1\n",
        ),
    );
    let client_url = format!("postgres://postgres@127.0.0.1:{port}/postgres");

    // Clients are accepted and told at once why they cannot be served.
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio_postgres::connect(&client_url, NoTls),
        )
        .await
        {
            Ok(Err(e)) if e.as_db_error().is_some() => break e,
            Ok(Ok(_)) => panic!("served without a server"),
            Err(_) => panic!("no answer within 5 s"),
            Ok(Err(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(Err(e)) => panic!("serve did not start: {e}"),
        }
    };
    for _ in 0..3 {
        let started = Instant::now();
        let err = tokio_postgres::connect(&client_url, NoTls)
            .await
            .err()
            .expect("refused while the cluster is down");
        let db = err.as_db_error().expect("a FATAL from the proxy");
        assert_eq!(db.code().code(), "08006", "{db:?}");
        assert!(db.message().contains("refused"), "{db:?}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{started:?}"
        );
    }
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "08006", "{db:?}");
    assert_eq!(db.severity(), "FATAL");

    // The cluster starts; the next client is served by the same process.
    cluster.start_again().unwrap();
    let back = Instant::now();
    let client = connect(&client_url).await;
    client.simple_query("SELECT 1").await.unwrap();
    eprintln!("served {:?} after the first attempt", back.elapsed());
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "{:?}",
        back.elapsed()
    );
    drop(serve);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(log.matches("upstream unavailable:").count(), 1, "{log}");
    assert!(log.contains("upstream available again after"), "{log}");
}

#[tokio::test]
async fn serve_reports_a_wrong_password_in_the_upstream_url_once() {
    let cluster = PgCluster::builder()
        .auth(pgwarden_testkit::Auth::Password {
            superuser_password: "right".into(),
        })
        .start()
        .unwrap();
    let url = cluster.url_with_password("postgres", "postgres", "Xq7-not-it");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut serve, log) = Serve::start_logged(
        dir.path(),
        "wrongpw",
        &serve_toml(
            &url,
            "wrongpw",
            port,
            "[retry]\ninitial_delay = \"50ms\"\nmax_delay = \"200ms\"\n\
             [resilience]\nstartup_attempts = 2\nstartup_initial_delay = \"50ms\"\n",
        ),
    );
    // Long enough for a dozen probes at the 200 ms cap.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(serve.0.try_wait().unwrap().is_none(), "serve keeps running");
    let log = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(
        errors[0].contains("upstream rejects the configured settings")
            && errors[0].contains("password authentication failed")
            && errors[0].contains("fix the configuration"),
        "{log}"
    );
    assert!(!log.contains("Xq7-not-it"), "no secret in the log: {log}");
}
