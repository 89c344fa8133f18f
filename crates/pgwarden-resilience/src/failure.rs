//! Classification of why the upstream could not be reached.
//!
//! Everything above this crate (breaker, monitor, log lines, metrics) acts on a
//! [`FailureKind`], never on error strings. The kind is derived once, here,
//! from a SQLSTATE or an I/O error.

use std::fmt;
use std::io;

/// Why a probe or a connection attempt to the upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Nothing listens on the address (`ECONNREFUSED`).
    Refused,
    /// The connect, TLS handshake or login did not finish in time.
    Timeout,
    /// The host name could not be resolved.
    Dns,
    /// The TLS handshake failed (certificate, protocol, ...).
    Tls,
    /// The server rejected the credentials (SQLSTATE `28P01` or `28000`).
    AuthFailed,
    /// The database named in the connection settings does not exist (`3D000`).
    DatabaseMissing,
    /// The server has no free connection slot (`53300`).
    TooManyConnections,
    /// The server is starting up or recovering (`57P03`).
    StartingUp,
    /// The server is shutting down, or restarting after a crash (`57P01`, `57P02`).
    ShuttingDown,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Every kind, in declaration order (handy for pre-registering metric labels).
    pub const ALL: [FailureKind; 10] = [
        FailureKind::Refused,
        FailureKind::Timeout,
        FailureKind::Dns,
        FailureKind::Tls,
        FailureKind::AuthFailed,
        FailureKind::DatabaseMissing,
        FailureKind::TooManyConnections,
        FailureKind::StartingUp,
        FailureKind::ShuttingDown,
        FailureKind::Other,
    ];

    /// Classifies a PostgreSQL SQLSTATE; `None` when the code says nothing about availability
    /// or configuration (the caller then usually picks [`FailureKind::Other`]).
    pub fn from_sqlstate(code: &str) -> Option<FailureKind> {
        match code {
            "28P01" | "28000" => Some(FailureKind::AuthFailed),
            "3D000" => Some(FailureKind::DatabaseMissing),
            "53300" => Some(FailureKind::TooManyConnections),
            "57P03" => Some(FailureKind::StartingUp),
            "57P01" | "57P02" => Some(FailureKind::ShuttingDown),
            _ => None,
        }
    }

    /// Classifies an I/O error from connecting (TCP connect, name lookup, TLS).
    pub fn from_io_error(error: &io::Error) -> FailureKind {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => return FailureKind::Refused,
            io::ErrorKind::TimedOut => return FailureKind::Timeout,
            io::ErrorKind::NotFound => return FailureKind::Dns,
            _ => {}
        }
        let text = error.to_string().to_ascii_lowercase();
        const DNS_HINTS: [&str; 5] = [
            "failed to lookup address",
            "name or service not known",
            "nodename nor servname",
            "no such host",
            "temporary failure in name resolution",
        ];
        const TLS_HINTS: [&str; 4] = ["tls", "ssl", "certificate", "handshake"];
        if DNS_HINTS.iter().any(|hint| text.contains(hint)) {
            FailureKind::Dns
        } else if TLS_HINTS.iter().any(|hint| text.contains(hint)) {
            FailureKind::Tls
        } else if text.contains("timed out") {
            FailureKind::Timeout
        } else {
            FailureKind::Other
        }
    }

    /// True for problems a human must fix in the settings (wrong password, missing
    /// database); retrying quickly cannot help. All other kinds are availability problems.
    pub fn is_configuration_problem(self) -> bool {
        matches!(self, FailureKind::AuthFailed | FailureKind::DatabaseMissing)
    }

    /// A short, bounded label for metrics (`kind="refused"`).
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Timeout => "timeout",
            FailureKind::Dns => "dns",
            FailureKind::Tls => "tls",
            FailureKind::AuthFailed => "auth_failed",
            FailureKind::DatabaseMissing => "database_missing",
            FailureKind::TooManyConnections => "too_many_connections",
            FailureKind::StartingUp => "starting_up",
            FailureKind::ShuttingDown => "shutting_down",
            FailureKind::Other => "other",
        }
    }

    /// A few words for people, used in log lines and error messages.
    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::Refused => "connection refused",
            FailureKind::Timeout => "timed out",
            FailureKind::Dns => "host name lookup failed",
            FailureKind::Tls => "TLS handshake failed",
            FailureKind::AuthFailed => "authentication failed",
            FailureKind::DatabaseMissing => "database does not exist",
            FailureKind::TooManyConnections => "too many connections",
            FailureKind::StartingUp => "server is starting up",
            FailureKind::ShuttingDown => "server is shutting down",
            FailureKind::Other => "error",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// One classified failure: the kind to act on and the original message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Failure {
    /// What to act on.
    pub kind: FailureKind,
    /// The underlying error text (never contains a password).
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with a human message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Classifies an I/O error with [`FailureKind::from_io_error`], keeping its text.
    pub fn from_io_error(error: &io::Error) -> Failure {
        Failure::new(FailureKind::from_io_error(error), error.to_string())
    }

    /// Classifies a server error by SQLSTATE; unknown codes become [`FailureKind::Other`].
    pub fn from_sqlstate(code: &str, message: impl Into<String>) -> Failure {
        let kind = FailureKind::from_sqlstate(code).unwrap_or(FailureKind::Other);
        Failure::new(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        assert_eq!(
            FailureKind::from_sqlstate("28P01"),
            Some(FailureKind::AuthFailed)
        );
        assert_eq!(
            FailureKind::from_sqlstate("28000"),
            Some(FailureKind::AuthFailed)
        );
        assert_eq!(
            FailureKind::from_sqlstate("3D000"),
            Some(FailureKind::DatabaseMissing)
        );
        assert_eq!(
            FailureKind::from_sqlstate("53300"),
            Some(FailureKind::TooManyConnections)
        );
        assert_eq!(
            FailureKind::from_sqlstate("57P03"),
            Some(FailureKind::StartingUp)
        );
        assert_eq!(
            FailureKind::from_sqlstate("57P01"),
            Some(FailureKind::ShuttingDown)
        );
        assert_eq!(
            FailureKind::from_sqlstate("57P02"),
            Some(FailureKind::ShuttingDown)
        );
        assert_eq!(FailureKind::from_sqlstate("42P01"), None);
        assert_eq!(
            Failure::from_sqlstate("42P01", "x").kind,
            FailureKind::Other
        );
    }

    #[test]
    fn io_errors_map_to_kinds() {
        let kind =
            |k: io::ErrorKind, msg: &str| FailureKind::from_io_error(&io::Error::new(k, msg));
        assert_eq!(
            kind(io::ErrorKind::ConnectionRefused, "x"),
            FailureKind::Refused
        );
        assert_eq!(kind(io::ErrorKind::TimedOut, "x"), FailureKind::Timeout);
        assert_eq!(kind(io::ErrorKind::NotFound, "x"), FailureKind::Dns);
        assert_eq!(
            kind(
                io::ErrorKind::Other,
                "failed to lookup address information: Name or service not known"
            ),
            FailureKind::Dns
        );
        assert_eq!(
            kind(io::ErrorKind::InvalidData, "invalid peer certificate"),
            FailureKind::Tls
        );
        assert_eq!(
            kind(io::ErrorKind::ConnectionReset, "reset by peer"),
            FailureKind::Other
        );
    }

    #[test]
    fn configuration_problems_are_auth_and_missing_database_only() {
        let config: Vec<_> = FailureKind::ALL
            .into_iter()
            .filter(|k| k.is_configuration_problem())
            .collect();
        assert_eq!(
            config,
            vec![FailureKind::AuthFailed, FailureKind::DatabaseMissing]
        );
    }

    #[test]
    fn labels_are_distinct_snake_case() {
        let mut labels: Vec<_> = FailureKind::ALL.iter().map(|k| k.label()).collect();
        assert!(labels
            .iter()
            .all(|l| l.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), FailureKind::ALL.len());
    }
}
