//! The driver over simulated outages in paused tokio time: probes, transitions, log lines.

use std::time::Duration;

use pgwarden_resilience::{
    Environment, Failure, FailureKind, MonitorConfig, Prober, RetryConfig, Transition,
    TransitionEvent, UpstreamState,
};
use tokio::sync::broadcast;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::fake_probe::FakeProbe;
use crate::log_capture::LogLines;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn config(environment: Environment) -> MonitorConfig {
    let mut config = MonitorConfig {
        environment,
        ..MonitorConfig::default()
    };
    config.retry = RetryConfig::default().without_jitter();
    config.breaker.retry = RetryConfig::default().without_jitter();
    config
}

fn refused() -> Result<(), Failure> {
    Err(Failure::new(FailureKind::Refused, "connection refused"))
}

fn drain(rx: &mut broadcast::Receiver<Transition>) -> Vec<Transition> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[tokio::test(start_paused = true)]
async fn ten_minute_outage_is_one_warning_and_one_recovery() {
    let (logs, _guard) = LogLines::install();
    let probe = FakeProbe::new(Ok(()));
    let prober = Prober::new(probe.clone(), config(Environment::Production));
    let handle = prober.handle();
    let mut transitions = handle.subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(prober.run(cancel.clone()));

    sleep(secs(25)).await; // healthy probes at 0, 10, 20
    probe.set(refused());
    sleep(secs(600)).await; // failures at 30, 40, 60, 100, 180, 340; next due at 660
    assert_eq!(
        handle.state(),
        UpstreamState::Unavailable {
            reason: FailureKind::Refused
        }
    );
    assert_eq!(probe.calls(), 9);
    probe.set(Ok(()));
    sleep(secs(58)).await; // success at 660, then 670, 680; now 683

    assert_eq!(probe.calls(), 12);
    let seen = drain(&mut transitions);
    let states: Vec<_> = seen.iter().map(|t| t.to.label()).collect();
    assert_eq!(states, ["available", "unavailable", "available"]);
    assert_eq!(
        seen[2].event,
        TransitionEvent::Available {
            outage: Some(secs(630))
        }
    );

    // Production: the outage's end is as loud as its start; only the first success is info.
    assert_eq!(logs.all().len(), 3, "{:?}", logs.all());
    assert_eq!(
        logs.at(Level::WARN),
        [
            "upstream unavailable: connection refused: connection refused; next try in 10s",
            "upstream available again after 10m30s outage"
        ]
    );
    assert_eq!(logs.at(Level::INFO), ["upstream available"]);
    assert_eq!(handle.status().borrow().state, UpstreamState::Available);
    assert!(handle.cached_available(), "last success 3 s ago");
    sleep(secs(3)).await;
    assert!(!handle.cached_available(), "last success 6 s ago");

    cancel.cancel();
    task.await.expect("prober task");
}

#[tokio::test(start_paused = true)]
async fn development_pauses_then_client_demand_resumes() {
    let (logs, _guard) = LogLines::install();
    let probe = FakeProbe::new(refused());
    let prober = Prober::new(probe.clone(), config(Environment::Development));
    let handle = prober.handle();
    let mut transitions = handle.subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(prober.run(cancel.clone()));

    sleep(secs(3600)).await;
    assert_eq!(
        probe.calls(),
        5,
        "probes at 0, 10, 30, 70, 150, then paused"
    );
    assert!(!handle.summary().will_retry);
    assert_eq!(drain(&mut transitions).len(), 2);
    assert_eq!(logs.at(Level::WARN).len(), 1);
    let info = logs.at(Level::INFO);
    assert_eq!(info.len(), 1);
    assert!(
        info[0].contains("background probing paused until a client asks"),
        "{info:?}"
    );

    probe.set(Ok(()));
    handle.client_demand();
    sleep(secs(1)).await;
    assert_eq!(probe.calls(), 6);
    assert_eq!(handle.state(), UpstreamState::Available);
    let seen = drain(&mut transitions);
    assert_eq!(seen.len(), 1);
    assert!(matches!(
        seen[0].event,
        TransitionEvent::Available { outage: Some(_) }
    ));
    assert_eq!(logs.all().len(), 3);
    // Development: recovery is a note, not a warning.
    assert_eq!(logs.at(Level::WARN).len(), 1, "{:?}", logs.all());
    assert!(
        logs.at(Level::INFO)
            .iter()
            .any(|l| l.starts_with("upstream available again after")),
        "{:?}",
        logs.all()
    );

    cancel.cancel();
    task.await.expect("prober task");
}

#[tokio::test(start_paused = true)]
async fn configuration_error_is_logged_once_and_retried_at_the_cap() {
    let (logs, _guard) = LogLines::install();
    let auth = Failure::from_sqlstate("28P01", "password authentication failed for user \"app\"");
    let probe = FakeProbe::new(Err(auth));
    let prober = Prober::new(probe.clone(), config(Environment::Production));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(prober.run(cancel.clone()));

    sleep(secs(3500)).await;
    assert_eq!(probe.calls(), 6, "0, 600, 1200, 1800, 2400, 3000");
    assert_eq!(logs.all().len(), 1, "{:?}", logs.all());
    assert_eq!(logs.at(Level::ERROR).len(), 1);

    cancel.cancel();
    task.await.expect("prober task");
}

#[tokio::test(start_paused = true)]
async fn reset_probes_at_once_and_cancel_stops_probing() {
    let probe = FakeProbe::new(refused());
    let prober = Prober::new(probe.clone(), config(Environment::Production));
    let handle = prober.handle();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(prober.run(cancel.clone()));

    sleep(secs(75)).await; // 0, 10, 30, 70; next at 150
    assert_eq!(probe.calls(), 4);
    handle.reset();
    sleep(secs(1)).await;
    assert_eq!(probe.calls(), 5, "reset probes now");
    assert_eq!(handle.summary().consecutive_failures, 1);
    assert_eq!(handle.summary().current_retry_delay, Some(secs(10)));

    cancel.cancel();
    task.await.expect("prober task");
    sleep(secs(3600)).await;
    assert_eq!(probe.calls(), 5, "no probes after cancellation");
}

#[tokio::test(start_paused = true)]
async fn a_failed_client_connect_brings_the_probe_forward() {
    let probe = FakeProbe::new(Ok(()));
    let prober = Prober::new(probe.clone(), config(Environment::Production));
    let handle = prober.handle();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(prober.run(cancel.clone()));

    sleep(secs(12)).await; // healthy probes at 0 and 10; the next tick is due at 20
    assert_eq!(probe.calls(), 2);
    // The server crashes; a client's connect fails. State Available, breaker closed (1 of 5).
    probe.set(refused());
    let failure = Failure::new(FailureKind::Refused, "connection refused");
    handle.report_client_failure(&failure);
    // Still within the 5 s success cache of the probe at 10: no probe yet.
    sleep(Duration::from_millis(2900)).await; // 14.9 s
    assert_eq!(
        probe.calls(),
        2,
        "the success at 10 s is trusted until 15 s"
    );
    // Many more failures meanwhile still make one probe, at 15 s, not one each.
    for _ in 0..10 {
        handle.report_client_failure(&failure);
    }
    sleep(Duration::from_millis(200)).await; // 15.1 s
    assert_eq!(
        probe.calls(),
        3,
        "one probe at 15 s, five seconds before the tick"
    );
    assert_eq!(
        handle.state(),
        UpstreamState::Unavailable {
            reason: FailureKind::Refused
        }
    );

    cancel.cancel();
    task.await.expect("prober task");
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_600_s_cap_and_stays_there() {
    let probe = FakeProbe::new(refused());
    let prober = Prober::new(probe.clone(), config(Environment::Production));
    let handle = prober.handle();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(prober.run(cancel.clone()));

    // Probes at 0, 10, 30, 70, 150, 310, 630, 1230, 1830: check just after each one.
    let mut delays = Vec::new();
    let mut at = 0;
    for delay in [10, 20, 40, 80, 160, 320, 600, 600] {
        sleep(secs(1)).await;
        assert_eq!(probe.calls(), delays.len() as u32 + 1, "probed at {at} s");
        let summary = handle.summary();
        delays.push(summary.current_retry_delay.expect("retrying").as_secs());
        assert_eq!(summary.next_probe_in, Some(secs(delay - 1)));
        at += delay;
        sleep(secs(delay - 1)).await;
    }
    assert_eq!(delays, [10, 20, 40, 80, 160, 320, 600, 600]);
    sleep(secs(1)).await;
    assert_eq!(probe.calls(), 9);
    assert_eq!(handle.summary().current_retry_delay, Some(secs(600)));

    cancel.cancel();
    task.await.expect("prober task");
}
