//! [`PoolConfig`]: every knob of a pool, with defaults that suit a small PostgreSQL server.

use std::time::Duration;

/// A pool's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Name used in errors, logs and statistics. Default `"pool"`.
    pub name: String,
    /// Hard cap on connections, open or being opened. Default 10.
    pub max_size: usize,
    /// Connections kept open even when idle. Default 0.
    pub min_idle: usize,
    /// Idle connections above `min_idle` are closed after this. Default 300 s; `None` keeps them.
    pub idle_timeout: Option<Duration>,
    /// Connections are closed after this age (less a random part of `lifetime_jitter`).
    /// Default 30 min.
    pub max_lifetime: Option<Duration>,
    /// Fraction of `max_lifetime` taken off at random per connection, so a pool never
    /// recycles all at once. Default 0.1.
    pub lifetime_jitter: f64,
    /// Connections are closed after this many checkouts. Default `None`.
    pub max_uses: Option<u64>,
    /// How long `get` waits. Default 5 s.
    pub acquire_timeout: Duration,
    /// Connections idle longer than this are pinged at checkout. Default 1 s.
    pub check_after_idle: Duration,
    /// Idle connections are pinged about this often (jittered). Default 120 s.
    pub keepalive_interval: Option<Duration>,
    /// Connections opened at once. Default 2.
    pub max_connecting: usize,
    /// A checkout held longer is reported once as a leak. Default 30 s.
    pub leak_threshold: Option<Duration>,
    /// How often the maintenance task runs. Default 1 s.
    pub maintenance_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            name: "pool".to_string(),
            max_size: 10,
            min_idle: 0,
            idle_timeout: Some(Duration::from_secs(300)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            lifetime_jitter: 0.1,
            max_uses: None,
            acquire_timeout: Duration::from_secs(5),
            check_after_idle: Duration::from_secs(1),
            keepalive_interval: Some(Duration::from_secs(120)),
            max_connecting: 2,
            leak_threshold: Some(Duration::from_secs(30)),
            maintenance_interval: Duration::from_secs(1),
        }
    }
}

/// A setting out of range; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pool \"{pool}\": {message}")]
pub struct ConfigError {
    /// The pool's name.
    pub pool: String,
    /// What is wrong, naming the field.
    pub message: String,
}

impl PoolConfig {
    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| {
            Err(ConfigError {
                pool: self.name.clone(),
                message,
            })
        };
        if self.max_size == 0 {
            return fail("max_size must be at least 1".into());
        }
        if self.min_idle > self.max_size {
            return fail(format!(
                "min_idle ({}) is greater than max_size ({})",
                self.min_idle, self.max_size
            ));
        }
        if self.max_connecting == 0 {
            return fail("max_connecting must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.lifetime_jitter) {
            return fail(format!(
                "lifetime_jitter ({}) must be in [0, 1)",
                self.lifetime_jitter
            ));
        }
        if self.acquire_timeout.is_zero() {
            return fail("acquire_timeout must be greater than 0".into());
        }
        if self.maintenance_interval.is_zero() {
            return fail("maintenance_interval must be greater than 0".into());
        }
        Ok(())
    }
}
