//! Server connection lifecycle through the proxy: warm pools, parallel cold opens, the reset
//! between session-mode clients, slow logins, server-side prepared statements closed by the
//! client.

use std::time::{Duration, Instant};

use pgwarden_proxy::PoolMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, RunningProxy, APP_DB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_is_kept_warm_and_a_cold_pool_opens_in_parallel() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 4;
    config.min_pool_size = 2;
    config.max_connecting = 4;
    let proxy = RunningProxy::start(config).await;
    // The pool exists once a client has used it; then it stays at min_pool_size.
    let c = common::client(&proxy).await;
    c.simple_query("SELECT 1").await.unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::app_backends(&cluster).await < 2 {
        assert!(Instant::now() < deadline, "min_pool_size = 2 not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Four clients each holding a transaction: the two missing connections open together.
    let clients = futures_util::future::join_all((0..4).map(|_| common::client(&proxy))).await;
    let started = Instant::now();
    let held = futures_util::future::join_all(clients.iter().map(|c| async move {
        c.batch_execute("BEGIN; SELECT pg_sleep(0.3)")
            .await
            .unwrap();
    }))
    .await;
    assert_eq!(held.len(), 4);
    // Serially this would take at least 2 x 0.3 s (two waves on 2 connections).
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "{:?}: the pool did not grow to meet the load in parallel",
        started.elapsed()
    );
    assert_eq!(common::app_backends(&cluster).await, 4);
    for c in &clients {
        c.batch_execute("COMMIT").await.unwrap();
    }
    proxy.stop().await;
}

#[tokio::test]
async fn session_mode_runs_the_reset_query_between_clients() {
    let cluster = common::cluster();
    for (reset, temp_table_survives) in [("DISCARD ALL", false), ("", true)] {
        let mut config = common::config(&cluster);
        config.pool_mode = PoolMode::Session;
        config.default_pool_size = 1;
        config.server_reset_query = reset.into();
        let proxy = RunningProxy::start(config).await;
        let a = common::client(&proxy).await;
        let pid_a: i32 = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        a.batch_execute("CREATE TEMP TABLE scratch (x int)")
            .await
            .unwrap();
        drop(a);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let b = common::client(&proxy).await;
        let pid_b: i32 = b
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            pid_a, pid_b,
            "the same server connection serves the next client"
        );
        let visible: bool = b
            .query_one("SELECT to_regclass('pg_temp.scratch') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            visible, temp_table_survives,
            "server_reset_query = {reset:?}"
        );
        drop(b);
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_login_is_dropped_at_client_login_timeout() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.client_login_timeout = Duration::from_millis(300);
    let proxy = RunningProxy::start(config).await;
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    // Half a startup packet, then silence.
    slow.write_all(&[0, 0, 0, 40, 0, 3]).await.unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut reply))
        .await
        .expect("the proxy should hang up")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        reply.first(),
        Some(&b'E'),
        "an ErrorResponse before closing"
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("08006") && text.contains("client_login_timeout"),
        "{text}"
    );
    // Others are served meanwhile and after.
    let c = common::client(&proxy).await;
    c.simple_query("SELECT 1").await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn close_and_deallocate_are_honoured_in_transaction_mode() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let c = common::client(&proxy).await;
    // Named statement through the extended protocol, then closed (Close message).
    let stmt = c.prepare("SELECT $1::int + 1").await.unwrap();
    let n: i32 = c.query_one(&stmt, &[&41]).await.unwrap().get(0);
    assert_eq!(n, 42);
    drop(stmt);
    // SQL-level PREPARE / EXECUTE / DEALLOCATE.
    c.batch_execute("PREPARE twice(int) AS SELECT $1 * 2")
        .await
        .unwrap();
    let rows = c.simple_query("EXECUTE twice(21)").await.unwrap();
    let value = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(value.as_deref(), Some("42"));
    c.batch_execute("DEALLOCATE twice").await.unwrap();
    let err = c.simple_query("EXECUTE twice(1)").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "26000", "{err}");
    c.batch_execute("PREPARE thrice(int) AS SELECT $1 * 3; DEALLOCATE ALL")
        .await
        .unwrap();
    let err = c.simple_query("EXECUTE thrice(1)").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "26000", "{err}");
    // The client's statements are gone; a new one under a fresh name works.
    let stmt = c.prepare("SELECT $1::int + 2").await.unwrap();
    let n: i32 = c.query_one(&stmt, &[&40]).await.unwrap().get(0);
    assert_eq!(n, 42);
    drop(c);
    proxy.stop().await;
    let _ = APP_DB;
}

#[tokio::test]
async fn prepared_statements_beyond_the_per_connection_bound_are_evicted_and_reprepared() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    config.max_prepared_statements = 2;
    let proxy = RunningProxy::start(config).await;
    let c = common::client(&proxy).await;
    let mut statements = Vec::new();
    for i in 1..=4 {
        statements.push(c.prepare(&format!("SELECT $1::int + {i}")).await.unwrap());
    }
    for round in 0..3 {
        for (i, stmt) in statements.iter().enumerate() {
            let n: i32 = c.query_one(stmt, &[&round]).await.unwrap().get(0);
            assert_eq!(n, round + i as i32 + 1);
        }
    }
    // pg_prepared_statements is per backend: ask through the proxy, on the one connection.
    let held: i64 = c
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        held <= 3,
        "{held} statements on the server connection, bound 2 (+1 in use)"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_server_restart_leaves_no_stale_connection_for_the_next_query() {
    let mut cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 2;
    config.min_pool_size = 2;
    let proxy = RunningProxy::start(config).await;
    let c = common::client(&proxy).await;
    c.simple_query("SELECT 1").await.unwrap();
    // A fast shutdown sends FATAL 57P01 to every idle backend: the pooled connections hold
    // it unread.
    cluster.stop().unwrap();
    cluster.start_again().unwrap();
    for _ in 0..3 {
        let n: i32 = c
            .query_one("SELECT 7", &[])
            .await
            .expect("the first queries after the restart get fresh server connections")
            .get(0);
        assert_eq!(n, 7);
    }
    proxy.stop().await;
}
