//! The TCP probe against loopback: a bound listener answers, a closed port refuses.

use pgwarden_resilience::{FailureKind, Probe, TcpProbe};
use tokio::net::TcpListener;

#[tokio::test]
async fn bound_listener_is_success() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    assert_eq!(TcpProbe::new("127.0.0.1", port).probe().await, Ok(()));
}

#[tokio::test]
async fn closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let failure = TcpProbe::new("127.0.0.1", port)
        .probe()
        .await
        .expect_err("nothing listens");
    assert_eq!(failure.kind, FailureKind::Refused, "{failure}");
    assert!(
        failure.message.contains(&format!("127.0.0.1:{port}")),
        "{failure}"
    );
}
