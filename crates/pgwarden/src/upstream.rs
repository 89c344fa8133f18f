//! From settings to the resilience layer: the upstream's address, the monitor's and the
//! start-up policy's configuration, and the start-up wait itself.

use std::time::Duration;

use pgwarden_resilience::{
    BreakerConfig, Failure, MonitorConfig, Probe, RetryConfig, StartupDecision, StartupPolicy,
};

use crate::config::{Environment, Settings};
use crate::error::Error;
use crate::pg::{PgConnector, PgConnectorOptions, PgLoginProbe};

/// Host, port, user, password and database named by the upstream URL.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamAddress {
    /// First host of the URL.
    pub host: String,
    /// Its port (default 5432).
    pub port: u16,
    /// User, if the URL names one.
    pub user: Option<String>,
    /// Password, if the URL carries one.
    pub password: Option<String>,
    /// Database, if the URL names one.
    pub database: Option<String>,
}

impl std::fmt::Debug for UpstreamAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamAddress")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("database", &self.database)
            .finish()
    }
}

impl UpstreamAddress {
    /// Parses a PostgreSQL URL or key/value string (validated by the configuration already).
    pub fn parse(url: &str) -> Result<UpstreamAddress, String> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => return Err("the upstream URL names no host".into()),
        };
        Ok(UpstreamAddress {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            user: config.get_user().map(str::to_string),
            password: config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            database: config.get_dbname().map(str::to_string),
        })
    }
}

/// A connector for the upstream URL's server, user and database, its connections named
/// `application_name` (the instance tag for pooled and maintenance connections).
pub fn pg_connector(settings: &Settings, application_name: &str) -> Result<PgConnector, Error> {
    let up = &settings.upstream;
    PgConnector::new(PgConnectorOptions {
        url: up.url.clone(),
        application_name: application_name.to_string(),
        connect_timeout: up.connect_timeout,
        command_timeout: up.command_timeout,
        server_settings: up
            .server_settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

/// The login probe of the library and of `pgwarden serve`: `connector`'s server and
/// credentials, logging in as `{name}-probe` so its logins never count as pool connections.
pub fn login_probe(connector: &PgConnector, name: &str, settings: &Settings) -> PgLoginProbe {
    let connector = connector
        .clone()
        .with_application_name(&format!("{name}-probe"));
    PgLoginProbe::new(connector, settings.resilience.probe_timeout)
}

/// The monitor's settings from the configuration.
pub fn monitor_config(settings: &Settings) -> MonitorConfig {
    let r = &settings.resilience;
    let retry = RetryConfig {
        initial: settings.retry.initial_delay,
        multiplier: settings.retry.multiplier,
        cap: settings.retry.max_delay,
        jitter: 0.1,
    };
    MonitorConfig {
        environment: match settings.environment {
            Environment::Development => pgwarden_resilience::Environment::Development,
            Environment::Production => pgwarden_resilience::Environment::Production,
        },
        health_interval: r.health_interval,
        success_cache: r.probe_cache,
        dev_pause_after: r.dev_pause_after as u32,
        retry: retry.clone(),
        breaker: BreakerConfig {
            failure_threshold: r.breaker_threshold as u32,
            retry,
        },
    }
}

/// The start-up policy from the configuration.
pub fn startup_policy(settings: &Settings) -> StartupPolicy {
    let r = &settings.resilience;
    StartupPolicy {
        attempts: r.startup_attempts as u32,
        retry: RetryConfig {
            initial: r.startup_initial_delay,
            multiplier: 2.0,
            cap: r.startup_max_delay,
            jitter: 0.1,
        },
        require_upstream: r.require_upstream,
    }
}

/// How start-up ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupOutcome {
    /// The upstream answered.
    Ready,
    /// It did not; start anyway and keep probing in the background.
    Degraded(Failure),
    /// It did not and it is required: do not start.
    Refused(Failure),
}

/// Probes the upstream per `policy` until it answers or the attempts run out. Logs one line
/// when giving up (not one per attempt).
pub async fn wait_for_upstream<P: Probe>(probe: &P, policy: &StartupPolicy) -> StartupOutcome {
    let mut attempts = policy.begin();
    loop {
        let now = std::time::Instant::now();
        let decision = match probe.probe().await {
            Ok(()) => attempts.on_success(now),
            Err(failure) => attempts.on_failure(now, failure),
        };
        match decision {
            StartupDecision::Ready => return StartupOutcome::Ready,
            StartupDecision::RetryAt(at) => {
                let wait = at.saturating_duration_since(std::time::Instant::now());
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            }
            StartupDecision::StartDegraded { failure } => {
                tracing::info!(
                    attempts = attempts.attempts_made(),
                    kind = failure.kind.label(),
                    "starting without the upstream after {} attempts; clients get a clear error until it returns",
                    attempts.attempts_made()
                );
                return StartupOutcome::Degraded(failure);
            }
            StartupDecision::GiveUp { failure } => return StartupOutcome::Refused(failure),
        }
    }
}
