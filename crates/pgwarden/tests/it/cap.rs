//! The hard cap holds under 200 concurrent tasks, counted by the server itself.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{warden, PgCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_tasks_never_exceed_three_server_connections() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = Arc::new(warden(
        &cluster,
        "cap-test",
        &[
            ("pool.max_size", "3"),
            ("pool.min_size", "0"),
            ("pool.acquire_timeout", "60s"),
        ],
    ));

    // The server's own view: sample pg_stat_activity while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicI64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        let admin = cluster.connect_superuser().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'cap-test#%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let warden = warden.clone();
        tasks.push(tokio::spawn(async move {
            let conn = warden.connection().await.expect("acquire");
            let row = conn
                .query_one("SELECT $1::int + 1, pg_sleep(0.002)::text", &[&i])
                .await
                .unwrap();
            assert_eq!(row.get::<_, i32>(0), i + 1);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    let stats = warden.postgres_pool().stats();
    assert!(
        peak.load(Ordering::Relaxed) <= 3,
        "server saw {} connections",
        peak.load(Ordering::Relaxed)
    );
    assert!(peak.load(Ordering::Relaxed) >= 1);
    assert!(
        stats.created_total <= 3,
        "created {} connections",
        stats.created_total
    );
    assert_eq!(stats.acquires_total, 200);
    warden.shutdown(Duration::from_secs(5)).await;
    // Terminate was sent to each; the server's backends exit right after.
    let gone = crate::common::eventually(Duration::from_secs(5), || async {
        cluster.count_backends("cap-test#%").await == 0
    })
    .await;
    assert!(
        gone,
        "{} backends left after shutdown",
        cluster.count_backends("cap-test#%").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_reuse_connections() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden = Arc::new(warden(
        &cluster,
        "reuse-test",
        &[("pool.max_size", "5"), ("pool.min_size", "1")],
    ));
    warden.init().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let warden = warden.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let row = warden.fetch_one("SELECT 1", &[]).await.unwrap();
                assert_eq!(row.get::<_, i32>(0), 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = warden.postgres_pool().stats();
    assert_eq!(stats.acquires_total, 200);
    assert!(stats.reuse_ratio > 0.9, "reuse ratio {}", stats.reuse_ratio);
    assert!(cluster.count_backends("reuse-test#%").await <= 5);
}
