//! `close`: waiters are told, returning connections are closed politely, the deadline is kept.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use pgwarden_pool::{PoolConfig, PoolError};

use crate::fake::{pool, run_for};

fn config() -> PoolConfig {
    PoolConfig {
        name: "closing".into(),
        max_size: 1,
        ..PoolConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn close_tells_waiters_and_closes_returned_connections_politely() {
    let (pool, server) = pool(config());
    let held = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await })
    };
    run_for(10).await;
    let closer = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.close(Duration::from_secs(5)).await })
    };
    match waiter.await.unwrap() {
        Err(PoolError::Closed { pool }) => assert_eq!(pool, "closing"),
        other => panic!("the waiter should hear that the pool closed, got {other:?}"),
    }
    run_for(200).await;
    drop(held);
    let report = closer.await.unwrap();
    assert_eq!((report.closed, report.still_checked_out), (1, 0));
    assert!(report.waited < Duration::from_secs(1));
    assert_eq!(server.polite_closes.load(SeqCst), 1);
    assert_eq!(server.alive.load(SeqCst), 0);
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.to_string(), "pool \"closing\" is closed");
}

#[tokio::test(start_paused = true)]
async fn close_keeps_its_deadline_and_reports_what_is_still_checked_out() {
    let (pool, server) = pool(config());
    let held = pool.get().await.unwrap();
    let report = pool.close(Duration::from_millis(500)).await;
    assert_eq!(report.still_checked_out, 1);
    assert!(report.waited >= Duration::from_millis(500));
    assert!(report.waited < Duration::from_millis(700));
    // Returned after the deadline: closed, not kept.
    drop(held);
    run_for(10).await;
    assert_eq!(server.alive.load(SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn close_idle_closes_the_least_recently_used_politely_and_opens_no_replacement() {
    let (pool, server) = pool(PoolConfig {
        max_size: 3,
        ..config()
    });
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let held = pool.get().await.unwrap();
    let first_back = a.id();
    drop(a);
    run_for(10).await;
    drop(b);
    run_for(10).await;
    assert_eq!(pool.close_idle(1), 1);
    run_for(10).await;
    assert_eq!(server.polite_closes.load(SeqCst), 1);
    assert_eq!(server.alive.load(SeqCst), 2, "no replacement opened");
    assert_eq!(pool.status().idle, 1);
    let again = pool.get().await.unwrap();
    assert_ne!(
        again.id(),
        first_back,
        "the least recently used one was closed"
    );
    assert_eq!(pool.close_idle(5), 0, "nothing idle");
    drop((again, held));
}
