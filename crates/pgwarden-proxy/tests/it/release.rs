//! Transaction mode gives a server connection back as soon as the tracker says it is idle,
//! including after messages the proxy answers itself: idle clients never pin a connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, RunningProxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locally_answered_messages_do_not_pin_server_connections() {
    let cluster = common::cluster();
    let mut config = common::config(&cluster);
    config.default_pool_size = 2;
    config.query_wait_timeout = Duration::from_secs(3);
    let proxy = RunningProxy::start(config).await;

    // Four clients, each with one ordinary query behind it, then a message the proxy
    // answers alone (a refused LISTEN, or DEALLOCATE of a statement prepared by name, which
    // tokio-postgres cannot be made to send: these clients speak the protocol raw), then
    // silence. Their session parameters equal a fresh server connection's, so nothing at all
    // is sent to the server for the locally answered message.
    let mut idle = Vec::new();
    for i in 0..4 {
        let step = async {
            let mut raw = RawClient::connect(&proxy).await;
            assert_eq!(raw.query("SELECT 1").await, b"TDCZ");
            if i % 2 == 0 {
                assert_eq!(raw.query("LISTEN jobs").await, b"EZ");
            } else {
                raw.parse("mine", "SELECT 2").await;
                assert_eq!(raw.query("DEALLOCATE mine").await, b"CZ");
            }
            raw
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), step)
            .await
            .unwrap_or_else(|_| panic!("client {i} starved behind idle clients"));
        idle.push(raw);
    }

    // With a cap of 2, a fifth client is served at once: no idle client holds a connection.
    let other = common::client(&proxy).await;
    let started = std::time::Instant::now();
    let row = tokio::time::timeout(Duration::from_secs(10), other.query_one("SELECT 3", &[]))
        .await
        .expect("the fifth client starved")
        .expect("the fifth client was refused");
    assert_eq!(row.get::<_, i32>(0), 3);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served only after {:?}",
        started.elapsed()
    );
    let live = proxy.handle.stats();
    assert_eq!(live.pools[0].status.max_size, 2);
    drop(idle);
    proxy.stop().await;
}

/// A client speaking the wire protocol byte by byte (trust authentication).
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    async fn connect(proxy: &RunningProxy) -> RawClient {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let params = format!("user\0postgres\0database\0{}\0\0", common::APP_DB);
        let mut startup = Vec::new();
        startup.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(params.as_bytes());
        stream.write_all(&startup).await.unwrap();
        let mut client = RawClient { stream };
        client.until_ready().await;
        client
    }

    /// Sends a simple query; returns the tags of the replies up to ReadyForQuery.
    async fn query(&mut self, sql: &str) -> Vec<u8> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&(4 + sql.len() as u32 + 1).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.stream.write_all(&msg).await.unwrap();
        self.until_ready().await
    }

    /// Prepares `sql` as the named statement `name` (Parse, Sync).
    async fn parse(&mut self, name: &str, sql: &str) {
        let body_len = name.len() + 1 + sql.len() + 1 + 2;
        let mut msg = vec![b'P'];
        msg.extend_from_slice(&(4 + body_len as u32).to_be_bytes());
        for part in [name, sql] {
            msg.extend_from_slice(part.as_bytes());
            msg.push(0);
        }
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&[b'S', 0, 0, 0, 4]);
        self.stream.write_all(&msg).await.unwrap();
        assert_eq!(self.until_ready().await, b"1Z");
    }

    async fn until_ready(&mut self) -> Vec<u8> {
        let mut tags = Vec::new();
        loop {
            let tag = self
                .stream
                .read_u8()
                .await
                .expect("the proxy closed the connection");
            let len = self.stream.read_u32().await.unwrap() as usize;
            let mut body = vec![0; len - 4];
            self.stream.read_exact(&mut body).await.unwrap();
            if !matches!(tag, b'R' | b'S' | b'K') {
                tags.push(tag);
            }
            if tag == b'Z' {
                return tags;
            }
        }
    }
}
