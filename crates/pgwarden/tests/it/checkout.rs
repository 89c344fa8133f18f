//! Acquire: FIFO waiting, the timeout error and its cause, server settings on new connections.

use std::time::{Duration, Instant};

use pgwarden::{Error, PoolError};
use pgwarden_testkit::Auth;

use crate::common::{settings, warden, PgCluster};

#[tokio::test]
async fn acquire_times_out_naming_the_pool_and_its_size() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "timeout-test",
        &[
            ("pool.max_size", "1"),
            ("pool.min_size", "0"),
            ("pool.acquire_timeout", "300ms"),
        ],
    );
    let held = warden.connection().await.unwrap();
    let started = Instant::now();
    let err = warden.connection().await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "gave up after {waited:?}"
    );
    match &err {
        Error::Pool(PoolError::Timeout { max_size, .. }) => assert_eq!(*max_size, 1),
        other => panic!("expected a pool timeout, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("postgres") && text.contains("max 1") && text.contains("after waiting 3"),
        "{text}"
    );
    drop(held);
    // Released: the next caller is served at once.
    warden.connection().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = std::sync::Arc::new(warden(
        &cluster,
        "fifo-test",
        &[
            ("pool.max_size", "1"),
            ("pool.min_size", "1"),
            ("pool.acquire_timeout", "10s"),
        ],
    ));
    warden.init().await.unwrap();
    let held = warden.connection().await.unwrap();
    let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (w, order) = (warden.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = w.connection().await.unwrap();
            order.lock().push(i);
            conn.simple_query("SELECT 1").await.unwrap();
        }));
        // Let each waiter queue before the next one arrives.
        while warden.postgres_pool().status().waiters < i + 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_timeout_while_connects_fail_carries_the_cause() {
    let cluster = PgCluster::builder()
        .auth(Auth::Password {
            superuser_password: "right-secret".into(),
        })
        .start()
        .unwrap();
    let url = format!(
        "postgres://postgres:wrong-secret@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let warden = pgwarden::Warden::new(settings(
        &url,
        &[("pool.min_size", "0"), ("pool.acquire_timeout", "1s")],
    ))
    .unwrap();
    let err = warden.connection().await.unwrap_err().to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(
        !err.contains("wrong-secret"),
        "the password leaked into: {err}"
    );
    let stats = warden.postgres_pool().stats();
    assert!(
        stats
            .errors_by_kind
            .get("auth_failed")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{:?}",
        stats.errors_by_kind
    );
}

#[tokio::test]
async fn connections_carry_application_name_timezone_and_server_settings() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "settings-test",
        &[("upstream.server_settings.search_path", "public, pg_catalog")],
    );
    let conn = warden.connection().await.unwrap();
    let show = |name: &'static str| {
        let conn = &conn;
        async move {
            let row = conn.query_one(&format!("SHOW {name}"), &[]).await.unwrap();
            row.get::<_, String>(0)
        }
    };
    let app = show("application_name").await;
    assert!(
        app.starts_with("settings-test#"),
        "tagged with the instance id: {app}"
    );
    assert_eq!(show("TimeZone").await, "UTC");
    assert_eq!(show("search_path").await, "public, pg_catalog");
}

#[tokio::test]
async fn a_statement_over_the_command_timeout_is_cancelled_on_the_server() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "cmd-timeout-test",
        &[("upstream.command_timeout", "500ms")],
    );
    let conn = warden.connection().await.unwrap();
    let started = Instant::now();
    let err = conn.query("SELECT pg_sleep(20)", &[]).await.unwrap_err();
    assert!(matches!(err, Error::CommandTimeout { .. }), "{err:?}");
    assert_eq!(err.sqlstate(), Some("57014"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // The server is no longer running it, and the connection is usable again.
    let admin = cluster.connect_superuser().await;
    let running: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(20)%' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(running, 0);
    assert!(conn.is_idle());
    assert_eq!(
        conn.query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

/// The command timeout's cancel is waited for until PostgreSQL has acted on it (its postmaster
/// is frozen here, so it cannot yet): a cancel acted on late must not hit the next statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_command_timeout_cancel_never_hits_the_next_statement() {
    let cluster = std::sync::Arc::new(PgCluster::builder().start().unwrap());
    let warden = warden(
        &cluster,
        "late-cancel-test",
        &[("upstream.command_timeout", "200ms")],
    );
    let conn = warden.connection().await.unwrap();
    let started = Instant::now();
    cluster.freeze_postmaster();
    let thaw = tokio::spawn({
        let cluster = std::sync::Arc::clone(&cluster);
        async move {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            cluster.thaw();
        }
    });
    // Over the timeout: the cancel is sent but not acted on; the statement ends by itself.
    let err = conn.query("SELECT pg_sleep(0.6)", &[]).await;
    let returned = started.elapsed();
    assert!(matches!(err, Err(Error::CommandTimeout { .. })), "{err:?}");
    // It returned only once PostgreSQL could act on the cancel (after the thaw).
    assert!(
        returned >= Duration::from_millis(1100),
        "returned after {returned:?}"
    );
    thaw.await.unwrap();
    // Runs (without the command timeout) across the moment a cancel sent too early would have
    // landed.
    let next = conn
        .client()
        .query_one("SELECT pg_sleep(1)::text, 8", &[])
        .await;
    assert_eq!(
        next.expect("the late cancel hit the next statement")
            .get::<_, i32>(1),
        8
    );
}
