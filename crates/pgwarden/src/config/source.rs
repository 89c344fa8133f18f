//! Where an effective value came from: the provenance shown by `check-config` and named by
//! every refusal.

use std::fmt;
use std::path::PathBuf;

use super::settings::Environment;

/// The layer that supplied a key's effective value. Later layers win:
/// `Default` < `File` < `Env` (fallback names) < `Env` (`PGWARDEN_*`) < `Flag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default of the profile.
    Default {
        /// The profile whose default applied.
        profile: Environment,
    },
    /// The TOML configuration file.
    File {
        /// The path as given (`--config` or `PGWARDEN_CONFIG`).
        path: PathBuf,
    },
    /// An environment variable.
    Env {
        /// The variable's name, e.g. `PGWARDEN_POOL_MAX_SIZE` or `DATABASE_URL`.
        name: String,
    },
    /// A command-line flag (`--set key=value` or one of its shorthands).
    Flag {
        /// The dotted key it set, e.g. `pool.max_size`.
        name: String,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default { profile } => write!(f, "default ({profile})"),
            Source::File { path } => write!(f, "file {}", path.display()),
            Source::Env { name } => write!(f, "env {name}"),
            Source::Flag { name } => write!(f, "flag {name}"),
        }
    }
}
