//! The readiness decision behind `/ready`: a pure function of a snapshot and `now`.
//!
//! Ready means "send clients here": not shutting down, and the upstream available. Two
//! choices worth stating:
//! - no upstream monitor at all (a snapshot without [`StatusSummary`]) counts as ready: nothing
//!   is known that could make clients fail, and the process is serving;
//! - a monitor that has not finished its first probe (`unknown`) counts as not ready. The
//!   prober probes as soon as it starts, so this lasts one probe at most, and clients sent
//!   before it ends might meet a database that is not there.

use std::time::Instant;

use pgwarden_resilience::{DurationText, StatusSummary, UpstreamState};

use crate::source::AdminSnapshot;

/// The answer of `/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Send clients here (`200 ok`).
    Ready,
    /// Do not (`503`), with a one-line reason for people.
    NotReady(String),
}

/// Decides readiness from `snapshot` at `now` (used only to say how long an outage has lasted).
pub fn readiness(snapshot: &AdminSnapshot, now: Instant) -> Readiness {
    if snapshot.shutting_down {
        return Readiness::NotReady("shutting down".to_string());
    }
    match &snapshot.upstream {
        None => Readiness::Ready,
        Some(status) => upstream_readiness(status, now),
    }
}

fn upstream_readiness(status: &StatusSummary, now: Instant) -> Readiness {
    match status.state {
        UpstreamState::Available => Readiness::Ready,
        UpstreamState::Unknown => {
            Readiness::NotReady("upstream not checked yet (first probe running)".to_string())
        }
        UpstreamState::Unavailable { reason } => {
            let mut line = format!("upstream unavailable ({reason})");
            if let Some(at) = status.changed_at {
                let since = now.saturating_duration_since(at);
                line.push_str(&format!(" for {}", DurationText(since)));
            }
            if let Some(error) = &status.last_error {
                // One line: the driver's message may span several.
                let message = error
                    .message
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                line.push_str(&format!(": {message}"));
            }
            Readiness::NotReady(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pgwarden_resilience::{BreakerState, Environment, Failure, FailureKind};

    use super::*;

    fn summary(state: UpstreamState, changed_at: Option<Instant>) -> StatusSummary {
        StatusSummary {
            state,
            consecutive_failures: 0,
            current_retry_delay: None,
            next_probe_in: None,
            will_retry: true,
            environment: Environment::Production,
            breaker: BreakerState::Closed,
            last_error: None,
            changed_at,
            last_orphan_cleanup: None,
        }
    }

    #[test]
    fn ready_without_a_monitor_and_with_the_upstream_available() {
        let now = Instant::now();
        assert_eq!(readiness(&AdminSnapshot::default(), now), Readiness::Ready);
        let snapshot = AdminSnapshot {
            upstream: Some(summary(UpstreamState::Available, Some(now))),
            ..Default::default()
        };
        assert_eq!(readiness(&snapshot, now), Readiness::Ready);
    }

    #[test]
    fn shutting_down_wins_over_an_available_upstream() {
        let now = Instant::now();
        let snapshot = AdminSnapshot {
            upstream: Some(summary(UpstreamState::Available, Some(now))),
            shutting_down: true,
            ..Default::default()
        };
        let expected = Readiness::NotReady("shutting down".into());
        assert_eq!(readiness(&snapshot, now), expected);
    }

    #[test]
    fn unavailable_says_why_and_for_how_long_on_one_line() {
        let since = Instant::now();
        let mut status = summary(
            UpstreamState::Unavailable {
                reason: FailureKind::Refused,
            },
            Some(since),
        );
        status.last_error = Some(Failure::new(
            FailureKind::Refused,
            "127.0.0.1:5432:\n  Connection refused",
        ));
        let snapshot = AdminSnapshot {
            upstream: Some(status),
            ..Default::default()
        };
        let later = since + Duration::from_secs(75);
        assert_eq!(
            readiness(&snapshot, later),
            Readiness::NotReady(
                "upstream unavailable (connection refused) for 1m15s: \
                 127.0.0.1:5432: Connection refused"
                    .into()
            )
        );
    }

    #[test]
    fn unknown_is_not_ready_yet() {
        let snapshot = AdminSnapshot {
            upstream: Some(summary(UpstreamState::Unknown, None)),
            ..Default::default()
        };
        let Readiness::NotReady(reason) = readiness(&snapshot, Instant::now()) else {
            panic!("unknown must not be ready");
        };
        assert!(reason.starts_with("upstream not checked yet"), "{reason}");
    }
}
