//! Connections are opened in the background, in parallel up to `max_connecting`, and idle
//! ones are kept alive by jittered keepalive pings.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use pgwarden_pool::PoolConfig;

use crate::fake::{pool, run_for};

#[tokio::test(start_paused = true)]
async fn a_cold_pool_opens_connections_in_parallel_but_at_most_max_connecting() {
    let (pool, server) = pool(PoolConfig {
        max_size: 10,
        max_connecting: 2,
        ..PoolConfig::default()
    });
    server.connect_ms.store(100, SeqCst);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let conn = pool.get().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1_000)).await;
                drop(conn);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        server.max_connecting_seen.load(SeqCst),
        2,
        "connects run two at a time, not one and not more"
    );
    assert_eq!(server.alive.load(SeqCst), 10);
    assert_eq!(pool.stats().created_total, 10);
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_pinged_on_a_jittered_interval() {
    let (pool, server) = pool(PoolConfig {
        max_size: 100,
        min_idle: 100,
        max_connecting: 100,
        idle_timeout: None,
        max_lifetime: None,
        keepalive_interval: Some(Duration::from_secs(120)),
        ..PoolConfig::default()
    });
    run_for(1_500).await;
    assert_eq!(pool.status().idle, 100);
    assert_eq!(server.pings.load(SeqCst), 0);
    // Jitter takes up to a quarter off the interval, drawn per connection: some are due after
    // 100 s, not all of them.
    run_for(100_000).await;
    let early = server.pings.load(SeqCst);
    assert!(
        early > 0 && early < 100,
        "{early} of 100 connections pinged after 100 s"
    );
    // By 121 s every one has been pinged once.
    run_for(20_000).await;
    assert_eq!(server.pings.load(SeqCst), 100);

    // A failing keepalive ping replaces the connection; min_idle is kept.
    server.ping_fails.store(true, SeqCst);
    run_for(125_000).await;
    server.ping_fails.store(false, SeqCst);
    run_for(2_000).await;
    assert_eq!(server.alive.load(SeqCst), 100);
    assert!(pool.stats().created_total >= 200);
    assert!(pool
        .stats()
        .errors_by_kind
        .get("closed")
        .is_some_and(|n| *n >= 100));
}
