//! The first packets, spoken raw: GSSENCRequest declined with `N` and the startup going on
//! (as libpq does with `gssencmode=prefer`), NegotiateProtocolVersion for a newer 3.x or
//! `_pq_.` options, and other major versions refused with 0A000.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, RunningProxy, APP_DB};

const GSSENC_REQUEST: u32 = 80_877_104;
const SSL_REQUEST: u32 = 80_877_103;

fn request(code: u32) -> Vec<u8> {
    let mut packet = 8u32.to_be_bytes().to_vec();
    packet.extend_from_slice(&code.to_be_bytes());
    packet
}

fn startup(version: u32, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in [("user", "postgres"), ("database", APP_DB)]
        .iter()
        .chain(extra)
    {
        for s in [name, value] {
            body.extend_from_slice(s.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut packet = (8 + body.len() as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&version.to_be_bytes());
    packet.extend_from_slice(&body);
    packet
}

async fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let tag = stream.read_u8().await.expect("a message from the proxy");
    let len = stream.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    stream.read_exact(&mut body).await.unwrap();
    (tag, body)
}

/// The SQLSTATE (`C` field) of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .map(|code| String::from_utf8_lossy(code).into_owned())
        .unwrap_or_default()
}

/// Reads until ReadyForQuery; returns the tags seen (ParameterStatus and BackendKeyData left
/// out).
async fn until_ready(stream: &mut TcpStream) -> Vec<u8> {
    let mut tags = Vec::new();
    loop {
        let (tag, body) = read_message(stream).await;
        assert_ne!(tag, b'E', "error {}", String::from_utf8_lossy(&body));
        if !matches!(tag, b'S' | b'K') {
            tags.push(tag);
        }
        if tag == b'Z' {
            return tags;
        }
    }
}

/// Runs `SELECT 41 + 1`; returns the value.
async fn select(stream: &mut TcpStream) -> String {
    query_value(stream, "SELECT 41 + 1").await
}

/// Runs a one-value query; returns the value.
async fn query_value(stream: &mut TcpStream, sql: &str) -> String {
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&(4 + sql.len() as u32 + 1).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    msg.push(0);
    stream.write_all(&msg).await.unwrap();
    let mut value = String::new();
    loop {
        let (tag, body) = read_message(stream).await;
        assert_ne!(tag, b'E', "error {}", String::from_utf8_lossy(&body));
        if tag == b'D' {
            // One column: count (2), length (4), text.
            value = String::from_utf8_lossy(&body[6..]).into_owned();
        }
        if tag == b'Z' {
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_declined_and_the_startup_goes_on() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;

    // GSSENCRequest alone, then a StartupMessage.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&request(GSSENC_REQUEST)).await.unwrap();
    assert_eq!(stream.read_u8().await.unwrap(), b'N');
    stream.write_all(&startup(3 << 16, &[])).await.unwrap();
    assert_eq!(until_ready(&mut stream).await, b"RZ");
    assert_eq!(select(&mut stream).await, "42");

    // GSSENCRequest then SSLRequest (libpq's order with both preferred), both declined.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&request(GSSENC_REQUEST)).await.unwrap();
    assert_eq!(stream.read_u8().await.unwrap(), b'N');
    stream.write_all(&request(SSL_REQUEST)).await.unwrap();
    assert_eq!(stream.read_u8().await.unwrap(), b'N');
    stream.write_all(&startup(3 << 16, &[])).await.unwrap();
    assert_eq!(until_ready(&mut stream).await, b"RZ");
    assert_eq!(select(&mut stream).await, "42");

    // Asking twice is a protocol violation, as in PostgreSQL.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&request(GSSENC_REQUEST)).await.unwrap();
    assert_eq!(stream.read_u8().await.unwrap(), b'N');
    stream.write_all(&request(GSSENC_REQUEST)).await.unwrap();
    let (tag, body) = read_message(&mut stream).await;
    assert_eq!((tag, sqlstate(&body).as_str()), (b'E', "08P01"));

    // And libpq itself, asked to prefer GSSAPI encryption, gets in.
    let local = cluster.bin_dir().join("psql");
    let bin = if local.exists() { local } else { "psql".into() };
    let conninfo = format!(
        "host=127.0.0.1 port={} user=postgres dbname={APP_DB} gssencmode=prefer sslmode=prefer",
        proxy.addr.port()
    );
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(bin)
            .args(["-X", "-At", "-d", &conninfo, "-c", "SELECT 1"])
            .output()
            .unwrap()
    });
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_minor_versions_and_protocol_options_are_negotiated_down_to_3_0() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;

    // 3.2 with two protocol options and a real session parameter.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let options = [
        ("_pq_.compression", "on"),
        ("application_name", "negotiated"),
        ("_pq_.test_option", "1"),
    ];
    stream
        .write_all(&startup(3 << 16 | 2, &options))
        .await
        .unwrap();
    let (tag, body) = read_message(&mut stream).await;
    assert_eq!(tag, b'v', "NegotiateProtocolVersion comes first");
    let mut expected = (3u32 << 16).to_be_bytes().to_vec();
    expected.extend_from_slice(&2u32.to_be_bytes());
    expected.extend_from_slice(b"_pq_.compression\0_pq_.test_option\0");
    assert_eq!(body, expected, "3.0, and the two options not recognised");
    assert_eq!(until_ready(&mut stream).await, b"RZ");
    assert_eq!(select(&mut stream).await, "42");

    assert_eq!(
        query_value(&mut stream, "SHOW application_name").await,
        "negotiated",
        "the session parameter sent beside the options is applied"
    );

    // 3.1 alone: negotiated with an empty option list.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&startup(3 << 16 | 1, &[])).await.unwrap();
    let (tag, body) = read_message(&mut stream).await;
    assert_eq!((tag, body), (b'v', vec![0, 3, 0, 0, 0, 0, 0, 0]));
    assert_eq!(until_ready(&mut stream).await, b"RZ");

    // 3.0 without options: no NegotiateProtocolVersion.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(&startup(3 << 16, &[])).await.unwrap();
    assert_eq!(until_ready(&mut stream).await, b"RZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_major_versions_are_refused_with_0a000() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    for version in [2u32 << 16, 4 << 16, 1234 << 16 | 5] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(&startup(version, &[])).await.unwrap();
        let (tag, body) = read_message(&mut stream).await;
        assert_eq!((tag, sqlstate(&body).as_str()), (b'E', "0A000"));
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("unsupported frontend protocol"), "{text}");
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "the connection is closed after the error");
    }
}
