//! Parked idle clients (no task of their own while idle): they come back with their session
//! intact, hang up cleanly, and hear why at shutdown.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_postgres::NoTls;

use crate::common::{self, RunningProxy, APP_DB};

/// Waits until `parked` clients are parked (and `active` connected).
async fn wait_for(proxy: &RunningProxy, parked: u64, active: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stats = proxy.handle.stats();
        if stats.clients_parked == parked && stats.clients_active == active {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {parked} parked of {active} clients, have {} of {}",
            stats.clients_parked,
            stats.clients_active
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_client_parks_and_comes_back_with_its_statements_and_parameters() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let client = common::client(&proxy).await;
    // A client with nothing to say after its login parks at once.
    wait_for(&proxy, 1, 1, Duration::from_secs(2)).await;

    client
        .batch_execute("SET application_name = 'parked_app'")
        .await
        .unwrap();
    let statement = client.prepare("SELECT $1::int + 1").await.unwrap();
    // Active now: a task of its own again.
    assert_eq!(proxy.handle.stats().clients_parked, 0);
    // Idle for one to two seconds: parked again.
    let idle_from = Instant::now();
    wait_for(&proxy, 1, 1, Duration::from_secs(4)).await;
    assert!(
        idle_from.elapsed() >= Duration::from_millis(900),
        "parked after {:?}, before a second of idleness",
        idle_from.elapsed()
    );

    let row = client.query_one(&statement, &[&41]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let row = client
        .query_one("SHOW application_name", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "parked_app");
    assert_eq!(proxy.handle.stats().clients_active, 1);

    // Hanging up while parked ends the session.
    wait_for(&proxy, 1, 1, Duration::from_secs(4)).await;
    drop(client);
    wait_for(&proxy, 0, 0, Duration::from_secs(2)).await;
}

/// Between two transactions the session waits on the client with the waker its last turn left
/// with the socket (it does not poll the socket again): a request or a hang-up in that wait
/// must still be heard at once, not only when the idle client is parked a second later.
#[tokio::test]
async fn a_client_is_heard_between_transactions_before_it_parks() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let client = common::client(&proxy).await;
    client.simple_query("SELECT 1").await.unwrap();
    for i in 0..20i32 {
        tokio::time::sleep(Duration::from_millis(20 + 10 * (i % 3) as u64)).await;
        assert_eq!(proxy.handle.stats().clients_parked, 0, "round {i}");
        let asked = Instant::now();
        let row = client.query_one("SELECT $1::int", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i);
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "round {i}: answered after {:?}",
            asked.elapsed()
        );
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let hung_up = Instant::now();
    drop(client);
    wait_for(&proxy, 0, 0, Duration::from_millis(500)).await;
    assert!(hung_up.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn two_hundred_parked_clients_come_back_at_once_within_the_cap() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let clients = join_all((0..200).map(|_| common::client(&proxy))).await;
    wait_for(&proxy, 200, 200, Duration::from_secs(5)).await;

    let sampler = common::BackendSampler::start(&cluster, common::APP_BACKENDS).await;
    let results = join_all(clients.iter().enumerate().map(|(i, c)| async move {
        c.query_one("SELECT $1::int * 2", &[&(i as i32)])
            .await
            .unwrap()
            .get::<_, i32>(0)
    }))
    .await;
    let (max_backends, samples) = sampler.finish().await;
    for (i, doubled) in results.into_iter().enumerate() {
        assert_eq!(doubled, 2 * i as i32);
    }
    assert!(samples > 0);
    assert!(
        max_backends <= 3,
        "{max_backends} server connections, cap 3"
    );
    wait_for(&proxy, 200, 200, Duration::from_secs(4)).await;
    drop(clients);
    wait_for(&proxy, 0, 0, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn parked_clients_hear_why_at_shutdown_and_the_drain_waits_for_them() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let (client, connection) = tokio_postgres::connect(&proxy.url(APP_DB, "postgres"), NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
    wait_for(&proxy, 1, 1, Duration::from_secs(4)).await;

    let started = Instant::now();
    let stats = proxy.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "drain took {:?}",
        started.elapsed()
    );
    assert_eq!(stats.clients_active, 0);
    assert_eq!(stats.clients_parked, 0);
    let err = tokio::time::timeout(Duration::from_secs(2), connection)
        .await
        .expect("closed in time")
        .unwrap()
        .expect_err("closed by pgwarden with an error");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "57P01");
    assert!(db.message().contains("shutting down"), "{}", db.message());
}
