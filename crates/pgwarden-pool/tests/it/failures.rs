//! Connect failures that waiting would not cure end the waits at once, with the cause.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use pgwarden_pool::{PoolConfig, PoolError};
use tokio::time::Instant;

use crate::fake::{pool, run_for, FakeError};

fn config() -> PoolConfig {
    PoolConfig {
        name: "failing".into(),
        max_size: 2,
        acquire_timeout: Duration::from_secs(30),
        ..PoolConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn waiters_hear_a_failure_the_connector_calls_final_at_once() {
    let (pool, server) = pool(config());
    server.connect_fails.store(true, SeqCst);
    server.failures_fail_waiters.store(true, SeqCst);
    let started = Instant::now();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get().await.map(|c| c.id) })
        })
        .collect();
    for w in waiters {
        match w.await.unwrap() {
            Err(PoolError::ConnectFailed { pool, kind, error }) => {
                assert_eq!((pool.as_str(), kind), ("failing", "closed"));
                let cause = error
                    .downcast_ref::<FakeError>()
                    .expect("the connector's error");
                assert_eq!(cause.to_string(), "connection refused");
            }
            other => panic!("expected the connect failure, got {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(1));

    // Once connects succeed again, callers are served.
    server.connect_fails.store(false, SeqCst);
    run_for(2_000).await;
    assert_eq!(pool.get().await.unwrap().id, 1);
}

#[tokio::test(start_paused = true)]
async fn by_default_and_while_connections_are_open_waiters_keep_waiting() {
    let (pool, server) = pool(PoolConfig {
        acquire_timeout: Duration::from_secs(5),
        ..config()
    });
    let held = pool.get().await.unwrap();
    server.connect_fails.store(true, SeqCst);
    server.failures_fail_waiters.store(true, SeqCst);
    // One connection is open: a waiter may still get it back, so it waits.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|c| c.id) })
    };
    run_for(1_000).await;
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 1);
    pool.close(Duration::from_secs(1)).await;

    // A connector that never calls failures final: the caller waits out its timeout.
    let (pool, server) = pool_default_connector();
    server.connect_fails.store(true, SeqCst);
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(matches!(err, PoolError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert!(
        err.to_string()
            .contains("last connect error: connection refused"),
        "{err}"
    );
}

fn pool_default_connector() -> (
    pgwarden_pool::Pool<crate::fake::Fake>,
    std::sync::Arc<crate::fake::Server>,
) {
    pool(PoolConfig {
        acquire_timeout: Duration::from_secs(5),
        ..config()
    })
}
