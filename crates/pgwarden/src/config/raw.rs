//! The raw layer: every key optional, as one layer (defaults, file, environment or flags) gives
//! it. The file is read straight into [`RawConfig`] with `deny_unknown_fields`; text from the
//! environment and flags goes through `set_text`. Each field's doc states its default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::databases::{de_databases, RawDatabase};
use super::settings::Environment;
use super::value::{de_duration, de_server_settings, SettingValue};

/// Declares one raw section: the struct, its field list, and per-field set/merge/show.
macro_rules! raw_section {
    (
        $(#[$section_meta:meta])*
        $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$section_meta])*
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            $( $(#[$field_meta])* pub(crate) $field: Option<$ty>, )*
        }

        impl $name {
            /// The field names, in documentation order.
            pub(crate) const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Parses `text` into `field`; `None` when the section has no such field.
            pub(crate) fn set_text(
                &mut self,
                field: &str,
                text: &str,
            ) -> Option<Result<(), String>> {
                match field {
                    $(stringify!($field) => Some(
                        <$ty as SettingValue>::parse_text(text).map(|v| self.$field = Some(v)),
                    ),)*
                    _ => None,
                }
            }

            /// Applies every field `later` sets on top of this one.
            pub(crate) fn merge_from(&mut self, later: &$name) {
                $(if let Some(value) = &later.$field {
                    <$ty as SettingValue>::merge_into(&mut self.$field, value);
                })*
            }

            /// The value of `field` as shown to people (unmasked); `None` when unset.
            pub(crate) fn show(&self, field: &str) -> Option<String> {
                match field {
                    $(stringify!($field) => self.$field.as_ref().map(SettingValue::show),)*
                    _ => None,
                }
            }
        }
    };
}

raw_section! {
    /// `[upstream]`: the PostgreSQL server.
    RawUpstream {
        /// Connection URL or libpq key/value string; must name a host.
        /// Default `postgres://postgres@127.0.0.1:5432/postgres`.
        /// Env `PGWARDEN_UPSTREAM_URL`, fallback `DATABASE_URL`.
        url: String,
        /// `application_name` reported to the server. Default `pgwarden`.
        application_name: String,
        /// Time allowed to open one connection. Default `5s`.
        #[serde(default, deserialize_with = "de_duration")]
        connect_timeout: Duration,
        /// Time allowed for one command. Default `30s`.
        /// Fallback env `DATABASE_COMMAND_TIMEOUT` (plain number = seconds).
        #[serde(default, deserialize_with = "de_duration")]
        command_timeout: Duration,
        /// Server parameters set at startup. Default empty.
        /// Env `PGWARDEN_UPSTREAM_SERVER_SETTINGS_<NAME>`.
        #[serde(default, deserialize_with = "de_server_settings")]
        server_settings: BTreeMap<String, String>,
    }
}

raw_section! {
    /// `[pool]`: the PostgreSQL pool.
    RawPool {
        /// Hard cap on open connections. Default `10`. Fallback env `DATABASE_POOL_MAX_SIZE`.
        max_size: usize,
        /// Idle connections kept open. Default `1`. Fallback env `DATABASE_POOL_MIN_SIZE`.
        min_size: usize,
        /// Idle connections older than this are closed; `0` disables.
        /// Default `300s` (development), `60s` (production).
        /// Fallback env `DATABASE_MAX_IDLE_TIME` (plain number = seconds).
        #[serde(default, deserialize_with = "de_duration")]
        idle_timeout: Duration,
        /// Connections older than this are closed on return; `0` disables. Default `30m`.
        #[serde(default, deserialize_with = "de_duration")]
        max_lifetime: Duration,
        /// Checkouts after which a connection is closed; `0` = unlimited. Default `0`.
        max_uses: u64,
        /// How long a caller waits for a connection. Default `5s`.
        #[serde(default, deserialize_with = "de_duration")]
        acquire_timeout: Duration,
        /// Connections opened at once. Default `2`.
        max_connecting: usize,
        /// A checkout held longer is logged as a leak; `0` disables.
        /// Default `30s` (development), `60s` (production).
        #[serde(default, deserialize_with = "de_duration")]
        leak_threshold: Duration,
        /// Idle connections are pinged this often; `0` disables. Default `120s`.
        #[serde(default, deserialize_with = "de_duration")]
        keepalive_interval: Duration,
        /// Connections idle longer are checked before use. Default `1s`.
        #[serde(default, deserialize_with = "de_duration")]
        check_after_idle: Duration,
    }
}

raw_section! {
    /// `[redis]`: the optional Redis pool.
    RawRedis {
        /// `redis://` or `rediss://` URL. Default none. Env `PGWARDEN_REDIS_URL`, fallback
        /// `REDIS_URL`.
        url: String,
        /// Hard cap on open Redis connections. Default `4`.
        max_size: usize,
    }
}

raw_section! {
    /// `[retry]`: reconnection backoff towards an unavailable upstream.
    RawRetry {
        /// First delay after a failure. Default `10s`.
        #[serde(default, deserialize_with = "de_duration")]
        initial_delay: Duration,
        /// Upper bound of the delay. Default `600s`.
        #[serde(default, deserialize_with = "de_duration")]
        max_delay: Duration,
        /// Growth factor between attempts. Default `2.0`.
        multiplier: f64,
    }
}

raw_section! {
    /// `[proxy]`: the wire-protocol pooling proxy (`pgwarden serve`). Each (database, user)
    /// pool holds at most `pool.max_size` server connections and keeps `pool.min_size` open.
    RawProxy {
        /// Address to listen on. Default `127.0.0.1:6432`. Env `PGWARDEN_LISTEN`.
        listen: String,
        /// `transaction` or `session`. Default `transaction`.
        pool_mode: String,
        /// Client authentication: `scram-sha-256`, `md5` or `trust`. Default `scram-sha-256`.
        /// Env `PGWARDEN_AUTH_TYPE`.
        auth_type: String,
        /// PgBouncer-format userlist (`"user" "secret"`). Default none.
        auth_file: String,
        /// Query returning (user, secret) for `$1`, run on the upstream. Default none.
        auth_query: String,
        /// Clients connected at once. Default `1000`.
        max_client_conn: usize,
        /// Server connections per database over all users; `0` = no cap. Default `0`.
        max_db_connections: usize,
        /// Longest a client waits for a server connection. Default `30s`.
        #[serde(default, deserialize_with = "de_duration")]
        query_wait_timeout: Duration,
        /// Longest from connect to logged in. Default `15s`.
        #[serde(default, deserialize_with = "de_duration")]
        client_login_timeout: Duration,
        /// A client idle inside a transaction this long is disconnected; `0` disables.
        /// Default `0`.
        #[serde(default, deserialize_with = "de_duration")]
        idle_transaction_timeout: Duration,
        /// A query running this long is cancelled; `0` disables. Default `0`.
        #[serde(default, deserialize_with = "de_duration")]
        query_timeout: Duration,
        /// Run on a server connection between sessions in session mode. Default `DISCARD ALL`.
        server_reset_query: String,
        /// Threads moving bytes: `1` = a single-threaded (current-thread) runtime, `N` = N
        /// worker threads, `0` = one per CPU. Default `1` (like PgBouncer: the least CPU per
        /// transaction on a small machine shared with PostgreSQL).
        workers: usize,
        /// Allow `auth_type = trust` on a listener that is not loopback. Default `false`.
        allow_trust_remote: bool,
        /// Prepared statements kept per server connection before the oldest is closed.
        /// Default `200`.
        max_prepared_statements: usize,
        /// Transaction mode: answer a plain `BEGIN` locally and send it to the server right
        /// before the transaction's first statement. Default `true`.
        defer_begin: bool,
        /// TLS towards clients: `disable`, `allow` (TLS for clients that ask, when a
        /// certificate is configured) or `require`. Default `allow`.
        tls_mode: String,
        /// PEM certificate chain presented to clients. Default none (no TLS).
        tls_cert_file: String,
        /// PEM private key of `tls_cert_file`. Default none.
        tls_key_file: String,
    }
}

raw_section! {
    /// `[resilience]`: probing the upstream, the breaker, start-up and orphan cleanup.
    RawResilience {
        /// Time allowed for one TCP probe. Default `2s`.
        #[serde(default, deserialize_with = "de_duration")]
        probe_timeout: Duration,
        /// How long a successful probe is trusted. Default `5s`.
        #[serde(default, deserialize_with = "de_duration")]
        probe_cache: Duration,
        /// Probe cadence while the upstream is healthy. Default `10s`.
        #[serde(default, deserialize_with = "de_duration")]
        health_interval: Duration,
        /// Development: consecutive failures before background probing pauses. Default `5`.
        dev_pause_after: usize,
        /// Consecutive connect failures that open the circuit breaker. Default `5`.
        breaker_threshold: usize,
        /// Exit at start-up if the upstream cannot be reached. Default `false`.
        /// Env `PGWARDEN_REQUIRE_UPSTREAM`.
        require_upstream: bool,
        /// Attempts at start-up before declaring the upstream unavailable. Default `5`.
        startup_attempts: usize,
        /// First delay between start-up attempts. Default `1s`.
        #[serde(default, deserialize_with = "de_duration")]
        startup_initial_delay: Duration,
        /// Largest delay between start-up attempts. Default `30s`.
        #[serde(default, deserialize_with = "de_duration")]
        startup_max_delay: Duration,
        /// Idle time after which a backend left by another pgwarden instance is an orphan.
        /// Default `5m`.
        #[serde(default, deserialize_with = "de_duration")]
        orphan_idle_threshold: Duration,
        /// Terminate orphaned backends at start-up. Default `true`.
        orphan_cleanup: bool,
    }
}

raw_section! {
    /// `[admin]`: the HTTP admin listener (`/health`, `/ready`, `/metrics`) of `pgwarden serve`.
    RawAdmin {
        /// Address to listen on, e.g. `127.0.0.1:9187`; unset or empty disables it.
        /// Default none (disabled). Env `PGWARDEN_ADMIN_LISTEN`.
        listen: String,
    }
}

/// One whole layer, exactly the shape of the TOML file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// The profile: `development` or `production`. Default `development`. Env `PGWARDEN_ENV`.
    pub(crate) environment: Option<Environment>,
    /// `[upstream]`.
    #[serde(default)]
    pub(crate) upstream: RawUpstream,
    /// `[pool]`.
    #[serde(default)]
    pub(crate) pool: RawPool,
    /// `[redis]`.
    #[serde(default)]
    pub(crate) redis: RawRedis,
    /// `[retry]`.
    #[serde(default)]
    pub(crate) retry: RawRetry,
    /// `[proxy]`.
    #[serde(default)]
    pub(crate) proxy: RawProxy,
    /// `[resilience]`.
    #[serde(default)]
    pub(crate) resilience: RawResilience,
    /// `[admin]`.
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    /// `[databases]`: client database name -> route. Default empty.
    #[serde(default, deserialize_with = "de_databases")]
    pub(crate) databases: Option<BTreeMap<String, RawDatabase>>,
}

/// The top-level key holding the profile.
pub(crate) const ENVIRONMENT_KEY: &str = "environment";
/// The prefix of one entry of the server settings table.
pub(crate) const SERVER_SETTINGS_PREFIX: &str = "upstream.server_settings.";
/// The prefix of one entry of the `[databases]` table.
pub(crate) const DATABASES_PREFIX: &str = "databases.";

/// Why `RawConfig::set_text` refused.
#[derive(Debug)]
pub(crate) enum SetError {
    /// No such key.
    UnknownKey,
    /// The text does not parse; says what was expected.
    Invalid(String),
}

impl RawConfig {
    /// Every fixed dotted key in documentation order (server settings entries excluded).
    pub(crate) fn fixed_keys() -> Vec<String> {
        let mut keys = vec![ENVIRONMENT_KEY.to_string()];
        let sections: [(&str, &[&str]); 7] = [
            ("upstream", RawUpstream::FIELDS),
            ("pool", RawPool::FIELDS),
            ("redis", RawRedis::FIELDS),
            ("retry", RawRetry::FIELDS),
            ("proxy", RawProxy::FIELDS),
            ("resilience", RawResilience::FIELDS),
            ("admin", RawAdmin::FIELDS),
        ];
        for (section, fields) in sections {
            for field in fields.iter().filter(|f| **f != "server_settings") {
                keys.push(format!("{section}.{field}"));
            }
        }
        keys
    }

    /// The fixed keys plus one `upstream.server_settings.<name>` key per entry set here (after
    /// the other `upstream.*` keys) and one `databases.<name>` key per route (at the end).
    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys = Self::fixed_keys();
        if let Some(map) = &self.upstream.server_settings {
            let at = keys
                .iter()
                .rposition(|k| k.starts_with("upstream."))
                .map_or(keys.len(), |i| i + 1);
            let entries = map
                .keys()
                .map(|name| format!("{SERVER_SETTINGS_PREFIX}{name}"));
            keys.splice(at..at, entries);
        }
        if let Some(map) = &self.databases {
            keys.extend(map.keys().map(|name| format!("{DATABASES_PREFIX}{name}")));
        }
        keys
    }

    /// Sets the dotted `key` from text.
    pub(crate) fn set_text(&mut self, key: &str, text: &str) -> Result<(), SetError> {
        if key == ENVIRONMENT_KEY {
            self.environment = Some(Environment::parse_text(text).map_err(SetError::Invalid)?);
            return Ok(());
        }
        if let Some(name) = key.strip_prefix(SERVER_SETTINGS_PREFIX) {
            super::value::check_server_setting_name(name).map_err(SetError::Invalid)?;
            let map = self
                .upstream
                .server_settings
                .get_or_insert_with(BTreeMap::new);
            map.insert(name.to_string(), text.to_string());
            return Ok(());
        }
        if let Some(name) = key.strip_prefix(DATABASES_PREFIX) {
            let entry = RawDatabase::parse_text(text).map_err(SetError::Invalid)?;
            let map = self.databases.get_or_insert_with(BTreeMap::new);
            map.insert(name.to_string(), entry);
            return Ok(());
        }
        let (section, field) = key.split_once('.').ok_or(SetError::UnknownKey)?;
        let outcome = match section {
            "upstream" => self.upstream.set_text(field, text),
            "pool" => self.pool.set_text(field, text),
            "redis" => self.redis.set_text(field, text),
            "retry" => self.retry.set_text(field, text),
            "proxy" => self.proxy.set_text(field, text),
            "resilience" => self.resilience.set_text(field, text),
            "admin" => self.admin.set_text(field, text),
            _ => None,
        };
        match outcome {
            None => Err(SetError::UnknownKey),
            Some(result) => result.map_err(SetError::Invalid),
        }
    }

    /// The value of the dotted `key` as shown to people (unmasked); `None` when unset.
    pub(crate) fn show(&self, key: &str) -> Option<String> {
        if key == ENVIRONMENT_KEY {
            return self.environment.map(|e| e.to_string());
        }
        if let Some(name) = key.strip_prefix(SERVER_SETTINGS_PREFIX) {
            return self.upstream.server_settings.as_ref()?.get(name).cloned();
        }
        if let Some(name) = key.strip_prefix(DATABASES_PREFIX) {
            return self.databases.as_ref()?.get(name).map(SettingValue::show);
        }
        let (section, field) = key.split_once('.')?;
        match section {
            "upstream" => self.upstream.show(field),
            "pool" => self.pool.show(field),
            "redis" => self.redis.show(field),
            "retry" => self.retry.show(field),
            "proxy" => self.proxy.show(field),
            "resilience" => self.resilience.show(field),
            "admin" => self.admin.show(field),
            _ => None,
        }
    }

    /// Applies every key `later` sets on top of this layer.
    pub(crate) fn merge_from(&mut self, later: &RawConfig) {
        if later.environment.is_some() {
            self.environment = later.environment;
        }
        self.upstream.merge_from(&later.upstream);
        self.pool.merge_from(&later.pool);
        self.redis.merge_from(&later.redis);
        self.retry.merge_from(&later.retry);
        self.proxy.merge_from(&later.proxy);
        self.resilience.merge_from(&later.resilience);
        self.admin.merge_from(&later.admin);
        if let Some(routes) = &later.databases {
            // Entry by entry: a later layer replaces a whole route, keeps the others.
            let map = self.databases.get_or_insert_with(BTreeMap::new);
            map.extend(routes.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}
