//! Calm resilience against a real cluster: the upstream down at start (development pauses,
//! production keeps trying, required refuses), kill -9 under load and restart on the same
//! port, configuration errors classified, forced checks that really log in, fail-fast while
//! the breaker is open, orphans of a dead instance terminated (at start-up, or once the
//! upstream is back after a degraded start).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgwarden::{Error, PoolError, Warden};
use pgwarden_resilience::{FailureKind, UpstreamState};
use pgwarden_testkit::{free_port, PgCluster};

use crate::common::{eventually, settings, warden, LogCapture};

/// Fast schedules so an outage plays out in about a second of real time.
const FAST: &[(&str, &str)] = &[
    ("retry.initial_delay", "50ms"),
    ("retry.max_delay", "200ms"),
    ("resilience.startup_attempts", "2"),
    ("resilience.startup_initial_delay", "50ms"),
    ("resilience.breaker_threshold", "3"),
    ("resilience.probe_timeout", "500ms"),
    ("pool.acquire_timeout", "500ms"),
    ("upstream.connect_timeout", "1s"),
];

fn dead_url() -> String {
    format!("postgres://postgres@127.0.0.1:{}/postgres", free_port())
}

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all = FAST.to_vec();
    all.extend_from_slice(extra);
    all
}

#[tokio::test]
async fn development_pauses_after_five_failures_and_logs_once() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let warden = Warden::new(settings(
        &dead_url(),
        &with(&[("environment", "development")]),
    ))
    .unwrap();
    warden.init().await.expect("starts degraded, not an error");
    let paused = eventually(Duration::from_secs(10), || async {
        warden.upstream_status().is_some_and(|s| !s.will_retry)
    })
    .await;
    let status = warden.upstream_status().unwrap();
    assert!(paused, "{status:?}");
    assert_eq!(status.consecutive_failures, 5);
    assert!(matches!(
        status.state,
        UpstreamState::Unavailable {
            reason: FailureKind::Refused
        }
    ));
    // A caller gets a clear, fast error instead of waiting.
    let started = Instant::now();
    let err = warden.connection().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("refused"), "{err}");
    let text = logs.text();
    assert_eq!(
        text.matches("assuming a local setup without a database")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("upstream unavailable:").count(), 1, "{text}");
    assert_eq!(
        text.lines().count(),
        3,
        "start-up, unavailable, paused: {text}"
    );
}

#[tokio::test]
async fn production_keeps_trying() {
    let warden = Warden::new(settings(
        &dead_url(),
        &with(&[("environment", "production")]),
    ))
    .unwrap();
    warden.init().await.unwrap();
    let kept_on = eventually(Duration::from_secs(10), || async {
        warden
            .upstream_status()
            .is_some_and(|s| s.consecutive_failures > 8)
    })
    .await;
    let status = warden.upstream_status().unwrap();
    assert!(kept_on && status.will_retry, "{status:?}");
}

#[tokio::test]
async fn require_upstream_refuses_to_start() {
    let warden = Warden::new(settings(
        &dead_url(),
        &with(&[("resilience.require_upstream", "true")]),
    ))
    .unwrap();
    let err = warden.init().await.unwrap_err();
    assert!(matches!(err, Error::UpstreamRequired(_)), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");

    // The binary: exit code 1 and one clear line.
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg("serve")
        .env("PGWARDEN_UPSTREAM_URL", dead_url())
        .env("PGWARDEN_REQUIRE_UPSTREAM", "true")
        .env("PGWARDEN_RESILIENCE_STARTUP_ATTEMPTS", "2")
        .env("PGWARDEN_RESILIENCE_STARTUP_INITIAL_DELAY", "50ms")
        .env("PGWARDEN_AUTH_TYPE", "trust")
        .env("PGWARDEN_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is required (require_upstream = true) but unavailable"),
        "{stderr}"
    );
}

#[tokio::test]
async fn wrong_password_and_missing_database_are_configuration_errors() {
    let cluster = PgCluster::builder()
        .auth(pgwarden_testkit::Auth::Password {
            superuser_password: "right".into(),
        })
        .start()
        .unwrap();
    let cases = [
        (
            cluster.url_with_password("postgres", "postgres", "wrong"),
            FailureKind::AuthFailed,
        ),
        (
            cluster.url_with_password("nosuchdb", "postgres", "right"),
            FailureKind::DatabaseMissing,
        ),
    ];
    for (url, kind) in cases {
        let logs = LogCapture::default();
        let guard = logs.install();
        let warden = Warden::new(settings(&url, FAST)).unwrap();
        warden.init().await.unwrap();
        let seen = eventually(Duration::from_secs(5), || async {
            warden
                .upstream_status()
                .is_some_and(|s| s.state == UpstreamState::Unavailable { reason: kind })
        })
        .await;
        let status = warden.upstream_status().unwrap();
        assert!(seen, "{status:?}");
        assert_eq!(status.last_error.as_ref().map(|f| f.kind), Some(kind));
        // Retried only slowly: at the schedule's cap.
        assert_eq!(status.current_retry_delay, Some(Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_millis(700)).await;
        drop(guard);
        let text = logs.text();
        assert_eq!(text.matches("fix the configuration").count(), 1, "{text}");
    }
}

/// Counts `crash-test#…` backends every 10 ms until `stop`, reconnecting while the server is
/// away; returns the largest count seen and how many samples were taken.
async fn sample_backends(url: String, stop: Arc<AtomicBool>) -> (i64, u32) {
    let (mut max, mut samples) = (0, 0);
    let mut client: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                client = Some(c);
            }
        }
        if let Some(c) = &client {
            match c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'crash-test#%'",
                    &[],
                )
                .await
            {
                Ok(row) => {
                    max = max.max(row.get::<_, i64>(0));
                    samples += 1;
                }
                Err(_) => client = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (max, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_recovers_within_a_second_without_leaks() {
    let mut cluster = PgCluster::builder().start().unwrap();
    let superuser_url = cluster.superuser_url();
    // Default backoff (10 s doubling to 600 s): recovery must not wait for it.
    let warden = Arc::new(warden(
        &cluster,
        "crash-test",
        &[
            ("pool.max_size", "3"),
            ("pool.min_size", "2"),
            ("environment", "production"),
            ("pool.acquire_timeout", "500ms"),
            ("resilience.breaker_threshold", "3"),
        ],
    ));
    warden.init().await.unwrap();
    let base = Instant::now();
    let killed = Arc::new(AtomicBool::new(false));
    // Milliseconds after `base` of the first query served that was sent after the kill.
    let first_ok_after_kill = Arc::new(AtomicI64::new(-1));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (w, stop) = (warden.clone(), stop.clone());
        let (killed, first_ok) = (killed.clone(), first_ok_after_kill.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let after_kill = killed.load(Ordering::Relaxed);
                match w.fetch_one("SELECT 1", &[]).await {
                    Ok(_) if after_kill => {
                        let at = base.elapsed().as_millis() as i64;
                        let _ =
                            first_ok.compare_exchange(-1, at, Ordering::AcqRel, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            errors
        }));
    }
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_backends(
        superuser_url.clone(),
        stop_sampling.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill9().unwrap();
    killed.store(true, Ordering::Relaxed);
    // When the restarted server first accepts a login: polled every 10 ms from now on.
    let accepts = tokio::spawn(async move {
        loop {
            if let Ok((c, conn)) =
                tokio_postgres::connect(&superuser_url, tokio_postgres::NoTls).await
            {
                let at = base.elapsed().as_millis() as i64;
                drop(c);
                drop(conn);
                return at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().unwrap();
        cluster
    })
    .await
    .unwrap();
    let accepted_at = accepts.await.unwrap();
    let served = eventually(Duration::from_secs(10), || async {
        first_ok_after_kill.load(Ordering::Acquire) >= 0
    })
    .await;
    assert!(served, "not served within 10 s of the restart");
    let recovery_ms = first_ok_after_kill.load(Ordering::Acquire) - accepted_at;
    eprintln!("first query served {recovery_ms} ms after the server accepted logins again");
    assert!(recovery_ms < 1000, "recovery took {recovery_ms} ms");
    // Load continues a while; then the pool holds at least min_size connections again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    assert!(errors > 0, "the outage was visible to callers as errors");
    let warmed = eventually(Duration::from_secs(5), || async {
        let status = warden.postgres_pool().status();
        status.idle + status.in_use >= 2 && cluster.count_backends("crash-test#%").await >= 2
    })
    .await;
    assert!(
        warmed,
        "pool back to min_size: {:?}",
        warden.postgres_pool().status()
    );
    stop_sampling.store(true, Ordering::Relaxed);
    let (max_backends, samples) = sampler.await.unwrap();
    assert!(samples > 20, "only {samples} samples of pg_stat_activity");
    assert!(
        max_backends <= 3,
        "{max_backends} server connections over a cap of 3 during the restart window"
    );
    let status = warden.upstream_status().unwrap();
    assert_eq!(status.state, UpstreamState::Available);
    warden.shutdown(Duration::from_secs(5)).await;
    let gone = eventually(Duration::from_secs(5), || async {
        cluster.count_backends("crash-test#%").await == 0
    })
    .await;
    assert!(gone);
}

#[tokio::test]
async fn orphans_of_a_dead_instance_are_terminated_and_others_spared() {
    let cluster = PgCluster::builder().start().unwrap();
    let admin = cluster.connect_superuser().await;
    // A "previous instance" of the same application left idle backends behind, plus an idle
    // backend of another application and an active one of the dead instance. Two other
    // applications' tags merely start with our name ("orphan-app2", "orphan-app#x"): spared.
    let mut planted = Vec::new();
    for app in [
        "orphan-app#deadbeef",
        "orphan-app#deadbeef",
        "someone-else",
        "orphan-app",
        "orphan-app2#deadbeef",
        "orphan-app#x#deadbeef",
    ] {
        let url = format!(
            "{}?application_name={}",
            cluster.url("postgres", "postgres"),
            app.replace('#', "%23")
        );
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        planted.push(c);
    }
    // One of the dead instance's backends was left inside a transaction: an orphan too.
    let url = format!(
        "{}?application_name=orphan-app%23cafebabe",
        cluster.url("postgres", "postgres")
    );
    let (in_tx, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    in_tx.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let busy = {
        let url = format!(
            "{}?application_name=orphan-app%23deadbeef",
            cluster.url("postgres", "postgres")
        );
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        tokio::spawn(async move { c.simple_query("SELECT pg_sleep(3)").await })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let warden = warden(
        &cluster,
        "orphan-app",
        &[
            ("resilience.orphan_idle_threshold", "1s"),
            ("pool.min_size", "1"),
        ],
    );
    warden.init().await.unwrap();
    let report = warden.last_orphan_report().expect("cleanup ran at init");
    assert_eq!(report.found, 3, "{report:?}");
    assert_eq!(report.terminated, 3);
    let summary = warden
        .upstream_status()
        .and_then(|s| s.last_orphan_cleanup)
        .expect("counts in the status summary");
    assert_eq!(
        (summary.found, summary.terminated, summary.denied),
        (3, 3, 0)
    );
    assert!(summary.at.elapsed().unwrap() < Duration::from_secs(60));
    let left: Vec<String> = admin
        .query("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'orphan-app%' OR application_name = 'someone-else' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let own = warden.instance_tag().application_name();
    assert!(left.contains(&"someone-else".to_string()), "{left:?}");
    assert!(
        left.contains(&"orphan-app".to_string()),
        "untagged backend spared: {left:?}"
    );
    assert!(left.contains(&own), "own connection spared: {left:?}");
    for other in ["orphan-app2#deadbeef", "orphan-app#x#deadbeef"] {
        assert!(
            left.contains(&other.to_string()),
            "{other} is another application's: {left:?}"
        );
    }
    assert!(
        !left.contains(&"orphan-app#cafebabe".to_string()),
        "idle in transaction terminated: {left:?}"
    );
    assert!(in_tx.simple_query("SELECT 1").await.is_err());
    assert_eq!(
        left.iter()
            .filter(|a| a.as_str() == "orphan-app#deadbeef")
            .count(),
        1,
        "only the active one stays: {left:?}"
    );
    // Running again finds nothing new.
    assert_eq!(warden.cleanup_orphans().await.unwrap().found, 0);
    let _ = busy.await;
    drop(planted);
    let _ = PoolError::Closed {
        pool: String::new(),
    };
}

#[tokio::test]
async fn with_the_breaker_open_a_caller_fails_fast_not_after_the_acquire_timeout() {
    let warden = Warden::new(settings(
        &dead_url(),
        &[
            ("environment", "production"),
            ("resilience.startup_attempts", "1"),
            ("resilience.breaker_threshold", "1"),
            ("pool.min_size", "0"),
            ("pool.acquire_timeout", "5s"),
        ],
    ))
    .unwrap();
    warden.init().await.expect("starts degraded");
    // The first probe fails and opens the breaker; the next try is ~10 s away.
    let open = eventually(Duration::from_secs(5), || async {
        warden
            .upstream_status()
            .is_some_and(|s| s.breaker == pgwarden_resilience::BreakerState::Open)
    })
    .await;
    assert!(open, "{:?}", warden.upstream_status());
    let started = Instant::now();
    let err = warden.connection().await.unwrap_err();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(1), "waited {waited:?}");
    assert!(
        matches!(err, Error::Pool(PoolError::Unavailable { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("upstream unavailable since"), "{text}");
    assert!(text.contains(", next try in "), "{text}");
    assert!(text.contains("refused"), "{text}");
}

#[tokio::test]
async fn force_check_and_reset_log_in_instead_of_trusting_the_last_login() {
    let cluster = PgCluster::builder()
        .auth(pgwarden_testkit::Auth::Password {
            superuser_password: "su".into(),
        })
        .start()
        .unwrap();
    cluster.create_role("app", Some("right"), false).unwrap();
    let warden = Warden::new(settings(
        &cluster.url_with_password("postgres", "app", "right"),
        &[
            ("upstream.application_name", "forced-check"),
            ("environment", "production"),
            ("pool.min_size", "0"),
        ],
    ))
    .unwrap();
    warden.init().await.unwrap();
    let state_is = |want: UpstreamState| {
        let warden = &warden;
        async move {
            eventually(Duration::from_secs(5), || async {
                warden.upstream_status().is_some_and(|s| s.state == want)
            })
            .await
        }
    };
    let auth_failed = UpstreamState::Unavailable {
        reason: FailureKind::AuthFailed,
    };
    assert!(state_is(UpstreamState::Available).await);

    // The password changes; TCP still answers and the last login is seconds old. A forced
    // check must log in and see it.
    cluster.psql("ALTER ROLE app PASSWORD 'changed'").unwrap();
    warden.upstream().force_check();
    assert!(
        state_is(auth_failed).await,
        "force_check: {:?}",
        warden.upstream_status()
    );

    cluster.psql("ALTER ROLE app PASSWORD 'right'").unwrap();
    warden.upstream().force_check();
    assert!(state_is(UpstreamState::Available).await);

    // The same for reset(), right after a successful login.
    cluster.psql("ALTER ROLE app PASSWORD 'changed'").unwrap();
    warden.upstream().reset();
    assert!(
        state_is(auth_failed).await,
        "reset: {:?}",
        warden.upstream_status()
    );
}

#[tokio::test]
async fn orphans_are_cleaned_once_the_upstream_is_back_after_a_degraded_start() {
    let mut cluster = PgCluster::builder().start().unwrap();
    cluster.stop().unwrap();
    let warden = warden(
        &cluster,
        "late-orphans",
        &[
            ("environment", "production"),
            ("resilience.startup_attempts", "1"),
            ("resilience.orphan_idle_threshold", "1s"),
            // The prober's next look after the failed first probe is a minute away.
            ("retry.initial_delay", "60s"),
            ("pool.min_size", "0"),
        ],
    );
    warden.init().await.expect("starts degraded");
    let probed = eventually(Duration::from_secs(5), || async {
        warden
            .upstream_status()
            .is_some_and(|s| s.consecutive_failures == 1)
    })
    .await;
    assert!(probed, "{:?}", warden.upstream_status());
    assert!(warden.last_orphan_report().is_none());

    cluster.start_again().unwrap();
    let url = format!(
        "{}?application_name=late-orphans%23deadbeef",
        cluster.url("postgres", "postgres")
    );
    let (orphan, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        warden.last_orphan_report().is_none(),
        "no cleanup before the upstream is seen"
    );

    // The prober sees the upstream (here: asked to look now) and the cleanup follows.
    warden.upstream().force_check();
    let cleaned = eventually(Duration::from_secs(10), || async {
        warden.last_orphan_report().is_some()
    })
    .await;
    assert!(cleaned, "{:?}", warden.upstream_status());
    let report = warden.last_orphan_report().unwrap();
    assert_eq!((report.found, report.terminated), (1, 1), "{report:?}");
    let summary = warden.upstream_status().unwrap().last_orphan_cleanup;
    assert_eq!(
        summary.map(|s| (s.found, s.terminated, s.denied)),
        Some((1, 1, 0))
    );
    assert!(orphan.simple_query("SELECT 1").await.is_err());
    assert_eq!(cluster.count_backends("late-orphans#deadbeef").await, 0);
}
