//! Why a configuration was refused. Every message is one line that starts with
//! `invalid configuration:`, names the key and the layer it came from, and never holds a password.

use std::path::PathBuf;

use super::source::Source;

/// A refused configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("invalid configuration: cannot read config file {}: {reason}", .path.display())]
    ReadFile {
        /// The path as given.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The configuration file is not valid TOML or holds an unknown key or a mistyped value.
    #[error("invalid configuration: config file {}{location}: {reason}", .path.display())]
    ParseFile {
        /// The path as given.
        path: PathBuf,
        /// ` line N (section.key)` when known, else empty.
        location: String,
        /// The parser's message, e.g. ``unknown field `max_sise` ``.
        reason: String,
    },
    /// A `PGWARDEN_*` environment variable that names no setting (a typo is refused, not ignored).
    #[error(
        "invalid configuration: unknown environment variable {name}{}",
        suggestion_text(.suggestion)
    )]
    UnknownEnv {
        /// The variable's name.
        name: String,
        /// The closest known name, if one is close.
        suggestion: Option<String>,
    },
    /// A flag named a key that does not exist.
    #[error("invalid configuration: unknown key {key} (from {origin})")]
    UnknownKey {
        /// The dotted key as given.
        key: String,
        /// Where it was given.
        origin: Source,
    },
    /// A value that cannot be parsed or is out of range.
    #[error("invalid configuration: {key} = {value} (from {origin}): {reason}")]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// The value as shown to people (secrets masked).
        value: String,
        /// Where the value came from.
        origin: Source,
        /// What is wrong with it.
        reason: String,
    },
    /// Two values that contradict each other, e.g. `min_size` above `max_size`.
    #[error("invalid configuration: {first} {relation} {second}")]
    Conflict {
        /// The key the refusal is about.
        first: Box<Setting>,
        /// How the two relate, e.g. `is greater than`.
        relation: &'static str,
        /// The key it contradicts.
        second: Box<Setting>,
    },
    /// A key ended up with no value at all (a gap in the built-in defaults).
    #[error("invalid configuration: {key} has no value")]
    Missing {
        /// The dotted key.
        key: String,
    },
}

impl ConfigError {
    /// The dotted key the refusal is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::InvalidValue { key, .. }
            | ConfigError::Missing { key } => Some(key),
            ConfigError::Conflict { first, .. } => Some(&first.key),
            ConfigError::ReadFile { .. }
            | ConfigError::ParseFile { .. }
            | ConfigError::UnknownEnv { .. } => None,
        }
    }
}

/// One side of a [`ConfigError::Conflict`]: shown as `key = value (from source)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value} (from {origin})")]
pub struct Setting {
    /// The dotted key.
    pub key: String,
    /// Its value as shown to people (secrets masked).
    pub value: String,
    /// Where it came from.
    pub origin: Source,
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(name) => format!(" (did you mean {name}?)"),
        None => " (PGWARDEN_* variables are checked so that typos are not ignored)".to_string(),
    }
}
