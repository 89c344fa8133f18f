//! `Pool::get_now`: the checkout without a future, for callers that acquire per transaction.
//! It hands out only what `get` would hand out without a ping, and never waits or connects.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use pgwarden_pool::PoolConfig;

use crate::fake::{pool, run_for};

fn config() -> PoolConfig {
    PoolConfig {
        name: "now".into(),
        max_size: 1,
        idle_timeout: None,
        max_lifetime: Some(Duration::from_secs(10)),
        lifetime_jitter: 0.0,
        check_after_idle: Duration::from_secs(1),
        keepalive_interval: None,
        // Expired connections are met by the checkout, not closed behind its back.
        maintenance_interval: Duration::from_secs(3_600),
        ..PoolConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn get_now_takes_a_fit_idle_connection_and_leaves_the_rest_to_get() {
    let (pool, server) = pool(config());
    // Nothing idle: nothing now, and no connect started for it.
    assert!(pool.get_now().is_none());
    run_for(10).await;
    assert_eq!(server.alive.load(SeqCst), 0);

    // Returned a moment ago: handed out at once, without a ping, and counted as a checkout.
    drop(pool.get().await.unwrap());
    let conn = pool.get_now().expect("an idle, recently used connection");
    assert_eq!(conn.id, 1);
    assert_eq!(pool.status().in_use, 1);
    assert!(pool.get_now().is_none(), "the only connection is out");
    drop(conn);
    assert_eq!(pool.stats().acquires_total, 2);
    assert_eq!(server.pings.load(SeqCst), 0);

    // Idle past check_after_idle: left idle for `get`, which pings it first.
    run_for(2_000).await;
    assert!(pool.get_now().is_none());
    assert_eq!(pool.status().idle, 1);
    assert_eq!(server.pings.load(SeqCst), 0);
    let conn = pool.get().await.unwrap();
    assert_eq!((conn.id, server.pings.load(SeqCst)), (1, 1));
    drop(conn);

    // Past its lifetime: closed politely, and nothing is handed out.
    run_for(10_000).await;
    assert!(pool.get_now().is_none());
    run_for(10).await;
    assert_eq!(server.polite_closes.load(SeqCst), 1);
    assert_eq!(server.alive.load(SeqCst), 0);
    assert_eq!(pool.status().size, 0);

    // A closed pool hands out nothing, even with a connection idle.
    drop(pool.get().await.unwrap());
    pool.close(Duration::from_secs(1)).await;
    assert!(pool.get_now().is_none());
}
