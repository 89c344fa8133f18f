//! The monitor driven over simulated outages with a fake clock.

use std::time::{Duration, Instant};

use super::*;
use crate::failure::FailureKind;
use crate::transition::Severity;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(environment: Environment) -> MonitorConfig {
    MonitorConfig {
        environment,
        retry: RetryConfig::default().without_jitter(),
        breaker: BreakerConfig {
            failure_threshold: 5,
            retry: RetryConfig::default().without_jitter(),
        },
        ..MonitorConfig::default()
    }
}

fn refused() -> Failure {
    Failure::new(FailureKind::Refused, "connection refused")
}

/// What a simulation run observed.
struct Run {
    /// Offsets from the start at which probes ran.
    probes: Vec<Duration>,
    transitions: Vec<Transition>,
}

/// Probes at every `next_probe_at` until `end`; `outcome(offset)` says what the probe sees.
fn simulate(
    monitor: &mut UpstreamMonitor,
    t0: Instant,
    end: Duration,
    outcome: impl Fn(Duration) -> Result<(), Failure>,
) -> Run {
    let mut run = Run {
        probes: Vec::new(),
        transitions: Vec::new(),
    };
    while let Some(at) = monitor.next_probe_at() {
        if at > t0 + end {
            break;
        }
        let offset = at - t0;
        run.probes.push(offset);
        let transition = match outcome(offset) {
            Ok(()) => monitor.on_probe_success(at),
            Err(failure) => monitor.on_probe_failure(at, failure),
        };
        run.transitions.extend(transition);
    }
    run
}

#[test]
fn ten_minute_outage_gives_exactly_two_transitions() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    // Up for the first 25 s, down for 10 minutes, then up again.
    let down = |at: Duration| at >= secs(25) && at < secs(625);
    let run = simulate(&mut monitor, t0, secs(1200), |at| {
        if down(at) {
            Err(refused())
        } else {
            Ok(())
        }
    });
    // First probe at 0 (Unknown -> Available), healthy probes at 10 and 20, the outage is seen
    // at 30, then 10, 20, 40, 80, 160 s later, then 320 s later (at 660) it is back.
    let outage_probes: Vec<_> = run.probes.iter().copied().filter(|p| down(*p)).collect();
    assert_eq!(
        outage_probes,
        vec![
            secs(30),
            secs(40),
            secs(60),
            secs(100),
            secs(180),
            secs(340)
        ]
    );
    assert!(run.probes.contains(&secs(660)));

    let events: Vec<_> = run.transitions.iter().map(|t| (t.from, t.to)).collect();
    let unavailable = UpstreamState::Unavailable {
        reason: FailureKind::Refused,
    };
    assert_eq!(
        events,
        vec![
            (UpstreamState::Unknown, UpstreamState::Available),
            (UpstreamState::Available, unavailable),
            (unavailable, UpstreamState::Available),
        ]
    );
    let recovered = &run.transitions[2];
    assert_eq!(
        recovered.event,
        TransitionEvent::Available {
            outage: Some(secs(630))
        }
    );
    assert_eq!(
        recovered.to_string(),
        "upstream available again after 10m30s outage"
    );
    assert_eq!(run.transitions[1].severity(), Severity::Warn);
    // Production: the recovery is a warning too; the first success after start is not.
    assert_eq!(recovered.severity(), Severity::Warn);
    assert_eq!(run.transitions[0].severity(), Severity::Info);
    let mut in_development = recovered.clone();
    in_development.environment = Environment::Development;
    assert_eq!(in_development.severity(), Severity::Info);
    assert_eq!(
        run.transitions[1].to_string(),
        "upstream unavailable: connection refused: connection refused; next try in 10s"
    );
}

#[test]
fn production_keeps_probing_on_the_schedule() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    let run = simulate(&mut monitor, t0, secs(3600), |_| Err(refused()));
    // 0, 10, 30, 70, 150, 310, 630, then every 600 s: 1230, 1830, 2430, 3030.
    let expected: Vec<_> = [0, 10, 30, 70, 150, 310, 630, 1230, 1830, 2430, 3030]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(run.probes, expected);
    // Within the first 10 minutes: 10+20+40+80+160 and the rest of 600 wait for the 320 s step.
    assert_eq!(run.probes.iter().filter(|p| **p <= secs(600)).count(), 6);
    assert_eq!(run.transitions.len(), 1, "one event for the whole hour");
    assert!(
        monitor.next_probe_at().is_some(),
        "production never gives up"
    );
    let summary = monitor.summary(t0 + secs(3030));
    assert_eq!(summary.consecutive_failures, 11);
    assert_eq!(summary.current_retry_delay, Some(secs(600)));
    assert!(summary.will_retry);
    assert_eq!(summary.breaker, BreakerState::Open);
}

#[test]
fn reason_change_is_one_transition_only_when_the_kind_changes() {
    let t0 = Instant::now();
    let mut m = UpstreamMonitor::new(config(Environment::Production), t0);
    assert!(m.on_probe_failure(t0, refused()).is_some());
    assert!(m.on_probe_failure(t0 + secs(10), refused()).is_none());
    let timeout = Failure::new(FailureKind::Timeout, "connect timed out after 2s");
    let changed = m.on_probe_failure(t0 + secs(30), timeout.clone());
    let changed = changed.expect("kind changed");
    assert_eq!(
        changed.to,
        UpstreamState::Unavailable {
            reason: FailureKind::Timeout
        }
    );
    assert!(
        changed.to_string().contains("was: connection refused"),
        "{changed}"
    );
    assert!(m.on_probe_failure(t0 + secs(70), timeout).is_none());
}

#[test]
fn development_pauses_after_five_failures_and_resumes_on_demand() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Development), t0);
    let run = simulate(&mut monitor, t0, secs(3600), |_| Err(refused()));
    assert_eq!(
        run.probes,
        vec![secs(0), secs(10), secs(30), secs(70), secs(150)]
    );
    assert_eq!(run.transitions.len(), 2);
    let paused = &run.transitions[1];
    assert!(matches!(
        paused.event,
        TransitionEvent::ProbingPaused {
            consecutive_failures: 5,
            ..
        }
    ));
    assert!(paused
        .to_string()
        .contains("assuming a local setup without a database"));
    assert_eq!(monitor.next_probe_at(), None);
    assert!(!monitor.summary(t0 + secs(200)).will_retry);

    // A client asks: one probe now. Still down: paused again, silently.
    let asked = t0 + secs(4000);
    assert!(monitor.on_client_demand(asked));
    assert_eq!(monitor.next_probe_at(), Some(asked));
    assert!(monitor.on_probe_failure(asked, refused()).is_none());
    assert_eq!(monitor.next_probe_at(), None);

    // Next time the database is there.
    let asked = t0 + secs(5000);
    assert!(monitor.on_client_demand(asked));
    let back = monitor
        .on_probe_success(asked)
        .expect("recovery is a transition");
    assert_eq!(
        back.event,
        TransitionEvent::Available {
            outage: Some(secs(5000))
        }
    );
    assert_eq!(monitor.next_probe_at(), Some(asked + secs(10)));
}

#[test]
fn reset_forgets_failures_and_probes_now() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Development), t0);
    simulate(&mut monitor, t0, secs(600), |_| Err(refused()));
    assert_eq!(monitor.next_probe_at(), None);
    let later = t0 + secs(900);
    monitor.reset(later);
    assert_eq!(monitor.next_probe_at(), Some(later));
    assert_eq!(monitor.summary(later).consecutive_failures, 0);
    assert_eq!(monitor.breaker_state(), BreakerState::Closed);
    assert!(
        monitor.on_probe_failure(later, refused()).is_none(),
        "same state, no event"
    );
    assert_eq!(
        monitor.next_probe_at(),
        Some(later + secs(10)),
        "schedule restarted"
    );
}

#[test]
fn force_check_probes_now_without_forgetting() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    monitor.on_probe_failure(t0, refused());
    monitor.on_probe_failure(t0 + secs(10), refused());
    monitor.force_check(t0 + secs(12));
    assert!(monitor.probe_due(t0 + secs(12)));
    monitor.on_probe_failure(t0 + secs(12), refused());
    assert_eq!(monitor.next_probe_at(), Some(t0 + secs(12 + 40)));
}

#[test]
fn configuration_problems_are_reported_once_and_retried_slowly() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    let auth =
        || Failure::from_sqlstate("28P01", "password authentication failed for user \"app\"");
    let run = simulate(&mut monitor, t0, secs(3000), |_| Err(auth()));
    let expected: Vec<_> = [0, 600, 1200, 1800, 2400, 3000]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(run.probes, expected);
    assert_eq!(run.transitions.len(), 1);
    let t = &run.transitions[0];
    assert_eq!(t.severity(), Severity::Error);
    assert!(matches!(
        t.event,
        TransitionEvent::ConfigurationError { .. }
    ));
    assert!(t.to_string().contains("fix the configuration"), "{t}");
    assert!(t.to_string().contains("retrying every 10m"), "{t}");
}

#[test]
fn success_cache_lasts_five_seconds() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    assert!(!monitor.cached_available(t0));
    monitor.on_probe_success(t0);
    assert!(monitor.cached_available(t0 + Duration::from_millis(4999)));
    assert!(!monitor.cached_available(t0 + secs(5)));
    monitor.on_probe_success(t0 + secs(10));
    monitor.on_probe_failure(t0 + secs(11), refused());
    assert!(
        !monitor.cached_available(t0 + secs(12)),
        "a failure voids the cache"
    );
}

#[test]
fn breaker_fails_clients_fast_while_open() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    for i in 0..5 {
        assert!(monitor.admit(t0 + secs(i)).is_ok());
        monitor.on_probe_failure(t0 + secs(i), refused());
    }
    let err = monitor.admit(t0 + secs(5)).expect_err("breaker open");
    assert!(
        err.to_string().starts_with("upstream unavailable since"),
        "{err}"
    );
    assert_eq!(err.retry_in, secs(9));
    // The client trial after the delay succeeds: the upstream is back.
    assert_eq!(monitor.admit(t0 + secs(14)), Ok(Admission::Trial));
    let back = monitor
        .on_client_success(t0 + secs(14))
        .expect("transition");
    assert_eq!(back.to, UpstreamState::Available);
    assert_eq!(monitor.admit(t0 + secs(14)), Ok(Admission::Allowed));
}

#[test]
fn client_demand_brings_the_next_probe_forward_at_most_once_per_demand_interval() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    for i in 0..6 {
        monitor.on_probe_failure(t0 + secs(i), refused());
    }
    let scheduled = monitor.next_probe_at().unwrap();
    assert!(scheduled > t0 + secs(60), "deep in the backoff");
    // Within DEMAND_PROBE_INTERVAL of the last probe (at 5 s): the probe comes forward, but
    // only to that interval after the last one.
    let early = t0 + secs(5) + Duration::from_millis(200);
    assert!(
        monitor.on_client_demand(early),
        "schedule changed: wake the driver"
    );
    assert_eq!(
        monitor.next_probe_at(),
        Some(t0 + secs(5) + DEMAND_PROBE_INTERVAL)
    );
    assert!(!monitor.probe_due(early));
    // Later: due now.
    let asked = t0 + secs(7);
    assert!(monitor.on_client_demand(asked));
    assert!(monitor.probe_due(asked));
    let back = monitor.on_probe_success(asked).unwrap();
    assert!(matches!(back.event, TransitionEvent::Available { .. }));
}

#[test]
fn a_failed_client_attempt_while_healthy_brings_a_probe_forward() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    monitor.on_probe_success(t0);
    assert_eq!(monitor.next_probe_at(), Some(t0 + secs(10)));
    // The breaker is still closed (one failure of five) and the state still Available, yet the
    // failure is worth a look: as soon as the 5 s success cache runs out, not at the 10 s tick.
    assert!(monitor.on_client_failure(t0 + secs(2), &refused()));
    assert_eq!(monitor.breaker_state(), BreakerState::Closed);
    assert_eq!(monitor.state(), UpstreamState::Available);
    assert_eq!(monitor.next_probe_at(), Some(t0 + secs(5)));
    // Past the cache: due at once.
    monitor.on_probe_success(t0 + secs(5));
    assert!(monitor.on_client_failure(t0 + secs(11), &refused()));
    assert!(monitor.probe_due(t0 + secs(11)));
}

#[test]
fn client_failures_bring_at_most_one_probe_forward() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    monitor.on_probe_success(t0);
    // A probe is running: failures meanwhile schedule nothing more.
    assert!(monitor.probe_due(t0 + secs(10)));
    assert!(
        !monitor.begin_probe(t0 + secs(10)),
        "a cached probe is fine"
    );
    let before = monitor.next_probe_at();
    monitor.on_client_failure(t0 + secs(11), &refused());
    assert_eq!(monitor.next_probe_at(), before);
    monitor.on_probe_failure(t0 + secs(12), refused());
    let scheduled = monitor.next_probe_at();
    assert_eq!(scheduled, Some(t0 + secs(22)));
    // Suspect now: further failures bring it forward to half a second after that probe, no
    // nearer.
    monitor.on_client_failure(t0 + secs(12), &refused());
    monitor.on_client_failure(t0 + secs(12), &refused());
    assert_eq!(
        monitor.next_probe_at(),
        Some(t0 + secs(12) + DEMAND_PROBE_INTERVAL)
    );
    assert_eq!(DEMAND_PROBE_INTERVAL, Duration::from_millis(500));
}

#[test]
fn force_check_and_reset_ask_for_an_uncached_probe_once() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    assert!(!monitor.begin_probe(t0));
    monitor.on_probe_success(t0);
    assert!(monitor.cached_available(t0 + secs(1)));
    monitor.force_check(t0 + secs(1));
    assert!(
        !monitor.cached_available(t0 + secs(1)),
        "a forced check trusts nothing"
    );
    assert!(monitor.begin_probe(t0 + secs(1)), "forced: uncached");
    monitor.on_probe_success(t0 + secs(1));
    assert!(!monitor.begin_probe(t0 + secs(11)), "only once");
    monitor.on_probe_success(t0 + secs(11));
    monitor.reset(t0 + secs(12));
    assert!(monitor.begin_probe(t0 + secs(12)), "reset: uncached");
}

#[test]
fn orphan_cleanup_shows_in_the_summary() {
    let t0 = Instant::now();
    let mut monitor = UpstreamMonitor::new(config(Environment::Production), t0);
    assert_eq!(monitor.summary(t0).last_orphan_cleanup, None);
    let cleanup = OrphanCleanup {
        found: 3,
        terminated: 2,
        denied: 1,
        at: std::time::SystemTime::UNIX_EPOCH,
    };
    monitor.on_orphan_cleanup(cleanup.clone());
    assert_eq!(monitor.summary(t0).last_orphan_cleanup, Some(cleanup));
}
