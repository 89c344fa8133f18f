//! pgwarden's typed configuration, layered with a clear precedence:
//!
//! 1. built-in profile defaults (`development` or `production`),
//! 2. a TOML file (`--config PATH` or `PGWARDEN_CONFIG`),
//! 3. conventional environment variables (`DATABASE_URL`, `DATABASE_POOL_MAX_SIZE`, ...,
//!    `REDIS_URL`),
//! 4. `PGWARDEN_<SECTION>_<KEY>` environment variables,
//! 5. command-line flags (`--set section.key=value`).
//!
//! Each layer is parsed into the raw form (every key optional), the layers are merged, and the
//! result is validated into [`Settings`]. [`Loaded`] keeps, for every key, the [`Source`] of
//! its effective value; [`Loaded::render`] shows them with passwords masked.
//!
//! # Layout
//! - `settings.rs`: the resolved types the rest of pgwarden uses.
//! - `raw.rs`: the raw layer (serde, `deny_unknown_fields`); `value.rs`: parsing one value.
//! - `defaults.rs`: the profile defaults; `env.rs`: environment names and fallbacks.
//! - `layer.rs`: a layer with provenance, and the file reader; `load.rs`: stacking the layers.
//! - `databases.rs`: the proxy's `[databases]` routing table (connection strings or tables).
//! - `validate.rs`: range and consistency checks; `render.rs` and `mask.rs`: showing it.
//!
//! # Example
//! ```
//! use pgwarden::config::{LoadOptions, Settings, Source};
//!
//! let options = LoadOptions::default()
//!     .with_env("DATABASE_URL", "postgres://app:secret@db:5432/app")
//!     .with_env("PGWARDEN_ENV", "production")
//!     .with_flag("pool.max_size", "20");
//! let loaded = Settings::load(&options).unwrap();
//! assert_eq!(loaded.settings.pool.max_size, 20);
//! assert_eq!(loaded.settings.pool.idle_timeout.as_secs(), 60); // the production default
//! assert_eq!(
//!     loaded.source("upstream.url"),
//!     Some(&Source::Env { name: "DATABASE_URL".into() })
//! );
//! assert!(loaded.render().contains("postgres://app:***@db:5432/app"));
//! ```

mod databases;
mod defaults;
mod env;
mod error;
mod layer;
mod load;
mod mask;
mod raw;
mod render;
mod settings;
mod source;
mod validate;
mod value;

#[cfg(test)]
mod tests;

pub use databases::DatabaseSettings;
pub use defaults::DEFAULT_UPSTREAM_URL;
pub use env::{env_name, EnvSnapshot, Fallback, CONFIG_PATH_VAR, FALLBACKS, RESERVED_NAMES};
pub use error::{ConfigError, Setting};
pub use load::{Entry, LoadOptions, Loaded};
pub use settings::{
    AdminSettings, Environment, PoolSettings, ProxySettings, RedisSettings, ResilienceSettings,
    RetrySettings, Settings, UnknownEnvironment, UpstreamSettings,
};
pub use source::Source;

/// Every fixed dotted key (server settings entries excluded), in documentation order.
pub fn keys() -> Vec<String> {
    raw::RawConfig::fixed_keys()
}
