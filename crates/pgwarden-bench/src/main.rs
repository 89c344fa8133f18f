//! `make bench` / `make bench-quick`: pgbench against PostgreSQL directly, through PgBouncer and
//! through pgwarden, in alternating rounds on one throwaway cluster, with each pooler's CPU
//! seconds and memory. Writes raw rows to `bench/results/<time>.csv` and a markdown summary
//! appended to `docs/BENCHMARKS.md`.
//!
//! Usage: `pgwarden-bench [--quick] [--rounds N] [--workload TEXT] [--clients LIST]
//! [--memory-only] [--train] [--pgwarden PATH] [--chart CSV] [--across CSV...]` (run from the
//! repository root; `--help` says what each does). A missing value, an unknown option, or
//! options that cannot go together (`--workload` or `--clients` with `--memory-only`, `--train`
//! or `--across` with any other plan option) are refused before anything runs.

mod chart;
mod pooler;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::pooler::{Pooler, Target};
use crate::run::{Round, Workload};

/// What to run.
pub(crate) struct Plan {
    pub(crate) workloads: Vec<Workload>,
    pub(crate) clients: Vec<u32>,
    pub(crate) rounds: u32,
    pub(crate) seconds: u32,
    pub(crate) idle_clients: u32,
    /// Server connections each pooler may use.
    pub(crate) cap: u32,
    pub(crate) quick: bool,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            workloads: vec![
                Workload::select_only("simple"),
                Workload::select_only("extended"),
                Workload::select_only("prepared"),
                Workload::tpcb("simple"),
            ],
            clients: vec![10, 50, 200, 1000],
            rounds: 3,
            seconds: 15,
            idle_clients: 10_000,
            cap: 10,
            quick: false,
        }
    }

    /// Keeps only the client counts in `wanted`; each must be one of the plan's.
    fn keep_clients(&mut self, wanted: &[u32]) -> anyhow::Result<()> {
        if let Some(c) = wanted.iter().find(|c| !self.clients.contains(c)) {
            anyhow::bail!(
                "--clients {c} is not one of the plan's client counts ({:?})",
                self.clients
            );
        }
        self.clients.retain(|c| wanted.contains(c));
        Ok(())
    }

    fn quick() -> Plan {
        Plan {
            workloads: vec![
                Workload::select_only("simple"),
                Workload::select_only("prepared"),
            ],
            clients: vec![10, 200],
            rounds: 1,
            seconds: 5,
            idle_clients: 1_000,
            cap: 10,
            quick: true,
        }
    }
}

/// Command line of `pgwarden-bench` (run from the repository root).
#[derive(Debug, clap::Parser)]
#[command(about = "pgbench through pgwarden, PgBouncer and directly, side by side")]
struct Args {
    /// The short plan (about two minutes): fewer workloads and clients, one round.
    #[arg(long)]
    quick: bool,
    /// Rounds per target and cell (default 3, 1 with --quick).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Only the workloads whose name contains TEXT (e.g. `tpcb`); the summary is printed, not
    /// appended to docs/BENCHMARKS.md (the CSV and charts are still written), and idle-client
    /// memory is not measured.
    #[arg(long, value_name = "TEXT", conflicts_with = "memory_only")]
    workload: Option<String>,
    /// Only these client counts (comma-separated, e.g. `10,1000`), each one of the plan's;
    /// like `--workload`, the summary is printed, not appended, and idle-client memory is not
    /// measured.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        conflicts_with = "memory_only"
    )]
    clients: Option<Vec<u32>>,
    /// Only the idle-client memory measurement (no pgbench rounds); printed, not appended.
    #[arg(long)]
    memory_only: bool,
    /// A training run for a profile-guided build (`make build-pgo`): every workload once
    /// through pgwarden alone, 5 s at 10 and at 200 clients; nothing written.
    #[arg(long, conflicts_with_all = ["quick", "rounds", "workload", "clients", "memory_only"])]
    train: bool,
    /// The pgwarden binary to measure.
    #[arg(long, value_name = "PATH", default_value = "target/release/pgwarden")]
    pgwarden: PathBuf,
    /// Redraw the charts of an earlier run from its CSV, and nothing else.
    #[arg(long, value_name = "CSV")]
    chart: Option<PathBuf>,
    /// Pool the round-by-round ratios of earlier runs (their CSVs; runs of the same pgwarden
    /// code) and print the median pgwarden/PgBouncer ratio of every cell with its interval;
    /// nothing is run.
    #[arg(
        long,
        value_name = "CSV",
        num_args = 1..,
        conflicts_with_all = ["quick", "rounds", "workload", "clients", "memory_only", "train", "chart"]
    )]
    across: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    if !args.across.is_empty() {
        let mut runs = Vec::new();
        for csv in &args.across {
            let name = csv
                .file_name()
                .map_or_else(|| csv.display().to_string(), |n| n.to_string_lossy().into());
            let rounds =
                report::read_csv(csv).with_context(|| format!("read {}", csv.display()))?;
            runs.push((name, rounds));
        }
        print!("{}", report::across_markdown(&runs));
        return Ok(());
    }
    if let Some(csv) = &args.chart {
        // Redraw the charts of an earlier run from its CSV.
        let rounds = report::read_csv(csv)?;
        let mut workloads: Vec<String> = Vec::new();
        let mut clients: Vec<u32> = Vec::new();
        for r in &rounds {
            if !workloads.contains(&r.workload) {
                workloads.push(r.workload.clone());
            }
            if !clients.contains(&r.clients) {
                clients.push(r.clients);
            }
        }
        clients.sort_unstable();
        for path in chart::draw(&rounds, &workloads, &clients, csv) {
            println!("{}", path.display());
        }
        return Ok(());
    }
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(rounds) = args.rounds {
        plan.rounds = rounds;
    }
    // Some workloads or client counts only: printed, not appended, and no idle-client
    // measurement.
    let only = args.workload.is_some() || args.clients.is_some();
    if let Some(text) = &args.workload {
        plan.workloads.retain(|w| w.name.contains(text.as_str()));
        anyhow::ensure!(
            !plan.workloads.is_empty(),
            "--workload {text:?} matches no workload"
        );
    }
    if let Some(clients) = &args.clients {
        plan.keep_clients(clients)?;
    }
    // Only the idle-client memory measurement (no pgbench rounds); printed, not appended.
    let memory_only = args.memory_only;
    if memory_only {
        plan.workloads.clear();
    }
    let pgwarden_bin = args.pgwarden;
    anyhow::ensure!(
        pgwarden_bin.exists(),
        "{} not found: build it with `cargo build --release -p pgwarden`",
        pgwarden_bin.display()
    );

    if args.train {
        return train(&pgwarden_bin);
    }

    let (cluster, pgbench) = start_cluster(1100, if plan.quick { 1 } else { 10 })?;

    let pgbouncer = Pooler::start_pgbouncer(cluster.port(), plan.cap)
        .context("start PgBouncer (install it with `make deps-bench`)")?;
    let pgwarden = Pooler::start_pgwarden(&pgwarden_bin, cluster.port(), plan.cap)?;
    let targets = [
        Target::Direct {
            port: cluster.port(),
        },
        Target::Pooler(&pgbouncer),
        Target::Pooler(&pgwarden),
    ];
    let idle_rss: Vec<(String, u64)> = [&pgbouncer, &pgwarden]
        .iter()
        .map(|p| (p.name.to_string(), p.rss_kb()))
        .collect();

    let mut rounds: Vec<Round> = Vec::new();
    let total = plan.workloads.len() * plan.clients.len() * plan.rounds as usize * targets.len();
    let mut n = 0;
    for workload in &plan.workloads {
        for &clients in &plan.clients {
            for round in 0..plan.rounds {
                // A B C, A C B, A B C ...: drift on a noisy machine hits all targets alike,
                // the two poolers run back to back in every round (their per-round ratio is
                // then little disturbed by drift), and each goes first in turn (neither always
                // follows the direct round's thousand closing backends).
                for target in round_order(&targets, round) {
                    n += 1;
                    if workload.writes() {
                        run::reset_tables(cluster.bin_dir(), cluster.port())?;
                    }
                    let r = run::round(&pgbench, target, workload, clients, round, plan.seconds)?;
                    println!(
                        "[{n}/{total}] {:<9} {:<22} c={:<4} round {} {}",
                        target.name(),
                        workload.name,
                        clients,
                        round + 1,
                        r.summary()
                    );
                    rounds.push(r);
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    let after_load: Vec<(String, u64)> = [&pgbouncer, &pgwarden]
        .iter()
        .map(|p| (p.name.to_string(), p.rss_kb()))
        .collect();
    let memory = if only {
        Vec::new()
    } else {
        idle_memory(
            &plan,
            &rounds,
            &idle_rss,
            &after_load,
            cluster.port(),
            &pgwarden_bin,
            (pgbouncer, pgwarden),
        )?
    };
    if memory_only {
        println!("\n{}", report::memory_markdown(&memory));
        return Ok(());
    }

    let context = report::Context::gather(&cluster, &pgwarden_bin, &plan);
    let csv = report::write_csv(&rounds)?;
    let names: Vec<String> = plan.workloads.iter().map(|w| w.name.clone()).collect();
    let charts = chart::draw(&rounds, &names, &plan.clients, &csv);
    let markdown = report::markdown(&context, &plan, &rounds, &memory, &csv, &charts);
    if !only {
        report::append_to_docs(&markdown)?;
    }
    println!("\n{markdown}");
    Ok(())
}

/// A throwaway cluster with the `bench` database initialised by pgbench at `scale`; returns it
/// and the pgbench to use with it.
fn start_cluster(
    max_connections: u32,
    scale: u32,
) -> anyhow::Result<(pgwarden_testkit::PgCluster, PathBuf)> {
    println!("starting a throwaway PostgreSQL cluster ...");
    let cluster = pgwarden_testkit::PgCluster::builder()
        .max_connections(max_connections)
        .setting("shared_buffers", "'128MB'")
        .start()
        .context("start PostgreSQL")?;
    cluster.create_database("bench", "postgres")?;
    let pgbench = run::pgbench_path(cluster.bin_dir());
    run::init(&pgbench, cluster.port(), scale)?;
    Ok((cluster, pgbench))
}

/// `--train`: the full plan's workloads through `pgwarden` alone, once each at 10 and at 200
/// clients for 5 s, so an instrumented build records the paths the benchmark runs (see
/// `scripts/build-pgo.sh`). pgwarden is stopped with SIGTERM at the end, so it exits normally
/// and writes its profile.
fn train(pgwarden_bin: &std::path::Path) -> anyhow::Result<()> {
    let plan = Plan::full();
    let (cluster, pgbench) = start_cluster(300, 1)?;
    let pgwarden = Pooler::start_pgwarden(pgwarden_bin, cluster.port(), plan.cap)?;
    let target = Target::Pooler(&pgwarden);
    for workload in &plan.workloads {
        for clients in [10, 200] {
            if workload.writes() {
                run::reset_tables(cluster.bin_dir(), cluster.port())?;
            }
            let r = run::round(&pgbench, &target, workload, clients, 0, 5)?;
            println!("{:<22} c={clients:<4} {}", workload.name, r.summary());
            anyhow::ensure!(r.error.is_none(), "a training round failed: {:?}", r.error);
        }
    }
    drop(pgwarden);
    Ok(())
}

/// The targets in the order round `round` runs them: direct first, then the two poolers,
/// PgBouncer first in even rounds and pgwarden first in odd ones.
fn round_order<T>(targets: &[T; 3], round: u32) -> [&T; 3] {
    let [direct, first, second] = targets;
    if round.is_multiple_of(2) {
        [direct, first, second]
    } else {
        [direct, second, first]
    }
}

/// Restarts both poolers (see [`report::Memory::before_clients_kb`]), opens the idle clients
/// on each in turn and reads the memory figures.
fn idle_memory(
    plan: &Plan,
    rounds: &[Round],
    idle_rss: &[(String, u64)],
    after_load: &[(String, u64)],
    pg_port: u16,
    pgwarden_bin: &std::path::Path,
    poolers: (Pooler, Pooler),
) -> anyhow::Result<Vec<report::Memory>> {
    drop(poolers);
    println!("restarting both poolers for the idle-client measurement ...");
    let pgbouncer = Pooler::start_pgbouncer(pg_port, plan.cap)?;
    let pgwarden = Pooler::start_pgwarden(pgwarden_bin, pg_port, plan.cap)?;
    std::thread::sleep(Duration::from_secs(1));
    println!(
        "opening {} idle client connections to each pooler ...",
        plan.idle_clients
    );
    let of = |list: &[(String, u64)], name: &str| {
        list.iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, kb)| *kb)
    };
    let mut memory = Vec::new();
    for pooler in [&pgbouncer, &pgwarden] {
        let loaded = rounds
            .iter()
            .filter(|r| r.target == pooler.name)
            .map(|r| r.rss_kb)
            .max()
            .unwrap_or(0);
        let before_clients = pooler.rss_kb();
        let with_idle = run::idle_clients(pooler, plan.idle_clients)
            .with_context(|| format!("idle clients on {}", pooler.name))?;
        memory.push(report::Memory {
            pooler: pooler.name.to_string(),
            idle_kb: of(idle_rss, pooler.name),
            loaded_kb: loaded,
            after_load_kb: of(after_load, pooler.name),
            before_clients_kb: before_clients,
            with_clients_kb: with_idle,
            clients: plan.idle_clients,
        });
    }
    Ok(memory)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_pooler_goes_first_in_turn_after_direct() {
        let targets = ["direct", "pgbouncer", "pgwarden"];
        assert_eq!(
            super::round_order(&targets, 0),
            [&"direct", &"pgbouncer", &"pgwarden"]
        );
        assert_eq!(
            super::round_order(&targets, 1),
            [&"direct", &"pgwarden", &"pgbouncer"]
        );
        assert_eq!(
            super::round_order(&targets, 2),
            super::round_order(&targets, 0)
        );
    }

    use super::Args;
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("pgwarden-bench").chain(args.iter().copied()))
    }

    #[test]
    fn options_are_read() {
        let args = parse(&["--quick", "--rounds", "5", "--workload", "tpcb"]).unwrap();
        assert!(args.quick && !args.memory_only);
        assert_eq!(args.rounds, Some(5));
        assert_eq!(args.workload.as_deref(), Some("tpcb"));
        assert_eq!(args.clients, None);
        let args = parse(&["--clients", "10,1000"]).unwrap();
        assert_eq!(args.clients, Some(vec![10, 1000]));
        assert!(!args.train);
        assert!(parse(&["--train", "--pgwarden", "x"]).unwrap().train);
        assert!(args.across.is_empty());
        let args = parse(&["--across", "a.csv", "b.csv"]).unwrap();
        assert_eq!(
            args.across,
            [std::path::Path::new("a.csv"), std::path::Path::new("b.csv")]
        );
        assert_eq!(
            args.pgwarden,
            std::path::Path::new("target/release/pgwarden")
        );
    }

    #[test]
    fn clients_keep_only_counts_of_the_plan() {
        let mut plan = super::Plan::full();
        plan.keep_clients(&[1000, 10]).unwrap();
        assert_eq!(plan.clients, vec![10, 1000]);
        let mut quick = super::Plan::quick();
        let e = quick.keep_clients(&[10, 1000]).unwrap_err().to_string();
        assert_eq!(
            e,
            "--clients 1000 is not one of the plan's client counts ([10, 200])"
        );
        assert_eq!(quick.clients, vec![10, 200], "left as it was");
    }

    #[test]
    fn bad_command_lines_are_refused_before_anything_runs() {
        // Each of these once ran the whole benchmark and appended it to the docs.
        for bad in [
            &["--workload"][..],
            &["--workloads", "tpcb"],
            &["--rounds", "0"],
            &["--rounds", "many"],
            &["--workload", "tpcb", "--memory-only"],
            &["--clients", "ten"],
            &["--clients", "10", "--memory-only"],
            &["--train", "--quick"],
            &["--train", "--workload", "tpcb"],
            &["--across"],
            &["--across", "a.csv", "--rounds", "3"],
            &["--across", "a.csv", "--chart", "b.csv"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
