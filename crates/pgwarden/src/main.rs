//! The `pgwarden` binary: parses the command line, starts logging, runs one command. Everything
//! else lives in the library (`pgwarden::config`, ...) and in `cli/`, one file per command.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The variable holding the log filter, e.g. `PGWARDEN_LOG=debug` or `PGWARDEN_LOG=pgwarden=debug`.
const LOG_FILTER_VAR: &str = "PGWARDEN_LOG";

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    cli.run()
}

/// Human-readable logs on stderr (stdout stays for command output), filtered by `PGWARDEN_LOG`
/// (default `info`).
fn init_logging() {
    let (filter, bad_filter) = match std::env::var(LOG_FILTER_VAR) {
        Ok(text) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new("info"), Some((text, e))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some((text, error)) = bad_filter {
        tracing::warn!("ignoring {LOG_FILTER_VAR}={text:?} ({error}); logging at info");
    }
}
