//! Calm resilience: knowing whether the upstream database is there, without drama.
//!
//! Each concern is a pure state machine fed events and `now`, returning decisions or
//! deadlines (tested with a fake clock); one thin tokio driver runs them.
//!
//! | file | owns |
//! |---|---|
//! | `failure.rs` | [`FailureKind`] / [`Failure`]: classification by SQLSTATE or I/O error |
//! | `schedule.rs` | [`RetrySchedule`]: exponential backoff with jitter |
//! | `breaker.rs` | [`CircuitBreaker`]: Closed / Open / HalfOpen with one trial |
//! | `status.rs` | [`UpstreamState`], [`Environment`], [`StatusSummary`], [`OrphanCleanup`] |
//! | `transition.rs` | [`Transition`]: one event and one log line per state change |
//! | `monitor.rs` | [`UpstreamMonitor`]: the status state machine and probe cadence |
//! | `startup.rs` | [`StartupPolicy`]: attempts before starting, or giving up |
//! | `orphan.rs` | [`InstanceTag`], [`select_orphans`]: backends of dead instances |
//! | `probe.rs` | [`Probe`] (injectable) and [`TcpProbe`] |
//! | `prober.rs` | [`Prober`]: the tokio driver; [`ProberHandle`] |
//!
//! The pool (through the connectors of the library and the proxy) consumes these types; that
//! wiring lives in those crates.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use pgwarden_resilience::{Failure, FailureKind, MonitorConfig, UpstreamMonitor, UpstreamState};
//!
//! let t0 = Instant::now();
//! let mut monitor = UpstreamMonitor::new(MonitorConfig::default(), t0);
//! assert_eq!(monitor.next_probe_at(), Some(t0));
//!
//! let refused = Failure::new(FailureKind::Refused, "connection refused");
//! let event = monitor.on_probe_failure(t0, refused.clone()).expect("state changed");
//! assert_eq!(event.to, UpstreamState::Unavailable { reason: FailureKind::Refused });
//! // The same failure again is not news.
//! assert!(monitor.on_probe_failure(t0 + Duration::from_secs(10), refused).is_none());
//! ```

mod breaker;
mod duration_text;
mod failure;
mod monitor;
mod orphan;
mod probe;
mod prober;
mod schedule;
mod startup;
mod status;
mod transition;

pub use breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker, Unavailable};
pub use duration_text::DurationText;
pub use failure::{Failure, FailureKind};
pub use monitor::{MonitorConfig, UpstreamMonitor, DEMAND_PROBE_INTERVAL};
pub use orphan::{
    select_orphans, BackendRow, InstanceTag, OrphanPolicy, APPLICATION_NAME_MAX, ORPHAN_QUERY,
    TERMINATE_SQL,
};
pub use probe::{Probe, TcpProbe};
pub use prober::{Prober, ProberHandle};
pub use schedule::{RetryConfig, RetrySchedule};
pub use startup::{StartupAttempts, StartupDecision, StartupPolicy};
pub use status::{Environment, OrphanCleanup, StatusSummary, UpstreamState};
pub use transition::{Severity, Transition, TransitionEvent};
