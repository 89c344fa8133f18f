//! Unit tests of the configuration: precedence of every layer, fallbacks, profiles, every
//! refusal, and masking. The environment is always an injected snapshot, never the process's.

mod admin;
mod databases;
mod precedence;
mod refusals;
mod rendering;

use std::io::Write;

use super::{ConfigError, LoadOptions, Loaded, Settings};

/// A TOML file that lives as long as the value.
struct TempConfig {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl TempConfig {
    /// Writes `text` to `<tempdir>/pgwarden.toml`.
    fn new(text: &str) -> TempConfig {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pgwarden.toml");
        let mut file = std::fs::File::create(&path).expect("create config");
        file.write_all(text.as_bytes()).expect("write config");
        TempConfig { _dir: dir, path }
    }
}

/// Options from a file's text (if any), env pairs and flag pairs.
fn options(file: Option<&TempConfig>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> LoadOptions {
    let mut options = LoadOptions {
        config_path: file.map(|f| f.path.clone()),
        ..LoadOptions::default()
    };
    for (name, value) in env {
        options = options.with_env(name, value);
    }
    for (key, value) in flags {
        options = options.with_flag(key, value);
    }
    options
}

/// Loads, expecting success.
fn load(file: Option<&TempConfig>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> Loaded {
    match Settings::load(&options(file, env, flags)) {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid configuration, got: {e}"),
    }
}

/// Loads, expecting a refusal; returns its one-line message.
fn refuse(file: Option<&TempConfig>, env: &[(&str, &str)], flags: &[(&str, &str)]) -> String {
    match Settings::load(&options(file, env, flags)) {
        Ok(loaded) => panic!("expected a refusal, got:\n{}", loaded.render()),
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("invalid configuration: "), "{message}");
            assert!(!message.contains('\n'), "not one line: {message}");
            message
        }
    }
}

/// Loads, expecting a refusal; returns the error itself.
fn refuse_err(
    file: Option<&TempConfig>,
    env: &[(&str, &str)],
    flags: &[(&str, &str)],
) -> ConfigError {
    match Settings::load(&options(file, env, flags)) {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e,
    }
}
