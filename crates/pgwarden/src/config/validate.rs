//! Turns the merged layer into [`Settings`], refusing out-of-range values and contradictions
//! with one line that names the key, its value and its source.

use std::collections::BTreeMap;
use std::time::Duration;

use super::databases::validate_database;
use super::error::{ConfigError, Setting};
use super::layer::Layer;
use super::mask::{mask_secrets, redact_from};
use super::raw::DATABASES_PREFIX;
use super::settings::{
    AdminSettings, PoolSettings, ProxySettings, RedisSettings, ResilienceSettings, RetrySettings,
    Settings, UpstreamSettings,
};
use super::source::Source;

/// Validates the merged layer (defaults already at the bottom) into the resolved settings.
pub(crate) fn validate(merged: &Layer) -> Result<Settings, ConfigError> {
    let raw = &merged.raw;
    let check = Checker { merged };

    let upstream = UpstreamSettings {
        url: required(&raw.upstream.url, "upstream.url")?,
        application_name: required(&raw.upstream.application_name, "upstream.application_name")?,
        connect_timeout: check
            .positive(&raw.upstream.connect_timeout, "upstream.connect_timeout")?,
        command_timeout: check
            .positive(&raw.upstream.command_timeout, "upstream.command_timeout")?,
        server_settings: raw.upstream.server_settings.clone().unwrap_or_default(),
    };
    check.postgres_url(&upstream.url)?;

    let pool = PoolSettings {
        max_size: check.at_least_one(&raw.pool.max_size, "pool.max_size")?,
        min_size: required(&raw.pool.min_size, "pool.min_size")?,
        idle_timeout: required(&raw.pool.idle_timeout, "pool.idle_timeout")?,
        max_lifetime: required(&raw.pool.max_lifetime, "pool.max_lifetime")?,
        max_uses: required(&raw.pool.max_uses, "pool.max_uses")?,
        acquire_timeout: check.positive(&raw.pool.acquire_timeout, "pool.acquire_timeout")?,
        max_connecting: check.at_least_one(&raw.pool.max_connecting, "pool.max_connecting")?,
        leak_threshold: required(&raw.pool.leak_threshold, "pool.leak_threshold")?,
        keepalive_interval: required(&raw.pool.keepalive_interval, "pool.keepalive_interval")?,
        check_after_idle: required(&raw.pool.check_after_idle, "pool.check_after_idle")?,
    };
    if pool.min_size > pool.max_size {
        return Err(check.conflict("pool.min_size", "is greater than", "pool.max_size"));
    }

    let redis = RedisSettings {
        url: raw.redis.url.clone(),
        max_size: check.at_least_one(&raw.redis.max_size, "redis.max_size")?,
    };
    if let Some(url) = &redis.url {
        check.redis_url(url)?;
    }

    let retry = RetrySettings {
        initial_delay: check.positive(&raw.retry.initial_delay, "retry.initial_delay")?,
        max_delay: required(&raw.retry.max_delay, "retry.max_delay")?,
        multiplier: required(&raw.retry.multiplier, "retry.multiplier")?,
    };
    if retry.max_delay < retry.initial_delay {
        return Err(check.conflict("retry.max_delay", "is less than", "retry.initial_delay"));
    }
    if !retry.multiplier.is_finite() || retry.multiplier < 1.0 {
        return Err(check.invalid(
            "retry.multiplier",
            "must be at least 1 (1 = constant delay)",
        ));
    }

    let p = &raw.proxy;
    let listen_text = required(&p.listen, "proxy.listen")?;
    let listen = listen_text
        .parse()
        .map_err(|_| check.invalid("proxy.listen", "expected an address like 127.0.0.1:6432"))?;
    let pool_mode = required(&p.pool_mode, "proxy.pool_mode")?;
    if !matches!(pool_mode.as_str(), "transaction" | "session") {
        return Err(check.invalid("proxy.pool_mode", "expected transaction or session"));
    }
    let auth_type = required(&p.auth_type, "proxy.auth_type")?;
    if !matches!(auth_type.as_str(), "scram-sha-256" | "md5" | "trust") {
        return Err(check.invalid("proxy.auth_type", "expected scram-sha-256, md5 or trust"));
    }
    let proxy = ProxySettings {
        listen,
        pool_mode,
        auth_type,
        auth_file: p
            .auth_file
            .clone()
            .filter(|s| !s.is_empty())
            .map(Into::into),
        auth_query: p.auth_query.clone().filter(|s| !s.is_empty()),
        max_client_conn: check.at_least_one(&p.max_client_conn, "proxy.max_client_conn")?,
        max_db_connections: required(&p.max_db_connections, "proxy.max_db_connections")?,
        query_wait_timeout: check.positive(&p.query_wait_timeout, "proxy.query_wait_timeout")?,
        client_login_timeout: check
            .positive(&p.client_login_timeout, "proxy.client_login_timeout")?,
        idle_transaction_timeout: required(
            &p.idle_transaction_timeout,
            "proxy.idle_transaction_timeout",
        )?,
        query_timeout: required(&p.query_timeout, "proxy.query_timeout")?,
        server_reset_query: required(&p.server_reset_query, "proxy.server_reset_query")?,
        workers: required(&p.workers, "proxy.workers")?,
        allow_trust_remote: required(&p.allow_trust_remote, "proxy.allow_trust_remote")?,
        max_prepared_statements: check
            .at_least_one(&p.max_prepared_statements, "proxy.max_prepared_statements")?,
        defer_begin: required(&p.defer_begin, "proxy.defer_begin")?,
        tls_mode: required(&p.tls_mode, "proxy.tls_mode")?,
        tls_cert_file: p
            .tls_cert_file
            .clone()
            .filter(|s| !s.is_empty())
            .map(Into::into),
        tls_key_file: p
            .tls_key_file
            .clone()
            .filter(|s| !s.is_empty())
            .map(Into::into),
    };
    check.client_tls(&proxy)?;

    let mut databases = BTreeMap::new();
    for (name, entry) in raw.databases.iter().flatten() {
        let key = format!("{DATABASES_PREFIX}{name}");
        let route =
            validate_database(name, entry).map_err(|reason| check.invalid(&key, &reason))?;
        databases.insert(name.clone(), route);
    }

    let r = &raw.resilience;
    let resilience = ResilienceSettings {
        probe_timeout: check.positive(&r.probe_timeout, "resilience.probe_timeout")?,
        probe_cache: required(&r.probe_cache, "resilience.probe_cache")?,
        health_interval: check.positive(&r.health_interval, "resilience.health_interval")?,
        dev_pause_after: check.at_least_one(&r.dev_pause_after, "resilience.dev_pause_after")?,
        breaker_threshold: check
            .at_least_one(&r.breaker_threshold, "resilience.breaker_threshold")?,
        require_upstream: required(&r.require_upstream, "resilience.require_upstream")?,
        startup_attempts: check.at_least_one(&r.startup_attempts, "resilience.startup_attempts")?,
        startup_initial_delay: check
            .positive(&r.startup_initial_delay, "resilience.startup_initial_delay")?,
        startup_max_delay: required(&r.startup_max_delay, "resilience.startup_max_delay")?,
        orphan_idle_threshold: required(
            &r.orphan_idle_threshold,
            "resilience.orphan_idle_threshold",
        )?,
        orphan_cleanup: required(&r.orphan_cleanup, "resilience.orphan_cleanup")?,
    };
    if resilience.startup_max_delay < resilience.startup_initial_delay {
        return Err(check.conflict(
            "resilience.startup_max_delay",
            "is less than",
            "resilience.startup_initial_delay",
        ));
    }

    let admin = AdminSettings {
        listen: match raw.admin.listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse().map_err(|_| {
                check.invalid("admin.listen", "expected an address like 127.0.0.1:9187")
            })?),
        },
    };

    Ok(Settings {
        environment: raw.environment.unwrap_or_default(),
        upstream,
        pool,
        redis,
        retry,
        proxy,
        resilience,
        admin,
        databases,
    })
}

/// The value of a key the defaults always set.
fn required<T: Clone>(value: &Option<T>, key: &str) -> Result<T, ConfigError> {
    value.clone().ok_or_else(|| ConfigError::Missing {
        key: key.to_string(),
    })
}

/// Builds refusals that quote the merged value and its source.
struct Checker<'a> {
    merged: &'a Layer,
}

impl Checker<'_> {
    fn shown(&self, key: &str) -> String {
        let value = self.merged.raw.show(key).unwrap_or_default();
        let masked = mask_secrets(&value);
        if key.ends_with("url") || key.ends_with("name") || key.starts_with(DATABASES_PREFIX) {
            format!("{masked:?}")
        } else {
            masked
        }
    }

    fn origin(&self, key: &str) -> Source {
        self.merged.source(key).cloned().unwrap_or(Source::Default {
            profile: self.merged.raw.environment.unwrap_or_default(),
        })
    }

    fn invalid(&self, key: &str, reason: &str) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_string(),
            value: self.shown(key),
            origin: self.origin(key),
            reason: reason.to_string(),
        }
    }

    fn setting(&self, key: &str) -> Box<Setting> {
        Box::new(Setting {
            key: key.to_string(),
            value: self.shown(key),
            origin: self.origin(key),
        })
    }

    /// The TLS mode, and the certificate and key read and checked now, not at the first
    /// client: a missing, unreadable or mismatched file is refused naming its key.
    fn client_tls(&self, proxy: &ProxySettings) -> Result<(), ConfigError> {
        let mode = proxy
            .tls_mode
            .parse::<pgwarden_proxy::TlsMode>()
            .map_err(|_| self.invalid("proxy.tls_mode", "expected disable, allow or require"))?;
        let (cert, key) = match (&proxy.tls_cert_file, &proxy.tls_key_file) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(self.invalid("proxy.tls_cert_file", "needs proxy.tls_key_file too"))
            }
            (None, Some(_)) => {
                return Err(self.invalid("proxy.tls_key_file", "needs proxy.tls_cert_file too"))
            }
            (None, None) if mode == pgwarden_proxy::TlsMode::Require => {
                return Err(self.invalid(
                    "proxy.tls_mode",
                    "require needs proxy.tls_cert_file and proxy.tls_key_file",
                ))
            }
            (None, None) => return Ok(()),
        };
        if mode == pgwarden_proxy::TlsMode::Disable {
            return Ok(());
        }
        match pgwarden_proxy::tls::server_config(cert, key) {
            Ok(_) => Ok(()),
            Err(e @ pgwarden_proxy::TlsError::CertFile { .. }) => {
                Err(self.invalid("proxy.tls_cert_file", &e.to_string()))
            }
            Err(e) => Err(self.invalid("proxy.tls_key_file", &e.to_string())),
        }
    }

    fn conflict(&self, key: &str, relation: &'static str, other_key: &str) -> ConfigError {
        ConfigError::Conflict {
            first: self.setting(key),
            relation,
            second: self.setting(other_key),
        }
    }

    fn positive(&self, value: &Option<Duration>, key: &str) -> Result<Duration, ConfigError> {
        let value = required(value, key)?;
        if value.is_zero() {
            return Err(self.invalid(key, "must be greater than 0"));
        }
        Ok(value)
    }

    fn at_least_one(&self, value: &Option<usize>, key: &str) -> Result<usize, ConfigError> {
        let value = required(value, key)?;
        if value == 0 {
            return Err(self.invalid(key, "must be at least 1"));
        }
        Ok(value)
    }

    /// The URL parses as a tokio-postgres config and names at least one host.
    fn postgres_url(&self, url: &str) -> Result<(), ConfigError> {
        const KEY: &str = "upstream.url";
        match url.parse::<tokio_postgres::Config>() {
            Err(e) => Err(self.invalid(
                KEY,
                &format!("not a PostgreSQL URL: {}", redact_from(&e.to_string(), url)),
            )),
            Ok(config) if config.get_hosts().is_empty() => Err(self.invalid(KEY, "names no host")),
            Ok(_) => Ok(()),
        }
    }

    /// The URL parses, uses `redis` or `rediss`, and names a host.
    fn redis_url(&self, url: &str) -> Result<(), ConfigError> {
        const KEY: &str = "redis.url";
        let parsed = url::Url::parse(url).map_err(|e| {
            self.invalid(
                KEY,
                &format!("not a URL: {}", redact_from(&e.to_string(), url)),
            )
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(self.invalid(KEY, "the scheme must be redis:// or rediss://"));
        }
        match parsed.host_str() {
            Some(host) if !host.is_empty() => Ok(()),
            _ => Err(self.invalid(KEY, "names no host")),
        }
    }
}
