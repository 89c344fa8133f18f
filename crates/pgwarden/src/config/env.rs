//! The environment layers: `PGWARDEN_<SECTION>_<KEY>` for every key, and the conventional
//! fallback names (`DATABASE_URL` and friends), which lose to `PGWARDEN_*` but beat the file.
//! Unknown `PGWARDEN_*` names are refused so a typo is never silently ignored.

use std::collections::BTreeMap;

use super::error::ConfigError;
use super::layer::Layer;
use super::raw::{RawConfig, ENVIRONMENT_KEY, SERVER_SETTINGS_PREFIX};
use super::source::Source;
use super::value::parse_seconds_or_duration;

/// A copy of the environment variables that matter, injectable so tests never touch the
/// process environment.
pub type EnvSnapshot = BTreeMap<String, String>;

/// The prefix of every pgwarden variable.
const PREFIX: &str = "PGWARDEN_";
/// Names under the prefix that are not settings but are understood elsewhere.
pub const RESERVED_NAMES: [&str; 3] = ["PGWARDEN_ENV", "PGWARDEN_CONFIG", "PGWARDEN_LOG"];
/// The variable naming the configuration file.
pub const CONFIG_PATH_VAR: &str = "PGWARDEN_CONFIG";
/// The prefix of one server setting, e.g. `PGWARDEN_UPSTREAM_SERVER_SETTINGS_SEARCH_PATH`.
const SERVER_SETTINGS_VAR_PREFIX: &str = "PGWARDEN_UPSTREAM_SERVER_SETTINGS_";

/// A conventional variable read when the `PGWARDEN_*` name is not set.
#[derive(Debug, Clone, Copy)]
pub struct Fallback {
    /// The variable's name.
    pub name: &'static str,
    /// The dotted key it sets.
    pub key: &'static str,
    /// Whether a plain number means seconds (`"30"`, `"2.5"`).
    pub plain_seconds: bool,
}

/// Every fallback name, in the order they are documented.
pub const FALLBACKS: [Fallback; 6] = [
    Fallback {
        name: "DATABASE_URL",
        key: "upstream.url",
        plain_seconds: false,
    },
    Fallback {
        name: "DATABASE_COMMAND_TIMEOUT",
        key: "upstream.command_timeout",
        plain_seconds: true,
    },
    Fallback {
        name: "DATABASE_POOL_MAX_SIZE",
        key: "pool.max_size",
        plain_seconds: false,
    },
    Fallback {
        name: "DATABASE_POOL_MIN_SIZE",
        key: "pool.min_size",
        plain_seconds: false,
    },
    Fallback {
        name: "DATABASE_MAX_IDLE_TIME",
        key: "pool.idle_timeout",
        plain_seconds: true,
    },
    Fallback {
        name: "REDIS_URL",
        key: "redis.url",
        plain_seconds: false,
    },
];

/// Keys whose variable drops the section, as operators know them.
const SHORT_NAMES: [(&str, &str); 3] = [
    ("proxy.listen", "PGWARDEN_LISTEN"),
    ("proxy.auth_type", "PGWARDEN_AUTH_TYPE"),
    ("resilience.require_upstream", "PGWARDEN_REQUIRE_UPSTREAM"),
];

/// The `PGWARDEN_*` variable of a dotted key: `pool.max_size` -> `PGWARDEN_POOL_MAX_SIZE`,
/// `environment` -> `PGWARDEN_ENV`.
pub fn env_name(key: &str) -> String {
    if key == ENVIRONMENT_KEY {
        return "PGWARDEN_ENV".to_string();
    }
    if let Some((_, name)) = SHORT_NAMES.iter().find(|(k, _)| *k == key) {
        return name.to_string();
    }
    format!("{PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The snapshot's value of `name`; an empty value counts as unset.
fn lookup<'a>(env: &'a EnvSnapshot, name: &str) -> Option<&'a str> {
    env.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// Refuses any `PGWARDEN_*` variable that names no setting.
pub(crate) fn check_unknown(env: &EnvSnapshot) -> Result<(), ConfigError> {
    let known: Vec<String> = RawConfig::fixed_keys()
        .iter()
        .map(|k| env_name(k))
        .collect();
    for name in env.keys().filter(|n| n.starts_with(PREFIX)) {
        let is_known = known.contains(name)
            || RESERVED_NAMES.contains(&name.as_str())
            || name
                .strip_prefix(SERVER_SETTINGS_VAR_PREFIX)
                .is_some_and(|rest| !rest.is_empty());
        if !is_known {
            let candidates = known.iter().map(String::as_str).chain(RESERVED_NAMES);
            return Err(ConfigError::UnknownEnv {
                name: name.clone(),
                suggestion: closest(name, candidates).map(str::to_string),
            });
        }
    }
    Ok(())
}

/// The layer of the fallback names.
pub(crate) fn fallback_layer(env: &EnvSnapshot) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for fallback in FALLBACKS {
        let Some(text) = lookup(env, fallback.name) else {
            continue;
        };
        let source = Source::Env {
            name: fallback.name.to_string(),
        };
        // A plain number of seconds is rewritten as a humantime string before the common path.
        let text = match fallback.plain_seconds {
            true => match parse_seconds_or_duration(text) {
                Ok(duration) => humantime::format_duration(duration).to_string(),
                Err(_) => text.to_string(),
            },
            false => text.to_string(),
        };
        layer.set(fallback.key, &text, source)?;
    }
    Ok(layer)
}

/// The layer of the `PGWARDEN_*` names (including `PGWARDEN_ENV`).
pub(crate) fn pgwarden_layer(env: &EnvSnapshot) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for key in RawConfig::fixed_keys() {
        let name = env_name(&key);
        if let Some(text) = lookup(env, &name) {
            layer.set(&key, text, Source::Env { name })?;
        }
    }
    for (name, text) in env.iter().filter(|(_, v)| !v.is_empty()) {
        if let Some(setting) = name.strip_prefix(SERVER_SETTINGS_VAR_PREFIX) {
            let key = format!("{SERVER_SETTINGS_PREFIX}{}", setting.to_ascii_lowercase());
            layer.set(&key, text, Source::Env { name: name.clone() })?;
        }
    }
    Ok(layer)
}

/// The candidate nearest to `name` by edit distance, if it is plausibly a typo of it.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
