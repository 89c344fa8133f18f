//! Shutdown with session-mode clients: each is told (FATAL 57P01) and closed at its next
//! transaction boundary, or when the drain timeout expires.

use std::time::{Duration, Instant};

use pgwarden_proxy::PoolMode;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use crate::common::{self, RunningProxy, APP_DB};

/// A client whose connection task is kept: its result is how the connection ended.
async fn session_client(
    proxy: &RunningProxy,
) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, connection) = tokio_postgres::connect(&proxy.url(APP_DB, "postgres"), NoTls)
        .await
        .unwrap();
    (client, tokio::spawn(connection))
}

/// The SQLSTATE and message the connection ended with.
async fn ended_with(
    task: JoinHandle<Result<(), tokio_postgres::Error>>,
    within: Duration,
) -> (String, String) {
    let result = tokio::time::timeout(within, task)
        .await
        .expect("the connection is closed in time")
        .unwrap();
    let err = result.expect_err("closed by pgwarden with an error");
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err}"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test]
async fn session_clients_are_closed_at_their_boundary_or_at_the_drain_deadline() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.pool_mode = PoolMode::Session;
    let proxy = RunningProxy::start(config).await;

    // Holds a server connection between transactions.
    let (idle, idle_task) = session_client(&proxy).await;
    idle.query_one("SELECT 1", &[]).await.unwrap();
    // Inside a transaction it will finish.
    let (busy, busy_task) = session_client(&proxy).await;
    busy.batch_execute("BEGIN; CREATE TABLE kept (x int)")
        .await
        .unwrap();
    // Inside a transaction it never finishes.
    let (stuck, stuck_task) = session_client(&proxy).await;
    stuck
        .batch_execute("BEGIN; CREATE TABLE lost (x int)")
        .await
        .unwrap();
    assert_eq!(common::app_backends(&cluster).await, 3);

    let started = Instant::now();
    let stopping = tokio::spawn(proxy.stop());

    let (code, message) = ended_with(idle_task, Duration::from_secs(2)).await;
    assert_eq!(code, "57P01");
    assert!(
        message.starts_with("terminating connection due to administrator command"),
        "{message}"
    );

    // The transaction in progress finishes; the client is closed right after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    busy.batch_execute("INSERT INTO kept VALUES (1); COMMIT")
        .await
        .expect("a transaction in progress may finish during the drain");
    let (code, _) = ended_with(busy_task, Duration::from_secs(2)).await;
    assert_eq!(code, "57P01");

    // The drain timeout (5 s in these tests) ends the last one.
    let (code, message) = ended_with(stuck_task, Duration::from_secs(10)).await;
    assert_eq!(code, "57P01");
    assert!(message.contains("drain timeout"), "{message}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    stopping.await.unwrap();
    assert_eq!(
        common::app_backends(&cluster).await,
        0,
        "every server connection closed"
    );
    let admin = common::client_url(&cluster.url(APP_DB, "postgres")).await;
    let tables: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('kept', 'lost')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        tables, 1,
        "the finished transaction committed, the abandoned one rolled back"
    );
}
