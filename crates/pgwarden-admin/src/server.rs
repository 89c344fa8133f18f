//! [`AdminServer`]: the HTTP listener serving `/health`, `/ready` and `/metrics` until its
//! cancellation token fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{render, CONTENT_TYPE};
use crate::ready::{readiness, Readiness};
use crate::source::AdminSource;

/// Why the admin server could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen for admin requests on {addr}: {source}")]
    Bind {
        /// The address (`admin.listen`).
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Accepting or serving connections failed.
    #[error("admin server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A bound admin server; [`AdminServer::run`] serves until shutdown.
pub struct AdminServer {
    listener: TcpListener,
    source: Arc<dyn AdminSource>,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port, see [`AdminServer::local_addr`]); requests are
    /// answered from `source`.
    pub async fn bind(
        addr: SocketAddr,
        source: impl AdminSource,
    ) -> Result<AdminServer, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(AdminServer {
            listener,
            source: Arc::new(source),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` fires, then stops accepting and lets requests in flight finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AdminError> {
        tracing::info!(listen = %self.local_addr(), "pgwarden admin listening");
        let app = router(self.source);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(AdminError::Serve)
    }
}

/// The routes, over any source.
fn router(source: Arc<dyn AdminSource>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(source)
}

/// 200 while the process answers at all.
async fn health() -> &'static str {
    "ok\n"
}

/// 200 when clients may be sent here, else 503 with the reason.
async fn ready(State(source): State<Arc<dyn AdminSource>>) -> (StatusCode, String) {
    match readiness(&source.snapshot(), Instant::now()) {
        Readiness::Ready => (StatusCode::OK, "ok\n".to_string()),
        Readiness::NotReady(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// The metrics of a fresh snapshot.
async fn metrics(State(source): State<Arc<dyn AdminSource>>) -> impl IntoResponse {
    let body = render(&source.snapshot());
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

#[cfg(test)]
mod tests {
    use pgwarden_pool::PoolStats;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::source::AdminSnapshot;

    /// A plain HTTP/1.0 GET; returns (status, body).
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    #[tokio::test]
    async fn serves_the_three_routes_and_stops_on_cancel() {
        let source = || AdminSnapshot {
            pools: vec![PoolStats {
                name: "app/app".into(),
                ..crate::metrics::tests::empty_pool()
            }],
            shutting_down: true,
            ..Default::default()
        };
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), source)
            .await
            .unwrap();
        let addr = server.local_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(server.run(stop.clone()));

        assert_eq!(get(addr, "/health").await, (200, "ok\n".to_string()));
        assert_eq!(
            get(addr, "/ready").await,
            (503, "shutting down\n".to_string())
        );
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("pgwarden_pool_max_connections{pool=\"app/app\"} 0"),
            "{body}"
        );
        assert_eq!(get(addr, "/nothing").await.0, 404);

        stop.cancel();
        task.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
