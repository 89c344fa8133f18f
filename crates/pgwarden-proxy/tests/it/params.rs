//! Session parameters through the proxy answer as on a direct connection, also after `RESET`,
//! `SET ... TO DEFAULT`, `RESET ALL` and `DISCARD ALL`: PostgreSQL returns a parameter to its
//! session default, which is the client's startup value when it gave one.

use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::common::{self, RunningProxy, APP_DB};

/// The settings compared, in one row.
const SHOW: &str = "SELECT current_setting('work_mem'), current_setting('search_path'), \
                    current_setting('application_name'), current_setting('TimeZone')";

async fn connect(config: &Config) -> Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn show(client: &Client) -> Vec<String> {
    let messages = client.simple_query(SHOW).await.unwrap();
    let row = messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .expect("a row");
    (0..4).map(|i| row.get(i).unwrap().to_string()).collect()
}

#[tokio::test]
async fn show_after_reset_matches_a_direct_connection() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    // One server connection: every client's transactions share it.
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    // Another client whose startup parameters differ, run between steps to move the shared
    // server connection's parameters away.
    let mut other_config: Config = proxy.url(APP_DB, "postgres").parse().unwrap();
    other_config.options("-c work_mem=2MB -c search_path=pg_catalog");
    let other = connect(&other_config).await;

    let scripts: &[&[&str]] = &[
        &["SET work_mem = '16MB'", "RESET work_mem"],
        &[
            "SET search_path = pg_catalog, public",
            "SET search_path TO DEFAULT",
        ],
        &[
            "SET work_mem = '16MB'; SET TimeZone = 'Asia/Tokyo'",
            "RESET ALL",
        ],
        &[
            "SET application_name = 'changed'; SET work_mem = '16MB'",
            "DISCARD ALL",
        ],
        &["BEGIN", "SET work_mem = '16MB'", "RESET work_mem"],
        &["BEGIN", "SET search_path = pg_catalog", "RESET ALL"],
    ];
    for given_at_startup in [true, false] {
        let mut direct_config: Config = cluster.url(APP_DB, "postgres").parse().unwrap();
        let mut proxied_config: Config = proxy.url(APP_DB, "postgres").parse().unwrap();
        if given_at_startup {
            for c in [&mut direct_config, &mut proxied_config] {
                c.options(
                    "-c work_mem=8MB -c search_path=public,pg_catalog -c TimeZone=Europe/Paris",
                );
                c.application_name("resetter");
            }
        } else {
            // The proxy gives server connections its own application_name; the comparison is
            // about the other parameters.
            direct_config.application_name("pgwarden");
        }
        let direct = connect(&direct_config).await;
        let proxied = connect(&proxied_config).await;
        for interleave in [false, true] {
            for script in scripts {
                for step in *script {
                    direct.batch_execute(step).await.unwrap();
                    proxied.batch_execute(step).await.unwrap();
                    if interleave && script[0] != "BEGIN" {
                        other.batch_execute("SELECT 1").await.unwrap();
                    }
                }
                let want = show(&direct).await;
                let got = show(&proxied).await;
                assert_eq!(
                    got, want,
                    "after {script:?} (given at startup: {given_at_startup}, other client \
                     between steps: {interleave})"
                );
                if script[0] == "BEGIN" {
                    direct.batch_execute("COMMIT").await.unwrap();
                    proxied.batch_execute("COMMIT").await.unwrap();
                }
            }
        }
    }
    // The other client kept its own values throughout.
    let theirs = show(&other).await;
    assert_eq!(&theirs[..2], ["2MB", "pg_catalog"]);
    proxy.stop().await;
}

#[tokio::test]
async fn set_and_reset_through_the_extended_protocol_are_tracked() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 1;
    let proxy = RunningProxy::start(config).await;
    let mut startup_config: Config = proxy.url(APP_DB, "postgres").parse().unwrap();
    startup_config.options("-c work_mem=8MB");
    let a = connect(&startup_config).await;
    let plain = common::client(&proxy).await;

    // tokio-postgres sends execute() as Parse (named), Describe, Sync, then Bind, Execute,
    // Sync; query_typed() uses the unnamed statement.
    a.execute("SET work_mem = '16MB'", &[]).await.unwrap();
    assert_eq!(
        show(&plain).await[0],
        "4MB",
        "a's SET leaked to another client"
    );
    assert_eq!(show(&a).await[0], "16MB", "a's SET was lost");
    a.query_typed("SET search_path = pg_catalog", &[])
        .await
        .unwrap();
    assert_eq!(show(&plain).await[1], "\"$user\", public");
    assert_eq!(show(&a).await[..2], ["16MB", "pg_catalog"]);
    a.execute("RESET work_mem", &[]).await.unwrap();
    assert_eq!(show(&plain).await[0], "4MB");
    assert_eq!(
        show(&a).await[0],
        "8MB",
        "RESET returns to the startup value"
    );
    a.query_typed("RESET ALL", &[]).await.unwrap();
    assert_eq!(show(&a).await[..2], ["8MB", "\"$user\", public"]);
    proxy.stop().await;
}
