//! A plain `BEGIN` in transaction mode is answered by the proxy and reaches the server right
//! before the transaction's first statement (`defer_begin`, on by default): the transaction is
//! still one transaction on the server, but a client that opened one and sent nothing yet
//! holds no server connection, and an empty transaction never reaches the server.

use std::time::Duration;

use tokio_postgres::Client;

use crate::common::{self, RawClient, RunningProxy};

/// A direct client of the cluster that has created `table (id int)`.
async fn observer_with_table(cluster: &pgwarden_testkit::PgCluster, table: &str) -> Client {
    let observer = common::client_url(&cluster.url(common::APP_DB, "postgres")).await;
    observer
        .batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    observer
}

async fn count(observer: &Client, table: &str) -> i64 {
    observer
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// With one server connection, a client sitting in a transaction it only opened does not
/// keep another client waiting (it does with `defer_begin` off); the statements behind the
/// BEGIN still run as one transaction, which COMMIT and ROLLBACK end as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_alone_holds_no_server_connection() {
    let cluster = common::cluster();
    let observer = observer_with_table(&cluster, "deferred").await;
    for defer in [true, false] {
        let mut config = common::config(&cluster);
        config.default_pool_size = 1;
        config.query_wait_timeout = Duration::from_millis(1500);
        config.defer_begin = defer;
        let proxy = RunningProxy::start(config).await;
        let a = common::client(&proxy).await;
        let b = common::client(&proxy).await;
        a.batch_execute("BEGIN").await.unwrap();
        let other = b.simple_query("SELECT 1").await;
        if !defer {
            let err = other.expect_err("the open transaction holds the only connection");
            assert_eq!(err.as_db_error().unwrap().code().code(), "53300");
            a.batch_execute("ROLLBACK").await.unwrap();
            proxy.stop().await;
            continue;
        }
        other.expect("a client that only sent BEGIN held the server connection");

        // One transaction on the server: one transaction id, rolled back as a whole.
        a.batch_execute("INSERT INTO deferred VALUES (1)")
            .await
            .unwrap();
        let first: i64 = a
            .query_one("SELECT txid_current()", &[])
            .await
            .unwrap()
            .get(0);
        let second: i64 = a
            .query_one("SELECT txid_current()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(first, second);
        assert_eq!(count(&observer, "deferred").await, 0, "seen before COMMIT");
        a.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(count(&observer, "deferred").await, 0, "rolled back");

        // START TRANSACTION, lower case and a semicolon: the same; COMMIT keeps the rows.
        a.batch_execute("start transaction ;").await.unwrap();
        b.simple_query("SELECT 2")
            .await
            .expect("START TRANSACTION held the connection");
        a.batch_execute("INSERT INTO deferred VALUES (2)")
            .await
            .unwrap();
        a.batch_execute("INSERT INTO deferred VALUES (3)")
            .await
            .unwrap();
        assert_eq!(count(&observer, "deferred").await, 0, "seen before COMMIT");
        a.batch_execute("COMMIT").await.unwrap();
        assert_eq!(count(&observer, "deferred").await, 2);

        // The extended protocol behind a deferred BEGIN (tokio-postgres' transactions).
        let mut a = a;
        let tx = a.transaction().await.unwrap();
        tx.execute("INSERT INTO deferred VALUES ($1)", &[&4i32])
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(count(&observer, "deferred").await, 2);
        proxy.stop().await;
    }
}

/// BEGIN with options is sent as it is (its options apply, an error in them is the
/// client's); a transaction opened and ended with nothing in it never reaches the server, and
/// every reply carries the status the client would see from PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_go_to_the_server_and_empty_transactions_do_not() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    config.min_pool_size = 0;
    let proxy = RunningProxy::start(config).await;
    let mut raw = RawClient::connect(&proxy).await;
    // The pool's one server connection (the login used it), and when it last changed state.
    let observer = common::client_url(&cluster.url(common::APP_DB, "postgres")).await;
    let last_change = || async {
        observer
            .query_one(
                "SELECT state_change::text FROM pg_stat_activity \
                 WHERE datname = 'app' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let before = last_change().await;
    for (open, close) in [
        ("BEGIN", "COMMIT"),
        ("begin work;", "end"),
        ("BEGIN TRANSACTION", "ROLLBACK"),
        ("START TRANSACTION", "abort;"),
    ] {
        assert_eq!(raw.query(open).await, b"CZ", "{open}");
        assert_eq!(raw.last_status, b'T', "{open}");
        raw.send_query(close).await;
        assert_eq!(raw.read_message().await, b'C');
        assert_eq!(raw.read_message().await, b'Z');
        assert_eq!(raw.last_status, b'I', "{close}");
    }
    assert_eq!(
        last_change().await,
        before,
        "an empty transaction reached the server"
    );

    let c = common::client(&proxy).await;
    c.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let level: String = c
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "serializable");
    c.batch_execute("COMMIT").await.unwrap();
    let err = c
        .batch_execute("BEGIN ISOLATION LEVEL NONSENSE")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42601");
    // BEGIN twice: the second reaches the server behind the first, which warns (NoticeResponse)
    // as on a direct connection.
    assert_eq!(raw.query("BEGIN").await, b"CZ");
    assert_eq!(raw.query("BEGIN").await, b"NCZ");
    assert_eq!(raw.last_status, b'T');
    assert_eq!(raw.query("COMMIT").await, b"CZ");
    assert_eq!(raw.last_status, b'I');
    proxy.stop().await;
}

/// A cancel that ends the wait for a server connection inside a deferred transaction aborts
/// that transaction as PostgreSQL would: later statements fail with 25P02 until ROLLBACK (or
/// COMMIT, which reports ROLLBACK), and nothing reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_fails_the_deferred_transaction() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    let observer = observer_with_table(&cluster, "waited").await;
    let holder = common::client(&proxy).await;
    holder.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let mut waiter = RawClient::connect(&proxy).await;
    assert_eq!(waiter.query("BEGIN").await, b"CZ");
    waiter.send_query("INSERT INTO waited VALUES (1)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(waiter.send_cancel(&proxy).await);
    let tags = tokio::time::timeout(Duration::from_secs(5), waiter.until_ready())
        .await
        .expect("the cancelled request is answered");
    assert_eq!(tags, b"EZ");
    assert_eq!(waiter.last_error.as_deref(), Some("57014"));
    assert_eq!(waiter.last_status, b'E');

    assert_eq!(waiter.query("INSERT INTO waited VALUES (2)").await, b"EZ");
    assert_eq!(waiter.last_error.as_deref(), Some("25P02"));
    assert_eq!(waiter.last_status, b'E');
    // An extended-query batch fails once and is dropped up to its Sync.
    let mut batch = common::frame(b'P', b"\0SELECT 1\0\0\0");
    batch.extend(common::frame(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    batch.extend(common::frame(b'E', &[0, 0, 0, 0, 0]));
    batch.extend(common::frame(b'S', b""));
    waiter.send_raw(&batch).await;
    assert_eq!(waiter.until_ready().await, b"EZ");
    assert_eq!(waiter.last_status, b'E');
    // A Flush alone is no statement: a Sync after it gets only ReadyForQuery.
    let mut flush_sync = common::frame(b'H', b"");
    flush_sync.extend(common::frame(b'S', b""));
    waiter.send_raw(&flush_sync).await;
    assert_eq!(waiter.until_ready().await, b"Z");
    assert_eq!(waiter.last_status, b'E');
    assert_eq!(waiter.query("COMMIT").await, b"CZ");
    assert_eq!(waiter.last_status, b'I');

    holder.batch_execute("COMMIT").await.unwrap();
    // The session goes on as usual afterwards.
    assert_eq!(waiter.query("INSERT INTO waited VALUES (3)").await, b"CZ");
    assert_eq!(count(&observer, "waited").await, 1);
    proxy.stop().await;
}

/// A shutdown lets a client inside a deferred transaction finish it, as it lets one whose
/// transaction holds a server connection: its statements and COMMIT still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_lets_a_deferred_transaction_finish() {
    let cluster = common::cluster();
    let observer = observer_with_table(&cluster, "drained").await;
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let c = common::client(&proxy).await;
    let idle = common::client(&proxy).await;
    c.batch_execute("BEGIN").await.unwrap();
    let stopping = tokio::spawn(proxy.stop());
    // The idle client is told at once (its connection closes): the drain has begun.
    let told = tokio::time::timeout(Duration::from_secs(5), async {
        while !idle.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(told.is_ok(), "the idle client was not told of the shutdown");
    c.batch_execute("INSERT INTO drained VALUES (1)")
        .await
        .expect("the deferred transaction was cut short by the shutdown");
    c.batch_execute("COMMIT").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the proxy did not stop once the transaction ended")
        .unwrap();
    assert_eq!(count(&observer, "drained").await, 1);
}

/// A client that never ends its deferred transaction is disconnected when the drain timeout
/// expires, as one holding a server connection is: the shutdown does not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_timeout_ends_a_deferred_transaction() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let c = common::client(&proxy).await;
    c.batch_execute("BEGIN").await.unwrap();
    // RunningProxy drains for 5 s.
    tokio::time::timeout(Duration::from_secs(15), proxy.stop())
        .await
        .expect("the shutdown waited past its drain timeout");
    let told = tokio::time::timeout(Duration::from_secs(3), async {
        while !c.is_closed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        told.is_ok(),
        "the client in a deferred transaction outlived the proxy"
    );
}
