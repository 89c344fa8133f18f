//! Orphan cleanup: which server backends left behind by a dead pgwarden instance to terminate.
//!
//! Every connection pgwarden opens sets `application_name` to `{name}#{instance_id}`
//! ([`InstanceTag`]). Rows from `pg_stat_activity` ([`ORPHAN_QUERY`]) whose name is exactly our
//! name, `#`, and another instance's id (8 lowercase hex digits), and that sat idle (or idle in
//! transaction) longer than the threshold, belong to an instance that is gone:
//! [`select_orphans`] returns their pids for `pg_terminate_backend` ([`TERMINATE_SQL`]). Other
//! applications (including ones whose name merely starts with ours, such as `pgwarden2#…` or
//! `pgwarden#x#…`), this live instance and active backends are never selected. Running the
//! queries is the caller's business.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng;

/// Lists candidate backends; bind `$1` to `{name}#` (the tag's name and separator). A plain
/// prefix comparison (no `LIKE`, so `_` and `%` in names are literal); [`select_orphans`] then
/// matches the whole tag exactly.
pub const ORPHAN_QUERY: &str = "SELECT pid, application_name, state, \
     EXTRACT(EPOCH FROM (now() - state_change))::float8 AS state_change_age_seconds, \
     backend_start FROM pg_stat_activity \
     WHERE left(application_name, length($1)) = $1 AND pid <> pg_backend_pid()";

/// Terminates one backend; bind `$1` to the pid. Needs `pg_signal_backend` (or the same role).
pub const TERMINATE_SQL: &str = "SELECT pg_terminate_backend($1)";

/// Longest `application_name` PostgreSQL keeps (NAMEDATALEN - 1); longer names are truncated.
pub const APPLICATION_NAME_MAX: usize = 63;

/// Hex digits in an instance id.
const ID_LEN: usize = 8;

/// The `application_name` of one running pgwarden instance: `{name}#{instance_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceTag {
    name: String,
    instance_id: String,
}

impl InstanceTag {
    /// A tag for a new instance with a random 8-hex-digit id. `name` is shortened (at a character
    /// boundary, `#` removed) so the whole tag fits PostgreSQL's 63 bytes and the id survives.
    pub fn new(name: &str) -> InstanceTag {
        let id: u32 = rand::thread_rng().gen();
        InstanceTag::with_id(name, &format!("{id:08x}"))
    }

    fn with_id(name: &str, instance_id: &str) -> InstanceTag {
        let mut name: String = name.chars().filter(|c| *c != '#').collect();
        let budget = APPLICATION_NAME_MAX - 1 - instance_id.len();
        while name.len() > budget {
            name.pop();
        }
        InstanceTag {
            name,
            instance_id: instance_id.to_owned(),
        }
    }

    /// Parses `{name}#{hex id}`; `None` for names pgwarden did not make.
    pub fn parse(application_name: &str) -> Option<InstanceTag> {
        let (name, id) = application_name.rsplit_once('#')?;
        let valid = id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| InstanceTag {
            name: name.to_owned(),
            instance_id: id.to_ascii_lowercase(),
        })
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The random id part.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The value to send as `application_name`.
    pub fn application_name(&self) -> String {
        self.to_string()
    }

    /// The `$1` of [`ORPHAN_QUERY`]: the name and the separator, `{name}#`.
    pub fn query_prefix(&self) -> String {
        format!("{}#", self.name)
    }

    /// The instance id of `application_name` if it is exactly a tag with this tag's name:
    /// `{name}#` followed by 8 lowercase hex digits and nothing else (as [`InstanceTag::new`]
    /// makes them). `None` for every other name, such as `{name}2#…`, `{name}#x#…`, an upper-case
    /// or longer id, or `{name}-probe`.
    pub fn sibling_id<'a>(&self, application_name: &'a str) -> Option<&'a str> {
        let id = application_name
            .strip_prefix(self.name.as_str())?
            .strip_prefix('#')?;
        let valid = id.len() == ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then_some(id)
    }
}

impl fmt::Display for InstanceTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.name, self.instance_id)
    }
}

/// One row of [`ORPHAN_QUERY`].
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRow {
    /// Backend process id.
    pub pid: i32,
    /// `application_name` as the server reports it.
    pub application_name: String,
    /// `state`: `idle`, `idle in transaction`, `active`, ...
    pub state: String,
    /// Time since `state_change`.
    pub state_change_age: Duration,
    /// When the backend started (informational; not used to decide).
    pub backend_start: Option<SystemTime>,
}

/// Which backends count as orphans.
#[derive(Debug, Clone, PartialEq)]
pub struct OrphanPolicy {
    /// This live instance: only backends tagged with exactly its name (and another instance's
    /// id) are considered; its own backends are never selected.
    pub own_instance_tag: InstanceTag,
    /// Minimum time idle before a backend is an orphan. Default 5 minutes.
    pub idle_threshold: Duration,
}

impl OrphanPolicy {
    /// Default threshold for [`OrphanPolicy::idle_threshold`].
    pub const DEFAULT_IDLE_THRESHOLD: Duration = Duration::from_secs(300);

    /// A policy for `own` with the default 5-minute threshold.
    pub fn for_instance(own: InstanceTag) -> OrphanPolicy {
        OrphanPolicy {
            own_instance_tag: own,
            idle_threshold: OrphanPolicy::DEFAULT_IDLE_THRESHOLD,
        }
    }

    /// True if this row is an orphan to terminate.
    pub fn is_orphan(&self, row: &BackendRow) -> bool {
        let Some(id) = self.own_instance_tag.sibling_id(&row.application_name) else {
            return false;
        };
        let idle = matches!(
            row.state.as_str(),
            "idle" | "idle in transaction" | "idle in transaction (aborted)"
        );
        id != self.own_instance_tag.instance_id()
            && idle
            && row.state_change_age > self.idle_threshold
    }
}

/// The pids to terminate, in row order.
pub fn select_orphans(rows: &[BackendRow], policy: &OrphanPolicy) -> Vec<i32> {
    rows.iter()
        .filter(|row| policy.is_orphan(row))
        .map(|row| row.pid)
        .collect()
}

#[cfg(test)]
mod tests;
