//! Compatibility with real drivers in other languages: Python asyncpg and psycopg 3, and
//! node-postgres, run against the proxy in transaction mode (`make test` installs them with
//! `scripts/install-drivers.sh`).

use std::path::PathBuf;
use std::process::Command;

use crate::common::{self, RunningProxy, APP_DB};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the {what} checks: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} checks failed (drivers missing? run scripts/install-drivers.sh or make test):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_psycopg_and_node_postgres_work_through_the_proxy() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let url = proxy.url(APP_DB, "postgres");
    let mut session_config = common::config(&cluster);
    session_config.pool_mode = pgwarden_proxy::PoolMode::Session;
    let session_proxy = RunningProxy::start(session_config).await;
    let session_url = session_proxy.url(APP_DB, "postgres");
    let repo = repo();

    let py_url = url.clone();
    let py_session_url = session_url.clone();
    let py_repo = repo.clone();
    let python = tokio::task::spawn_blocking(move || {
        run(
            Command::new("python3")
                .arg(py_repo.join("tests/drivers/python/check.py"))
                .arg(&py_url)
                .arg(&py_session_url)
                .env("PYTHONPATH", py_repo.join("target/drivers/python")),
            "python",
        )
    })
    .await
    .unwrap();
    assert!(python.contains("all python checks passed"), "{python}");
    assert!(python.contains("ok asyncpg prepared statements across transactions"));

    let node = tokio::task::spawn_blocking(move || {
        run(
            Command::new("node")
                .arg(repo.join("tests/drivers/node/check.js"))
                .arg(&url)
                .arg(&session_url),
            "node",
        )
    })
    .await
    .unwrap();
    assert!(node.contains("all node checks passed"), "{node}");
    for check in [
        "ok asyncpg large result (100 MB)",
        "ok psycopg large result (100 MB, streamed)",
        "ok psycopg cancel of pg_sleep",
        "ok asyncpg timeout while waiting for a server connection",
        "ok asyncpg LISTEN/NOTIFY in session mode",
        "ok psycopg LISTEN/NOTIFY in session mode",
    ] {
        assert!(python.contains(check), "{check} missing:\n{python}");
    }
    for check in [
        "ok node COPY TO STDOUT",
        "ok node large result (100 MB)",
        "ok node LISTEN/NOTIFY in session mode",
    ] {
        assert!(node.contains(check), "{check} missing:\n{node}");
    }
    session_proxy.stop().await;

    let stats = proxy.stop().await;
    assert!(stats.pools.iter().all(|p| p.status.max_size == 3));
    assert_eq!(common::app_backends(&cluster).await, 0);
}
