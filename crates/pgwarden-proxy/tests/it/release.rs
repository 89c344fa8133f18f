//! Transaction mode gives a server connection back as soon as the tracker says it is idle,
//! including after messages the proxy answers itself: idle clients never pin a connection.

use std::time::Duration;

use crate::common::{self, RawClient, RunningProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locally_answered_messages_do_not_pin_server_connections() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 2;
    config.query_wait_timeout = Duration::from_secs(3);
    let proxy = RunningProxy::start(config).await;

    // Four clients, each with one ordinary query behind it, then a message the proxy
    // answers alone (a refused LISTEN, or DEALLOCATE of a statement prepared by name, which
    // tokio-postgres cannot be made to send: these clients speak the protocol raw), then
    // silence. Their session parameters equal a fresh server connection's, so nothing at all
    // is sent to the server for the locally answered message.
    let mut idle = Vec::new();
    for i in 0..4 {
        let step = async {
            let mut raw = RawClient::connect(&proxy).await;
            assert_eq!(raw.query("SELECT 1").await, b"TDCZ");
            if i % 2 == 0 {
                assert_eq!(raw.query("LISTEN jobs").await, b"EZ");
            } else {
                raw.parse("mine", "SELECT 2").await;
                assert_eq!(raw.query("DEALLOCATE mine").await, b"CZ");
            }
            raw
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), step)
            .await
            .unwrap_or_else(|_| panic!("client {i} starved behind idle clients"));
        idle.push(raw);
    }

    // With a cap of 2, a fifth client is served at once: no idle client holds a connection.
    let other = common::client(&proxy).await;
    let started = std::time::Instant::now();
    let row = tokio::time::timeout(Duration::from_secs(10), other.query_one("SELECT 3", &[]))
        .await
        .expect("the fifth client starved")
        .expect("the fifth client was refused");
    assert_eq!(row.get::<_, i32>(0), 3);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served only after {:?}",
        started.elapsed()
    );
    let live = proxy.handle.stats();
    assert_eq!(live.pools[0].status.max_size, 2);
    drop(idle);
    proxy.stop().await;
}
