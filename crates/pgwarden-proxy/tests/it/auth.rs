//! Client authentication (SCRAM, md5 against a userlist) and server logins with passwords.

use std::io::Write;

use pgwarden_proxy::AuthType;
use pgwarden_testkit::{Auth, PgCluster};
use tokio_postgres::NoTls;

use crate::common::{self, RunningProxy, APP_DB};

fn userlist(lines: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(lines.as_bytes()).unwrap();
    f
}

#[tokio::test]
async fn scram_and_md5_clients_against_a_password_protected_server() {
    let cluster = common::cluster_with(PgCluster::builder().auth(Auth::Password {
        superuser_password: "s3cret".into(),
    }));
    cluster
        .create_role("alice", Some("alice-pw"), false)
        .unwrap();
    cluster.psql("GRANT ALL ON DATABASE app TO alice").unwrap();
    let list = userlist("\"alice\" \"alice-pw\"\n\"postgres\" \"s3cret\"\n");
    for auth in [AuthType::Scram, AuthType::Md5] {
        let mut config = common::config(&cluster);
        config.auth_type = auth;
        config.auth_file = Some(list.path().to_path_buf());
        let proxy = RunningProxy::start(config).await;
        let url = format!("postgres://alice:alice-pw@{}/{APP_DB}", proxy.addr);
        let c = common::client_url(&url).await;
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, "alice");

        let bad = format!("postgres://alice:wrong@{}/{APP_DB}", proxy.addr);
        let err = tokio_postgres::connect(&bad, NoTls).await.err().unwrap();
        let db = err.as_db_error().expect("server error");
        assert_eq!(db.code().code(), "28P01");
        assert!(db.message().contains("alice"));
        let unknown = format!("postgres://mallory:x@{}/{APP_DB}", proxy.addr);
        let err = tokio_postgres::connect(&unknown, NoTls)
            .await
            .err()
            .unwrap();
        assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn scram_pass_through_with_auth_query_stores_no_password() {
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
    let proxy = RunningProxy::start(config).await;
    let url = format!("postgres://bob:bob-pw@{}/{APP_DB}", proxy.addr);
    let c = common::client_url(&url).await;
    let who: String = c
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        who, "bob",
        "logged in to the server with keys from the client's SCRAM proof"
    );
    let bad = format!("postgres://bob:nope@{}/{APP_DB}", proxy.addr);
    let err = tokio_postgres::connect(&bad, NoTls).await.err().unwrap();
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    proxy.stop().await;
}
