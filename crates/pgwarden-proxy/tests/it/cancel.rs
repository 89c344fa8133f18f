//! Cancel requests that PostgreSQL is slow to act on (its postmaster frozen with SIGSTOP).

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::common::{self, RawClient, RunningProxy};

/// Like libpq, the proxy closes a client's cancel connection only once PostgreSQL has acted on
/// the cancel; until then the server connection it targets serves no other transaction, so a
/// late cancel never lands on the next query (here another client's, on a pool of one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_never_lands_on_the_next_transaction() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    let mut first = RawClient::connect(&proxy).await;
    let mut second = RawClient::connect(&proxy).await;
    let observer = common::client_url(&cluster.superuser_url()).await;

    first.send_query("SELECT pg_sleep(0.5)").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    cluster.freeze_postmaster();
    let mut cancel = first.send_cancel(&proxy).await;
    // The postmaster does not act on the cancel: the query ends by itself.
    assert_eq!(first.until_ready().await, b"TDCZ");
    assert_eq!(first.last_error, None);
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), cancel.read(&mut byte))
            .await
            .is_err(),
        "the cancel connection was closed before PostgreSQL acted on the cancel"
    );

    // The next transaction waits for the server connection until the cancel is over.
    let next = tokio::spawn(async move {
        let tags = second.query("SELECT pg_sleep(0.5), 'second'").await;
        (tags, second.last_error)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let running: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%''second''' \
             AND state = 'active' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        running, 0,
        "the next transaction ran before the cancel was over"
    );
    assert!(!next.is_finished());

    cluster.thaw();
    let closed = tokio::time::timeout(Duration::from_secs(5), cancel.read(&mut byte))
        .await
        .expect("the cancel connection is closed once PostgreSQL acted");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let (tags, error) = tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("the next transaction runs once the cancel is over")
        .unwrap();
    assert_eq!(error, None, "the late cancel hit the next transaction");
    assert_eq!(tags, b"TDCZ");
    proxy.stop().await;
}
