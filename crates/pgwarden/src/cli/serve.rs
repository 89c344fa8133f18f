//! `pgwarden serve`: the wire-protocol pooling proxy in front of the configured upstream.
//!
//! Start-up: load the configuration, wait (briefly, per the start-up policy) for the upstream,
//! start the background prober, terminate orphans of earlier instances, bind the listener.
//! SIGINT or SIGTERM: stop accepting, let clients finish their transactions (up to the drain
//! timeout), close every server connection with Terminate, print the final statistics, exit 0.
//!
//! The resilience wiring is the library's own: server connections log in tagged
//! `{application_name}#{instance id}` ([`InstanceTag`]), the orphan cleanup is
//! [`OrphanCleaner`], and with credentials in the upstream URL the probe is the library's
//! login probe ([`PgLoginProbe`]), so a wrong password or a missing database is reported once
//! as a configuration error instead of never.

use std::process::ExitCode;
use std::time::Duration;

use pgwarden::admin::{AdminServer, ProxyAdminSource};
use pgwarden::config::{DatabaseSettings, LoadOptions, Settings};
use pgwarden::pg::PgLoginProbe;
use pgwarden::upstream::{self, StartupOutcome, UpstreamAddress};
use pgwarden::OrphanCleaner;
use pgwarden_proxy::{AuthType, DatabaseRoute, PoolMode, Proxy, ProxyConfig, Upstream};
use pgwarden_resilience::{Failure, InstanceTag, Probe, Prober, TcpProbe};
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
    let runtime = match build_runtime(loaded.settings.proxy.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgwarden: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(serve(loaded.settings, drain_timeout))
}

/// The runtime `proxy.workers` asks for: `1` = a current-thread runtime (every session on the
/// main thread), `N` = N worker threads, `0` = one worker per CPU. Each wake-up of a thread
/// is reported to the pools, which then read the clock once per turn of the event loop rather
/// than at every checkout and return (see [`pgwarden_pool::clock`]).
pub(crate) fn build_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                builder.worker_threads(n);
            }
            builder
        }
    };
    builder
        .enable_all()
        .on_thread_unpark(pgwarden_pool::clock::loop_turned)
        .build()
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
    config.server_keepalive_interval = settings.pool.keepalive_interval;
    config.server_connect_timeout = settings.upstream.connect_timeout;
    config.application_name = settings.upstream.application_name.clone();
    config.allow_trust_remote = p.allow_trust_remote;
    config.max_prepared_statements = p.max_prepared_statements;
    config.defer_begin = p.defer_begin;
    config.tls_mode = p.tls_mode.parse::<pgwarden_proxy::TlsMode>()?;
    config.tls_cert_file = p.tls_cert_file.clone();
    config.tls_key_file = p.tls_key_file.clone();
    for (name, route) in &settings.databases {
        config
            .databases
            .insert(name.clone(), database_route(route, &config.upstream));
    }
    config.validate()?;
    Ok(config)
}

/// One `[databases]` entry as a proxy route. A route naming a `host` or `port` gets its own
/// server (the other half from `upstream.url`); its `user` and `password` log in there.
fn database_route(route: &DatabaseSettings, default: &Upstream) -> DatabaseRoute {
    let upstream = (route.host.is_some() || route.port.is_some()).then(|| Upstream {
        host: route.host.clone().unwrap_or_else(|| default.host.clone()),
        port: route.port.unwrap_or(if route.host.is_some() {
            5432
        } else {
            default.port
        }),
        user: route.user.clone(),
        password: route.password.clone(),
        database: route.dbname.clone(),
    });
    DatabaseRoute {
        upstream,
        dbname: route.dbname.clone(),
        user: route.user.clone(),
        password: route.password.clone(),
        pool_size: route.pool_size,
    }
}

/// How `serve` probes the upstream: with a login when the upstream URL carries a user and a
/// password (the proxy's pools may log in as other users too, but these credentials are the
/// operator's own and a rejection of them is a configuration error), with TCP otherwise.
#[derive(Debug)]
enum ServeProbe {
    Login(Box<PgLoginProbe>),
    Tcp(TcpProbe),
}

impl Probe for ServeProbe {
    async fn probe(&self) -> Result<(), Failure> {
        match self {
            ServeProbe::Login(p) => p.probe().await,
            ServeProbe::Tcp(p) => p.probe().await,
        }
    }

    async fn probe_uncached(&self) -> Result<(), Failure> {
        match self {
            ServeProbe::Login(p) => p.probe_uncached().await,
            ServeProbe::Tcp(p) => p.probe_uncached().await,
        }
    }
}

async fn serve(settings: Settings, drain_timeout: Duration) -> ExitCode {
    let mut config = match proxy_config(&settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            return ExitCode::from(super::EXIT_INVALID_CONFIG);
        }
    };
    // Server connections log in as this instance's tag, so orphan cleanup (this process's
    // after a crash of this one) can find them; a client's own application_name is applied
    // while it is served and the tag restored when the connection goes back to the pool.
    let tag = InstanceTag::new(&settings.upstream.application_name);
    config.application_name = tag.application_name();
    let maintenance = match upstream::pg_connector(&settings, &tag.application_name()) {
        Ok(connector) => connector,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            return ExitCode::from(super::EXIT_INVALID_CONFIG);
        }
    };
    let probe = if config.upstream.user.is_some() && config.upstream.password.is_some() {
        ServeProbe::Login(Box::new(upstream::login_probe(
            &maintenance,
            tag.name(),
            &settings,
        )))
    } else {
        ServeProbe::Tcp(TcpProbe {
            host: config.upstream.host.clone(),
            port: config.upstream.port,
            probe_timeout: settings.resilience.probe_timeout,
        })
    };
    let degraded = match upstream::wait_for_upstream(&probe, &upstream::startup_policy(&settings))
        .await
    {
        StartupOutcome::Ready => false,
        StartupOutcome::Degraded(_) => true,
        StartupOutcome::Refused(failure) => {
            eprintln!(
                "pgwarden: upstream {}:{} is required (require_upstream = true) but unavailable: {failure}",
                config.upstream.host, config.upstream.port
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let prober = Prober::new(probe, upstream::monitor_config(&settings));
    let handle = prober.handle();
    tasks.spawn(prober.run(shutdown.child_token()));
    tasks.spawn(wait_for_signal(shutdown.clone()));
    if settings.resilience.orphan_cleanup {
        let cleaner =
            OrphanCleaner::new(maintenance, tag, settings.resilience.orphan_idle_threshold);
        if degraded {
            // Once the prober first sees the upstream.
            tasks.spawn(cleaner.run_on_recovery(handle.clone(), shutdown.child_token()));
        } else if let Err(e) = cleaner.run(Some(&handle)).await {
            tracing::warn!(error = %e, "orphan cleanup failed");
        }
    }

    let admin_status = handle.clone();
    let proxy = match Proxy::bind(config, Some(handle)).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("pgwarden: {e}");
            shutdown.cancel();
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    println!("pgwarden listening on {}", proxy.local_addr());
    let admin_stop = CancellationToken::new();
    let admin = start_admin(
        &settings,
        &proxy,
        admin_status,
        &shutdown,
        &admin_stop,
        &tasks,
    );
    if let Err(code) = admin.await {
        shutdown.cancel();
        return code;
    }
    let stats = proxy.run(shutdown.clone(), drain_timeout).await;
    // Only now: `/ready` answered "shutting down" while the proxy drained.
    admin_stop.cancel();
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

/// Starts the admin listener when `admin.listen` is set. It answers until `stop`, which fires
/// after the proxy has drained, so `/ready` reports the drain (`shutdown` fired) meanwhile.
async fn start_admin(
    settings: &Settings,
    proxy: &Proxy,
    upstream: pgwarden_resilience::ProberHandle,
    shutdown: &CancellationToken,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<(), ExitCode> {
    let Some(listen) = settings.admin.listen else {
        return Ok(());
    };
    let source = ProxyAdminSource::new(proxy.handle(), Some(upstream), shutdown.clone());
    let server = AdminServer::bind(listen, source).await.map_err(|e| {
        eprintln!("pgwarden: {e}");
        ExitCode::from(EXIT_FAILURE)
    })?;
    println!("pgwarden admin listening on {}", server.local_addr());
    let stop = stop.clone();
    tasks.spawn(async move {
        if let Err(e) = server.run(stop).await {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_choose_the_runtime() {
        use tokio::runtime::RuntimeFlavor;
        let one = build_runtime(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let three = build_runtime(3).unwrap();
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(build_runtime(0).unwrap().metrics().num_workers(), cores);
    }

    /// Inside one turn of the loop the pools' clock is read once; every wake-up reads it anew.
    async fn clock_follows_the_loop() {
        use pgwarden_pool::clock;
        use std::time::Duration;
        tokio::time::sleep(Duration::from_millis(1)).await;
        let a = clock::now();
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!(clock::now(), a, "no wake-up: the reading is reused");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            clock::now() >= a + Duration::from_millis(3),
            "a wake-up reads again"
        );
    }

    #[test]
    fn both_runtimes_report_their_wake_ups_to_the_pool_clock() {
        // Own threads: the clock's state is per thread.
        std::thread::spawn(|| build_runtime(1).unwrap().block_on(clock_follows_the_loop()))
            .join()
            .unwrap();
        let multi = build_runtime(2).unwrap();
        multi
            .block_on(async { tokio::spawn(clock_follows_the_loop()).await })
            .unwrap();
    }

    #[test]
    fn databases_and_proxy_keys_reach_the_proxy_config() {
        let options = LoadOptions::default()
            .with_flag("upstream.url", "postgres://app:pw@db.internal:6000/app")
            .with_flag("proxy.auth_type", "trust")
            .with_flag("proxy.listen", "0.0.0.0:6432")
            .with_flag("proxy.allow_trust_remote", "true")
            .with_flag("proxy.max_prepared_statements", "7")
            .with_flag("proxy.defer_begin", "false")
            .with_flag("databases.alias", "dbname=target pool_size=3")
            .with_flag("databases.ro", "host=replica user=ro password=s3cret");
        let settings = Settings::load(&options).unwrap().settings;
        let config = proxy_config(&settings).unwrap();
        assert!(config.allow_trust_remote);
        assert_eq!(config.max_prepared_statements, 7);
        assert!(!config.defer_begin);
        let alias = &config.databases["alias"];
        assert_eq!(alias.dbname.as_deref(), Some("target"));
        assert_eq!(alias.pool_size, Some(3));
        assert!(alias.upstream.is_none(), "same server as upstream.url");
        let ro = &config.databases["ro"];
        let server = ro.upstream.as_ref().unwrap();
        assert_eq!((server.host.as_str(), server.port), ("replica", 5432));
        assert_eq!(ro.user.as_deref(), Some("ro"));
        assert_eq!(ro.password.as_deref(), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
