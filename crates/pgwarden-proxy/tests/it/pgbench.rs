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
    let sampler = common::BackendSampler::start(&cluster, common::APP_BACKENDS).await;
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
    let (most, samples) = sampler.finish().await;
    assert!(samples > 20, "only {samples} samples of pg_stat_activity");
    assert!(
        (1..=3).contains(&most),
        "{most} server connections seen during the runs, over a cap of 3"
    );
    proxy.stop().await;
}
