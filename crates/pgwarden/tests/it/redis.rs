//! A Redis pool beside the PostgreSQL one: created on first use, connections reused.

use ::redis::AsyncCommands;
use pgwarden_testkit::RedisServer;

use crate::common::{settings, PgCluster};

#[tokio::test]
async fn redis_connections_are_created_lazily_and_reused() {
    let cluster = PgCluster::builder().start().unwrap();
    let redis = RedisServer::start().unwrap();
    let warden = pgwarden::Warden::new(settings(
        &cluster.url("postgres", "postgres"),
        &[("redis.url", &redis.url()), ("redis.max_size", "2")],
    ))
    .unwrap();
    assert!(
        !warden.stats().resources.contains_key(pgwarden::REDIS),
        "created before first use"
    );
    for i in 0..50i64 {
        let mut conn = warden.redis().await.unwrap();
        let _: () = conn.set("k", i).await.unwrap();
        let v: i64 = conn.get("k").await.unwrap();
        assert_eq!(v, i);
    }
    warden.fetch_one("SELECT 1", &[]).await.unwrap();
    let stats = warden.stats();
    let r = &stats.resources[pgwarden::REDIS];
    assert_eq!(r.acquires_total, 50);
    assert_eq!(r.created_total, 1, "one connection serves sequential use");
    assert!(r.reuse_ratio > 0.9);
    assert!(stats.resources.contains_key(pgwarden::POSTGRES));
}

#[tokio::test]
async fn redis_without_a_url_is_a_clear_error() {
    let cluster = PgCluster::builder().start().unwrap();
    let warden =
        pgwarden::Warden::new(settings(&cluster.url("postgres", "postgres"), &[])).unwrap();
    let err = warden.redis().await.unwrap_err().to_string();
    assert!(err.contains("PGWARDEN_REDIS_URL"), "{err}");
}
