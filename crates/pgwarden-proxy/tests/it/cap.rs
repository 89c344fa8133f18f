//! The hard cap: 200 clients over 3 server connections; PostgreSQL never sees more than 3.

use crate::common::{self, RunningProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_never_exceed_three_server_connections() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;

    let sampler = common::BackendSampler::start(&cluster, common::APP_BACKENDS).await;

    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = proxy.url(common::APP_DB, "postgres");
        tasks.push(tokio::spawn(async move {
            let c = common::client_url(&url).await;
            for j in 0..5i32 {
                let row = c
                    .query_one("SELECT $1::int + 1, pg_sleep(0.001)", &[&(i * 10 + j)])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, i32>(0), i * 10 + j + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (max, samples) = sampler.finish().await;
    assert!(samples > 10, "sampled {samples} times");
    assert!(
        max <= 3,
        "PostgreSQL saw {max} server connections over a cap of 3"
    );
    assert!(max >= 1);
    let live = proxy.handle.stats();
    assert_eq!(live.pools.len(), 1);
    assert!(live.pools[0].created_total <= 3 + 3, "{:?}", live.pools[0]);
    assert_eq!(live.pools[0].status.max_size, 3);
    let stats = proxy.stop().await;
    assert_eq!(stats.clients_total, 200);
    assert!(stats.transactions_total >= 1000);
    assert_eq!(
        common::app_backends(&cluster).await,
        0,
        "shutdown closed every server connection"
    );
}
