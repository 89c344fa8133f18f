//! The poolers under test as child processes: PgBouncer (Debian's 1.18) and `pgwarden serve`,
//! both in transaction mode with trust auth and the same server connection cap, plus their
//! CPU time and memory read from `/proc`.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// One pooler process.
pub(crate) struct Pooler {
    pub(crate) name: &'static str,
    pub(crate) port: u16,
    child: Child,
    _dir: tempfile_dir::Dir,
}

/// Where pgbench connects.
pub(crate) enum Target<'a> {
    /// PostgreSQL itself.
    Direct { port: u16 },
    /// Through a pooler.
    Pooler(&'a Pooler),
}

impl Target<'_> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::Direct { .. } => "direct",
            Target::Pooler(p) => p.name,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        match self {
            Target::Direct { port } => *port,
            Target::Pooler(p) => p.port,
        }
    }

    pub(crate) fn pooler(&self) -> Option<&Pooler> {
        match self {
            Target::Direct { .. } => None,
            Target::Pooler(p) => Some(p),
        }
    }
}

/// A temporary directory the `postgres` user can use (PgBouncer refuses to run as root).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub(crate) struct Dir(PathBuf);

    impl Dir {
        pub(crate) fn new(kind: &str) -> std::io::Result<Dir> {
            let path = std::env::temp_dir().join(format!(
                "pgwarden-bench-{kind}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&path)?;
            Ok(Dir(path))
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// uid/gid of the `postgres` system user when running as root.
fn postgres_user() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?;
    if euid != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&"postgres") && f.len() > 3 {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

fn pgbouncer_binary() -> anyhow::Result<String> {
    for candidate in ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"] {
        if Path::new(candidate).exists() {
            return Ok(candidate.to_string());
        }
    }
    anyhow::bail!("pgbouncer not found: run `make deps-bench` or `apt-get install pgbouncer`")
}

fn wait_listening(port: u16, child: &mut Child, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{name} exited during start-up: {status}");
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A command running `program` in a session of its own, as a service runs (PostgreSQL does the
/// same for each backend). Where the kernel groups CPU time by session
/// (`kernel.sched_autogroup_enabled`, the default on Debian), a pooler left in the benchmark's
/// session would share one slice of the CPU with pgbench and be preempted by every backend it
/// wakes. `setsid` (util-linux) replaces itself with `program`: the process id stays the
/// pooler's, which `cpu_times` and `rss_kib` read.
fn in_own_session(program: &Path) -> Command {
    match ["/usr/bin/setsid", "/bin/setsid"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
    {
        Some(setsid) => {
            let mut cmd = Command::new(setsid);
            cmd.arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Fails unless process `pid` runs `name` (and not `setsid`, which would mean it forked and
/// the CPU and memory figures would be read from the wrong process).
fn check_runs(pid: u32, name: &str) -> anyhow::Result<()> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    anyhow::ensure!(
        comm.trim() == name,
        "process {pid} runs {:?}, expected {name}",
        comm.trim()
    );
    Ok(())
}

impl Pooler {
    pub(crate) fn start_pgbouncer(pg_port: u16, cap: u32) -> anyhow::Result<Pooler> {
        let bin = pgbouncer_binary()?;
        let dir = tempfile_dir::Dir::new("pgbouncer")?;
        let port = pgwarden_testkit::free_port();
        let d = dir.path().display();
        std::fs::write(dir.path().join("userlist.txt"), "\"postgres\" \"\"\n")?;
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\nbench = host=127.0.0.1 port={pg_port} dbname=bench user=postgres\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {d}/userlist.txt\npool_mode = transaction\n\
                 default_pool_size = {cap}\nmax_db_connections = {cap}\nmax_client_conn = 12000\n\
                 logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n\
                 log_connections = 0\nlog_disconnections = 0\n"
            ),
        )?;
        let mut cmd = in_own_session(Path::new(&bin));
        cmd.arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = postgres_user() {
            for entry in [dir.path().to_path_buf()]
                .into_iter()
                .chain(std::fs::read_dir(dir.path())?.flatten().map(|e| e.path()))
            {
                std::os::unix::fs::chown(&entry, Some(uid), Some(gid))?;
            }
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().context("spawn pgbouncer")?;
        wait_listening(port, &mut child, "pgbouncer")?;
        check_runs(child.id(), "pgbouncer")?;
        Ok(Pooler {
            name: "pgbouncer",
            port,
            child,
            _dir: dir,
        })
    }

    pub(crate) fn start_pgwarden(bin: &Path, pg_port: u16, cap: u32) -> anyhow::Result<Pooler> {
        let dir = tempfile_dir::Dir::new("pgwarden")?;
        let port = pgwarden_testkit::free_port();
        let mut child = in_own_session(bin)
            .arg("serve")
            .env(
                "PGWARDEN_UPSTREAM_URL",
                format!("postgres://postgres@127.0.0.1:{pg_port}/bench"),
            )
            .env("PGWARDEN_LISTEN", format!("127.0.0.1:{port}"))
            .env("PGWARDEN_POOL_MAX_SIZE", cap.to_string())
            .env("PGWARDEN_POOL_MIN_SIZE", "0")
            .env("PGWARDEN_AUTH_TYPE", "trust")
            .env("PGWARDEN_PROXY_MAX_CLIENT_CONN", "12000")
            .env("PGWARDEN_ENV", "production")
            .env("PGWARDEN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        wait_listening(port, &mut child, "pgwarden")?;
        let comm: String = bin
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(15).collect())
            .unwrap_or_default();
        check_runs(child.id(), &comm)?;
        Ok(Pooler {
            name: "pgwarden",
            port,
            child,
            _dir: dir,
        })
    }

    /// User and system CPU time of the process so far, in seconds.
    pub(crate) fn cpu_times(&self) -> CpuTimes {
        CpuTimes::from_stat(
            &std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default(),
        )
    }

    /// Context switches of all the pooler's threads so far (`/proc/PID/task/*/status`; the
    /// process's own `status` counts its main thread only); zero where unreadable. A thread
    /// that exits takes its counts with it: [`Switches::since`] then saturates at zero.
    pub(crate) fn switches(&self) -> Switches {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.child.id())) else {
            return Switches::default();
        };
        tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
            .map(|status| Switches::from_status(&status))
            .fold(Switches::default(), |sum, s| Switches {
                voluntary: sum.voluntary + s.voluntary,
                involuntary: sum.involuntary + s.involuntary,
            })
    }

    /// Resident memory in KiB.
    pub(crate) fn rss_kb(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second in `/proc/PID/stat` and `/proc/stat` (`USER_HZ`, fixed at 100 by
/// Linux's interface to user space whatever the kernel's own tick rate).
pub(crate) const PROC_TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds a process used, from `/proc/PID/stat` (in clock ticks,
/// [`PROC_TICKS_PER_SECOND`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTimes {
    pub(crate) user: f64,
    pub(crate) system: f64,
}

impl CpuTimes {
    /// Reads a `/proc/PID/stat` line: after the command (in parentheses, which may hold
    /// spaces and parentheses itself) state is field 3, utime 14 and stime 15 (1-based over
    /// the whole line). Zero where the line is unreadable.
    fn from_stat(stat: &str) -> CpuTimes {
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        CpuTimes {
            user: ticks(11) / PROC_TICKS_PER_SECOND,
            system: ticks(12) / PROC_TICKS_PER_SECOND,
        }
    }
}

/// Context switches of a thread or process: voluntary ones, where it blocked waiting for
/// something (a pooler: for the next event, in `epoll_wait`), and involuntary ones, where the
/// scheduler switched it out while it had work (preempted, most often by a task it had just
/// woken). The kernel counts both without any debug interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Switches {
    pub(crate) voluntary: u64,
    pub(crate) involuntary: u64,
}

impl Switches {
    /// Reads the `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` lines of a
    /// `/proc/PID/status` (or `/proc/PID/task/TID/status`) file; zero where one is missing.
    pub(crate) fn from_status(status: &str) -> Switches {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        Switches {
            voluntary: field("voluntary_ctxt_switches"),
            involuntary: field("nonvoluntary_ctxt_switches"),
        }
    }

    /// The switches between `before` and `self`.
    pub(crate) fn since(self, before: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(before.voluntary),
            involuntary: self.involuntary.saturating_sub(before.involuntary),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CpuTimes, Switches};

    #[test]
    fn switches_are_read_from_the_status_file() {
        let status = "Name:\tpgwarden\nThreads:\t1\nvoluntary_ctxt_switches:\t1520\n\
                      nonvoluntary_ctxt_switches:\t37\n";
        let s = Switches::from_status(status);
        assert_eq!(
            s,
            Switches {
                voluntary: 1520,
                involuntary: 37
            }
        );
        assert_eq!(Switches::from_status(""), Switches::default());
        assert_eq!(
            s.since(Switches {
                voluntary: 1500,
                involuntary: 40
            }),
            Switches {
                voluntary: 20,
                involuntary: 0
            }
        );
        // This thread's own file parses: each sleep is a voluntary switch.
        let read =
            || Switches::from_status(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
        let before = read();
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let after = read();
        assert!(
            after.voluntary >= before.voluntary + 5,
            "{before:?} then {after:?}"
        );
    }

    #[test]
    fn cpu_times_are_read_after_the_command_name() {
        let stat = "4242 (pg (w) ard) S 1 4242 4242 0 -1 4194560 1520 0 0 0 731 246 0 0 20 0 3 0 \
                    123 456 789";
        assert_eq!(
            CpuTimes::from_stat(stat),
            CpuTimes {
                user: 7.31,
                system: 2.46
            }
        );
        assert_eq!(CpuTimes::from_stat(""), CpuTimes::default());
        // This process's own line parses: busy for a while, its CPU time grows.
        let read = || CpuTimes::from_stat(&std::fs::read_to_string("/proc/self/stat").unwrap());
        let total = |t: CpuTimes| t.user + t.system;
        let before = read();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut x = 0u64;
        while total(read()) <= total(before) && std::time::Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
        }
        std::hint::black_box(x);
        let after = read();
        assert!(total(after) > total(before), "{before:?} then {after:?}");
        assert!(after.user >= before.user && after.system >= before.system);
    }
}
