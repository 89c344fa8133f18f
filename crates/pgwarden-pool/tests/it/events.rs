//! Lifecycle events, as a subscriber (a log, a metrics exporter) sees them.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use pgwarden_pool::{PoolConfig, PoolEvent};
use tokio::sync::broadcast::Receiver;

use crate::fake::{pool, run_for};

fn drain(rx: &mut Receiver<PoolEvent>) -> Vec<PoolEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test(start_paused = true)]
async fn subscribers_see_connects_failures_recovery_errors_and_closes() {
    let (pool, server) = pool(PoolConfig {
        max_size: 1,
        check_after_idle: Duration::from_secs(1),
        keepalive_interval: None,
        ..PoolConfig::default()
    });
    let mut rx = pool.subscribe();
    server.connect_fails.store(true, SeqCst);
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|c| c.id) })
    };
    run_for(300).await;
    server.connect_fails.store(false, SeqCst);
    assert_eq!(waiting.await.unwrap().unwrap(), 1);

    run_for(2_000).await;
    server.ping_fails.store(true, SeqCst);
    // The idle connection fails its checkout ping and is replaced by a new one.
    assert_eq!(pool.get().await.unwrap().id, 2);

    let events = drain(&mut rx);
    let failed = events
        .iter()
        .filter(|e| {
            matches!(e, PoolEvent::ConnectFailed { error, consecutive, .. }
                if error == "connection refused" && *consecutive >= 1)
        })
        .count();
    assert!(failed >= 1, "{events:?}");
    let position = |f: &dyn Fn(&PoolEvent) -> bool| events.iter().position(f);
    let connected = position(&|e| matches!(e, PoolEvent::Connected { id: 1 })).expect("connected");
    let reconnected = position(&|e| matches!(e, PoolEvent::Reconnected)).expect("reconnected");
    assert!(connected < reconnected);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PoolEvent::Error { message } if message.contains("ping failed: server closed the connection"))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            PoolEvent::Disconnected {
                id: 1,
                reason: "ping_failed"
            }
        )),
        "{events:?}"
    );
}
