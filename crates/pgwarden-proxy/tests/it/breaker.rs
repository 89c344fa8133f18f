//! The shared circuit breaker hears only about the upstream's availability: one client's
//! missing database or unknown user is that client's problem, not everyone's.

use std::time::Duration;

use pgwarden_proxy::Proxy;
use pgwarden_resilience::{BreakerState, MonitorConfig, Prober, TcpProbe};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::common::{self, APP_DB};

/// Connects and runs one query; the server error's SQLSTATE and message on failure.
async fn try_query(url: &str) -> Result<(), (String, String)> {
    let describe = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => (String::new(), e.to_string()),
    };
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(describe)?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.map_err(describe)?;
    Ok(())
}

#[tokio::test]
async fn configuration_failures_of_one_client_do_not_open_the_breaker_for_all() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.query_wait_timeout = Duration::from_millis(500);
    let mut monitor = MonitorConfig::default();
    monitor.breaker.failure_threshold = 2;
    let prober = Prober::new(TcpProbe::new(cluster.host(), cluster.port()), monitor);
    let upstream = prober.handle();
    let cancel = CancellationToken::new();
    tokio::spawn(prober.run(cancel.clone()));
    let proxy = Proxy::bind(config, Some(upstream.clone())).await.unwrap();
    let addr = proxy.local_addr();
    tokio::spawn(proxy.run(cancel.clone(), Duration::from_secs(5)));
    let url =
        |db: &str, user: &str| format!("postgres://{user}@{}:{}/{db}", addr.ip(), addr.port());

    // Several attempts each at a missing database and as an unknown role: every one a
    // configuration failure the server names, well past the breaker's threshold of 2.
    for _ in 0..3 {
        for (db, user, sqlstate) in [
            ("nosuchdb", "postgres", "3D000"),
            (APP_DB, "nobody", "28000"),
        ] {
            let (code, message) = try_query(&url(db, user)).await.unwrap_err();
            // The server's own SQLSTATE and words reach the client.
            assert_eq!(code, sqlstate, "{db}/{user}: {message}");
            assert!(message.contains("does not exist"), "{db}/{user}: {message}");
        }
    }
    assert_eq!(upstream.summary().breaker, BreakerState::Closed);

    // Everyone else is served at once.
    try_query(&url(APP_DB, "postgres"))
        .await
        .expect("a good client is not refused");

    // Availability failures still count: with the server gone, the breaker opens.
    drop(cluster);
    for _ in 0..3 {
        let _ = try_query(&url("postgres", "postgres")).await;
    }
    assert_ne!(upstream.summary().breaker, BreakerState::Closed);
    cancel.cancel();
}
