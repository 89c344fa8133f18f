//! query_timeout is a deadline per request, not an inactivity timer: a query that keeps
//! streaming rows is cancelled on the server when it runs past it.

use std::time::{Duration, Instant};

use crate::common::{self, RunningProxy};

#[tokio::test]
async fn a_query_streaming_rows_is_cancelled_at_query_timeout() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.query_timeout = Duration::from_secs(1);
    let proxy = RunningProxy::start(config).await;
    let c = common::client(&proxy).await;

    // Rows larger than PostgreSQL's 8 KiB send buffer go out one by one, every 50 ms, for
    // about 5 s: the proxy sees traffic all along.
    let started = Instant::now();
    let err = c
        .simple_query("SELECT pg_sleep(0.05), repeat('x', 9000) FROM generate_series(1, 100)")
        .await
        .unwrap_err();
    let took = started.elapsed();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "57014", "{db:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cancelled after {took:?}"
    );

    // The client keeps its connection; each request gets its own deadline.
    for _ in 0..3 {
        let rows = c
            .query("SELECT pg_sleep(0.4), 1", &[])
            .await
            .expect("under query_timeout");
        assert_eq!(rows.len(), 1);
    }
    proxy.stop().await;
}
