//! The built-in defaults of each profile, as a complete raw layer. The profiles differ only in
//! how quickly idle connections are given back and how soon a long checkout counts as a leak.

use std::time::Duration;

use super::raw::{
    RawAdmin, RawConfig, RawPool, RawProxy, RawRedis, RawResilience, RawRetry, RawUpstream,
};
use super::settings::Environment;

/// The default upstream URL: the local server's `postgres` database as user `postgres`.
pub const DEFAULT_UPSTREAM_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Every key's default for `profile` (the Redis URL stays unset: no Redis by default).
pub(crate) fn profile_defaults(profile: Environment) -> RawConfig {
    let secs = Duration::from_secs;
    let (idle_timeout, leak_threshold) = match profile {
        Environment::Development => (secs(300), secs(30)),
        Environment::Production => (secs(60), secs(60)),
    };
    RawConfig {
        environment: Some(profile),
        upstream: RawUpstream {
            url: Some(DEFAULT_UPSTREAM_URL.to_string()),
            application_name: Some("pgwarden".to_string()),
            connect_timeout: Some(secs(5)),
            command_timeout: Some(secs(30)),
            server_settings: Some(Default::default()),
        },
        pool: RawPool {
            max_size: Some(10),
            min_size: Some(1),
            idle_timeout: Some(idle_timeout),
            max_lifetime: Some(secs(30 * 60)),
            max_uses: Some(0),
            acquire_timeout: Some(secs(5)),
            max_connecting: Some(2),
            leak_threshold: Some(leak_threshold),
            keepalive_interval: Some(secs(120)),
            check_after_idle: Some(secs(1)),
        },
        redis: RawRedis {
            url: None,
            max_size: Some(4),
        },
        retry: RawRetry {
            initial_delay: Some(secs(10)),
            max_delay: Some(secs(600)),
            multiplier: Some(2.0),
        },
        proxy: RawProxy {
            listen: Some("127.0.0.1:6432".to_string()),
            pool_mode: Some("transaction".to_string()),
            auth_type: Some("scram-sha-256".to_string()),
            auth_file: None,
            auth_query: None,
            max_client_conn: Some(1000),
            max_db_connections: Some(0),
            query_wait_timeout: Some(secs(30)),
            client_login_timeout: Some(secs(15)),
            idle_transaction_timeout: Some(Duration::ZERO),
            query_timeout: Some(Duration::ZERO),
            server_reset_query: Some("DISCARD ALL".to_string()),
            workers: Some(1),
            allow_trust_remote: Some(false),
            max_prepared_statements: Some(200),
            defer_begin: Some(true),
            tls_mode: Some("allow".to_string()),
            tls_cert_file: None,
            tls_key_file: None,
        },
        resilience: RawResilience {
            probe_timeout: Some(secs(2)),
            probe_cache: Some(secs(5)),
            health_interval: Some(secs(10)),
            dev_pause_after: Some(5),
            breaker_threshold: Some(5),
            require_upstream: Some(false),
            startup_attempts: Some(5),
            startup_initial_delay: Some(secs(1)),
            startup_max_delay: Some(secs(30)),
            orphan_idle_threshold: Some(secs(300)),
            orphan_cleanup: Some(true),
        },
        admin: RawAdmin { listen: None },
        databases: None,
    }
}
