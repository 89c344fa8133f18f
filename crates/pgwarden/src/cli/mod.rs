//! The command line: options shared by every command (where the configuration comes from) and
//! one subcommand per file. Exit codes: 0 success, 1 failure at run time, 2 invalid
//! configuration or usage.

mod check_config;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgwarden::config::{ConfigError, LoadOptions, Loaded, Settings};

/// The exit code of a refused configuration (the same as clap's usage errors).
pub(crate) const EXIT_INVALID_CONFIG: u8 = 2;

/// The version `--version` prints, with the kind of build when it is not the usual one.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), env!("BUILD_KIND_SUFFIX"));

/// pgwarden keeps a PostgreSQL server's connection slots safe.
///
/// Configuration precedence, lowest first: profile defaults < TOML file (--config or
/// PGWARDEN_CONFIG) < DATABASE_URL and friends < PGWARDEN_<SECTION>_<KEY> < flags.
#[derive(Debug, Parser)]
#[command(name = "pgwarden", version = VERSION, about, long_about)]
pub(crate) struct Cli {
    /// TOML configuration file [default: $PGWARDEN_CONFIG, else none]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Profile whose defaults apply: development (dev) or production (prod)
    /// [default: $PGWARDEN_ENV, else the file's `environment`, else development]
    #[arg(long = "env", global = true, value_name = "PROFILE")]
    profile: Option<String>,

    /// Upstream PostgreSQL URL; shorthand for --set upstream.url=URL
    #[arg(long, global = true, value_name = "URL")]
    upstream_url: Option<String>,

    /// Hard cap on server connections; shorthand for --set pool.max_size=N
    #[arg(long, global = true, value_name = "N")]
    pool_max_size: Option<String>,

    /// Overrides one key, e.g. --set pool.min_size=2 or
    /// --set upstream.server_settings.search_path=app; repeatable, applied after the
    /// shorthands, a later one wins
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE", value_parser = parse_assignment)]
    set: Vec<(String, String)>,

    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Prints every effective setting with its value and where it came from (passwords
    /// masked); exits 2 with one line on stderr if the configuration is invalid
    CheckConfig,
    /// Runs the PostgreSQL wire-protocol pooling proxy until SIGINT or SIGTERM
    Serve {
        /// How long clients inside a transaction may finish after a shutdown signal
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        drain_timeout: std::time::Duration,
    },
}

impl Cli {
    /// Runs the chosen command and returns the process exit code.
    pub(crate) fn run(self) -> ExitCode {
        let options = self.load_options();
        match self.command {
            Command::CheckConfig => check_config::run(&options),
            Command::Serve { drain_timeout } => serve::run(&options, drain_timeout),
        }
    }

    /// The process environment plus this command line's configuration flags.
    pub(crate) fn load_options(&self) -> LoadOptions {
        let mut options = LoadOptions::from_process();
        options.config_path = self.config.clone();
        let shorthands = [
            ("environment", &self.profile),
            ("upstream.url", &self.upstream_url),
            ("pool.max_size", &self.pool_max_size),
        ];
        for (key, value) in shorthands {
            if let Some(value) = value {
                options.flags.push((key.to_string(), value.clone()));
            }
        }
        options.flags.extend(self.set.iter().cloned());
        options
    }
}

/// Loads the configuration, or prints the one-line refusal to stderr and returns exit code 2.
pub(crate) fn load_or_exit(options: &LoadOptions) -> Result<Loaded, ExitCode> {
    Settings::load(options).map_err(|error: ConfigError| {
        tracing::debug!(key = error.key(), "configuration refused");
        eprintln!("{error}");
        ExitCode::from(EXIT_INVALID_CONFIG)
    })
}

/// Splits `section.key=value` at the first `=`.
fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected SECTION.KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shorthands_come_before_set_so_set_wins() {
        let cli = Cli::try_parse_from([
            "pgwarden",
            "--pool-max-size",
            "5",
            "check-config",
            "--set",
            "pool.max_size=7",
            "--env",
            "prod",
            "--config",
            "/x.toml",
        ])
        .unwrap();
        let options = cli.load_options();
        assert_eq!(options.config_path, Some(PathBuf::from("/x.toml")));
        assert_eq!(
            options.flags,
            vec![
                ("environment".to_string(), "prod".to_string()),
                ("pool.max_size".to_string(), "5".to_string()),
                ("pool.max_size".to_string(), "7".to_string()),
            ]
        );
    }

    #[test]
    fn set_needs_an_equals_sign() {
        assert!(parse_assignment("pool.max_size").is_err());
        assert!(parse_assignment("=3").is_err());
        assert_eq!(
            parse_assignment("upstream.url=postgres://u:p=w@h/db").unwrap(),
            (
                "upstream.url".to_string(),
                "postgres://u:p=w@h/db".to_string()
            )
        );
    }
}
