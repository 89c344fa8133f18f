//! Running pgbench: initialisation, one timed round with per-transaction latency logs (for
//! p99), and the idle-connection memory probe.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use futures_util::stream::{self, StreamExt};

use crate::pooler::{Switches, Target, PROC_TICKS_PER_SECOND};

/// A pgbench workload.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub(crate) name: String,
    /// `-S` (select-only) or none (TPC-B-like).
    select_only: bool,
    /// `-M` query mode.
    pub(crate) mode: &'static str,
}

impl Workload {
    pub(crate) fn select_only(mode: &'static str) -> Workload {
        Workload {
            name: format!("select-only -M {mode}"),
            select_only: true,
            mode,
        }
    }

    pub(crate) fn tpcb(mode: &'static str) -> Workload {
        Workload {
            name: format!("tpcb-like -M {mode}"),
            select_only: false,
            mode,
        }
    }

    /// Whether the workload writes (its tables change from round to round).
    pub(crate) fn writes(&self) -> bool {
        !self.select_only
    }
}

/// What pgbench itself does before a run with `-v` unless told not to (`-n`, which every round
/// passes, since its own vacuum would go through the target): vacuums the two small tables
/// every TPC-B-like transaction updates, empties the history table, vacuums the accounts;
/// then a checkpoint. Run directly against the cluster before each round of a writing
/// workload, so every target starts from the same tables and no round inherits the dead rows
/// (or the checkpoint) of the one before. (Without the accounts' vacuum, a pooler's rounds
/// found the dead row versions of every earlier round of the run: the one going second in a
/// round found one round's more than the one going first.)
pub(crate) fn reset_tables(bin_dir: &Path, port: u16) -> anyhow::Result<()> {
    psql_bench(
        bin_dir,
        port,
        &[
            "VACUUM pgbench_branches",
            "VACUUM pgbench_tellers",
            "TRUNCATE pgbench_history",
            "VACUUM ANALYZE pgbench_accounts",
            "CHECKPOINT",
        ],
    )
    .context("resetting the pgbench tables")?;
    Ok(())
}

/// One measured round.
#[derive(Debug, Clone)]
pub(crate) struct Round {
    pub(crate) target: &'static str,
    pub(crate) workload: String,
    pub(crate) clients: u32,
    pub(crate) round: u32,
    /// `None` when pgbench failed (the error is kept).
    pub(crate) tps: Option<f64>,
    pub(crate) latency_avg_ms: Option<f64>,
    pub(crate) latency_p99_ms: Option<f64>,
    pub(crate) transactions: u64,
    /// CPU seconds the pooler used during the round, user plus system (0 for direct).
    pub(crate) cpu_seconds: f64,
    /// The user-space part of `cpu_seconds` (`None` in rows written before it was recorded).
    pub(crate) user_cpu_seconds: Option<f64>,
    /// CPU seconds the whole machine spent busy during the round: PostgreSQL, pgbench, the
    /// pooler and the kernel (`None` in rows written before it was recorded).
    pub(crate) machine_cpu_seconds: Option<f64>,
    /// The pooler's context switches during the round, all its threads (`None` for direct and
    /// in rows written before they were recorded).
    pub(crate) switches: Option<Switches>,
    pub(crate) rss_kb: u64,
    pub(crate) error: Option<String>,
}

impl Round {
    /// One line of progress: TPS and latency, and for a pooler its CPU per 1,000 transactions
    /// (all of it, and the user-space part).
    pub(crate) fn summary(&self) -> String {
        match (&self.error, self.tps) {
            (Some(e), _) => format!("FAILED: {e}"),
            (None, Some(tps)) => {
                let mut line = format!(
                    "{tps:>9.0} tps  avg {:>6.2} ms  p99 {:>7.2} ms",
                    self.latency_avg_ms.unwrap_or(0.0),
                    self.latency_p99_ms.unwrap_or(0.0),
                );
                if let Some(cpu) = self.cpu_ms_per_1k() {
                    line.push_str(&format!("  cpu {cpu:>5.1} ms/1k tx"));
                    if let Some(user) = self.user_ms_per_1k() {
                        line.push_str(&format!(" (user {user:>4.1})"));
                    }
                }
                if let (Some(sleeps), Some(preempted)) =
                    (self.sleeps_per_tx(), self.preemptions_per_tx())
                {
                    line.push_str(&format!(
                        "  sleeps {sleeps:.2} preempted {preempted:.2} /tx"
                    ));
                }
                line
            }
            _ => "no result".into(),
        }
    }

    /// Pooler CPU milliseconds per 1,000 transactions.
    pub(crate) fn cpu_ms_per_1k(&self) -> Option<f64> {
        self.per_1k(Some(self.cpu_seconds))
    }

    /// The user-space part of [`Round::cpu_ms_per_1k`].
    pub(crate) fn user_ms_per_1k(&self) -> Option<f64> {
        self.per_1k(self.user_cpu_seconds)
    }

    /// The system (kernel) part of [`Round::cpu_ms_per_1k`].
    pub(crate) fn system_ms_per_1k(&self) -> Option<f64> {
        self.per_1k(self.user_cpu_seconds.map(|user| self.cpu_seconds - user))
    }

    /// The whole machine's CPU milliseconds per 1,000 transactions (every target).
    pub(crate) fn machine_ms_per_1k(&self) -> Option<f64> {
        self.ms_per_1k(self.machine_cpu_seconds)
    }

    /// The pooler's voluntary context switches per transaction: how often it blocked waiting
    /// for work.
    pub(crate) fn sleeps_per_tx(&self) -> Option<f64> {
        self.per_tx(self.switches.map(|s| s.voluntary))
    }

    /// The pooler's involuntary context switches per transaction: how often the scheduler
    /// switched it out while it had work.
    pub(crate) fn preemptions_per_tx(&self) -> Option<f64> {
        self.per_tx(self.switches.map(|s| s.involuntary))
    }

    /// A pooler's `count` per transaction (`None` for direct, which has no pooler).
    fn per_tx(&self, count: Option<u64>) -> Option<f64> {
        self.of_pooler(self.per_transaction(count.map(|n| n as f64)))
    }

    /// A pooler's CPU `seconds` per 1,000 transactions ([`Round::ms_per_1k`]; `None` for
    /// direct).
    fn per_1k(&self, seconds: Option<f64>) -> Option<f64> {
        self.of_pooler(self.ms_per_1k(seconds))
    }

    /// `figure`, or `None` for direct, which has no pooler.
    fn of_pooler(&self, figure: Option<f64>) -> Option<f64> {
        figure.filter(|_| self.target != "direct")
    }

    /// CPU `seconds` in milliseconds per 1,000 of the round's transactions.
    fn ms_per_1k(&self, seconds: Option<f64>) -> Option<f64> {
        self.per_transaction(seconds).map(|s| s * 1_000_000.0)
    }

    /// `value` divided by the round's transactions (`None` when there were none).
    fn per_transaction(&self, value: Option<f64>) -> Option<f64> {
        value
            .filter(|_| self.transactions > 0)
            .map(|v| v / self.transactions as f64)
    }
}

/// The pgbench next to the server binaries, else the one on PATH.
pub(crate) fn pgbench_path(bin_dir: &Path) -> PathBuf {
    client_tool(bin_dir, "pgbench")
}

/// A client program next to the server binaries, else the one on PATH.
fn client_tool(bin_dir: &Path, name: &str) -> PathBuf {
    let local = bin_dir.join(name);
    if local.exists() {
        local
    } else {
        PathBuf::from(name)
    }
}

/// Runs each statement with psql in the `bench` database, directly on the cluster, one `-c`
/// each (so each is a transaction of its own: VACUUM cannot run inside one). Returns the
/// unaligned, tuples-only output.
fn psql_bench(bin_dir: &Path, port: u16, statements: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(client_tool(bin_dir, "psql"));
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
    ])
    .args(["-U", "postgres", "-p", &port.to_string(), "-d", "bench"]);
    for sql in statements {
        cmd.args(["-c", sql]);
    }
    let out = cmd.output().context("run psql")?;
    anyhow::ensure!(
        out.status.success(),
        "psql {statements:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `pgbench -i` on the `bench` database.
pub(crate) fn init(pgbench: &Path, port: u16, scale: u32) -> anyhow::Result<()> {
    println!("pgbench -i -s {scale} ...");
    let out = Command::new(pgbench)
        .args([
            "-i",
            "-q",
            "-s",
            &scale.to_string(),
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &port.to_string(), "bench"])
        .output()
        .context("run pgbench -i")?;
    anyhow::ensure!(
        out.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn parse_after(text: &str, key: &str) -> Option<f64> {
    let at = text.find(key)? + key.len();
    text[at..]
        .split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

/// CPU seconds the whole machine has spent busy so far (all processes and the kernel: user,
/// nice, system, interrupts, soft interrupts and steal), from the first line of `/proc/stat`
/// (in clock ticks, [`PROC_TICKS_PER_SECOND`]). Zero where the line is unreadable.
fn machine_busy_seconds() -> f64 {
    busy_from_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// See [`machine_busy_seconds`]: `cpu  user nice system idle iowait irq softirq steal ...`.
fn busy_from_proc_stat(stat: &str) -> f64 {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / PROC_TICKS_PER_SECOND
}

/// One timed pgbench run against `target`.
pub(crate) fn round(
    pgbench: &Path,
    target: &Target<'_>,
    workload: &Workload,
    clients: u32,
    round: u32,
    seconds: u32,
) -> anyhow::Result<Round> {
    let logs = std::env::temp_dir().join(format!("pgwarden-bench-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let cpu_before = target.pooler().map(|p| p.cpu_times()).unwrap_or_default();
    let switches_before = target.pooler().map(|p| p.switches());
    let machine_before = machine_busy_seconds();
    let mut cmd = Command::new(pgbench);
    cmd.args(["-n", "-h", "127.0.0.1", "-U", "postgres"])
        .args(["-p", &target.port().to_string()])
        .args(["-c", &clients.to_string(), "-j", "2"])
        .args(["-T", &seconds.to_string(), "-M", workload.mode])
        .arg("-l")
        .arg(format!("--log-prefix={}/tx", logs.display()));
    if workload.select_only {
        cmd.arg("-S");
    }
    cmd.arg("bench");
    let out = cmd.output().context("run pgbench")?;
    let machine_cpu_seconds = machine_busy_seconds() - machine_before;
    let cpu_after = target.pooler().map(|p| p.cpu_times()).unwrap_or_default();
    let switches = target
        .pooler()
        .zip(switches_before)
        .map(|(p, before)| p.switches().since(before));
    let user_cpu_seconds = cpu_after.user - cpu_before.user;
    let cpu_seconds = user_cpu_seconds + (cpu_after.system - cpu_before.system);
    let rss_kb = target.pooler().map_or(0, |p| p.rss_kb());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let transactions =
        parse_after(&stdout, "number of transactions actually processed:").unwrap_or(0.0) as u64;
    let failed = parse_after(&stdout, "number of failed transactions:").unwrap_or(0.0);
    let error = if !out.status.success() || transactions == 0 || failed > 0.0 {
        let line = stderr
            .lines()
            .find(|l| l.contains("error") || l.contains("ERROR") || l.contains("FATAL"))
            .unwrap_or(stderr.lines().last().unwrap_or("pgbench failed"));
        Some(line.trim().chars().take(160).collect())
    } else {
        None
    };
    let p99 = p99_from_logs(&logs);
    let _ = std::fs::remove_dir_all(&logs);
    Ok(Round {
        target: target.name(),
        workload: workload.name.clone(),
        clients,
        round,
        tps: error
            .is_none()
            .then(|| parse_after(&stdout, "tps = "))
            .flatten(),
        latency_avg_ms: parse_after(&stdout, "latency average = "),
        latency_p99_ms: p99,
        transactions,
        cpu_seconds,
        user_cpu_seconds: Some(user_cpu_seconds),
        machine_cpu_seconds: Some(machine_cpu_seconds),
        switches,
        rss_kb,
        error,
    })
}

/// The 99th percentile of per-transaction latencies in pgbench's `-l` logs (third column, µs).
fn p99_from_logs(dir: &Path) -> Option<f64> {
    let mut latencies: Vec<u64> = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        latencies.extend(
            text.lines()
                .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok()),
        );
    }
    if latencies.is_empty() {
        return None;
    }
    latencies.sort_unstable();
    let i = ((latencies.len() as f64) * 0.99).ceil() as usize;
    Some(latencies[i.saturating_sub(1).min(latencies.len() - 1)] as f64 / 1000.0)
}

/// Opens `n` logged-in idle client connections to the pooler, returns its RSS (KiB) while they
/// are open, then closes them.
pub(crate) fn idle_clients(pooler: &crate::pooler::Pooler, n: u32) -> anyhow::Result<u64> {
    let port = pooler.port;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let url = format!("postgres://postgres@127.0.0.1:{port}/bench");
        let clients: Vec<_> = stream::iter(0..n)
            .map(|_| {
                let url = url.clone();
                async move {
                    let (client, conn) =
                        tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    let task = tokio::spawn(conn);
                    Ok::<_, tokio_postgres::Error>((client, task))
                }
            })
            .buffer_unordered(100)
            .collect()
            .await;
        let ok: Vec<_> = clients.into_iter().collect::<Result<_, _>>()?;
        anyhow::ensure!(ok.len() == n as usize, "opened {} of {n}", ok.len());
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let rss = pooler.rss_kb();
        drop(ok);
        Ok(rss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_history(cluster: &pgwarden_testkit::PgCluster) -> String {
        psql_bench(
            cluster.bin_dir(),
            cluster.port(),
            &["SELECT count(*) FROM pgbench_history"],
        )
        .unwrap()
    }

    /// How often each table a TPC-B-like transaction updates has been vacuumed.
    fn vacuum_counts(cluster: &pgwarden_testkit::PgCluster) -> String {
        psql_bench(
            cluster.bin_dir(),
            cluster.port(),
            &[
                "SELECT string_agg(relname || '=' || vacuum_count, ' ' ORDER BY relname) \
               FROM pg_stat_user_tables \
               WHERE relname IN ('pgbench_accounts', 'pgbench_branches', 'pgbench_tellers')",
            ],
        )
        .unwrap()
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let stat = "cpu  100 20 50 9000 300 5 7 3 0 0\ncpu0 50 10 25 4500 150 2 3 1 0 0\n";
        assert_eq!(busy_from_proc_stat(stat), 1.85);
        assert_eq!(busy_from_proc_stat(""), 0.0);
        // This machine's own counter moves while this test spins.
        let before = machine_busy_seconds();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while machine_busy_seconds() <= before && start.elapsed().as_secs() < 5 {
            x = x.wrapping_add(1);
        }
        assert!(
            machine_busy_seconds() > before,
            "busy time never grew ({x})"
        );
    }

    #[test]
    fn the_progress_line_gives_cpu_for_poolers_only() {
        let pooler = Round {
            target: "pgwarden",
            workload: "w".into(),
            clients: 10,
            round: 0,
            tps: Some(2_000.0),
            latency_avg_ms: Some(0.5),
            latency_p99_ms: Some(1.25),
            transactions: 30_000,
            cpu_seconds: 0.3,
            user_cpu_seconds: Some(0.06),
            machine_cpu_seconds: Some(1.5),
            switches: Some(Switches {
                voluntary: 4_500,
                involuntary: 9_000,
            }),
            rss_kb: 0,
            error: None,
        };
        assert_eq!(
            pooler.summary(),
            "     2000 tps  avg   0.50 ms  p99    1.25 ms  cpu  10.0 ms/1k tx (user  2.0)  \
             sleeps 0.15 preempted 0.30 /tx"
        );
        let older = Round {
            user_cpu_seconds: None,
            switches: None,
            ..pooler.clone()
        };
        assert!(
            older.summary().ends_with("cpu  10.0 ms/1k tx"),
            "{}",
            older.summary()
        );
        let direct = Round {
            target: "direct",
            ..pooler.clone()
        };
        assert_eq!(
            direct.summary(),
            "     2000 tps  avg   0.50 ms  p99    1.25 ms"
        );
        let failed = Round {
            error: Some("ERROR:  boom".into()),
            ..pooler
        };
        assert_eq!(failed.summary(), "FAILED: ERROR:  boom");
    }

    #[test]
    fn a_writing_round_starts_from_reset_tables() {
        let cluster = pgwarden_testkit::PgCluster::start().expect("start PostgreSQL");
        cluster.create_database("bench", "postgres").unwrap();
        let pgbench = pgbench_path(cluster.bin_dir());
        init(&pgbench, cluster.port(), 1).unwrap();
        // A short TPC-B-like run leaves rows in the history table.
        let out = Command::new(&pgbench)
            .args(["-n", "-t", "20", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &cluster.port().to_string(), "bench"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(count_history(&cluster), "20");
        let before = vacuum_counts(&cluster);

        assert!(Workload::tpcb("simple").writes());
        assert!(!Workload::select_only("simple").writes());
        reset_tables(cluster.bin_dir(), cluster.port()).unwrap();
        assert_eq!(count_history(&cluster), "0");
        // Each of the three updated tables was vacuumed once more (the counts are reported
        // when each VACUUM ends; polled in case the server publishes them late).
        let expected: String = before
            .split(' ')
            .map(|entry| {
                let (table, n) = entry.split_once('=').expect("table=count");
                format!("{table}={}", n.parse::<u64>().expect("a count") + 1)
            })
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(expected.split(' ').count(), 3, "{before}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut after = vacuum_counts(&cluster);
        while after != expected && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            after = vacuum_counts(&cluster);
        }
        assert_eq!(after, expected);
    }
}
