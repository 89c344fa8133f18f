//! max_db_connections: two users of one database share the cap; a pool that needs a
//! connection waits for room and closes another pool's idle connection to make it.

use std::time::{Duration, Instant};

use crate::common::{self, RunningProxy, APP_DB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_share_max_db_connections_and_both_are_served() {
    let cluster = common::cluster();
    cluster.create_role("bob", None, false).unwrap();
    let mut config = common::config(&cluster);
    config.max_db_connections = 2;
    config.default_pool_size = 3;
    config.query_wait_timeout = Duration::from_secs(10);
    let proxy = RunningProxy::start(config).await;

    let sampler = common::BackendSampler::start(&cluster, common::APP_BACKENDS).await;

    // postgres's pool takes the whole cap, then sits idle on it.
    let a1 = common::client_url(&proxy.url(APP_DB, "postgres")).await;
    let a2 = common::client_url(&proxy.url(APP_DB, "postgres")).await;
    let (r1, r2) = tokio::join!(
        a1.query_one("SELECT pg_sleep(0.3)", &[]),
        a2.query_one("SELECT pg_sleep(0.3)", &[])
    );
    r1.unwrap();
    r2.unwrap();
    assert_eq!(common::app_backends(&cluster).await, 2);

    // bob's pool gets one of those slots at once, not at query_wait_timeout (or never).
    let bob = common::client_url(&proxy.url(APP_DB, "bob")).await;
    let started = Instant::now();
    let who: String = bob
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("bob is served while postgres's connections sit idle")
        .get(0);
    assert_eq!(who, "bob");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bob waited {:?}",
        started.elapsed()
    );

    // Both users busy at once: everyone is served, the cap holds.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let user = if i % 2 == 0 { "postgres" } else { "bob" };
        let url = proxy.url(APP_DB, user);
        tasks.push(tokio::spawn(async move {
            let c = common::client_url(&url).await;
            for _ in 0..10 {
                let who: String = c
                    .query_one("SELECT current_user::text FROM pg_sleep(0.01)", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(who, user);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (max, _) = sampler.finish().await;
    assert!(
        max <= 2,
        "PostgreSQL saw {max} connections to app over max_db_connections 2"
    );
    proxy.stop().await;
}
