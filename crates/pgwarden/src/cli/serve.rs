//! `pgwarden serve`: the wire-protocol pooling proxy in front of the configured upstream.
//!
//! Start-up: load the configuration, wait (briefly, per the start-up policy) for the upstream,
//! start the background prober, bind the listener. SIGINT or SIGTERM: stop accepting, let
//! clients finish their transactions (up to the drain timeout), close every server connection
//! with Terminate, print the final statistics, exit 0.

use std::process::ExitCode;
use std::time::Duration;

use pgwarden::config::{LoadOptions, Settings};
use pgwarden::upstream::{self, StartupOutcome, UpstreamAddress};
use pgwarden_proxy::{AuthType, PoolMode, Proxy, ProxyConfig, Upstream};
use pgwarden_resilience::{Prober, TcpProbe};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::load_or_exit;

/// Exit code when the upstream is required and absent, or the listener cannot start.
const EXIT_FAILURE: u8 = 1;

/// Runs the proxy until a signal; returns the exit code.
pub(crate) fn run(options: &LoadOptions, drain_timeout: Duration) -> ExitCode {
    let loaded = match load_or_exit(options) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgwarden: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(serve(loaded.settings, drain_timeout))
}

/// Maps the settings onto the proxy's configuration.
pub(crate) fn proxy_config(settings: &Settings) -> Result<ProxyConfig, String> {
    let address = UpstreamAddress::parse(&settings.upstream.url)?;
    let mut config = ProxyConfig::new(address.host.clone(), address.port);
    config.upstream = Upstream {
        host: address.host,
        port: address.port,
        user: address.user,
        password: address.password,
        database: address.database,
    };
    let p = &settings.proxy;
    config.listen = p.listen;
    config.pool_mode = p.pool_mode.parse::<PoolMode>()?;
    config.auth_type = p.auth_type.parse::<AuthType>()?;
    config.auth_file = p.auth_file.clone();
    config.auth_query = p.auth_query.clone();
    config.max_client_conn = p.max_client_conn;
    config.max_db_connections = p.max_db_connections;
    config.query_wait_timeout = p.query_wait_timeout;
    config.client_login_timeout = p.client_login_timeout;
    config.idle_transaction_timeout = p.idle_transaction_timeout;
    config.query_timeout = p.query_timeout;
    config.server_reset_query = p.server_reset_query.clone();
    config.default_pool_size = settings.pool.max_size;
    config.min_pool_size = settings.pool.min_size;
    config.max_connecting = settings.pool.max_connecting;
    config.server_idle_timeout = settings.pool.idle_timeout;
    config.server_lifetime = settings.pool.max_lifetime;
    config.server_connect_timeout = settings.upstream.connect_timeout;
    config.application_name = settings.upstream.application_name.clone();
    config.validate()?;
    Ok(config)
}

async fn serve(settings: Settings, drain_timeout: Duration) -> ExitCode {
    let config = match proxy_config(&settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            return ExitCode::from(super::EXIT_INVALID_CONFIG);
        }
    };
    let probe = TcpProbe {
        host: config.upstream.host.clone(),
        port: config.upstream.port,
        probe_timeout: settings.resilience.probe_timeout,
    };
    match upstream::wait_for_upstream(&probe, &upstream::startup_policy(&settings)).await {
        StartupOutcome::Ready => {}
        StartupOutcome::Degraded(_) => {}
        StartupOutcome::Refused(failure) => {
            eprintln!(
                "pgwarden: upstream {}:{} is required (require_upstream = true) but unavailable: {failure}",
                config.upstream.host, config.upstream.port
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    }

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let prober = Prober::new(probe, upstream::monitor_config(&settings));
    let handle = prober.handle();
    tasks.spawn(prober.run(shutdown.child_token()));
    tasks.spawn(wait_for_signal(shutdown.clone()));

    let proxy = match Proxy::bind(config, Some(handle)).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            shutdown.cancel();
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    println!("pgwarden listening on {}", proxy.local_addr());
    let stats = proxy.run(shutdown.clone(), drain_timeout).await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    tracing::info!(
        clients = stats.clients_total,
        transactions = stats.transactions_total,
        refused = stats.clients_refused,
        "pgwarden stopped; every server connection closed"
    );
    ExitCode::SUCCESS
}

/// Cancels `shutdown` on SIGINT or SIGTERM (or when it is cancelled otherwise).
async fn wait_for_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}
