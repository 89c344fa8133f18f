//! The pools of server connections, one per (database, user), created on first use, and the
//! routing that decides where each one's server connections go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pgwarden_pool::{Pool, PoolConfig, PoolStats};
use pgwarden_resilience::ProberHandle;

use crate::config::ProxyConfig;
use crate::params::SessionParams;
use crate::server::connector::ServerTarget;
use crate::server::db_cap::DatabaseCap;
use crate::server::{ServerConnector, ServerCredentials};
use crate::userlist::{Secret, Userlist};

/// One (database, user) pool.
#[derive(Debug)]
pub struct ProxyPool {
    /// `database/user` as clients name them.
    pub name: String,
    /// The pool core.
    pub pool: Pool<ServerConnector>,
    /// The startup parameters the last client logged in with (see [`ProxyPool::intern_params`]).
    last_params: Mutex<SessionParams>,
}

impl ProxyPool {
    /// `params`, or an equal map another client of this pool already holds: clients of one
    /// application usually log in with the same parameters, and then share one map.
    pub(crate) fn intern_params(&self, params: SessionParams) -> SessionParams {
        let mut last = self.last_params.lock();
        if *last == params {
            return last.clone();
        }
        *last = params.clone();
        params
    }
}

/// Every pool, keyed by the client's (database, user).
#[derive(Debug, Default)]
pub(crate) struct PoolSet {
    pools: Mutex<HashMap<(String, String), Arc<ProxyPool>>>,
    /// `max_db_connections` per server database, keyed by (host, port, database).
    db_caps: Mutex<HashMap<(String, u16, String), Arc<DatabaseCap>>>,
}

impl PoolSet {
    /// The pool for a client's database and user, created (with its routing) on first use.
    pub(crate) fn get_or_create(
        &self,
        config: &ProxyConfig,
        userlist: &Userlist,
        upstream: Option<&ProberHandle>,
        database: &str,
        user: &str,
    ) -> Result<Arc<ProxyPool>, String> {
        let key = (database.to_string(), user.to_string());
        if let Some(pool) = self.pools.lock().get(&key) {
            return Ok(Arc::clone(pool));
        }
        let route = config
            .databases
            .get(database)
            .or_else(|| config.databases.get("*"));
        let server = route
            .and_then(|r| r.upstream.clone())
            .unwrap_or_else(|| config.upstream.clone());
        let server_db = route
            .and_then(|r| r.dbname.clone())
            .unwrap_or_else(|| database.to_string());
        let server_user = route
            .and_then(|r| r.user.clone())
            .unwrap_or_else(|| user.to_string());
        let credentials = route
            .and_then(|r| r.password.clone())
            .map(ServerCredentials::Password)
            .or_else(|| match userlist.get(&server_user) {
                Some(Secret::Plain(p)) => Some(ServerCredentials::Password(p.clone())),
                Some(Secret::Md5(h)) => Some(ServerCredentials::Md5Hash(h.clone())),
                _ => None,
            })
            .or_else(|| {
                let same_user = server.user.as_deref().is_none_or(|u| u == server_user);
                server
                    .password
                    .clone()
                    .filter(|_| same_user)
                    .map(ServerCredentials::Password)
            })
            .unwrap_or(ServerCredentials::None);
        let db_cap = (config.max_db_connections > 0).then(|| {
            let key = (server.host.clone(), server.port, server_db.clone());
            Arc::clone(self.db_caps.lock().entry(key).or_insert_with(|| {
                Arc::new(DatabaseCap::new(
                    server_db.clone(),
                    config.max_db_connections,
                    config.query_wait_timeout,
                ))
            }))
        });
        let connector = ServerConnector::new(
            ServerTarget {
                host: server.host.clone(),
                port: server.port,
                user: server_user,
                database: server_db,
                application_name: config.application_name.clone(),
            },
            credentials,
            config.server_connect_timeout,
            config.server_reset_query.clone(),
            db_cap.clone(),
            upstream.cloned(),
        );
        let name = format!("{database}/{user}");
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        let pool_config = PoolConfig {
            name: name.clone(),
            max_size: route
                .and_then(|r| r.pool_size)
                .unwrap_or(config.default_pool_size),
            min_idle: config.min_pool_size,
            idle_timeout: nonzero(config.server_idle_timeout),
            max_lifetime: nonzero(config.server_lifetime),
            acquire_timeout: config.query_wait_timeout,
            max_connecting: config.max_connecting,
            // PgBouncer's server_check_delay: only connections idle this long are checked.
            check_after_idle: Duration::from_secs(30),
            keepalive_interval: nonzero(config.server_keepalive_interval),
            leak_threshold: None,
            ..PoolConfig::default()
        };
        let pool = Pool::new(connector, pool_config).map_err(|e| e.to_string())?;
        let pool = Arc::new(ProxyPool {
            name,
            pool,
            last_params: Mutex::new(SessionParams::default()),
        });
        let mut pools = self.pools.lock();
        // Another session may have raced us; keep the first and let ours close.
        let pool = Arc::clone(pools.entry(key).or_insert(pool));
        drop(pools);
        if let Some(cap) = db_cap {
            cap.register(&pool);
        }
        Ok(pool)
    }

    /// Every pool created so far.
    pub(crate) fn all(&self) -> Vec<Arc<ProxyPool>> {
        self.pools.lock().values().cloned().collect()
    }

    /// Statistics of every pool.
    pub(crate) fn stats(&self) -> Vec<PoolStats> {
        self.all().iter().map(|p| p.pool.stats()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_acquire_is_a_small_future() {
        // Every client waiting for a server connection keeps this future in its task (a
        // thousand of them at a thousand clients). It is a hand-written struct, the rare
        // checkout ping boxed apart (as an `async fn` with the ping laid out in it, it was
        // 1,104 bytes in a release build; without the ping, 328).
        let pools = PoolSet::default();
        let pool = pools
            .get_or_create(
                &ProxyConfig::new("127.0.0.1", 1),
                &Userlist::default(),
                None,
                "db",
                "user",
            )
            .unwrap();
        let acquire = pool.pool.get();
        let size = std::mem::size_of_val(&acquire);
        assert!(size <= 128, "the acquire future takes {size} bytes");
    }
}
