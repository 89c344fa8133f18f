//! Shutdown drains and closes everything; the process-wide instance is one instance.

use std::time::Duration;

use pgwarden::Error;

use crate::common::{warden, PgCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_checked_out_connections_then_closes_them_all() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = std::sync::Arc::new(warden(
        &cluster,
        "close-test",
        &[("pool.max_size", "3"), ("pool.min_size", "2")],
    ));
    warden.init().await.unwrap();
    let held = warden.connection().await.unwrap();
    assert!(cluster.count_backends("close-test#%").await >= 2);
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        held.simple_query("SELECT 1").await.unwrap();
        drop(held);
    });
    let report = warden.shutdown(Duration::from_secs(5)).await;
    releaser.await.unwrap();
    let pg = &report.resources[pgwarden::POSTGRES];
    assert_eq!(pg.still_checked_out, 0, "{pg:?}");
    assert!(pg.closed >= 2, "{pg:?}");
    assert_eq!(cluster.count_backends("close-test#%").await, 0);
    assert!(matches!(
        warden.connection().await,
        Err(Error::ShuttingDown)
    ));
}

#[tokio::test]
async fn health_check_runs_select_one() {
    let mut cluster = PgCluster::builder().start().unwrap();
    let warden = warden(&cluster, "health-test", &[]);
    let latency = warden.health_check().await.unwrap();
    assert!(latency < Duration::from_secs(5));
    cluster.stop().unwrap();
    let warden = crate::common::warden(
        &cluster,
        "health-test",
        &[("pool.acquire_timeout", "500ms")],
    );
    assert!(warden.health_check().await.is_err());
}
