//! Clear errors instead of hangs: exhausted pool, too many clients, idle transactions,
//! malformed packets, a dead upstream.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

use crate::common::{self, RunningProxy, APP_DB};

fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {e:?}"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test]
async fn query_wait_timeout_names_the_pool_and_its_cap() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    config.query_wait_timeout = Duration::from_millis(500);
    let proxy = RunningProxy::start(config).await;
    let holder = common::client(&proxy).await;
    // A statement behind the BEGIN: a BEGIN alone holds no server connection (defer_begin).
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let waiter = common::client(&proxy).await;
    let started = std::time::Instant::now();
    let err = waiter.simple_query("SELECT 1").await.unwrap_err();
    let (code, message) = db_error(&err);
    assert_eq!(code, "53300");
    assert!(
        message.contains("app/postgres") && message.contains("max 1"),
        "{message}"
    );
    assert!(started.elapsed() >= Duration::from_millis(450));
    holder.batch_execute("COMMIT").await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn clients_beyond_max_client_conn_are_refused() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.max_client_conn = 2;
    let proxy = RunningProxy::start(config).await;
    let _a = common::client(&proxy).await;
    let _b = common::client(&proxy).await;
    let err = tokio_postgres::connect(&proxy.url(APP_DB, "postgres"), NoTls)
        .await
        .err()
        .unwrap();
    let (code, message) = db_error(&err);
    assert_eq!(code, "53300");
    assert!(message.contains("max_client_conn = 2"), "{message}");
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = common::client(&proxy).await;
    c.simple_query("SELECT 1").await.unwrap();
    proxy.stop().await;
}

#[tokio::test]
async fn idle_transaction_timeout_disconnects_the_client_and_frees_the_server() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    config.idle_transaction_timeout = Duration::from_millis(300);
    let proxy = RunningProxy::start(config).await;
    let leaky = common::client(&proxy).await;
    leaky.batch_execute("BEGIN; SELECT 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let err = leaky.simple_query("SELECT 2").await.unwrap_err();
    assert!(
        err.is_closed()
            || err
                .as_db_error()
                .is_some_and(|d| d.code().code() == "25P03"),
        "{err:?}"
    );
    // The pool's only server connection is free again.
    let other = common::client(&proxy).await;
    assert_eq!(
        other
            .query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    proxy.stop().await;
}

/// Reads everything the proxy answers until it closes (bounded).
async fn answer(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn malformed_packets_get_a_protocol_error_and_harm_no_one() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let good = common::client(&proxy).await;

    // A startup packet announcing 2 GB.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&[0x80, 0, 0, 0, 0, 3, 0, 0]).await.unwrap();
    let reply = answer(&mut s).await;
    assert_eq!(reply.first(), Some(&b'E'));
    assert!(String::from_utf8_lossy(&reply).contains("08P01"));

    // An unsupported protocol version.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0, 9, 0, 0]).await.unwrap();
    let reply = answer(&mut s).await;
    assert!(String::from_utf8_lossy(&reply).contains("0A000"));

    // A logged-in client sending a message with an absurd length.
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    let mut startup = Vec::new();
    let params = b"user\0postgres\0database\0app\0\0";
    startup.extend_from_slice(&((8 + params.len()) as u32).to_be_bytes());
    startup.extend_from_slice(&196608u32.to_be_bytes());
    startup.extend_from_slice(params);
    s.write_all(&startup).await.unwrap();
    // Read the greeting up to ReadyForQuery.
    let mut greeting = vec![0u8; 4096];
    let mut got = 0;
    while !greeting[..got].ends_with(b"Z\0\0\0\x05I") {
        got += s.read(&mut greeting[got..]).await.unwrap();
    }
    s.write_all(b"Q\x7f\xff\xff\xffSELECT").await.unwrap();
    let reply = answer(&mut s).await;
    assert!(
        String::from_utf8_lossy(&reply).contains("08P01"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );

    // A truncated packet followed by silence: the login timeout ends it; meanwhile others work.
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(&[0, 0, 0, 40, 0, 3]).await.unwrap();
    assert_eq!(
        good.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_dead_upstream_gets_a_clear_error_not_a_hang() {
    let mut cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.server_connect_timeout = Duration::from_secs(2);
    config.query_wait_timeout = Duration::from_secs(20);
    let proxy = RunningProxy::start(config).await;
    cluster.stop().unwrap();
    let started = std::time::Instant::now();
    let err = tokio_postgres::connect(&proxy.url(APP_DB, "postgres"), NoTls)
        .await
        .err()
        .unwrap();
    let (code, message) = db_error(&err);
    assert_eq!(code, "08006", "{message}");
    assert!(message.contains("refused"), "{message}");
    // Told at the first failed connect, not at query_wait_timeout (20 s).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    cluster.start_again().unwrap();
    let c = common::client(&proxy).await;
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    proxy.stop().await;
}

#[tokio::test]
async fn the_servers_own_refusal_reaches_the_client_at_once() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    for (db, user, want_code, want_message) in [
        (
            "nope",
            "postgres",
            "3D000",
            "database \"nope\" does not exist",
        ),
        (APP_DB, "nobody", "28000", "role \"nobody\" does not exist"),
    ] {
        let started = std::time::Instant::now();
        let err = tokio_postgres::connect(&proxy.url(db, user), NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{db}/{user} should be refused"));
        let (code, message) = db_error(&err);
        assert_eq!((code.as_str(), message.as_str()), (want_code, want_message));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{db}/{user}: {:?} (query_wait_timeout is 20 s)",
            started.elapsed()
        );
    }
    // Other pools are untouched.
    let c = common::client(&proxy).await;
    c.simple_query("SELECT 1").await.unwrap();
    proxy.stop().await;
}
