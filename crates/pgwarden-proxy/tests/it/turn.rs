//! The forwarding loop skips reads it knows to be pending (armed reads, see
//! `client::turn`). A read skipped wrongly is a lost wake-up: the statement never completes.
//! These runs move server connections between sessions (8 clients, 2 connections) through
//! multi-statement transactions, large results (enough reads in one go to spend tokio's
//! cooperative budget) and pipelined statements, each transaction under a deadline, on both
//! runtime flavours.
//!
//! A session that skipped a read without leaving a waker is not stuck for good: the parker's
//! once-a-second nudge (see `client::park`) wakes every session. So the whole run has a
//! deadline too, far above its usual second or two but far below what stalls until nudges cost
//! (over a minute for these 160 transactions when the idle read's readiness was left armed).

use std::time::Duration;

use futures_util::future::try_join_all;

use crate::common::{self, RunningProxy};

/// One client's work: `rounds` transactions of several statements, one of them with a result
/// of about 2 MB, then a pipelined pair outside a transaction.
async fn transactions(url: String, id: i32, rounds: i32) {
    let c = common::client_url(&url).await;
    for round in 0..rounds {
        let work = async {
            c.batch_execute("BEGIN").await?;
            c.execute(
                "INSERT INTO turn_log (client, round) VALUES ($1, $2)",
                &[&id, &round],
            )
            .await?;
            let big = if round % 5 == 0 { 2000 } else { 10 };
            let rows = c
                .query(
                    "SELECT repeat('x', 1000) FROM generate_series(1, $1::int)",
                    &[&big],
                )
                .await?;
            assert_eq!(rows.len() as i32, big);
            let n: i64 = c
                .query_one("SELECT count(*) FROM turn_log WHERE client = $1", &[&id])
                .await?
                .get(0);
            assert_eq!(n, i64::from(round) + 1);
            c.batch_execute("COMMIT").await?;
            // Two statements sent before either reply is read.
            let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&round];
            let (a, b) = tokio::try_join!(
                c.query_one("SELECT $1::int + 1", params),
                c.query_one("SELECT $1::int + 2", params),
            )?;
            assert_eq!(a.get::<_, i32>(0), round + 1);
            assert_eq!(b.get::<_, i32>(0), round + 2);
            Ok::<_, tokio_postgres::Error>(())
        };
        tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .unwrap_or_else(|_| panic!("client {id}, round {round}: no reply within 20 s"))
            .unwrap_or_else(|e| panic!("client {id}, round {round}: {e}"));
    }
}

async fn run() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 2;
    let proxy = RunningProxy::start(config).await;
    let setup = common::client(&proxy).await;
    setup
        .batch_execute("CREATE TABLE turn_log (client int, round int)")
        .await
        .unwrap();
    let url = proxy.url(common::APP_DB, "postgres");
    let clients = try_join_all((0..8).map(|id| tokio::spawn(transactions(url.clone(), id, 20))));
    tokio::time::timeout(Duration::from_secs(30), clients)
        .await
        .expect("160 transactions within 30 s: statements stalled until the parker's nudges")
        .unwrap();
    let total: i64 = setup
        .query_one("SELECT count(*) FROM turn_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 8 * 20);
    drop(setup);
    proxy.stop().await;
}

#[tokio::test]
async fn transactions_keep_flowing_on_a_current_thread_runtime() {
    run().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_keep_flowing_on_a_multi_thread_runtime() {
    run().await;
}
