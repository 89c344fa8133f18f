//! Process and file-system helpers: running as the `postgres` user when we are root,
//! temporary directories (with a sweep of stale ones), recursive copy and chown, signals,
//! finding a cluster's processes, port checks.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};
use std::time::{Duration, SystemTime};

use crate::Error;

/// Every directory this crate creates starts with this.
pub(crate) const PREFIX: &str = "pgwarden-testkit-";

/// The file naming the process that owns a directory (for the stale sweep).
const OWNER_FILE: &str = "owner.pid";

/// Directories older than this whose owner is gone are removed by the sweep.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The uid/gid to run PostgreSQL as: `None` unless we are root.
pub(crate) fn pg_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        if effective_uid() != Some(0) {
            return None;
        }
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3 && f[0] == "postgres" {
                Some((f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    })
}

/// Our effective uid, from `/proc/self/status` (no libc needed).
pub(crate) fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, file-system.
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Fails clearly when we are root but there is no `postgres` user to run the server as.
pub(crate) fn check_pg_user() -> Result<(), Error> {
    if effective_uid() == Some(0) && pg_user().is_none() {
        return Err(Error::Missing {
            what: "the `postgres` system user (PostgreSQL refuses to run as root)".into(),
            hint: "run `make deps` or `apt-get install postgresql`, which create it, or run \
                   the tests as an unprivileged user"
                .into(),
        });
    }
    Ok(())
}

/// Makes `cmd` run as the `postgres` user when we are root (spawned directly with
/// `setuid`/`setgid`, so resource limits such as the open-file limit are kept).
pub(crate) fn as_pg_user(cmd: &mut Command) {
    if let Some((uid, gid)) = pg_user() {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp").current_dir("/");
    }
}

/// A fresh temporary directory with our prefix; the first call also sweeps stale ones.
pub(crate) fn temp_dir(kind: &str) -> Result<tempfile::TempDir, Error> {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_stale);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{kind}-"))
        .tempdir()
        .map_err(|e| Error::io("create temp dir", e))?;
    fs::write(
        dir.path().join(OWNER_FILE),
        format!("{}\n", std::process::id()),
    )
    .map_err(|e| Error::io("write owner.pid", e))?;
    Ok(dir)
}

/// Removes `pgwarden-testkit-*` directories under the temp dir that are older than an hour,
/// whose owning test process is gone and whose postmaster (if any) is not running. Only our
/// prefix is ever touched; errors are ignored.
fn sweep_stale() {
    let keep = crate::pg::template_cache_name();
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || Some(&name) == keep.as_ref() {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_dir() || meta.file_type().is_symlink() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if !old {
            continue;
        }
        let path = entry.path();
        let owner_alive = pid_in_file(&path.join(OWNER_FILE)).is_some_and(alive);
        let postmaster_alive = pid_in_file(&path.join("data").join("postmaster.pid"))
            .is_some_and(alive)
            || pid_in_file(&path.join("postmaster.pid")).is_some_and(alive);
        if !owner_alive && !postmaster_alive {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

/// The pid on the first line of a pid file.
pub(crate) fn pid_in_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether a process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X") | None)
        }
        Err(_) => false,
    }
}

/// Processes whose working directory is `dir`: a PostgreSQL server's processes all `chdir`
/// into the data directory, so this finds the postmaster and every backend, also orphaned
/// ones whose postmaster was killed. Never matches another cluster's processes.
pub(crate) fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(dir) = fs::canonicalize(dir) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|&pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .filter(|&pid| alive(pid))
        .collect()
}

/// Gives the tree to the `postgres` user (no-op unless root).
pub(crate) fn chown_tree(path: &Path) -> Result<(), Error> {
    let Some((uid, gid)) = pg_user() else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(&format!("chown {}", path.display()), e))?;
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io("stat", e))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| Error::io("read dir", e))? {
            let entry = entry.map_err(|e| Error::io("read dir", e))?;
            chown_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Copies a directory tree, keeping permission bits (the data directory stays 0700).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(|e| Error::io("create dir", e))?;
    let mode = fs::metadata(from)
        .map_err(|e| Error::io("stat template", e))?
        .permissions()
        .mode();
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", e))?;
    for entry in fs::read_dir(from).map_err(|e| Error::io("read template", e))? {
        let entry = entry.map_err(|e| Error::io("read template", e))?;
        let target = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| Error::io("stat template", e))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            let link = fs::read_link(entry.path()).map_err(|e| Error::io("read link", e))?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| Error::io("symlink", e))?;
        } else if kind.is_file() {
            // Permission bits are copied too.
            fs::copy(entry.path(), &target).map_err(|e| Error::io("copy template", e))?;
        }
    }
    Ok(())
}

/// Runs a command to completion; an error names it and carries its status and stderr.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<String, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(&format!("run {what}"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        Err(Error::Command {
            what: what.to_string(),
            detail: format!(
                "{}; stderr: {}{}",
                out.status,
                stderr.trim(),
                if stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!("; stdout: {}", stdout.trim())
                }
            ),
        })
    }
}

/// Sends a signal by name (`KILL`, `INT`, `QUIT`, `TERM`) to a process we started, through
/// `kill(1)` (this crate has no unsafe code and no libc).
pub(crate) fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Whether a Redis server on 127.0.0.1:`port` answers an inline `PING` with `+PONG`.
pub(crate) fn redis_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A binary in `dir`, else the same name in `/usr/bin`, else the bare name (`PATH`).
pub(crate) fn binary(dir: &Path, name: &str) -> PathBuf {
    [dir.join(name), Path::new("/usr/bin").join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}
