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

/// Parse of an unnamed statement with no parameter types.
fn parse(sql: &str) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(sql.as_bytes());
    body.extend_from_slice(&[0, 0, 0]);
    common::frame(b'P', &body)
}

/// A cancel for a client whose request waits for a server connection (the pool's only one is
/// held by another client's open transaction) fails that request with 57014 at once, and the
/// request never reaches a server; in an extended-query batch the rest is dropped up to the
/// Sync. A cancel for a client between requests changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_ends_the_wait_for_a_server_connection() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    let observer = common::client_url(&cluster.url(common::APP_DB, "postgres")).await;
    observer
        .batch_execute("CREATE TABLE waited (id int)")
        .await
        .unwrap();
    let holder = common::client(&proxy).await;
    let mut waiter = RawClient::connect(&proxy).await;
    let count = || async {
        observer
            .query_one("SELECT count(*) FROM waited", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };

    // Simple query protocol.
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    waiter.send_query("INSERT INTO waited VALUES (1)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let mut cancel = waiter.send_cancel(&proxy).await;
    let tags = tokio::time::timeout(Duration::from_secs(5), waiter.until_ready())
        .await
        .expect("the cancelled request is answered while the server connection is still held");
    assert_eq!(tags, b"EZ");
    assert_eq!(waiter.last_error.as_deref(), Some("57014"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), cancel.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");

    // Extended protocol, Parse/Describe/Flush first (as asyncpg prepares), Sync later.
    waiter.last_error = None;
    let mut batch = parse("INSERT INTO waited VALUES (2)");
    batch.extend(common::frame(b'D', b"S\0"));
    batch.extend(common::frame(b'H', b""));
    waiter.send_raw(&batch).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(waiter.send_cancel(&proxy).await);
    assert_eq!(waiter.read_message().await, b'E');
    assert_eq!(waiter.last_error.as_deref(), Some("57014"));
    // The rest of the batch is dropped up to the Sync, which is answered.
    let mut rest = common::frame(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]);
    rest.extend(common::frame(b'E', &[0, 0, 0, 0, 0]));
    rest.extend(common::frame(b'S', b""));
    waiter.send_raw(&rest).await;
    assert_eq!(waiter.until_ready().await, b"Z");

    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(count().await, 0, "a cancelled request reached the server");

    // Served normally afterwards, in both protocols.
    waiter.last_error = None;
    assert_eq!(waiter.query("INSERT INTO waited VALUES (3)").await, b"CZ");
    let mut batch = parse("INSERT INTO waited VALUES (4)");
    batch.extend(common::frame(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    batch.extend(common::frame(b'E', &[0, 0, 0, 0, 0]));
    batch.extend(common::frame(b'S', b""));
    waiter.send_raw(&batch).await;
    assert_eq!(waiter.until_ready().await, b"12CZ");
    assert_eq!(waiter.last_error, None);

    // A cancel for a client between requests is ignored: its next request runs.
    let mut cancel = waiter.send_cancel(&proxy).await;
    let closed = tokio::time::timeout(Duration::from_secs(5), cancel.read(&mut byte)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");
    assert_eq!(waiter.query("INSERT INTO waited VALUES (5)").await, b"CZ");
    assert_eq!(waiter.last_error, None);
    assert_eq!(count().await, 3);
    proxy.stop().await;
}
