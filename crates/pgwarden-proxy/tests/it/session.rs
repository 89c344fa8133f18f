//! Session mode: LISTEN/NOTIFY and a reset between clients; transaction mode refuses LISTEN.

use std::time::Duration;

use futures_util::StreamExt;
use pgwarden_proxy::PoolMode;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::common::{self, RunningProxy, APP_DB};

#[tokio::test]
async fn listen_notify_work_in_session_mode() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.pool_mode = PoolMode::Session;
    let proxy = RunningProxy::start(config).await;
    let (listener, mut connection) = tokio_postgres::connect(&proxy.url(APP_DB, "postgres"), NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    tokio::spawn(async move {
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
            }
        }
    });
    listener.batch_execute("LISTEN jobs").await.unwrap();
    let notifier = common::client(&proxy).await;
    notifier
        .batch_execute("NOTIFY jobs, 'hello'")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, ("jobs".to_string(), "hello".to_string()));

    // A session's SET does not survive into the next session on the same server connection.
    drop(listener);
    drop(notifier);
    let mut config = common::config(&cluster);
    config.pool_mode = PoolMode::Session;
    config.default_pool_size = 1;
    let proxy2 = RunningProxy::start(config).await;
    let a = common::client(&proxy2).await;
    a.batch_execute("SET work_mem = '7MB'").await.unwrap();
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = common::client(&proxy2).await;
    let wm: String = b.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_ne!(wm, "7MB");
    proxy.stop().await;
    proxy2.stop().await;
}

#[tokio::test]
async fn listen_in_transaction_mode_gets_a_clear_error() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let c = common::client(&proxy).await;
    let err = c.batch_execute("LISTEN jobs").await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert!(db.message().contains("pool_mode = session"));
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    proxy.stop().await;
}

#[tokio::test]
async fn listen_through_the_extended_protocol_gets_the_same_error() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let c = common::client(&proxy).await;
    // execute() prepares a named statement; query_typed() uses the unnamed one.
    let err = c.execute("LISTEN jobs", &[]).await.unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "0A000");
    assert!(db.message().contains("pool_mode = session"), "{db:?}");
    let err = c.query_typed("LISTEN jobs", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000");
    // Inside a transaction the error aborts it, as PostgreSQL's own errors do.
    c.batch_execute("BEGIN").await.unwrap();
    assert!(c.execute("LISTEN jobs", &[]).await.is_err());
    let err = c.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    proxy.stop().await;
}
