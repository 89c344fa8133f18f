//! Results: raw CSV rows, and a markdown summary (medians over rounds, ratios, CPU per
//! transaction, memory per idle client) appended to `docs/BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::pooler::Switches;
use crate::run::Round;
use crate::Plan;

/// Memory figures of one pooler.
pub(crate) struct Memory {
    pub(crate) pooler: String,
    pub(crate) idle_kb: u64,
    pub(crate) loaded_kb: u64,
    /// After the load rounds, before the pooler is restarted.
    pub(crate) after_load_kb: u64,
    /// The restarted pooler right before the idle clients connect: the base for the
    /// per-client figure. Measured on a fresh process because memory an allocator kept from
    /// the load (or gave back while the clients connected) would otherwise be charged to, or
    /// hide, the idle clients' own.
    pub(crate) before_clients_kb: u64,
    pub(crate) with_clients_kb: u64,
    pub(crate) clients: u32,
}

/// Machine and versions, for the record.
pub(crate) struct Context {
    lines: Vec<String>,
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

impl Context {
    pub(crate) fn gather(
        cluster: &pgwarden_testkit::PgCluster,
        pgwarden: &Path,
        plan: &Plan,
    ) -> Context {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            })
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(String::new(), |kb| format!("{} GiB", kb / 1024 / 1024));
        let lines = vec![
            format!("machine: {cpus} CPUs, {mem}, {}", first_line(Command::new("uname").args(["-sr"]))),
            format!("PostgreSQL: {}", cluster.psql("SHOW server_version").unwrap_or_default()),
            format!("PgBouncer: {}", first_line(Command::new("/usr/sbin/pgbouncer").arg("--version"))),
            format!("pgwarden: {} (git {}), binary `{}`", first_line(Command::new(pgwarden).arg("--version")), first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"])), pgwarden.display()),
            format!(
                "settings: transaction pooling, {} server connections per pooler, trust auth, pgbench -j 2, {} s per round, {} round(s) per target, targets alternating",
                plan.cap, plan.seconds, plan.rounds
            ),
            format!("command: {}", command_line(std::env::args().skip(1))),
        ];
        Context { lines }
    }
}

/// The benchmark's own command line as it ran (`make bench` passes `--pgwarden` and
/// `BENCH_ARGS`), each argument quoted if it needs it.
fn command_line(args: impl Iterator<Item = String>) -> String {
    let mut line = String::from("pgwarden-bench");
    for a in args {
        line.push(' ');
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
            line.push('\'');
            line.push_str(&a.replace('\'', r"'\''"));
            line.push('\'');
        } else {
            line.push_str(&a);
        }
    }
    line
}

/// Writes every round to `bench/results/<unix time>.csv`; returns the path.
pub(crate) fn write_csv(rounds: &[Round]) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from("bench/results");
    std::fs::create_dir_all(&dir)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let path = dir.join(format!("{stamp}.csv"));
    std::fs::write(&path, csv_text(rounds))?;
    Ok(path)
}

/// The rows of [`write_csv`]'s file, with their header.
fn csv_text(rounds: &[Round]) -> String {
    let mut out = String::from(
        "target,workload,clients,round,tps,latency_avg_ms,latency_p99_ms,transactions,pooler_cpu_seconds,pooler_rss_kb,pooler_user_cpu_seconds,machine_cpu_seconds,pooler_voluntary_switches,pooler_involuntary_switches,error\n",
    );
    for r in rounds {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
        let count = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.3},{},{},{},{},{},{}",
            r.target,
            r.workload,
            r.clients,
            r.round,
            opt(r.tps),
            opt(r.latency_avg_ms),
            opt(r.latency_p99_ms),
            r.transactions,
            r.cpu_seconds,
            r.rss_kb,
            opt(r.user_cpu_seconds),
            opt(r.machine_cpu_seconds),
            count(r.switches.map(|s| s.voluntary)),
            count(r.switches.map(|s| s.involuntary)),
            r.error.as_deref().unwrap_or("").replace(',', ";")
        );
    }
    out
}

/// Reads rows written by [`write_csv`], also those of runs before a column was added (user
/// CPU, machine CPU, context switches): columns are found by their header's names.
pub(crate) fn read_csv(path: &Path) -> anyhow::Result<Vec<Round>> {
    parse_csv(&std::fs::read_to_string(path)?)
        .with_context(|| format!("reading {}", path.display()))
}

fn parse_csv(text: &str) -> anyhow::Result<Vec<Round>> {
    let num = |s: &str| s.parse::<f64>().ok();
    let header: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
    // The error is the last column: commas in it were replaced when it was written.
    anyhow::ensure!(
        header.last() == Some(&"error"),
        "the last column is not `error`: {header:?}"
    );
    let column = |name: &str| header.iter().position(|h| *h == name);
    let need = |name: &str| column(name).with_context(|| format!("no column `{name}`"));
    let [target, workload, clients, round, tps, avg, p99, transactions, cpu, rss] = [
        "target",
        "workload",
        "clients",
        "round",
        "tps",
        "latency_avg_ms",
        "latency_p99_ms",
        "transactions",
        "pooler_cpu_seconds",
        "pooler_rss_kb",
    ]
    .map(need);
    let (target, workload, clients, round, tps, avg, p99) =
        (target?, workload?, clients?, round?, tps?, avg?, p99?);
    let (transactions, cpu, rss) = (transactions?, cpu?, rss?);
    let user = column("pooler_user_cpu_seconds");
    let machine = column("machine_cpu_seconds");
    let voluntary = column("pooler_voluntary_switches");
    let involuntary = column("pooler_involuntary_switches");
    let error = header.len() - 1;
    let mut rounds = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.splitn(header.len(), ',').collect();
        anyhow::ensure!(f.len() == header.len(), "bad line: {line}");
        let optional = |i: Option<usize>| i.and_then(|i| num(f[i]));
        let count = |i: Option<usize>| i.and_then(|i| f[i].parse::<u64>().ok());
        let switches = match (count(voluntary), count(involuntary)) {
            (Some(voluntary), Some(involuntary)) => Some(Switches {
                voluntary,
                involuntary,
            }),
            _ => None,
        };
        rounds.push(Round {
            target: match f[target] {
                "direct" => "direct",
                "pgbouncer" => "pgbouncer",
                _ => "pgwarden",
            },
            workload: f[workload].to_string(),
            clients: f[clients].parse()?,
            round: f[round].parse()?,
            tps: num(f[tps]),
            latency_avg_ms: num(f[avg]),
            latency_p99_ms: num(f[p99]),
            transactions: f[transactions].parse()?,
            cpu_seconds: num(f[cpu]).unwrap_or(0.0),
            rss_kb: f[rss].parse()?,
            user_cpu_seconds: optional(user),
            machine_cpu_seconds: optional(machine),
            switches,
            error: (!f[error].is_empty()).then(|| f[error].to_string()),
        });
    }
    Ok(rounds)
}

/// The middle value (the upper of the two middle ones for an even count); `None` if empty.
pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

struct Cell {
    tps: Option<f64>,
    avg: Option<f64>,
    p99: Option<f64>,
    cpu: Option<f64>,
    user: Option<f64>,
    system: Option<f64>,
    machine: Option<f64>,
    sleeps: Option<f64>,
    preemptions: Option<f64>,
}

/// The rounds of one target in one cell.
fn rounds_of<'a>(
    rounds: &'a [Round],
    target: &str,
    workload: &str,
    clients: u32,
) -> Vec<&'a Round> {
    rounds
        .iter()
        .filter(|r| r.target == target && r.workload == workload && r.clients == clients)
        .collect()
}

fn cell(rounds: &[Round], target: &str, workload: &str, clients: u32) -> Cell {
    let mine = rounds_of(rounds, target, workload, clients);
    // Latency and CPU only of the rounds that succeeded.
    let of_ok = |figure: fn(&Round) -> Option<f64>| {
        median(
            mine.iter()
                .filter(|r| r.error.is_none())
                .filter_map(|r| figure(r))
                .collect(),
        )
    };
    Cell {
        tps: median(mine.iter().filter_map(|r| r.tps).collect()),
        avg: of_ok(|r| r.latency_avg_ms),
        p99: of_ok(|r| r.latency_p99_ms),
        cpu: of_ok(Round::cpu_ms_per_1k),
        user: of_ok(Round::user_ms_per_1k),
        system: of_ok(Round::system_ms_per_1k),
        machine: of_ok(Round::machine_ms_per_1k),
        sleeps: of_ok(Round::sleeps_per_tx),
        preemptions: of_ok(Round::preemptions_per_tx),
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Every (workload, clients) cell of the plan, in table order.
fn cells(plan: &Plan) -> impl Iterator<Item = (&str, u32)> {
    plan.workloads
        .iter()
        .flat_map(|w| plan.clients.iter().map(move |&c| (w.name.as_str(), c)))
}

/// The summary section.
pub(crate) fn markdown(
    ctx: &Context,
    plan: &Plan,
    rounds: &[Round],
    memory: &[Memory],
    csv: &Path,
    charts: &[PathBuf],
) -> String {
    let mut md = String::new();
    let kind = if plan.quick { "quick run" } else { "full run" };
    let _ = writeln!(
        md,
        "\n## pgbench: pgwarden vs PgBouncer vs direct ({kind})\n"
    );
    for line in &ctx.lines {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(md, "- raw rows: `{}`\n", csv.display());
    let _ = writeln!(
        md,
        "Medians over rounds. TPS, p99 latency in ms, pooler CPU in ms per 1,000 transactions.\n"
    );
    let _ = writeln!(
        md,
        "| workload | clients | direct TPS | PgBouncer TPS | pgwarden TPS | pgwarden/direct | PgBouncer/direct | pgwarden/PgBouncer | p99 direct | p99 PgBouncer | p99 pgwarden | CPU PgBouncer | CPU pgwarden |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (workload, c) in cells(plan) {
        let d = cell(rounds, "direct", workload, c);
        let b = cell(rounds, "pgbouncer", workload, c);
        let p = cell(rounds, "pgwarden", workload, c);
        let _ = writeln!(
            md,
            "| {} | {c} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            workload,
            fmt_opt(d.tps, 0),
            fmt_opt(b.tps, 0),
            fmt_opt(p.tps, 0),
            ratio(p.tps, d.tps),
            ratio(b.tps, d.tps),
            ratio(p.tps, b.tps),
            fmt_opt(d.p99, 2),
            fmt_opt(b.p99, 2),
            fmt_opt(p.p99, 2),
            fmt_opt(b.cpu, 1),
            fmt_opt(p.cpu, 1),
        );
    }
    md.push_str(&latency_markdown(plan, rounds));
    md.push_str(&per_round_markdown(plan, rounds));
    md.push_str(&cpu_split_markdown(plan, rounds));
    md.push_str(&machine_cpu_markdown(plan, rounds));
    md.push_str(&switches_markdown(plan, rounds));
    let failures = failures(plan, rounds);
    if !failures.is_empty() {
        let _ = writeln!(
            md,
            "\nFailed rounds (no TPS recorded; a cell's medians are of its rounds that succeeded):\n"
        );
        for f in failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    for chart in charts {
        let _ = writeln!(md, "\n![{}](../{})", chart.display(), chart.display());
    }
    // A run of some workloads only (`--workload`) skips the idle-client measurement.
    if !memory.is_empty() {
        let _ = writeln!(md, "\nMemory (RSS):\n");
        md.push_str(&memory_markdown(memory));
    }
    md
}

/// One line per target and cell with failed rounds: how many of its rounds failed (all, or
/// some, whose medians are then of the others) and the first error.
fn failures(plan: &Plan, rounds: &[Round]) -> Vec<String> {
    let mut lines = Vec::new();
    for (workload, c) in cells(plan) {
        for (target, name) in [
            ("direct", "direct"),
            ("pgbouncer", "PgBouncer"),
            ("pgwarden", "pgwarden"),
        ] {
            let mine = rounds_of(rounds, target, workload, c);
            let failed: Vec<&str> = mine.iter().filter_map(|r| r.error.as_deref()).collect();
            let Some(first) = failed.first() else {
                continue;
            };
            let how_many = if failed.len() == mine.len() {
                format!("all {} rounds", mine.len())
            } else {
                format!("{} of {} rounds", failed.len(), mine.len())
            };
            lines.push(format!(
                "{name}, {workload}, {c} clients, {how_many}: `{first}`"
            ));
        }
    }
    lines
}

/// pgwarden's figure over PgBouncer's, round by round (the two ran back to back in each
/// round), in round order; `None` where either has no figure.
fn paired(
    rounds: &[Round],
    workload: &str,
    clients: u32,
    figure: impl Fn(&Round) -> Option<f64>,
) -> Vec<Option<f64>> {
    let of = |target: &str, round: u32| {
        rounds
            .iter()
            .find(|r| {
                r.target == target
                    && r.workload == workload
                    && r.clients == clients
                    && r.round == round
            })
            .filter(|r| r.error.is_none())
            .and_then(&figure)
    };
    let last = rounds
        .iter()
        .filter(|r| r.workload == workload && r.clients == clients)
        .map(|r| r.round)
        .max();
    (0..last.map_or(0, |l| l + 1))
        .map(
            |round| match (of("pgwarden", round), of("pgbouncer", round)) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
        )
        .collect()
}

/// Round-by-round ratios as text: `0.97 1.04 1.02 (median 1.02; 2 of 3 ≥ 1)`;
/// `higher_is_better` says whether a ratio above 1 is pgwarden's win (TPS) or loss (latency,
/// CPU). The median of the paired ratios is less disturbed by drift than the ratio of the two
/// poolers' own medians (the main table's), since each pair ran back to back.
fn paired_text(ratios: &[Option<f64>], higher_is_better: bool) -> String {
    let known: Vec<f64> = ratios.iter().flatten().copied().collect();
    if known.is_empty() {
        return "–".into();
    }
    let values: Vec<String> = ratios
        .iter()
        .map(|r| r.map_or("–".to_string(), |r| format!("{r:.2}")))
        .collect();
    format!(
        "{} ({})",
        values.join(" "),
        ratios_summary(&known, higher_is_better)
    )
}

/// `median 1.02; 2 of 3 ≥ 1; 75 % interval 0.97–1.04` for a non-empty list of ratios (see
/// [`paired_text`] for `higher_is_better`).
fn ratios_summary(known: &[f64], higher_is_better: bool) -> String {
    let wins = known
        .iter()
        .filter(|r| {
            if higher_is_better {
                **r >= 1.0
            } else {
                **r <= 1.0
            }
        })
        .count();
    let sign = if higher_is_better { "≥" } else { "≤" };
    let mid = median(known.to_vec()).expect("not empty");
    let interval = match median_interval(known.to_vec()) {
        Some((lo, hi, coverage)) => {
            format!("; {:.0} % interval {lo:.2}–{hi:.2}", coverage * 100.0)
        }
        None => String::new(),
    };
    format!(
        "median {mid:.2}; {wins} of {} {sign} 1{interval}",
        known.len()
    )
}

/// pgwarden over PgBouncer pooled over the pairs of several runs (`pgwarden-bench --across`):
/// for every cell any of the runs measured, each run's round-by-round ratios (as in its own
/// report) put together, and the median of all of them with the sign test's interval: runs
/// on different hours or hosts give a cell more pairs, and more kinds of drift, than any one
/// of them. Pooling only makes sense for runs of the same pgwarden code, which the caller
/// picks (a result file does not say which code it measured; its report section does).
pub(crate) fn across_markdown(runs: &[(String, Vec<Round>)]) -> String {
    // Workloads in the order the runs first name them, client counts rising within each.
    let mut workloads: Vec<&str> = Vec::new();
    let mut cells: Vec<(&str, u32)> = Vec::new();
    for r in runs.iter().flat_map(|(_, rounds)| rounds) {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
        if !cells.contains(&(r.workload.as_str(), r.clients)) {
            cells.push((&r.workload, r.clients));
        }
    }
    cells.sort_by_key(|&(w, c)| (workloads.iter().position(|x| *x == w), c));
    let names: Vec<&str> = runs.iter().map(|(name, _)| name.as_str()).collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "pgwarden over PgBouncer, the round-by-round ratios of {} run(s) pooled ({}), with \
         the sign test's interval for the median ratio:\n",
        runs.len(),
        names.join(", ")
    );
    let _ = writeln!(
        md,
        "| workload | clients | runs | pairs | TPS | p99 | CPU per transaction |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for (workload, c) in cells {
        let pooled = |figure: fn(&Round) -> Option<f64>| -> Vec<f64> {
            runs.iter()
                .flat_map(|(_, rounds)| paired(rounds, workload, c, figure))
                .flatten()
                .collect()
        };
        // Per run first: how many runs have a pair in this cell.
        let tps_by_run: Vec<Vec<f64>> = runs
            .iter()
            .map(|(_, rounds)| {
                paired(rounds, workload, c, |r| r.tps)
                    .into_iter()
                    .flatten()
                    .collect()
            })
            .collect();
        let with_pairs = tps_by_run.iter().filter(|t| !t.is_empty()).count();
        let tps = tps_by_run.concat();
        let pairs = tps.len();
        let text = |ratios: Vec<f64>, higher_is_better: bool| {
            if ratios.is_empty() {
                "–".to_string()
            } else {
                ratios_summary(&ratios, higher_is_better)
            }
        };
        let _ = writeln!(
            md,
            "| {workload} | {c} | {with_pairs} | {pairs} | {} | {} | {} |",
            text(tps, true),
            text(pooled(|r| r.latency_p99_ms), false),
            text(pooled(Round::cpu_ms_per_1k), false),
        );
    }
    md
}

/// A distribution-free confidence interval for the median of `v` (the sign test's): the
/// `k`-th smallest and `k`-th largest value, with the largest `k` whose interval still covers
/// the median with probability at least 95 %, or `k = 1` (the whole range) when even that
/// covers less (fewer than 6 values). Returns the bounds and the coverage; `None` for fewer
/// than 2 values. An interval around a paired ratio that holds 1 means the rounds cannot tell
/// the two poolers apart.
fn median_interval(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    let n = v.len();
    if n < 2 {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // coverage(k) = 1 - 2 P(B <= k - 1), B ~ Binomial(n, 1/2).
    let mut below = 0.0; // P(B <= k - 1)
    let mut choose = 1.0; // C(n, k - 1)
    let half_n = 0.5f64.powi(n as i32);
    let mut best = (1, 1.0 - 2.0 * half_n);
    for k in 1..=n / 2 {
        below += choose * half_n;
        let coverage = 1.0 - 2.0 * below;
        if coverage < 0.95 {
            break;
        }
        best = (k, coverage);
        choose = choose * (n - (k - 1)) as f64 / k as f64;
    }
    let (k, coverage) = best;
    Some((v[k - 1], v[n - k], coverage))
}

/// The per-round table: pgwarden over PgBouncer in each round, where drift between rounds
/// cancels out.
fn per_round_markdown(plan: &Plan, rounds: &[Round]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\npgwarden over PgBouncer round by round (the two ran back to back in each round, \
         each going first in turn), with the sign test's interval for the median ratio: one \
         that holds 1 means these rounds cannot tell the two poolers apart:\n"
    );
    let _ = writeln!(
        md,
        "| workload | clients | TPS | p99 | CPU per transaction |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (workload, c) in cells(plan) {
        let tps = paired(rounds, workload, c, |r| r.tps);
        let p99 = paired(rounds, workload, c, |r| r.latency_p99_ms);
        let cpu = paired(rounds, workload, c, Round::cpu_ms_per_1k);
        let _ = writeln!(
            md,
            "| {} | {c} | {} | {} | {} |",
            workload,
            paired_text(&tps, true),
            paired_text(&p99, false),
            paired_text(&cpu, false),
        );
    }
    md
}

/// A table with a row per cell of the plan: `heading`, then the columns after workload and
/// clients, each row's figures made by `row` from the cells of direct, PgBouncer and pgwarden.
fn cell_table(
    plan: &Plan,
    rounds: &[Round],
    heading: &str,
    columns: &[&str],
    row: impl Fn(&Cell, &Cell, &Cell) -> Vec<String>,
) -> String {
    let mut md = format!("\n{heading}\n\n| workload | clients |");
    for c in columns {
        let _ = write!(md, " {c} |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(columns.len()));
    md.push('\n');
    for (workload, c) in cells(plan) {
        let d = cell(rounds, "direct", workload, c);
        let b = cell(rounds, "pgbouncer", workload, c);
        let p = cell(rounds, "pgwarden", workload, c);
        let _ = write!(md, "| {workload} | {c} |");
        for figure in row(&d, &b, &p) {
            let _ = write!(md, " {figure} |");
        }
        md.push('\n');
    }
    md
}

/// Average and p99 latency side by side: the average (pgbench's `latency average`) for all
/// three targets, and for both figures each pooler's ratio to direct and pgwarden's to
/// PgBouncer's (the p99 values themselves are in the main table).
fn latency_markdown(plan: &Plan, rounds: &[Round]) -> String {
    cell_table(
        plan,
        rounds,
        "Latency (medians over rounds): average in ms, and the ratios of average and p99:",
        &[
            "avg direct",
            "avg PgBouncer",
            "avg pgwarden",
            "avg PgBouncer/direct",
            "avg pgwarden/direct",
            "avg pgwarden/PgBouncer",
            "p99 PgBouncer/direct",
            "p99 pgwarden/direct",
            "p99 pgwarden/PgBouncer",
        ],
        |d, b, p| {
            vec![
                fmt_opt(d.avg, 3),
                fmt_opt(b.avg, 3),
                fmt_opt(p.avg, 3),
                ratio(b.avg, d.avg),
                ratio(p.avg, d.avg),
                ratio(p.avg, b.avg),
                ratio(b.p99, d.p99),
                ratio(p.p99, d.p99),
                ratio(p.p99, b.p99),
            ]
        },
    )
}

/// Each pooler's CPU per transaction split into user and system (kernel) time: the system
/// part is mostly the socket calls both poolers make alike, the user part is each one's own
/// code. Empty when no round recorded the split (rows of older runs).
fn cpu_split_markdown(plan: &Plan, rounds: &[Round]) -> String {
    if rounds.iter().all(|r| r.user_cpu_seconds.is_none()) {
        return String::new();
    }
    cell_table(
        plan,
        rounds,
        "Pooler CPU in ms per 1,000 transactions, user and system time (medians over rounds):",
        &[
            "user PgBouncer",
            "user pgwarden",
            "user pgwarden/PgBouncer",
            "system PgBouncer",
            "system pgwarden",
            "system pgwarden/PgBouncer",
        ],
        |_, b, p| {
            vec![
                fmt_opt(b.user, 2),
                fmt_opt(p.user, 2),
                ratio(p.user, b.user),
                fmt_opt(b.system, 2),
                fmt_opt(p.system, 2),
                ratio(p.system, b.system),
            ]
        },
    )
}

/// How often each pooler blocked waiting for work (voluntary context switches) and how often
/// the scheduler switched it out while it had work (involuntary), per transaction: on a
/// machine the pooler shares with PostgreSQL and pgbench, a pooler preempted more often waits
/// more for the CPU. Empty when no round recorded them (rows of older runs).
fn switches_markdown(plan: &Plan, rounds: &[Round]) -> String {
    if rounds.iter().all(|r| r.switches.is_none()) {
        return String::new();
    }
    cell_table(
        plan,
        rounds,
        "Pooler context switches per transaction, all its threads (medians over rounds): sleeps (it blocked waiting for work) and preemptions (switched out while it had work):",
        &[
            "sleeps PgBouncer",
            "sleeps pgwarden",
            "sleeps pgwarden/PgBouncer",
            "preemptions PgBouncer",
            "preemptions pgwarden",
            "preemptions pgwarden/PgBouncer",
        ],
        |_, b, p| {
            vec![
                fmt_opt(b.sleeps, 3),
                fmt_opt(p.sleeps, 3),
                ratio(p.sleeps, b.sleeps),
                fmt_opt(b.preemptions, 3),
                fmt_opt(p.preemptions, 3),
                ratio(p.preemptions, b.preemptions),
            ]
        },
    )
}

/// The whole machine's CPU per transaction through each target: PostgreSQL, pgbench, the
/// pooler and the kernel together. A pooler that made the others work more (more wake-ups,
/// smaller writes) shows here even when its own CPU does not. Empty when no round recorded it
/// (rows of older runs).
fn machine_cpu_markdown(plan: &Plan, rounds: &[Round]) -> String {
    if rounds.iter().all(|r| r.machine_cpu_seconds.is_none()) {
        return String::new();
    }
    cell_table(
        plan,
        rounds,
        "Whole machine CPU in ms per 1,000 transactions, all processes and the kernel (medians over rounds):",
        &[
            "direct",
            "PgBouncer",
            "pgwarden",
            "PgBouncer/direct",
            "pgwarden/direct",
            "pgwarden/PgBouncer",
        ],
        |d, b, p| {
            vec![
                fmt_opt(d.machine, 1),
                fmt_opt(b.machine, 1),
                fmt_opt(p.machine, 1),
                ratio(b.machine, d.machine),
                ratio(p.machine, d.machine),
                ratio(p.machine, b.machine),
            ]
        },
    )
}

/// The memory table and how to read it.
pub(crate) fn memory_markdown(memory: &[Memory]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| pooler | idle (fresh) | under load (max) | after the load | restarted | with {} idle clients | per idle client |",
        memory.first().map_or(0, |m| m.clients)
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for m in memory {
        let per = (m.with_clients_kb.saturating_sub(m.before_clients_kb)) as f64
            / f64::from(m.clients.max(1));
        let _ = writeln!(
            md,
            "| {} | {} KiB | {} KiB | {} KiB | {} KiB | {} KiB | {:.2} KiB |",
            m.pooler,
            m.idle_kb,
            m.loaded_kb,
            m.after_load_kb,
            m.before_clients_kb,
            m.with_clients_kb,
            per
        );
    }
    let _ = writeln!(
        md,
        "\nPer idle client = (RSS with the idle clients - RSS of the restarted pooler just before \
         they connected) / clients. Both poolers are restarted after the load rounds, so memory \
         an allocator kept from the load is neither charged to the idle clients nor hides \
         theirs. Each idle client has logged in (tokio-postgres, 100 logins at a time) and sits \
         between transactions; RSS is read 2 s after the last login."
    );
    md
}

/// Appends the summary to `docs/BENCHMARKS.md`.
pub(crate) fn append_to_docs(markdown: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open("docs/BENCHMARKS.md")?;
    f.write_all(markdown.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(target: &'static str, round: u32, tps: Option<f64>, cpu: f64) -> Round {
        Round {
            target,
            workload: "w".into(),
            clients: 10,
            round,
            tps,
            latency_avg_ms: Some(1.0),
            latency_p99_ms: Some(2.0),
            transactions: 1_000,
            cpu_seconds: cpu,
            user_cpu_seconds: Some(cpu / 4.0),
            machine_cpu_seconds: Some(cpu * 10.0 + 1.0),
            switches: (target != "direct").then_some(Switches {
                voluntary: u64::from(round) * 100 + 150,
                involuntary: (cpu * 10_000.0).round() as u64,
            }),
            rss_kb: 0,
            error: tps.is_none().then(|| "failed".to_string()),
        }
    }

    #[test]
    fn the_command_line_quotes_only_what_needs_it() {
        let args = ["--rounds", "5", "--workload", "select only", "it's", ""];
        assert_eq!(
            command_line(args.iter().map(|a| a.to_string())),
            r"pgwarden-bench --rounds 5 --workload 'select only' 'it'\''s' ''"
        );
        assert_eq!(command_line(std::iter::empty()), "pgwarden-bench");
    }

    #[test]
    fn ratios_pair_the_poolers_round_by_round() {
        let rounds = vec![
            round("direct", 0, Some(500.0), 0.0),
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(110.0), 0.018),
            round("direct", 1, Some(500.0), 0.0),
            round("pgwarden", 1, Some(45.0), 0.030),
            round("pgbouncer", 1, Some(50.0), 0.020),
            round("direct", 2, Some(500.0), 0.0),
            round("pgbouncer", 2, None, 0.0),
            round("pgwarden", 2, Some(80.0), 0.020),
        ];
        let tps = paired(&rounds, "w", 10, |r| r.tps);
        assert_eq!(tps, vec![Some(1.1), Some(0.9), None]);
        assert_eq!(
            paired_text(&tps, true),
            "1.10 0.90 – (median 1.10; 1 of 2 ≥ 1; 50 % interval 0.90–1.10)"
        );
        let cpu = paired(&rounds, "w", 10, Round::cpu_ms_per_1k);
        assert_eq!(
            paired_text(&cpu, false),
            "0.90 1.50 – (median 1.50; 1 of 2 ≤ 1; 50 % interval 0.90–1.50)"
        );
        assert_eq!(
            paired_text(&paired(&rounds, "other", 10, |r| r.tps), true),
            "–"
        );
    }

    #[test]
    fn median_interval_is_the_sign_tests() {
        assert_eq!(median_interval(vec![1.0]), None);
        // Five values: even the whole range covers only 1 - 2/32 of the time.
        let (lo, hi, coverage) = median_interval(vec![5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((lo, hi), (1.0, 5.0));
        assert!((coverage - 0.9375).abs() < 1e-9);
        // Nine: the 2nd smallest to the 2nd largest, 1 - 2 * 10/512.
        let nine: Vec<f64> = (1..=9).rev().map(f64::from).collect();
        let (lo, hi, coverage) = median_interval(nine).unwrap();
        assert_eq!((lo, hi), (2.0, 8.0));
        assert!((coverage - (1.0 - 20.0 / 512.0)).abs() < 1e-9);
        // Twenty: the 6th to the 15th (P(B <= 5) = 0.0207, P(B <= 6) = 0.0577).
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        let (lo, hi, coverage) = median_interval(twenty).unwrap();
        assert_eq!((lo, hi), (6.0, 15.0));
        assert!(coverage > 0.95 && coverage < 0.96, "{coverage}");
    }

    #[test]
    fn csv_rows_read_back_in_each_layout() {
        let mut rounds = vec![
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, None, 0.0),
        ];
        rounds[1].error = Some("ERROR:  prepared statement \"P_0\", already exists".into());
        let back = parse_csv(&csv_text(&rounds)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].user_cpu_seconds, Some(0.005));
        assert_eq!(back[0].machine_cpu_seconds, Some(1.2));
        assert_eq!(
            back[0].switches,
            Some(Switches {
                voluntary: 150,
                involuntary: 200
            })
        );
        assert_eq!(back[0].cpu_seconds, 0.020);
        assert_eq!(back[0].tps, Some(100.0));
        assert_eq!(back[1].tps, None);
        assert_eq!(
            back[1].error.as_deref(),
            Some("ERROR:  prepared statement \"P_0\"; already exists")
        );
        // A file of a run with user time and no machine time.
        let user_only = "target,workload,clients,round,tps,latency_avg_ms,latency_p99_ms,\
                         transactions,pooler_cpu_seconds,pooler_rss_kb,pooler_user_cpu_seconds,\
                         error\n\
                         pgbouncer,w,10,0,,1.000,2.000,0,0.000,5000,0.004,ERROR:  x\n";
        let back = parse_csv(user_only).unwrap();
        assert_eq!(back[0].user_cpu_seconds, Some(0.004));
        assert_eq!(back[0].machine_cpu_seconds, None);
        assert_eq!(back[0].switches, None);
        assert_eq!(back[0].error.as_deref(), Some("ERROR:  x"));
        // A file of a run before both columns: the same rows, no user time.
        let old = "target,workload,clients,round,tps,latency_avg_ms,latency_p99_ms,transactions,\
                   pooler_cpu_seconds,pooler_rss_kb,error\n\
                   pgwarden,w,10,0,110.000,1.000,2.000,1000,0.018,5000,\n";
        let back = parse_csv(old).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].user_cpu_seconds, None);
        assert_eq!(back[0].cpu_seconds, 0.018);
        assert_eq!(back[0].rss_kb, 5000);
        assert!(back[0].error.is_none());
        assert!(parse_csv(
            "target,workload,clients,round,tps,latency_avg_ms,latency_p99_ms,transactions,\
             pooler_cpu_seconds,pooler_rss_kb,pooler_user_cpu_seconds,error\n\
             pgwarden,w,10,0\n"
        )
        .is_err());
    }

    /// A plan of one cell (select-only `-M simple`, 10 clients), its workload's name, and
    /// `rounds` moved into that workload.
    fn one_cell(mut rounds: Vec<Round>) -> (Plan, String, Vec<Round>) {
        let plan = Plan {
            workloads: vec![crate::run::Workload::select_only("simple")],
            clients: vec![10],
            ..Plan::full()
        };
        let name = plan.workloads[0].name.clone();
        for r in &mut rounds {
            r.workload = name.clone();
        }
        (plan, name, rounds)
    }

    #[test]
    fn the_latency_table_gives_averages_and_ratios_of_succeeded_rounds() {
        let (plan, name, mut rounds) = one_cell(vec![
            round("direct", 0, Some(500.0), 0.0),
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(100.0), 0.020),
            round("pgbouncer", 1, None, 0.0),
        ]);
        rounds[0].latency_avg_ms = Some(0.2);
        rounds[0].latency_p99_ms = Some(0.5);
        rounds[1].latency_avg_ms = Some(0.4);
        rounds[2].latency_avg_ms = Some(0.3);
        rounds[2].latency_p99_ms = Some(1.5);
        // The failed PgBouncer round's latency (1.0, 2.0) must not count.
        let md = latency_markdown(&plan, &rounds);
        assert!(
            md.contains(&format!(
                "| {name} | 10 | 0.200 | 0.400 | 0.300 | 2.00 | 1.50 | 0.75 | 4.00 | 3.00 | 0.75 |"
            )),
            "{md}"
        );
        // A cell no round reached shows dashes.
        let other = Plan {
            clients: vec![50],
            ..plan
        };
        assert!(latency_markdown(&other, &rounds).contains(&format!(
            "| {name} | 50 | – | – | – | – | – | – | – | – | – |"
        )));
    }

    #[test]
    fn failed_rounds_are_counted_per_target_and_cell() {
        let (plan, name, mut rounds) = one_cell(vec![
            round("direct", 0, Some(500.0), 0.0),
            round("pgbouncer", 0, None, 0.020),
            round("pgwarden", 0, Some(100.0), 0.020),
            round("direct", 1, Some(500.0), 0.0),
            round("pgbouncer", 1, Some(100.0), 0.020),
            round("pgwarden", 1, None, 0.020),
            round("pgwarden", 2, None, 0.020),
            round("pgbouncer", 2, None, 0.020),
        ]);
        rounds[5].error = Some("first".into());
        assert_eq!(
            failures(&plan, &rounds),
            vec![
                format!("PgBouncer, {name}, 10 clients, 2 of 3 rounds: `failed`"),
                format!("pgwarden, {name}, 10 clients, 2 of 3 rounds: `first`"),
            ]
        );
        rounds[4].tps = None;
        rounds[4].error = Some("all".into());
        assert_eq!(
            failures(&plan, &rounds)[0],
            format!("PgBouncer, {name}, 10 clients, all 3 rounds: `failed`")
        );
        rounds.retain(|r| r.error.is_none());
        assert!(failures(&plan, &rounds).is_empty());
    }

    #[test]
    fn the_machine_table_gives_every_target_per_1000_transactions() {
        let (plan, name, mut rounds) = one_cell(vec![
            round("direct", 0, Some(500.0), 0.0),
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(100.0), 0.030),
        ]);
        // machine = cpu * 10 + 1 seconds over 1,000 transactions: 1, 1.2 and 1.3 s.
        let md = machine_cpu_markdown(&plan, &rounds);
        assert!(
            md.contains(&format!(
                "| {name} | 10 | 1000.0 | 1200.0 | 1300.0 | 1.20 | 1.30 | 1.08 |"
            )),
            "{md}"
        );
        for r in &mut rounds {
            r.machine_cpu_seconds = None;
        }
        assert_eq!(machine_cpu_markdown(&plan, &rounds), "");
    }

    #[test]
    fn the_cpu_split_table_gives_user_and_system_time_per_pooler() {
        let (plan, name, mut rounds) = one_cell(vec![
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(100.0), 0.024),
            round("pgwarden", 1, Some(100.0), 0.030),
            round("pgbouncer", 1, Some(100.0), 0.028),
        ]);
        // user = cpu / 4: PgBouncer 5 and 7 ms per 1,000 transactions, pgwarden 6 and 7.5;
        // the medians of two rounds are their higher values.
        let md = cpu_split_markdown(&plan, &rounds);
        assert!(
            md.contains(&format!(
                "| {name} | 10 | 7.00 | 7.50 | 1.07 | 21.00 | 22.50 | 1.07 |"
            )),
            "{md}"
        );
        for r in &mut rounds {
            r.user_cpu_seconds = None;
        }
        assert_eq!(cpu_split_markdown(&plan, &rounds), "");
    }

    #[test]
    fn the_switches_table_gives_sleeps_and_preemptions_per_transaction() {
        let (plan, name, mut rounds) = one_cell(vec![
            round("direct", 0, Some(500.0), 0.0),
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(100.0), 0.024),
            round("pgwarden", 1, Some(100.0), 0.030),
            round("pgbouncer", 1, Some(100.0), 0.028),
        ]);
        // Over 1,000 transactions: voluntary 150 in round 0 and 250 in round 1; involuntary
        // 200 and 280 for PgBouncer, 240 and 300 for pgwarden; medians take the higher.
        let md = switches_markdown(&plan, &rounds);
        assert!(
            md.contains(&format!(
                "| {name} | 10 | 0.250 | 0.250 | 1.00 | 0.280 | 0.300 | 1.07 |"
            )),
            "{md}"
        );
        // A failed round's switches do not count.
        rounds[3].tps = None;
        rounds[3].error = Some("failed".into());
        let md = switches_markdown(&plan, &rounds);
        assert!(
            md.contains(&format!(
                "| {name} | 10 | 0.250 | 0.150 | 0.60 | 0.280 | 0.240 | 0.86 |"
            )),
            "{md}"
        );
        for r in &mut rounds {
            r.switches = None;
        }
        assert_eq!(switches_markdown(&plan, &rounds), "");
    }

    #[test]
    fn runs_are_pooled_pair_by_pair() {
        let a = vec![
            round("direct", 0, Some(500.0), 0.0),
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(110.0), 0.018),
            round("pgwarden", 1, Some(45.0), 0.030),
            round("pgbouncer", 1, Some(50.0), 0.020),
        ];
        let in_cell = |mut r: Round, workload: &str, clients: u32| {
            r.workload = workload.into();
            r.clients = clients;
            r
        };
        // Listed first, with its cells out of order: rows still come by workload (in the
        // order the runs first name them), then clients.
        let b = vec![
            in_cell(round("pgwarden", 0, Some(105.0), 0.02), "w", 200),
            in_cell(round("pgbouncer", 0, Some(100.0), 0.02), "w", 200),
            in_cell(round("pgwarden", 0, Some(100.0), 0.02), "p", 10),
            in_cell(round("pgbouncer", 0, None, 0.0), "p", 10),
            round("pgbouncer", 0, Some(100.0), 0.020),
            round("pgwarden", 0, Some(120.0), 0.024),
            round("pgwarden", 1, Some(90.0), 0.020),
            round("pgbouncer", 1, None, 0.0),
        ];
        let md = across_markdown(&[("b.csv".into(), b), ("a.csv".into(), a.clone())]);
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| w |") || l.starts_with("| p |"))
            .collect();
        assert_eq!(
            rows,
            [
                // TPS 1.10, 0.90 from a and 1.20 from b (b's round 1 failed for PgBouncer);
                // CPU 0.90, 1.50 and 1.20.
                "| w | 10 | 2 | 3 | median 1.10; 2 of 3 ≥ 1; 75 % interval 0.90–1.20 \
                 | median 1.00; 3 of 3 ≤ 1; 75 % interval 1.00–1.00 \
                 | median 1.20; 1 of 3 ≤ 1; 75 % interval 0.90–1.50 |",
                "| w | 200 | 1 | 1 | median 1.05; 1 of 1 ≥ 1 | median 1.00; 1 of 1 ≤ 1 \
                 | median 1.00; 1 of 1 ≤ 1 |",
                "| p | 10 | 0 | 0 | – | – | – |",
            ],
            "{md}"
        );
        assert!(md.contains("2 run(s) pooled (b.csv, a.csv)"), "{md}");
        // One run alone gives its own report's median and interval.
        let alone = across_markdown(&[("a.csv".into(), a.clone())]);
        let tps = paired(&a, "w", 10, |r| r.tps);
        let own = paired_text(&tps, true);
        let summary = &own[own.find('(').unwrap() + 1..own.len() - 1];
        assert!(
            alone.contains(&format!("| w | 10 | 1 | 2 | {summary} |")),
            "{alone}"
        );
    }

    #[test]
    fn every_committed_result_file_reads_back() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "csv") {
                let rounds = read_csv(&path).unwrap();
                assert!(!rounds.is_empty(), "{}", path.display());
                files += 1;
            }
        }
        assert!(files > 0, "no CSV under {}", dir.display());
    }

    #[test]
    fn csv_columns_are_found_by_name() {
        // Columns in another order, the switches of one row missing.
        let text = "round,target,workload,clients,tps,latency_avg_ms,latency_p99_ms,transactions,\
                    pooler_cpu_seconds,pooler_rss_kb,pooler_involuntary_switches,\
                    pooler_voluntary_switches,error\n\
                    3,pgwarden,w,10,110.000,1.000,2.000,1000,0.018,5000,40,7,\n\
                    3,direct,w,10,500.000,0.200,0.500,5000,0.000,0,,,\n";
        let back = parse_csv(text).unwrap();
        assert_eq!(back[0].round, 3);
        assert_eq!(back[0].target, "pgwarden");
        assert_eq!(
            back[0].switches,
            Some(Switches {
                voluntary: 7,
                involuntary: 40
            })
        );
        assert_eq!(back[0].preemptions_per_tx(), Some(0.04));
        assert_eq!(back[1].switches, None);
        assert_eq!(back[1].preemptions_per_tx(), None);
        // The error must be the last column, and the named columns must be there.
        assert!(parse_csv("target,error,workload\n").is_err());
        assert!(parse_csv("target,workload,error\npgwarden,w,\n").is_err());
    }
}
