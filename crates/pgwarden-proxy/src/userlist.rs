//! Client credentials: PgBouncer's `userlist.txt` format (`"user" "secret"` per line, `""` for a
//! literal quote) and the secret kinds it may hold.

use std::collections::HashMap;
use std::path::Path;

use pgwarden_protocol::scram::ScramSecret;

/// What pgwarden knows about a user's password.
#[derive(Clone)]
pub enum Secret {
    /// A SCRAM-SHA-256 verifier as stored in `pg_authid`.
    Scram(ScramSecret),
    /// `md5` + md5(password + user).
    Md5(String),
    /// The password itself.
    Plain(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            Secret::Scram(_) => "Scram(..)",
            Secret::Md5(_) => "Md5(..)",
            Secret::Plain(_) => "Plain(..)",
        })
    }
}

impl Secret {
    /// Classifies a stored secret string.
    pub fn parse(text: &str) -> Secret {
        if text.starts_with("SCRAM-SHA-256$") {
            if let Ok(secret) = ScramSecret::parse(text) {
                return Secret::Scram(secret);
            }
        }
        if text.len() == 35 && text.starts_with("md5") {
            return Secret::Md5(text.to_string());
        }
        Secret::Plain(text.to_string())
    }
}

/// A userlist parse failure, naming the line.
#[derive(Debug, thiserror::Error)]
pub enum UserlistError {
    /// The file could not be read.
    #[error("cannot read auth_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not two quoted strings.
    #[error("auth_file {path} line {line}: expected \"user\" \"secret\"")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

/// Users and their secrets.
#[derive(Debug, Clone, Default)]
pub struct Userlist {
    users: HashMap<String, Secret>,
}

impl Userlist {
    /// Reads and parses a userlist file.
    pub fn load(path: &Path) -> Result<Userlist, UserlistError> {
        let text = std::fs::read_to_string(path).map_err(|source| UserlistError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Userlist::parse(&text).map_err(|line| UserlistError::Syntax {
            path: path.display().to_string(),
            line,
        })
    }

    /// Parses userlist text; on error returns the 1-based line number.
    pub fn parse(text: &str) -> Result<Userlist, usize> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            let (user, rest) = quoted(line).ok_or(i + 1)?;
            let (secret, rest) = quoted(rest.trim_start()).ok_or(i + 1)?;
            if !rest.trim().is_empty() && !rest.trim_start().starts_with('"') {
                return Err(i + 1);
            }
            users.insert(user, Secret::parse(&secret));
        }
        Ok(Userlist { users })
    }

    /// The secret of `user`, if listed.
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }

    /// Adds or replaces a user (for tests and programmatic set-up).
    pub fn insert(&mut self, user: impl Into<String>, secret: Secret) {
        self.users.insert(user.into(), secret);
    }
}

/// Reads one `"..."` string (with `""` as an escaped quote); returns it and the rest.
fn quoted(s: &str) -> Option<(String, &str)> {
    let s = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if matches!(chars.peek(), Some((_, '"'))) {
                chars.next();
                out.push('"');
            } else {
                return Some((out, &s[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_secret_kinds_and_escaped_quotes() {
        let text = "; comment\n\"alice\" \"md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n\"bob\" \"pa\"\"ss\"\n\
            \"carol\" \"SCRAM-SHA-256$4096:c2FsdA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n";
        let list = Userlist::parse(text).unwrap();
        assert!(matches!(list.get("alice"), Some(Secret::Md5(_))));
        assert!(matches!(list.get("bob"), Some(Secret::Plain(p)) if p == "pa\"ss"));
        assert!(matches!(list.get("carol"), Some(Secret::Scram(_))));
        assert!(list.get("dave").is_none());
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(Userlist::parse("\"a\" \"b\"\nuser pass\n").unwrap_err(), 2);
        assert_eq!(Userlist::parse("\"a\" \"b").unwrap_err(), 1);
    }
}
