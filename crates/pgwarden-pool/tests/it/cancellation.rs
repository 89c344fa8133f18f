//! A caller cancelled or delayed while its connection is being checked must cost nothing: the
//! place is freed, the wait is bounded, the queue order kept.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use pgwarden_pool::{PoolConfig, PoolError};
use tokio::time::Instant;

use crate::fake::{pool, run_for};

fn one_slot() -> PoolConfig {
    PoolConfig {
        name: "one".into(),
        max_size: 1,
        check_after_idle: Duration::from_secs(1),
        keepalive_interval: None,
        ..PoolConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn caller_cancelled_during_the_checkout_ping_frees_the_place() {
    let (pool, server) = pool(one_slot());
    drop(pool.get().await.unwrap());
    // Idle long enough that the next checkout pings it; the ping hangs.
    run_for(2_000).await;
    server.ping_ms.store(60_000, SeqCst);
    let cancelled = tokio::time::timeout(Duration::from_millis(200), pool.get()).await;
    assert!(cancelled.is_err(), "the checkout should still be pinging");
    assert_eq!(server.pings.load(SeqCst), 1);

    // The place is free again: the next caller gets a (new) connection, within the cap.
    server.ping_ms.store(0, SeqCst);
    let conn = pool
        .get()
        .await
        .expect("the cancelled checkout must not keep the place");
    assert_eq!(
        conn.id, 2,
        "the connection interrupted mid-ping is not reused"
    );
    assert!(server.alive.load(SeqCst) <= 1);
    assert_eq!(pool.status().size, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_checkout_ping_is_bounded_by_the_acquire_timeout() {
    let (pool, server) = pool(PoolConfig {
        acquire_timeout: Duration::from_secs(1),
        ..one_slot()
    });
    drop(pool.get().await.unwrap());
    run_for(2_000).await;
    server.ping_ms.store(60_000, SeqCst);
    let started = Instant::now();
    let result = pool.get().await;
    let waited = started.elapsed();
    assert!(
        waited <= Duration::from_millis(1_100),
        "waited {waited:?} for a 1 s acquire timeout"
    );
    match result {
        Err(PoolError::Timeout { pool: name, .. }) => assert_eq!(name, "one"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(pool.stats().errors_by_kind.get("timeout"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn a_caller_whose_connection_fails_its_check_keeps_its_place_in_the_queue() {
    let (pool, server) = pool(one_slot());
    drop(pool.get().await.unwrap());
    run_for(2_000).await;
    server.ping_ms.store(100, SeqCst);
    server.ping_fails.store(true, SeqCst);
    server.connect_ms.store(50, SeqCst);

    let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
    let first = {
        let (pool, order) = (pool.clone(), order_tx.clone());
        tokio::spawn(async move {
            let conn = pool.get().await.unwrap();
            order.send("first").unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(conn);
        })
    };
    run_for(10).await; // "first" is now pinging the idle connection
    let second = {
        let (pool, order) = (pool.clone(), order_tx.clone());
        tokio::spawn(async move {
            let _conn = pool.get().await.unwrap();
            order.send("second").unwrap();
        })
    };
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(order_rx.recv().await, Some("first"));
    assert_eq!(order_rx.recv().await, Some("second"));
}

#[tokio::test(start_paused = true)]
async fn a_guard_dropped_by_a_panicking_task_returns_its_connection() {
    let (pool, server) = pool(one_slot());
    let p = pool.clone();
    let task = tokio::spawn(async move {
        let _conn = p.get().await.unwrap();
        panic!("the caller fails while holding a connection");
    });
    assert!(task.await.unwrap_err().is_panic());
    let status = pool.status();
    assert_eq!((status.size, status.idle, status.in_use), (1, 1, 0));
    let conn = pool.get().await.unwrap();
    assert_eq!(conn.id, 1, "the same connection is handed out again");
    assert_eq!(server.alive.load(SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn cancel_wait_ends_only_the_wait_with_that_key() {
    let (pool, _server) = pool(one_slot());
    let held = pool.get().await.unwrap();
    let timeout = Duration::from_secs(30);
    let first = tokio::spawn(pool.get_cancellable(timeout, 7));
    run_for(10).await;
    let second = tokio::spawn(pool.get_cancellable(timeout, 8));
    run_for(10).await;
    let third = tokio::spawn(pool.get_timeout(timeout));
    run_for(10).await;
    assert_eq!(pool.status().waiters, 3);

    // No caller waits with these keys (0 is never one).
    assert!(!pool.cancel_wait(9));
    assert!(!pool.cancel_wait(0));
    assert!(pool.cancel_wait(8));
    assert!(!pool.cancel_wait(8), "the wait is over");
    match second.await.unwrap() {
        Err(PoolError::Cancelled { pool: name }) => assert_eq!(name, "one"),
        other => panic!("expected a cancelled wait, got {other:?}"),
    }
    assert_eq!(pool.status().waiters, 2);

    // The others keep their order: the connection goes to the first, then the third.
    drop(held);
    let conn = first.await.unwrap().expect("the first waiter is served");
    assert!(!pool.cancel_wait(7), "served: nothing left to cancel");
    drop(conn);
    third.await.unwrap().expect("the third waiter is served");
    assert_eq!(
        pool.stats().timeouts_total,
        0,
        "a cancelled wait is no timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_dropped_after_the_handoff_puts_the_connection_back() {
    let (pool, server) = pool(one_slot());
    let held = pool.get().await.unwrap();
    let mut waiting = pool.get_timeout(Duration::from_secs(30));
    // Polled once: queued.
    assert!(futures_poll_once(&mut waiting).is_pending());
    assert_eq!(pool.status().waiters, 1);
    // The connection is handed to the waiter, which gives up before it looks.
    drop(held);
    drop(waiting);
    let status = pool.status();
    assert_eq!(
        (status.size, status.idle, status.in_use, status.waiters),
        (1, 1, 0, 0),
        "the handed-over connection is idle again, not lost"
    );
    let conn = pool.get_now().expect("the connection is back");
    assert_eq!(conn.id, 1);
    assert_eq!(server.alive.load(SeqCst), 1);
}

/// Polls `fut` once with a waker that does nothing.
fn futures_poll_once<F: std::future::Future + Unpin>(fut: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(fut).poll(&mut cx)
}
