//! One layer of configuration with its provenance: the raw values it sets and, for each dotted
//! key, where the value came from. Layers are stacked with [`Layer::merge_from`].

use std::collections::BTreeMap;
use std::path::Path;

use super::error::ConfigError;
use super::mask::mask_secrets;
use super::raw::{RawConfig, SetError};
use super::source::Source;

/// Raw values plus the source of each key they set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    /// The values this layer sets.
    pub(crate) raw: RawConfig,
    /// For every key set, where it came from.
    pub(crate) sources: BTreeMap<String, Source>,
}

impl Layer {
    /// A layer whose every set key comes from `source`.
    pub(crate) fn uniform(raw: RawConfig, source: &Source) -> Layer {
        let sources = raw
            .keys()
            .into_iter()
            .filter(|key| raw.show(key).is_some())
            .map(|key| (key, source.clone()))
            .collect();
        Layer { raw, sources }
    }

    /// Sets `key` from `text`, remembering `source`; refuses unknown keys and bad values.
    pub(crate) fn set(&mut self, key: &str, text: &str, source: Source) -> Result<(), ConfigError> {
        match self.raw.set_text(key, text) {
            Ok(()) => {
                self.sources.insert(key.to_string(), source);
                Ok(())
            }
            Err(SetError::UnknownKey) => Err(ConfigError::UnknownKey {
                key: key.to_string(),
                origin: source,
            }),
            Err(SetError::Invalid(reason)) => Err(ConfigError::InvalidValue {
                key: key.to_string(),
                value: format!("{:?}", mask_secrets(text)),
                origin: source,
                reason,
            }),
        }
    }

    /// Applies `later` on top of this layer: its values and their sources win.
    pub(crate) fn merge_from(&mut self, later: &Layer) {
        self.raw.merge_from(&later.raw);
        for (key, source) in &later.sources {
            self.sources.insert(key.clone(), source.clone());
        }
    }

    /// Where `key`'s value came from.
    pub(crate) fn source(&self, key: &str) -> Option<&Source> {
        self.sources.get(key)
    }

    /// Reads the TOML file at `path` as one layer.
    pub(crate) fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Layer::from_toml(&text, path)
    }

    /// Parses `text` (the contents of `path`) as one layer.
    pub(crate) fn from_toml(text: &str, path: &Path) -> Result<Layer, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::ParseFile {
            path: path.to_path_buf(),
            location: e
                .span()
                .map(|span| locate(text, span.start))
                .unwrap_or_default(),
            reason: mask_secrets(e.message().trim()),
        })?;
        Ok(Layer::uniform(
            raw,
            &Source::File {
                path: path.to_path_buf(),
            },
        ))
    }
}

/// ` line N (section.key)` for the byte offset `at` of a TOML document.
fn locate(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line_no = text[..at].matches('\n').count() + 1;
    let mut section = String::new();
    let mut key = String::new();
    for (i, line) in text.lines().enumerate().take(line_no) {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_end_matches(']').trim().to_string();
            if i + 1 == line_no {
                key.clone_from(&section);
            }
        } else if i + 1 == line_no {
            let name = line.split('=').next().unwrap_or("").trim();
            key = if section.is_empty() {
                name.to_string()
            } else {
                format!("{section}.{name}")
            };
        }
    }
    if key.is_empty() {
        format!(" line {line_no}")
    } else {
        format!(" line {line_no} ({key})")
    }
}
