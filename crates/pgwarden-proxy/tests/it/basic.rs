//! Queries, prepared statements, transactions, errors, COPY, cancel and startup parameters
//! through the proxy in transaction mode, with tokio-postgres.

use std::time::Duration;

use futures_util::{pin_mut, SinkExt, TryStreamExt};
use tokio_postgres::NoTls;

use crate::common::{self, RunningProxy, APP_DB};

#[tokio::test]
async fn simple_and_extended_queries_and_prepared_statements_across_transactions() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 2;
    let proxy = RunningProxy::start(config).await;
    let a = common::client(&proxy).await;
    let b = common::client(&proxy).await;

    let rows = a.simple_query("SELECT 1 + 1").await.unwrap();
    assert!(
        matches!(&rows[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("2"))
    );

    // Named prepared statements, prepared once, executed in many separate transactions while
    // another client keeps using the pool: each execution may land on any server connection.
    let stmt = a.prepare("SELECT $1::int * 2").await.unwrap();
    let other = b.prepare("SELECT $1::text || 'x'").await.unwrap();
    for i in 0..50i32 {
        let text = i.to_string();
        let (pa, pb): (
            [&(dyn tokio_postgres::types::ToSql + Sync); 1],
            [&(dyn tokio_postgres::types::ToSql + Sync); 1],
        ) = ([&i], [&text]);
        let (x, y) = tokio::join!(a.query_one(&stmt, &pa), b.query_one(&other, &pb));
        assert_eq!(x.unwrap().get::<_, i32>(0), i * 2);
        assert_eq!(y.unwrap().get::<_, String>(0), format!("{i}x"));
    }
    // Parameters of many types through the extended protocol.
    let row = a
        .query_one(
            "SELECT $1::text, $2::bigint, $3::float8, $4::bool",
            &[&"héllo", &7i64, &1.5f64, &true],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "héllo");
    assert_eq!(row.get::<_, i64>(1), 7);
    drop(stmt);
    proxy.stop().await;
}

#[tokio::test]
async fn transactions_and_errors_inside_them() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let mut c = common::client(&proxy).await;
    c.batch_execute("CREATE TABLE t (id int primary key, v text)")
        .await
        .unwrap();

    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1, 'a')", &[])
        .await
        .unwrap();
    let err = tx
        .execute("INSERT INTO t VALUES (1, 'dup')", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    let err = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "25P02",
        "aborted transaction stays aborted"
    );
    tx.rollback().await.unwrap();
    assert_eq!(
        c.query_one("SELECT count(*) FROM t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );

    let tx = c.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES (2, 'b')", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        c.query_one("SELECT v FROM t WHERE id = 2", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "b"
    );

    // An error outside a transaction leaves the session usable.
    let err = c
        .simple_query("SELECT * FROM missing_table")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");
    assert_eq!(
        c.query_one("SELECT 3", &[]).await.unwrap().get::<_, i32>(0),
        3
    );
    proxy.stop().await;
}

#[tokio::test]
async fn copy_in_and_out_and_large_results() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let c = common::client(&proxy).await;
    c.batch_execute("CREATE TABLE c (id int, v text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    pin_mut!(sink);
    let mut data = String::new();
    for i in 0..10_000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 10_000);

    let stream = c.copy_out("COPY c TO STDOUT").await.unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).unwrap(), data);

    // About 100 MB of rows stream through with back-pressure.
    let rows = c
        .simple_query("SELECT repeat('x', 1000) FROM generate_series(1, 100000)")
        .await
        .unwrap();
    let bytes: usize = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::len),
            _ => None,
        })
        .sum();
    assert_eq!(bytes, 100_000 * 1000);
    proxy.stop().await;
}

#[tokio::test]
async fn cancel_reaches_the_right_query() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let sleeper = common::client(&proxy).await;
    let bystander = common::client(&proxy).await;
    let token = sleeper.cancel_token();
    let slow = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(20)").await });
    let other =
        tokio::spawn(async move { bystander.simple_query("SELECT pg_sleep(1), 'ok'").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    token.cancel_query(NoTls).await.unwrap();
    let err = slow.await.unwrap().unwrap_err();
    assert_eq!(err.code().unwrap().code(), "57014");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        other.await.unwrap().is_ok(),
        "the other client's query is not cancelled"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn client_startup_parameters_are_visible_through_show() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    let url = format!(
        "{}?application_name=reporting&options=-c%20search_path%3Dpublic%2Cpg_catalog%20-c%20TimeZone%3DAsia%2FTokyo",
        proxy.url(APP_DB, "postgres")
    );
    let a = common::client_url(&url).await;
    let b = common::client(&proxy).await;
    for _ in 0..3 {
        // Both share one server connection; each sees its own settings.
        let app: String = a
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        let tz: String = a.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
        let path: String = a.query_one("SHOW search_path", &[]).await.unwrap().get(0);
        assert_eq!(
            (app.as_str(), tz.as_str(), path.as_str()),
            ("reporting", "Asia/Tokyo", "public,pg_catalog")
        );
        let app_b: String = b
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(app_b, "pgwarden");
        b.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        let tz_b: String = b.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
        assert_eq!(tz_b, "UTC");
    }
    // SET by one client does not leak to the other.
    b.batch_execute("SET search_path = pg_catalog")
        .await
        .unwrap();
    let path: String = a.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(path, "public,pg_catalog");
    let path_b: String = b.query_one("SHOW search_path", &[]).await.unwrap().get(0);
    assert_eq!(path_b, "pg_catalog");
    proxy.stop().await;
}
