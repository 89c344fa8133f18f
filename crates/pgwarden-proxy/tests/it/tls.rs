//! TLS towards clients: tokio-postgres (rustls) and psql with `sslmode=require` through the
//! proxy, `tls_mode = require` refusing clear-text clients, `N` without a certificate, and
//! certificate files checked when the proxy starts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use pgwarden_proxy::{Proxy, ProxyConfig, StartError, TlsMode};
use pgwarden_testkit::PgCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::common::{self, RunningProxy, APP_DB};

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files.
struct TestCert {
    _dir: tempfile::TempDir,
    cert_file: PathBuf,
    key_file: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn test_cert() -> TestCert {
    let dir = tempfile::tempdir().unwrap();
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_file = dir.path().join("server.crt");
    let key_file = dir.path().join("server.key");
    std::fs::write(&cert_file, generated.cert.pem()).unwrap();
    std::fs::write(&key_file, generated.key_pair.serialize_pem()).unwrap();
    TestCert {
        der: generated.cert.der().clone(),
        _dir: dir,
        cert_file,
        key_file,
    }
}

fn tls_config(cluster: &PgCluster, cert: &TestCert, mode: TlsMode) -> ProxyConfig {
    let mut config = common::config(cluster);
    config.tls_mode = mode;
    config.tls_cert_file = Some(cert.cert_file.clone());
    config.tls_key_file = Some(cert.key_file.clone());
    config
}

/// A rustls connector for tokio-postgres that trusts only `cert`.
fn connector(cert: &TestCert) -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

fn conninfo(proxy: &RunningProxy, sslmode: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=postgres dbname={APP_DB} sslmode={sslmode}",
        proxy.addr.port()
    )
}

fn psql(cluster: &PgCluster, conninfo: &str, sql: &str) -> Output {
    let local = cluster.bin_dir().join("psql");
    let bin = if local.exists() { local } else { "psql".into() };
    Command::new(bin)
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLMODE")
        .output()
        .expect("run psql")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_and_psql_query_over_tls() {
    let cluster = common::cluster();
    let cert = test_cert();
    let proxy = RunningProxy::start(tls_config(&cluster, &cert, TlsMode::Allow)).await;

    let (mut client, connection) =
        tokio_postgres::connect(&conninfo(&proxy, "require"), connector(&cert))
            .await
            .expect("connect with sslmode=require");
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // Several transactions on the same TLS session, each on whichever server connection.
    for i in 0..20i32 {
        let row = client.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
    // Replies far larger than one TLS record and than the socket buffers.
    let rows = client
        .query(
            "SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 20_000);
    assert_eq!(rows[19_999].get::<_, i32>(0), 20_000);
    let big: String = client
        .query_one("SELECT repeat('y', 3000000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 3_000_000);
    // And as large a message from the client.
    let echoed: String = client
        .query_one("SELECT $1::text", &[&big])
        .await
        .unwrap()
        .get(0);
    assert_eq!(echoed.len(), big.len());
    let in_tx = client.transaction().await.unwrap();
    in_tx
        .execute("CREATE TEMP TABLE t (x int)", &[])
        .await
        .unwrap();
    in_tx
        .execute("INSERT INTO t VALUES (7)", &[])
        .await
        .unwrap();
    let seven: i32 = in_tx
        .query_one("SELECT x FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seven, 7);
    in_tx.rollback().await.unwrap();

    // tls_mode = allow: a client without TLS still gets in.
    let plain = common::client_url(&format!(
        "{}?sslmode=disable",
        proxy.url(APP_DB, "postgres")
    ))
    .await;
    let two: i32 = plain.query_one("SELECT 2", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);

    let info = conninfo(&proxy, "require");
    let (one, conn) = tokio::task::block_in_place(|| {
        (
            psql(&cluster, &info, "SELECT 1"),
            psql(&cluster, &info, "\\conninfo"),
        )
    });
    assert!(one.status.success(), "psql: {}", text(&one.stderr));
    assert_eq!(text(&one.stdout).trim(), "1");
    assert!(
        text(&conn.stdout).contains("SSL connection (protocol: TLSv1.3"),
        "psql reports TLS: {}{}",
        text(&conn.stdout),
        text(&conn.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mode_require_refuses_clear_text_clients() {
    let cluster = common::cluster();
    let cert = test_cert();
    let proxy = RunningProxy::start(tls_config(&cluster, &cert, TlsMode::Require)).await;

    let refused = tokio_postgres::connect(&conninfo(&proxy, "disable"), NoTls)
        .await
        .err()
        .expect("a clear-text client is refused");
    assert_eq!(
        refused.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{refused:?}"
    );
    let message = refused
        .as_db_error()
        .map(|e| e.message())
        .unwrap_or_default();
    assert!(message.contains("tls_mode = require"), "{refused:?}");

    let (client, connection) =
        tokio_postgres::connect(&conninfo(&proxy, "require"), connector(&cert))
            .await
            .expect("a TLS client gets in");
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    let (plain, tls) = tokio::task::block_in_place(|| {
        (
            psql(&cluster, &conninfo(&proxy, "disable"), "SELECT 1"),
            psql(&cluster, &conninfo(&proxy, "require"), "SELECT 1"),
        )
    });
    assert_eq!(plain.status.code(), Some(2), "psql cannot connect");
    assert!(
        text(&plain.stderr).contains("pgwarden accepts only TLS connections"),
        "{}",
        text(&plain.stderr)
    );
    assert!(tls.status.success(), "psql: {}", text(&tls.stderr));
    assert_eq!(text(&tls.stdout).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_ssl_is_declined_and_clear_text_works() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&ssl_request()).await.unwrap();
    assert_eq!(stream.read_u8().await.unwrap(), b'N');
    drop(stream);

    let out =
        tokio::task::block_in_place(|| psql(&cluster, &conninfo(&proxy, "require"), "SELECT 1"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("server does not support SSL"),
        "{}",
        text(&out.stderr)
    );
    let out =
        tokio::task::block_in_place(|| psql(&cluster, &conninfo(&proxy, "prefer"), "SELECT 1"));
    assert_eq!(text(&out.stdout).trim(), "1", "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_text_bytes_after_ssl_request_are_refused() {
    let cluster = common::cluster();
    let cert = test_cert();
    let proxy = RunningProxy::start(tls_config(&cluster, &cert, TlsMode::Allow)).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    // An SSLRequest and, in the same write, bytes that are not a TLS ClientHello.
    let mut bytes = ssl_request();
    bytes.extend_from_slice(b"\0\0\0\x08\0\x03\0\0");
    stream.write_all(&bytes).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply[0], b'E', "an ErrorResponse, not 'S'");
    let reply = text(&reply);
    assert!(
        reply.contains("08P01") && reply.contains("unencrypted data"),
        "{reply}"
    );
}

#[tokio::test]
async fn unusable_certificate_files_stop_the_proxy_from_starting() {
    let cert = test_cert();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.crt");
    let mut config = ProxyConfig::new("127.0.0.1", 1);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.auth_type = pgwarden_proxy::AuthType::Trust;
    let with = |cert_file: &Path, key_file: &Path, mode| {
        let mut c = config.clone();
        c.tls_cert_file = Some(cert_file.to_path_buf());
        c.tls_key_file = Some(key_file.to_path_buf());
        c.tls_mode = mode;
        c
    };

    let err = Proxy::bind(with(&missing, &cert.key_file, TlsMode::Allow), None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StartError::Tls(_)), "{err}");
    assert!(err.to_string().contains("nope.crt"), "{err}");
    let err = Proxy::bind(with(&cert.cert_file, &cert.cert_file, TlsMode::Allow), None)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no PEM private key"), "{err}");
    // Disabled TLS does not read the files.
    assert!(
        Proxy::bind(with(&missing, &missing, TlsMode::Disable), None)
            .await
            .is_ok()
    );
    let mut require = config.clone();
    require.tls_mode = TlsMode::Require;
    let err = Proxy::bind(require, None).await.err().unwrap();
    assert!(err.to_string().contains("tls_cert_file"), "{err}");
}

fn ssl_request() -> Vec<u8> {
    let mut packet = 8u32.to_be_bytes().to_vec();
    packet.extend_from_slice(&80_877_103u32.to_be_bytes());
    packet
}
