//! `pgwarden check-config`: prints the effective configuration — every key, its value and the
//! layer it came from, passwords masked — or the one line saying why it is invalid (exit 2).

use std::process::ExitCode;

use pgwarden::config::LoadOptions;

use super::load_or_exit;

/// Runs the command.
pub(crate) fn run(options: &LoadOptions) -> ExitCode {
    let loaded = match load_or_exit(options) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match &loaded.config_path {
        Some(path) => println!("# configuration file: {}", path.display()),
        None => println!("# configuration file: none"),
    }
    println!("# profile: {}", loaded.settings.environment);
    print!("{}", loaded.render());
    ExitCode::SUCCESS
}
