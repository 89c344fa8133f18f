//! [`AuthQuery`]: the connection `auth_query` runs on.
//!
//! Looking a user's secret up must not cost an upstream connection per login: 200 clients
//! logging in at once would otherwise open 200 connections next to the pools and blow through
//! the server's `max_connections` that the pools carefully respect. So each auth database
//! (the upstream URL's database, or else the client's) gets one connection, opened by the
//! first login that needs it (others wait for it rather than opening their own), kept open
//! and shared: tokio-postgres pipelines the concurrent lookups over it, with the statement
//! prepared once. A connection that fails is dropped and the next lookup opens a new one
//! (one retry for the lookup that found it broken). [`AuthQuery::close`] ends them all at
//! shutdown.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::client::{fatal, SessionEnd};
use crate::config::ProxyConfig;
use crate::proxy::Shared;
use crate::userlist::Secret;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct AuthQuery {
    /// Auth database -> its connection. Held across a connect, so a database gets one.
    connections: Mutex<HashMap<String, Arc<AuthConnection>>>,
}

/// One open connection and the prepared `auth_query`.
#[derive(Debug)]
struct AuthConnection {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    /// Drives the connection; it ends (sending Terminate) once `client` is dropped.
    driver: JoinHandle<()>,
}

/// Why a lookup failed, for the log and the client.
fn unavailable(e: &dyn std::fmt::Display) -> SessionEnd {
    tracing::warn!(error = %e, "auth_query failed");
    fatal(
        "08006",
        format!("pgwarden cannot check the password: auth_query failed: {e}"),
    )
}

impl AuthQuery {
    /// `user`'s secret from `auth_query` (`None` without an `auth_query`, or when it returns
    /// no row or a NULL secret). A client logging in to `database` asks.
    pub(crate) async fn lookup(
        &self,
        config: &ProxyConfig,
        user: &str,
        database: &str,
    ) -> Result<Option<Secret>, SessionEnd> {
        let Some(query) = &config.auth_query else {
            return Ok(None);
        };
        let auth_db = config
            .upstream
            .database
            .clone()
            .unwrap_or_else(|| database.to_string());
        let mut retried = false;
        loop {
            let conn = self.connection(config, query, &auth_db).await?;
            match conn.client.query_opt(&conn.statement, &[&user]).await {
                Ok(row) => {
                    return Ok(row
                        .and_then(|row| row.try_get::<_, Option<String>>(1).ok().flatten())
                        .map(|s| Secret::parse(&s)))
                }
                Err(e) if conn.client.is_closed() && !retried => {
                    tracing::debug!(error = %e, "auth_query connection lost; reconnecting");
                    self.forget(&auth_db, &conn).await;
                    retried = true;
                }
                Err(e) => {
                    if conn.client.is_closed() {
                        self.forget(&auth_db, &conn).await;
                    }
                    return Err(unavailable(&e));
                }
            }
        }
    }

    /// The open connection to `auth_db`, opened (and the query prepared) if there is none.
    async fn connection(
        &self,
        config: &ProxyConfig,
        query: &str,
        auth_db: &str,
    ) -> Result<Arc<AuthConnection>, SessionEnd> {
        let mut connections = self.connections.lock().await;
        if let Some(conn) = connections.get(auth_db) {
            if !conn.client.is_closed() {
                return Ok(Arc::clone(conn));
            }
        }
        let upstream = &config.upstream;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&upstream.host)
            .port(upstream.port)
            .dbname(auth_db)
            .application_name("pgwarden auth_query")
            .connect_timeout(config.server_connect_timeout);
        if let Some(u) = &upstream.user {
            pg.user(u);
        }
        if let Some(p) = &upstream.password {
            pg.password(p);
        }
        let connect = async {
            let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
            // Ends by itself when `client` is dropped, here on failure or with the entry.
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            let statement = client.prepare(query).await?;
            Ok::<_, tokio_postgres::Error>(AuthConnection {
                client,
                statement,
                driver,
            })
        };
        let conn = match tokio::time::timeout(config.server_connect_timeout, connect).await {
            Ok(Ok(conn)) => Arc::new(conn),
            Ok(Err(e)) => return Err(unavailable(&e)),
            Err(_) => {
                return Err(unavailable(&format!(
                    "no connection within server_connect_timeout ({:?})",
                    config.server_connect_timeout
                )))
            }
        };
        connections.insert(auth_db.to_string(), Arc::clone(&conn));
        Ok(conn)
    }

    /// Drops the connection to `auth_db` if it is still `conn`.
    async fn forget(&self, auth_db: &str, conn: &Arc<AuthConnection>) {
        let mut connections = self.connections.lock().await;
        if connections
            .get(auth_db)
            .is_some_and(|c| Arc::ptr_eq(c, conn))
        {
            connections.remove(auth_db);
        }
    }

    /// Closes every connection, waiting (briefly) until each has said goodbye; at shutdown.
    /// A lookup still running keeps its connection until it is done.
    pub(crate) async fn close(&self) {
        let all: Vec<_> = self.connections.lock().await.drain().collect();
        for (_, conn) in all {
            if let Ok(conn) = Arc::try_unwrap(conn) {
                drop(conn.client);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn.driver).await;
            }
        }
    }
}

impl Shared {
    /// `user`'s secret from `auth_query`, looked up on the shared connection (see
    /// [`AuthQuery::lookup`]).
    pub(crate) async fn auth_query_secret(
        &self,
        user: &str,
        database: &str,
    ) -> Result<Option<Secret>, SessionEnd> {
        self.auth_query.lookup(&self.config, user, database).await
    }
}
