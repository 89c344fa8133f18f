//! pgbench through the proxy in all three query modes and with writes: 200 clients on a cap of
//! 3, with `pg_stat_activity` sampled while it runs.

use std::process::Command;

use crate::common::{self, RunningProxy, APP_DB};

fn pgbench(cluster: &pgwarden_testkit::PgCluster) -> std::path::PathBuf {
    let local = cluster.bin_dir().join("pgbench");
    if local.exists() {
        local
    } else {
        "pgbench".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_simple_extended_and_prepared_with_200_clients_on_3() {
    let cluster = common::cluster_with(pgwarden_testkit::PgCluster::builder().max_connections(50));
    let bin = pgbench(&cluster);
    let init = Command::new(&bin)
        .args([
            "-i",
            "-q",
            "-s",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            APP_DB,
        ])
        .output()
        .expect("run pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let port = proxy.addr.port().to_string();
    // The most server connections PostgreSQL ever shows while pgbench runs.
    let most = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (most, stop) = (most.clone(), sampling.clone());
        let admin = cluster.connect_superuser().await;
        tokio::spawn(async move {
            let mut samples = 0u64;
            while !stop.is_cancelled() {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
                        &[&APP_DB],
                    )
                    .await
                    .unwrap()
                    .get(0);
                most.fetch_max(n, std::sync::atomic::Ordering::SeqCst);
                samples += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            samples
        })
    };
    // Select-only in the three query modes, then the TPC-B-like script (writes) in simple mode.
    for (mode, builtin) in [
        ("simple", "-S"),
        ("extended", "-S"),
        ("prepared", "-S"),
        ("simple", "-btpcb-like"),
    ] {
        let bin = bin.clone();
        let port = port.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(&bin)
                .args([
                    "-n",
                    builtin,
                    "-M",
                    mode,
                    "-c",
                    "200",
                    "-j",
                    "2",
                    "-t",
                    "20",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    APP_DB,
                ])
                .output()
                .expect("run pgbench")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "mode {mode}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("number of transactions actually processed: 4000/4000"),
            "mode {mode}: {stdout}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0"),
            "mode {mode}: {stdout}"
        );
    }
    sampling.cancel();
    let samples = sampler.await.unwrap();
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(samples > 20, "only {samples} samples of pg_stat_activity");
    assert!(
        (1..=3).contains(&most),
        "{most} server connections seen during the runs, over a cap of 3"
    );
    proxy.stop().await;
}
