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

/// A userlist holding no plaintext: alice's SCRAM verifier and bob's md5 hash, copied from the
/// server's own catalogue. Clients authenticate against them; the server logins use SCRAM
/// pass-through (alice) and md5 with the stored hash (bob, whose pg_hba line says md5).
#[tokio::test]
async fn userlist_with_scram_verifiers_and_md5_hashes_and_an_md5_server_login() {
    let cluster = common::cluster_with(PgCluster::builder().auth(Auth::Password {
        superuser_password: "s3cret".into(),
    }));
    cluster
        .create_role("alice", Some("alice-pw"), false)
        .unwrap();
    cluster
        .psql("SET password_encryption = 'md5'; CREATE ROLE bob LOGIN PASSWORD 'bob-pw'")
        .unwrap();
    cluster
        .psql("GRANT ALL ON DATABASE app TO alice, bob")
        .unwrap();
    // bob logs in to the server with md5; everyone else with SCRAM.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all bob 127.0.0.1/32 md5\n{old}")).unwrap();
    cluster.psql("SELECT pg_reload_conf()").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let secret = |role: &str| {
        cluster
            .psql(&format!(
                "SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"
            ))
            .unwrap()
            .trim()
            .to_string()
    };
    let (alice_verifier, bob_hash) = (secret("alice"), secret("bob"));
    assert!(
        alice_verifier.starts_with("SCRAM-SHA-256$"),
        "{alice_verifier}"
    );
    assert!(bob_hash.starts_with("md5"), "{bob_hash}");
    let list = userlist(&format!(
        "\"alice\" \"{alice_verifier}\"\n\"bob\" \"{bob_hash}\"\n"
    ));

    for (auth, user, password) in [
        (AuthType::Scram, "alice", "alice-pw"),
        (AuthType::Md5, "bob", "bob-pw"),
    ] {
        let mut config = common::config(&cluster);
        config.auth_type = auth;
        config.auth_file = Some(list.path().to_path_buf());
        let proxy = RunningProxy::start(config).await;
        let url = format!("postgres://{user}:{password}@{}/{APP_DB}", proxy.addr);
        let c = common::client_url(&url).await;
        let who: String = c
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user, "{auth:?}");
        let bad = format!("postgres://{user}:wrong@{}/{APP_DB}", proxy.addr);
        let err = tokio_postgres::connect(&bad, NoTls).await.err().unwrap();
        assert_eq!(
            err.as_db_error().unwrap().code().code(),
            "28P01",
            "{auth:?}"
        );
        drop(c);
        proxy.stop().await;
    }
}
