//! The pools' clock read once per turn of the event loop (`pgwarden_pool::clock`), on a
//! runtime that reports its wake-ups as `pgwarden serve`'s does: the use times it records must
//! still span what PostgreSQL did.

use std::time::Duration;

use crate::common::{self, RunningProxy};

#[test]
fn use_times_span_the_server_work_when_the_clock_follows_the_loop() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_unpark(pgwarden_pool::clock::loop_turned)
        .build()
        .unwrap();
    runtime.block_on(async {
        let cluster = common::cluster();
        let proxy = RunningProxy::start(common::config(&cluster)).await;
        let client = common::client(&proxy).await;
        for _ in 0..20 {
            client.simple_query("SELECT 1").await.unwrap();
        }
        for _ in 0..3 {
            client.simple_query("SELECT pg_sleep(0.1)").await.unwrap();
        }
        let stats = proxy.handle.stats();
        let use_time = &stats.pools[0].use_time;
        assert!(use_time.count >= 23, "{use_time:?}");
        // Each sleeping transaction held its connection for at least 100 ms: above 65.5 ms
        // (2^16 µs), the bound of the bucket below.
        let long: u64 = use_time
            .buckets
            .iter()
            .filter(|(bound, _)| *bound > Duration::from_micros(1 << 16))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(long, 3, "{use_time:?}");
        assert!(use_time.sum >= Duration::from_millis(300), "{use_time:?}");
        // A reading that was not renewed at the wake-up bringing the reply would make the
        // quick transactions as long as the last sleep, or the sleeps 0 µs.
        assert!(use_time.sum < Duration::from_millis(1_000), "{use_time:?}");
    });
}
