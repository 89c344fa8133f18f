//! The `[databases]` table of the proxy: a client-visible database name mapped to another
//! database, user, password or server, as in PgBouncer. Each entry is either a connection
//! string in PgBouncer's (libpq key/value) form or a TOML table with the same keys:
//!
//! ```toml
//! [databases]
//! app = "dbname=app_v2 pool_size=20"
//! reporting = { host = "replica.internal", port = 5432, dbname = "app", user = "ro", password = "..." }
//! "*" = "host=fallback.internal"   # any other database name
//! ```
//!
//! Keys: `host`, `port`, `dbname`, `user`, `password`, `pool_size`; anything else is refused.
//! An entry is one setting (`databases.<name>`): a later layer replaces a whole entry.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::value::SettingValue;

/// The keys an entry may set, in the order they are shown.
pub(crate) const DATABASE_KEYS: &[&str] =
    &["host", "port", "dbname", "user", "password", "pool_size"];

/// One entry as a layer gives it: every key optional.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDatabase {
    /// Server host. Default: the host of `upstream.url`.
    pub(crate) host: Option<String>,
    /// Server port. Default: the port of `upstream.url` (or 5432 with another `host`).
    pub(crate) port: Option<u16>,
    /// Database name on the server. Default: the name the client asked for.
    pub(crate) dbname: Option<String>,
    /// Server user. Default: the client's user.
    pub(crate) user: Option<String>,
    /// Password of `user` on the server. Default: from the userlist or `upstream.url`.
    pub(crate) password: Option<String>,
    /// Server connections of each pool of this database. Default: `pool.max_size`.
    pub(crate) pool_size: Option<usize>,
}

impl fmt::Debug for RawDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&super::mask::mask_secrets(&self.show()))
    }
}

impl<'de> Deserialize<'de> for RawDatabaseEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(text) => RawDatabase::parse_text(&text)
                .map(RawDatabaseEntry)
                .map_err(D::Error::custom),
            table @ toml::Value::Table(_) => table
                .try_into::<RawDatabase>()
                .map(RawDatabaseEntry)
                .map_err(|e| D::Error::custom(e.message().trim())),
            _ => Err(D::Error::custom(
                "expected a connection string such as \"host=db dbname=app\" or a table",
            )),
        }
    }
}

/// The file form of an entry: a connection string or a table (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawDatabaseEntry(pub(crate) RawDatabase);

/// Serde adapter for the `[databases]` table.
pub(crate) fn de_databases<'de, D>(
    deserializer: D,
) -> Result<Option<std::collections::BTreeMap<String, RawDatabase>>, D::Error>
where
    D: Deserializer<'de>,
{
    let table = std::collections::BTreeMap::<String, RawDatabaseEntry>::deserialize(deserializer)?;
    Ok(Some(table.into_iter().map(|(k, v)| (k, v.0)).collect()))
}

impl SettingValue for RawDatabase {
    /// PgBouncer's connection string: `key=value` pairs separated by spaces; a value may be
    /// single-quoted (`password='a b'`, with `\'` and `\\` inside).
    fn parse_text(text: &str) -> Result<Self, String> {
        let mut entry = RawDatabase::default();
        for (key, value) in split_pairs(text)? {
            let slot = match key.as_str() {
                "host" => &mut entry.host,
                "dbname" => &mut entry.dbname,
                "user" => &mut entry.user,
                "password" => &mut entry.password,
                "port" => {
                    entry.port =
                        Some(value.parse().map_err(|_| {
                            format!("port={value}: expected a port number 1-65535")
                        })?);
                    continue;
                }
                "pool_size" => {
                    entry.pool_size = Some(value.parse().map_err(|_| {
                        format!("pool_size={value}: expected a whole number such as 10")
                    })?);
                    continue;
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?} (expected one of {})",
                        DATABASE_KEYS.join(", ")
                    ))
                }
            };
            *slot = Some(value);
        }
        Ok(entry)
    }

    /// The connection-string form (unmasked; callers mask `password=`).
    fn show(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                parts.push(format!("{key}={}", quote_value(&value)));
            }
        };
        push("host", self.host.clone());
        push("port", self.port.map(|p| p.to_string()));
        push("dbname", self.dbname.clone());
        push("user", self.user.clone());
        push("password", self.password.clone());
        push("pool_size", self.pool_size.map(|p| p.to_string()));
        parts.join(" ")
    }
}

/// Splits `key=value key='quoted value'` into pairs.
fn split_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("expected key=value, found {key:?} without '='"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("{key}: unterminated quoted value")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key.to_ascii_lowercase(), value));
    }
}

/// `value` as written in a connection string: quoted when it holds spaces, quotes or is empty.
fn quote_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// One validated `[databases]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// Server host; `None` = the host of `upstream.url`.
    pub host: Option<String>,
    /// Server port; `None` = the port of `upstream.url`, or 5432 when `host` is set.
    pub port: Option<u16>,
    /// Database name on the server; `None` = the client's.
    pub dbname: Option<String>,
    /// Server user; `None` = the client's.
    pub user: Option<String>,
    /// Password of `user` on the server; `None` = from the userlist or `upstream.url`.
    pub password: Option<String>,
    /// Server connections per pool of this database; `None` = `pool.max_size`. >= 1.
    pub pool_size: Option<usize>,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field(
                "password",
                &self.password.as_ref().map(|_| super::mask::MASK),
            )
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// Checks one entry; the error is the reason (the caller names the key).
pub(crate) fn validate_database(name: &str, raw: &RawDatabase) -> Result<DatabaseSettings, String> {
    if name.is_empty() || name.len() > 63 {
        return Err("a database name is 1 to 63 bytes long".to_string());
    }
    for (key, value) in [
        ("host", &raw.host),
        ("dbname", &raw.dbname),
        ("user", &raw.user),
    ] {
        if value.as_deref() == Some("") {
            return Err(format!("{key} is empty (leave it out to keep the default)"));
        }
    }
    if raw.port == Some(0) {
        return Err("port must be 1-65535".to_string());
    }
    if raw.pool_size == Some(0) {
        return Err("pool_size must be at least 1".to_string());
    }
    Ok(DatabaseSettings {
        host: raw.host.clone(),
        port: raw.port,
        dbname: raw.dbname.clone(),
        user: raw.user.clone(),
        password: raw.password.clone(),
        pool_size: raw.pool_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_parse_and_show_back() {
        let entry = RawDatabase::parse_text(
            "host=db  port=6543 dbname=app_v2 user=ro password='a b\\'c' pool_size=4",
        )
        .unwrap();
        assert_eq!(entry.host.as_deref(), Some("db"));
        assert_eq!(entry.port, Some(6543));
        assert_eq!(entry.password.as_deref(), Some("a b'c"));
        assert_eq!(entry.pool_size, Some(4));
        assert_eq!(RawDatabase::parse_text(&entry.show()).unwrap(), entry);
        assert!(!format!("{entry:?}").contains("a b"));
        assert_eq!(RawDatabase::parse_text("").unwrap(), RawDatabase::default());
    }

    #[test]
    fn bad_connection_strings_say_why() {
        let err = RawDatabase::parse_text("hots=db").unwrap_err();
        assert!(err.contains("unknown key \"hots\""), "{err}");
        assert!(err.contains("host, port, dbname"), "{err}");
        assert!(RawDatabase::parse_text("port=x")
            .unwrap_err()
            .contains("port=x"));
        assert!(RawDatabase::parse_text("dbname")
            .unwrap_err()
            .contains("'='"));
        assert!(RawDatabase::parse_text("password='open")
            .unwrap_err()
            .contains("unterminated"));
    }
}
