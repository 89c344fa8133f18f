//! auth_query lookups share one upstream connection: 50 clients logging in at once cost the
//! server no more than the pool's cap plus that connection.

use pgwarden_proxy::AuthType;
use pgwarden_testkit::{Auth, PgCluster};

use crate::common::{self, RunningProxy, APP_DB};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_share_one_auth_query_connection() {
    let cluster = common::cluster_with(PgCluster::builder().auth(Auth::Password {
        superuser_password: "s3cret".into(),
    }));
    cluster.create_role("bob", Some("bob-pw"), false).unwrap();
    cluster.psql("GRANT ALL ON DATABASE app TO bob").unwrap();
    let mut config = common::config(&cluster);
    config.auth_type = AuthType::Scram;
    config.auth_query = Some("SELECT usename, passwd FROM pg_shadow WHERE usename = $1".into());
    config.upstream.user = Some("postgres".into());
    config.upstream.password = Some("s3cret".into());
    config.upstream.database = Some("postgres".into());
    config.default_pool_size = 3;
    let proxy = RunningProxy::start(config).await;

    let sampler = common::BackendSampler::start(&cluster, common::ALL_BACKENDS).await;

    let url = format!("postgres://bob:bob-pw@{}/{APP_DB}", proxy.addr);
    let logins: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = common::client_url(&url).await;
                let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
                assert_eq!(one, 1);
            })
        })
        .collect();
    for login in logins {
        login.await.unwrap();
    }
    let (max, _) = sampler.finish().await;
    assert!(
        max <= 3 + 2,
        "PostgreSQL saw {max} connections: the pool's cap is 3, auth_query should add one"
    );
    assert_eq!(
        cluster.count_backends("pgwarden auth_query").await,
        1,
        "one auth_query connection, kept for the next logins"
    );
    // A wrong password is still refused through the shared connection.
    let bad = format!("postgres://bob:nope@{}/{APP_DB}", proxy.addr);
    let err = tokio_postgres::connect(&bad, tokio_postgres::NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    proxy.stop().await;
    assert_eq!(cluster.count_backends("pgwarden auth_query").await, 0);
}
