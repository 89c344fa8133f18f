//! What a careless caller cannot break: leaks are reported with the caller's location, and a
//! connection abandoned mid-transaction or mid-query is never handed out dirty.

use std::time::Duration;

use pgwarden::PoolEvent;

use crate::common::{eventually, warden, LogCapture, PgCluster};

#[tokio::test]
async fn a_guard_held_past_the_leak_threshold_is_reported_with_its_location() {
    let capture = LogCapture::default();
    let _logs = capture.install();
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(&cluster, "leak-test", &[("pool.leak_threshold", "200ms")]);
    let mut events = warden.postgres_pool().subscribe();

    let line = line!() + 1;
    let conn = warden.connection().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    drop(conn);

    let text = capture.text();
    let location = format!("{}:{}", file!(), line);
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "expected one leak warning, got:\n{text}");
    assert!(
        warnings[0].contains(&location),
        "no {location} in: {}",
        warnings[0]
    );
    assert_eq!(warden.postgres_pool().stats().leaks_total, 1);
    let mut saw_event = false;
    while let Ok(event) = events.try_recv() {
        saw_event |= matches!(event, PoolEvent::LeakDetected { .. });
    }
    assert!(saw_event);
}

#[tokio::test]
async fn a_connection_dropped_inside_a_transaction_is_rolled_back() {
    let cluster = PgCluster::builder().start().unwrap();
    cluster.psql("CREATE TABLE t (v int)").unwrap();
    let warden = warden(
        &cluster,
        "dirty-test",
        &[("pool.max_size", "1"), ("pool.min_size", "1")],
    );
    {
        let conn = warden.connection().await.unwrap();
        conn.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        assert!(!conn.is_idle());
    } // dropped without COMMIT
    let conn = warden.connection().await.unwrap();
    assert!(conn.is_idle());
    conn.batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let rows = cluster
        .psql("SELECT string_agg(v::text, ',') FROM t")
        .unwrap();
    assert_eq!(
        rows.trim(),
        "2",
        "the abandoned insert must not be committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cancelled_mid_query_leaves_no_busy_connection_behind() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = std::sync::Arc::new(warden(
        &cluster,
        "cancel-test",
        &[
            ("pool.max_size", "1"),
            ("pool.min_size", "1"),
            ("pool.acquire_timeout", "10s"),
        ],
    ));
    let task = {
        let warden = warden.clone();
        tokio::spawn(async move {
            let conn = warden.connection().await.unwrap();
            let _ = conn.batch_execute("BEGIN; SELECT pg_sleep(30)").await;
        })
    };
    let admin = cluster.connect_superuser().await;
    let running = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'cancel-test#%' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert!(eventually(Duration::from_secs(5), || async { running().await == 1 }).await);
    let busy_pid: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'cancel-test#%' AND state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    task.abort();
    let _ = task.await;
    // The next caller gets an idle connection well before pg_sleep(30) would have ended.
    let conn = tokio::time::timeout(Duration::from_secs(10), warden.connection())
        .await
        .expect("served")
        .unwrap();
    assert!(conn.is_idle());
    assert_eq!(
        conn.backend_pid(),
        busy_pid,
        "the connection was cancelled, rolled back and reused, not replaced"
    );
    assert_eq!(running().await, 0);
}

/// A freshly opened connection is handed out with nothing owed: the login's own queries have
/// all been answered, so the caller (and the release check) sees it idle at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_is_handed_out_with_nothing_owed() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "fresh-test",
        &[("pool.max_size", "1"), ("pool.min_size", "0")],
    );
    let mut pids = std::collections::HashSet::new();
    for _ in 0..20 {
        let mut conn = warden.connection().await.unwrap();
        assert!(conn.is_idle(), "a new connection owes nothing");
        pids.insert(conn.backend_pid());
        // Discarded, so the next round opens a new connection.
        conn.mark_broken();
    }
    assert_eq!(pids.len(), 20, "every round used a new connection");
}

/// A connection given back while its statement is about to finish (here a 50 ms sleep whose
/// caller stopped waiting) is left to finish rather than cancelled: a cancel PostgreSQL acts on
/// late would hit the reset's ROLLBACK and the connection would be closed for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_finishing_is_not_cancelled_and_is_reused() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "settle-test",
        &[("pool.max_size", "1"), ("pool.min_size", "0")],
    );
    let conn = warden.connection().await.unwrap();
    let pid = conn.backend_pid();
    // The statement is sent, then its caller gives up on it.
    let _ = tokio::time::timeout(
        Duration::from_millis(10),
        conn.batch_execute("SELECT pg_sleep(0.05)"),
    )
    .await;
    assert!(!conn.is_idle());
    drop(conn);
    let again = warden.connection().await.unwrap();
    assert_eq!(
        again.backend_pid(),
        pid,
        "the connection was closed instead of reused"
    );
    assert!(again.is_idle());
    assert!(
        !cluster
            .log_contents()
            .contains("canceling statement due to user request"),
        "the finishing statement was cancelled"
    );
}
