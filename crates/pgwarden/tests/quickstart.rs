//! The library quickstart (`examples/quickstart.rs`) run as a user would run it, in its own
//! process (its pool is the process-wide one), against the throwaway cluster it starts:
//! the singleton is one instance, the pool holds what max 3 / min 1 promise, and the query
//! answers.

use std::process::Command;

#[test]
fn quickstart_prints_the_promised_pool_and_answer() {
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "-p",
            "pgwarden",
            "--example",
            "quickstart",
        ])
        .env_remove("PGWARDEN_UPSTREAM_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for line in [
        "singleton: installed true, the same instance everywhere: true",
        "pool after init: size 1, idle 1, in use 0, max 3",
        "SELECT 1 + 1 = 2",
        "guard released: size 1, idle 1, in use 0",
        "health check: SELECT 1 in",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("acquires_total: 2") || stdout.contains("acquires_total: 3"),
        "final stats should count the checkouts:\n{stdout}"
    );
}
