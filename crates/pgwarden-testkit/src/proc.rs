//! Process and file-system helpers: running as the `postgres` user when we are root,
//! recursive copy and chown, signals, port checks.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;

/// The uid/gid to run PostgreSQL as: `None` unless we are root.
fn pg_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        if effective_uid() != Some(0) {
            return None;
        }
        let passwd = fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
    })
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, file-system.
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Makes `cmd` run as the `postgres` user when we are root.
pub(crate) fn as_pg_user(cmd: &mut Command) {
    if let Some((uid, gid)) = pg_user() {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
}

/// A fresh temporary directory with our prefix, readable by the `postgres` user.
pub(crate) fn temp_dir(kind: &str) -> Result<tempfile::TempDir, Error> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("pgwarden-testkit-{kind}-"))
        .tempdir()
        .map_err(|e| Error::io("create temp dir", e))?;
    Ok(dir)
}

/// Gives the tree to the `postgres` user (no-op unless root).
pub(crate) fn chown_tree(path: &Path) -> Result<(), Error> {
    let Some((uid, gid)) = pg_user() else {
        return Ok(());
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io("chown test directory", e))?;
    if path.is_dir() {
        for entry in fs::read_dir(path).map_err(|e| Error::io("read dir", e))? {
            let entry = entry.map_err(|e| Error::io("read dir", e))?;
            chown_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Copies a directory tree, keeping permission bits.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    fs::create_dir_all(to).map_err(|e| Error::io("create dir", e))?;
    let mode = fs::metadata(from)
        .map_err(|e| Error::io("stat", e))?
        .permissions()
        .mode();
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", e))?;
    for entry in fs::read_dir(from).map_err(|e| Error::io("read template", e))? {
        let entry = entry.map_err(|e| Error::io("read template", e))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| Error::io("stat", e))?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target).map_err(|e| Error::io("copy template", e))?;
        }
    }
    Ok(())
}

/// Runs a command to completion; an error carries its stderr.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<String, Error> {
    let out = cmd.output().map_err(|e| Error::io(what, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            what: what.to_string(),
            detail: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }
}

/// Sends a signal by name (`KILL`, `INT`, `QUIT`, `TERM`) to a process we started.
pub(crate) fn send_signal(pid: u32, signal: &str) -> Result<(), Error> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::io("kill", e))?;
    let _ = status;
    Ok(())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
