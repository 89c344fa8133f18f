//! Loading: stacks the layers in precedence order — profile defaults < file < fallback
//! environment names < `PGWARDEN_*` environment < flags — then validates the result and keeps,
//! for every key, where its effective value came from.

use std::path::PathBuf;

use super::defaults::profile_defaults;
use super::env::{check_unknown, fallback_layer, pgwarden_layer, EnvSnapshot, CONFIG_PATH_VAR};
use super::error::ConfigError;
use super::layer::Layer;
use super::mask::mask_secrets;
use super::raw::RawConfig;
use super::settings::Settings;
use super::source::Source;
use super::validate::validate;

/// What [`Settings::load`] reads. Nothing here touches the process unless built with
/// [`LoadOptions::from_process`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The TOML file (`--config`). When `None`, `PGWARDEN_CONFIG` in `env` names it, if set.
    pub config_path: Option<PathBuf>,
    /// The environment variables to read.
    pub env: EnvSnapshot,
    /// Command-line overrides as `(dotted key, value)`, applied in order (a later one wins),
    /// e.g. `("pool.max_size", "20")`, `("environment", "production")`,
    /// `("upstream.server_settings.search_path", "app, public")`.
    pub flags: Vec<(String, String)>,
}

impl LoadOptions {
    /// The process environment (variables that are not valid UTF-8 are skipped), no file
    /// unless `PGWARDEN_CONFIG` is set, no flags.
    pub fn from_process() -> LoadOptions {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        LoadOptions {
            env,
            ..LoadOptions::default()
        }
    }

    /// Adds one environment variable to the snapshot.
    pub fn with_env(mut self, name: &str, value: &str) -> LoadOptions {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    /// Adds one flag override.
    pub fn with_flag(mut self, key: &str, value: &str) -> LoadOptions {
        self.flags.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the configuration file.
    pub fn with_config_path(mut self, path: impl Into<PathBuf>) -> LoadOptions {
        self.config_path = Some(path.into());
        self
    }
}

/// One row of the effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The dotted key, e.g. `pool.max_size`.
    pub key: String,
    /// The effective value as shown to people: passwords masked, `(not set)` when absent.
    pub value: String,
    /// Where the value came from.
    pub source: Source,
}

/// The validated settings together with the provenance of every key.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The effective settings.
    pub settings: Settings,
    /// The file that was read, if any.
    pub config_path: Option<PathBuf>,
    pub(crate) entries: Vec<Entry>,
}

impl Loaded {
    /// Every key with its effective value and source, in documentation order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Where the effective value of the dotted `key` came from.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.source)
    }
}

impl Settings {
    /// Loads, merges and validates every layer described by `options`.
    pub fn load(options: &LoadOptions) -> Result<Loaded, ConfigError> {
        check_unknown(&options.env)?;
        let config_path = options.config_path.clone().or_else(|| {
            let named = options.env.get(CONFIG_PATH_VAR)?;
            (!named.is_empty()).then(|| PathBuf::from(named))
        });
        let file = match &config_path {
            Some(path) => Layer::from_file(path)?,
            None => Layer::default(),
        };
        let fallback = fallback_layer(&options.env)?;
        let env = pgwarden_layer(&options.env)?;
        let mut flags = Layer::default();
        for (key, value) in &options.flags {
            let source = Source::Flag { name: key.clone() };
            flags.set(key, value, source)?;
        }
        let layers = [file, fallback, env, flags];

        // The profile is resolved first: its defaults sit under every layer.
        let profile = layers
            .iter()
            .rev()
            .find_map(|layer| layer.raw.environment)
            .unwrap_or_default();
        let default_source = Source::Default { profile };
        let mut merged = Layer::uniform(profile_defaults(profile), &default_source);
        for key in RawConfig::fixed_keys() {
            merged.sources.entry(key).or_insert(default_source.clone());
        }
        for layer in &layers {
            merged.merge_from(layer);
        }

        let settings = validate(&merged)?;
        let entries = merged
            .raw
            .keys()
            .into_iter()
            .map(|key| Entry {
                value: merged
                    .raw
                    .show(&key)
                    .map(|v| mask_secrets(&v))
                    .unwrap_or_else(|| "(not set)".to_string()),
                source: merged
                    .source(&key)
                    .cloned()
                    .unwrap_or(default_source.clone()),
                key,
            })
            .collect();
        Ok(Loaded {
            settings,
            config_path,
            entries,
        })
    }

    /// Loads from the process environment alone (plus the file `PGWARDEN_CONFIG` names).
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::load(&LoadOptions::from_process()).map(|loaded| loaded.settings)
    }
}
