//! Session parameters a client expects on whatever server connection serves it.
//!
//! A client's startup parameters (application_name, search_path, TimeZone, DateStyle, the
//! `options` string's `-c` settings …) and its later `SET`/`RESET` commands make up the
//! session it believes it has. In transaction mode each transaction may run on another server
//! connection, so the proxy keeps the client's wanted values and each server connection's
//! applied values, and before forwarding a transaction sends the few statements that turn one
//! into the other ([`SessionParams::sync_sql`]).

use std::collections::BTreeMap;
use std::sync::Arc;

/// One parameter value: how to re-apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A string, applied with `set_config(name, value, false)` (parsed like a startup value).
    Literal(String),
    /// SQL text as the client wrote it after `SET name TO`, applied verbatim.
    Sql(String),
}

/// Startup keys that are not session parameters.
const NOT_PARAMETERS: &[&str] = &["user", "database", "replication", "options"];

/// Parameter name -> value, names lower-cased.
///
/// Shared, copied on write: a session's parameters, its startup values, the server connection
/// that last served it and other sessions that logged in with the same parameters (see
/// [`crate::pools::ProxyPool::intern_params`]) hold one map, so an idle client costs a pointer
/// here and comparing two unchanged sessions is a pointer comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionParams {
    values: Arc<BTreeMap<String, Value>>,
}

impl SessionParams {
    /// The session a client asks for in its startup packet.
    pub(crate) fn from_startup(params: &[(String, String)], default_app: &str) -> SessionParams {
        let mut values = BTreeMap::new();
        for (key, value) in params {
            let key = key.to_ascii_lowercase();
            if key == "options" {
                for (k, v) in parse_options(value) {
                    values.insert(k.to_ascii_lowercase(), Value::Literal(v));
                }
            } else if !NOT_PARAMETERS.contains(&key.as_str()) {
                values.insert(key, Value::Literal(value.clone()));
            }
        }
        values
            .entry("application_name".to_string())
            .or_insert_with(|| Value::Literal(default_app.to_string()));
        SessionParams {
            values: Arc::new(values),
        }
    }

    /// A server connection's parameters right after login.
    pub(crate) fn server_default(app: &str) -> SessionParams {
        let mut values = BTreeMap::new();
        values.insert(
            "application_name".to_string(),
            Value::Literal(app.to_string()),
        );
        SessionParams {
            values: Arc::new(values),
        }
    }

    /// SQL that sets `application_name` back to `app` (a server connection's login value,
    /// the instance tag) while keeping every other parameter, or `None` when it already is
    /// `app`; records the change. Run on release, so a connection idle in the pool shows its
    /// instance's tag in `pg_stat_activity` (orphan cleanup finds it by that tag).
    pub(crate) fn restore_application_name(&mut self, app: &str) -> Option<String> {
        if self.literal("application_name") == Some(app) {
            return None;
        }
        Arc::make_mut(&mut self.values).insert(
            "application_name".to_string(),
            Value::Literal(app.to_string()),
        );
        Some(format!(
            "SELECT pg_catalog.set_config('application_name', {}, false)",
            quote(app)
        ))
    }

    /// The literal value of `name` if the client set it at startup.
    pub(crate) fn literal(&self, name: &str) -> Option<&str> {
        match self.values.get(&name.to_ascii_lowercase()) {
            Some(Value::Literal(v)) => Some(v),
            _ => None,
        }
    }

    /// Applies the effect of `SET`, `RESET` and `DISCARD ALL` statements in a simple query.
    /// `startup` is what `RESET` returns to. Returns true when anything changed.
    pub(crate) fn apply_sql(&mut self, sql: &str, startup: &SessionParams) -> bool {
        let before = self.values.clone();
        for statement in sql.split(';') {
            match parse_statement(statement) {
                Some(Change::Set(name, value)) => {
                    Arc::make_mut(&mut self.values).insert(name, Value::Sql(value));
                }
                Some(Change::Reset(name)) => match startup.values.get(&name) {
                    Some(v) => {
                        Arc::make_mut(&mut self.values).insert(name, v.clone());
                    }
                    None => {
                        Arc::make_mut(&mut self.values).remove(&name);
                    }
                },
                Some(Change::ResetAll) => self.values = startup.values.clone(),
                None => {}
            }
        }
        before != self.values
    }

    /// SQL that turns a server connection with `server` parameters into this session, or
    /// `None` when they already match.
    pub(crate) fn sync_sql(&self, server: &SessionParams) -> Option<String> {
        // Equal maps are usually one shared map: a pointer comparison.
        if self == server {
            return None;
        }
        let mut sql = String::new();
        for (name, value) in self.values.iter() {
            if server.values.get(name) == Some(value) {
                continue;
            }
            match value {
                Value::Literal(v) => sql.push_str(&format!(
                    "SELECT pg_catalog.set_config({}, {}, false);",
                    quote(name),
                    quote(v)
                )),
                Value::Sql(v) => sql.push_str(&format!("SET {} TO {v};", quote_ident(name))),
            }
        }
        for name in server.values.keys() {
            if !self.values.contains_key(name) {
                sql.push_str(&format!("RESET {};", quote_ident(name)));
            }
        }
        Some(sql)
    }
}

/// `-c name=value` and `--name=value` pairs of a startup `options` string (backslash escapes
/// a space).
pub(crate) fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("-c").map(str::to_string)
        };
        if let Some((k, v)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_string()));
        }
    }
    out
}

enum Change {
    Set(String, String),
    Reset(String),
    ResetAll,
}

fn parse_statement(statement: &str) -> Option<Change> {
    let s = statement.trim();
    let lower = s.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.as_slice() {
        ["discard", "all"] | ["reset", "all"] => Some(Change::ResetAll),
        ["reset", name] => Some(Change::Reset(unquote_ident(name))),
        ["set", "local", ..] => None,
        ["set", ..] => {
            // Keep the value's original case: cut the original text after the keyword(s).
            let rest = s[3..].trim_start();
            let rest = strip_word(rest, "session").unwrap_or(rest);
            if let Some(value) = strip_word(rest, "time").and_then(|r| strip_word(r, "zone")) {
                return Some(Change::Set("timezone".into(), value.trim().to_string()));
            }
            if let Some(value) = strip_word(rest, "names") {
                return Some(Change::Set(
                    "client_encoding".into(),
                    value.trim().to_string(),
                ));
            }
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(rest.len());
            let name = unquote_ident(&rest[..end].to_ascii_lowercase());
            let after = rest[end..].trim_start();
            let value = after
                .strip_prefix('=')
                .or_else(|| strip_word(after, "to"))?
                .trim();
            if value.is_empty() {
                return None;
            }
            if value.eq_ignore_ascii_case("default") {
                return Some(Change::Reset(name));
            }
            Some(Change::Set(name, value.to_string()))
        }
        _ => None,
    }
}

fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && rest.starts_with(char::is_whitespace))
        .then(|| rest.trim_start())
}

fn unquote_ident(s: &str) -> String {
    s.trim_matches('"').to_string()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn quote_ident(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(pairs: &[(&str, &str)]) -> SessionParams {
        let p: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SessionParams::from_startup(&p, "pgwarden")
    }

    #[test]
    fn startup_and_options_become_parameters() {
        let s = startup(&[
            ("user", "u"),
            ("database", "d"),
            (
                "options",
                "-c search_path=a,b --statement-timeout=5s -cwork_mem=8MB",
            ),
        ]);
        assert_eq!(s.literal("search_path"), Some("a,b"));
        assert_eq!(s.literal("statement_timeout"), Some("5s"));
        assert_eq!(s.literal("work_mem"), Some("8MB"));
        assert_eq!(s.literal("application_name"), Some("pgwarden"));
        assert_eq!(s.literal("user"), None);
    }

    #[test]
    fn set_reset_and_discard_are_tracked() {
        let start = startup(&[("application_name", "app")]);
        let mut s = start.clone();
        assert!(s.apply_sql("SET search_path TO Foo, public; select 1", &start));
        assert!(s.apply_sql("set time zone 'Europe/Paris'", &start));
        assert!(!s.apply_sql("SET LOCAL work_mem = '1MB'", &start));
        let sql = s.sync_sql(&start).unwrap();
        assert!(sql.contains("SET search_path TO Foo, public;"), "{sql}");
        assert!(sql.contains("SET timezone TO 'Europe/Paris';"), "{sql}");
        assert!(s.apply_sql("RESET search_path", &start));
        assert!(s.apply_sql("DISCARD ALL", &start));
        assert_eq!(s, start);
        assert_eq!(s.sync_sql(&start), None);
    }

    #[test]
    fn sync_resets_what_a_previous_client_left() {
        let server = {
            let mut s = SessionParams::server_default("pgwarden");
            s.apply_sql("SET work_mem = '8MB'", &SessionParams::default());
            s
        };
        let client = startup(&[("application_name", "it's")]);
        let sql = client.sync_sql(&server).unwrap();
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config('application_name', 'it''s', false);RESET work_mem;"
        );
    }

    #[test]
    fn restoring_the_tag_keeps_the_other_parameters() {
        let start = startup(&[("application_name", "client's")]);
        let mut s = start.clone();
        s.apply_sql("SET work_mem = '8MB'", &start);
        let sql = s.restore_application_name("pgwarden#0badcafe").unwrap();
        assert_eq!(
            sql,
            "SELECT pg_catalog.set_config('application_name', 'pgwarden#0badcafe', false)"
        );
        assert_eq!(s.literal("application_name"), Some("pgwarden#0badcafe"));
        assert_eq!(s.restore_application_name("pgwarden#0badcafe"), None);
        // The next client with the same name as before only needs its name back.
        let sql = start.sync_sql(&s).unwrap();
        assert!(
            sql.contains("'client''s'") && sql.contains("RESET work_mem"),
            "{sql}"
        );
    }
}
