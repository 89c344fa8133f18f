//! Connections are recycled: idle ones reaped, old ones retired, heavy-used ones replaced.

use std::time::Duration;

use crate::common::{eventually, warden, PgCluster};

#[tokio::test]
async fn idle_connections_above_min_are_closed_after_idle_timeout() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "idle-test",
        &[
            ("pool.max_size", "3"),
            ("pool.min_size", "1"),
            ("pool.idle_timeout", "1s"),
        ],
    );
    let a = warden.connection().await.unwrap();
    let b = warden.connection().await.unwrap();
    let c = warden.connection().await.unwrap();
    assert_eq!(cluster.count_backends("idle-test#%").await, 3);
    drop((a, b, c));
    let reaped = eventually(Duration::from_secs(10), || async {
        cluster.count_backends("idle-test#%").await == 1
    })
    .await;
    assert!(
        reaped,
        "still {} backends",
        cluster.count_backends("idle-test#%").await
    );
    assert_eq!(warden.postgres_pool().status().size, 1);
}

#[tokio::test]
async fn a_connection_is_replaced_after_max_uses() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "uses-test",
        &[
            ("pool.max_size", "1"),
            ("pool.min_size", "0"),
            ("pool.max_uses", "2"),
        ],
    );
    let mut events = warden.postgres_pool().subscribe();
    let mut pids = Vec::new();
    for _ in 0..4 {
        pids.push(warden.connection().await.unwrap().backend_pid());
    }
    // On failure, say why a connection was closed.
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(format!("{event:?}"));
    }
    assert_eq!(pids[0], pids[1], "pool events: {seen:?}");
    assert_ne!(pids[1], pids[2], "pool events: {seen:?}");
    assert_eq!(pids[2], pids[3], "pool events: {seen:?}");
    assert!(warden.postgres_pool().stats().recycled_total >= 1);
}

#[tokio::test]
async fn a_connection_is_replaced_after_max_lifetime() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = warden(
        &cluster,
        "lifetime-test",
        &[
            ("pool.max_size", "1"),
            ("pool.min_size", "1"),
            ("pool.max_lifetime", "1s"),
        ],
    );
    let first = warden.connection().await.unwrap().backend_pid();
    let replaced = eventually(Duration::from_secs(10), || async {
        warden.connection().await.unwrap().backend_pid() != first
    })
    .await;
    assert!(replaced, "backend {first} outlived max_lifetime");
    // The old backend is gone from the server, not just forgotten.
    assert!(
        eventually(Duration::from_secs(5), || async {
            cluster.count_backends("lifetime-test#%").await == 1
        })
        .await
    );
}
