//! Breaker transitions driven by a fake clock.

use std::time::{Duration, Instant};

use super::*;
use crate::FailureKind;

fn breaker() -> CircuitBreaker {
    CircuitBreaker::new(BreakerConfig {
        failure_threshold: 5,
        retry: RetryConfig::default().without_jitter(),
    })
}

fn refused() -> Failure {
    Failure::new(FailureKind::Refused, "connection refused (os error 111)")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn opens_after_threshold_consecutive_failures() {
    let t0 = Instant::now();
    let mut b = breaker();
    for i in 0..4 {
        assert_eq!(b.allow(t0), Admission::Allowed);
        b.on_failure(t0 + secs(i), &refused());
        assert_eq!(b.state(), BreakerState::Closed);
    }
    b.on_failure(t0 + secs(4), &refused());
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.retry_at(), Some(t0 + secs(14)));
    assert_eq!(
        b.allow(t0 + secs(5)),
        Admission::Rejected {
            since: t0 + secs(4),
            retry_at: t0 + secs(14)
        }
    );
}

#[test]
fn success_in_between_resets_the_count() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..4 {
        b.on_failure(t0, &refused());
    }
    b.on_success(t0);
    for _ in 0..4 {
        b.on_failure(t0, &refused());
    }
    assert_eq!(b.state(), BreakerState::Closed);
}

#[test]
fn exactly_one_half_open_trial() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..5 {
        b.on_failure(t0, &refused());
    }
    let open_until = t0 + secs(10);
    assert!(matches!(
        b.allow(open_until - Duration::from_millis(1)),
        Admission::Rejected { .. }
    ));
    assert_eq!(b.allow(open_until), Admission::Trial);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    for _ in 0..3 {
        assert_eq!(
            b.allow(open_until),
            Admission::Rejected {
                since: t0,
                retry_at: open_until
            }
        );
    }
}

#[test]
fn failed_trial_reopens_with_longer_delay_and_success_closes() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..5 {
        b.on_failure(t0, &refused());
    }
    let t1 = t0 + secs(10);
    assert_eq!(b.allow(t1), Admission::Trial);
    b.on_failure(t1, &refused());
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.retry_at(), Some(t1 + secs(20)));

    let t2 = t1 + secs(20);
    assert_eq!(b.allow(t2), Admission::Trial);
    b.on_failure(t2, &refused());
    assert_eq!(
        b.retry_at(),
        Some(t2 + secs(40)),
        "third opening waits 40 s"
    );

    let t3 = t2 + secs(40);
    assert_eq!(b.allow(t3), Admission::Trial);
    b.on_success(t3);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.allow(t3), Admission::Allowed);

    // Schedule was reset: the next opening is 10 s again.
    for _ in 0..5 {
        b.on_failure(t3, &refused());
    }
    assert_eq!(b.retry_at(), Some(t3 + secs(10)));
}

#[test]
fn late_failure_while_open_keeps_timing() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..5 {
        b.on_failure(t0, &refused());
    }
    b.on_failure(t0 + secs(3), &Failure::new(FailureKind::Timeout, "slow"));
    assert_eq!(b.retry_at(), Some(t0 + secs(10)));
    assert_eq!(b.last_failure().map(|f| f.kind), Some(FailureKind::Timeout));
}

#[test]
fn fail_fast_error_names_since_reason_and_next_try() {
    let t0 = Instant::now();
    let mut b = breaker();
    for _ in 0..5 {
        b.on_failure(t0, &refused());
    }
    let t1 = t0 + secs(10);
    assert_eq!(b.allow(t1), Admission::Trial);
    b.on_failure(t1, &refused());
    let Err(err) = b.check(t1 + secs(5)) else {
        panic!("expected a rejection")
    };
    assert_eq!(
        err.to_string(),
        "upstream unavailable since 15s ago (connection refused: connection refused \
         (os error 111)), next try in 15s"
    );
    assert_eq!(err.since, t0);
    assert!(
        b.check(t1 + secs(20)).is_ok(),
        "trial allowed after the delay"
    );
}
