//! Statements pgwarden keeps prepared on server connections and a schema change under them
//! (`cached plan must not change result type`).

use tokio_postgres::Client;

use crate::common::{self, RunningProxy};

async fn setup() -> (pgwarden_testkit::PgCluster, RunningProxy) {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    // One server connection: every statement reuses the same server-side statement.
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    let c = common::client(&proxy).await;
    c.batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    (cluster, proxy)
}

async fn add_column(cluster: &pgwarden_testkit::PgCluster, column: &str) {
    let admin = common::client_url(&cluster.url(common::APP_DB, "postgres")).await;
    admin
        .batch_execute(&format!("ALTER TABLE t ADD COLUMN {column} int DEFAULT 7"))
        .await
        .unwrap();
}

/// Columns of `SELECT * FROM t` as the client sees them (tokio-postgres prepares a named
/// statement for every call: Parse, Describe, Sync, then Bind, Execute, Sync).
async fn select_all(c: &Client) -> Result<usize, tokio_postgres::Error> {
    let rows = c.query("SELECT * FROM t", &[]).await?;
    Ok(rows[0].len())
}

#[tokio::test]
async fn a_statement_prepared_after_a_schema_change_sees_the_new_columns() {
    let (cluster, proxy) = setup().await;
    let c = common::client(&proxy).await;
    assert_eq!(select_all(&c).await.unwrap(), 1);

    add_column(&cluster, "b").await;
    // pgwarden's server-side statement is older than the change; PostgreSQL refuses its
    // Describe, pgwarden prepares it again and the client never hears of it.
    assert_eq!(select_all(&c).await.unwrap(), 2, "the new column count");
    let rows = c.query("SELECT * FROM t", &[]).await.unwrap();
    assert_eq!(rows[0].get::<_, i32>(1), 7);

    add_column(&cluster, "c").await;
    let other = common::client(&proxy).await;
    assert_eq!(select_all(&other).await.unwrap(), 3);
    assert_eq!(select_all(&c).await.unwrap(), 3);
    proxy.stop().await;
}

#[tokio::test]
async fn a_statement_described_before_the_change_fails_as_on_postgres_then_prepares_again() {
    let (cluster, proxy) = setup().await;
    let c = common::client(&proxy).await;
    let stmt = c.prepare("SELECT * FROM t").await.unwrap();
    assert_eq!(c.query(&stmt, &[]).await.unwrap()[0].len(), 1);

    add_column(&cluster, "b").await;
    // The client holds a one-column description: rows of two would break it. PostgreSQL's own
    // answer reaches it, as on a direct connection.
    let err = c.query(&stmt, &[]).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "0A000");
    assert_eq!(db.message(), "cached plan must not change result type");

    // What a driver does next (pgx, JDBC): prepare again. It reaches the server instead of
    // being answered from pgwarden's cache.
    let stmt = c.prepare("SELECT * FROM t").await.unwrap();
    let rows = c.query(&stmt, &[]).await.unwrap();
    assert_eq!(rows[0].len(), 2, "the new column count");
    proxy.stop().await;
}

#[tokio::test]
async fn inside_a_transaction_the_error_reaches_the_client() {
    let (cluster, proxy) = setup().await;
    let c = common::client(&proxy).await;
    assert_eq!(select_all(&c).await.unwrap(), 1);
    add_column(&cluster, "b").await;

    c.batch_execute("BEGIN").await.unwrap();
    let err = select_all(&c).await.unwrap_err();
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "0A000");
    assert_eq!(db.message(), "cached plan must not change result type");
    let err = c.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();

    assert_eq!(select_all(&c).await.unwrap(), 2);
    proxy.stop().await;
}
