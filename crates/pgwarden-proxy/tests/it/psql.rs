//! psql, the client operators use first, through the proxy: queries, a script with a
//! transaction, `\copy` both ways, and errors with their exit code.

use std::process::{Command, Output};

use crate::common::{self, RunningProxy, APP_DB};

fn psql(cluster: &pgwarden_testkit::PgCluster, proxy: &RunningProxy, args: &[&str]) -> Output {
    let local = cluster.bin_dir().join("psql");
    let bin = if local.exists() { local } else { "psql".into() };
    Command::new(bin)
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string()])
        .args(["-U", "postgres", "-d", APP_DB])
        .args(args)
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "psql failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_queries_scripts_copy_and_errors() {
    let cluster = common::cluster();
    let proxy = RunningProxy::start(common::config(&cluster)).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, "1,one\n2,two\n3,three\n").unwrap();
    let out_csv = dir.path().join("out.csv");

    let p = |args: &[&str]| psql(&cluster, &proxy, args);
    tokio::task::block_in_place(|| {
        assert_eq!(stdout(&p(&["-c", "SELECT 40 + 2"])).trim(), "42");
        assert_eq!(
            stdout(&p(&["-c", "SHOW application_name"])).trim(),
            "psql",
            "psql's own application_name reaches the server connection"
        );
        let script = format!(
            "CREATE TABLE words (id int PRIMARY KEY, word text);\n\
             BEGIN;\n\
             \\copy words FROM '{}' WITH (FORMAT csv)\n\
             UPDATE words SET word = upper(word) WHERE id = 2;\n\
             COMMIT;\n\
             \\copy (SELECT * FROM words ORDER BY id) TO '{}' WITH (FORMAT csv)\n\
             SELECT string_agg(word, ',' ORDER BY id) FROM words;\n",
            csv.display(),
            out_csv.display()
        );
        let script_file = dir.path().join("script.sql");
        std::fs::write(&script_file, script).unwrap();
        assert_eq!(
            stdout(&p(&["-f", script_file.to_str().unwrap()])).trim(),
            "one,TWO,three"
        );
        assert_eq!(
            std::fs::read_to_string(&out_csv).unwrap(),
            "1,one\n2,TWO\n3,three\n"
        );

        let failed = p(&["-c", "SELECT 1/0"]);
        assert_eq!(failed.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(stderr.contains("ERROR:  division by zero"), "{stderr}");
        // The session after an error is usable, and nothing was left pinned.
        assert_eq!(
            stdout(&p(&["-c", "SELECT count(*) FROM words"])).trim(),
            "3"
        );
    });
    proxy.stop().await;
    // Every server connection was closed (backends exit a moment after the Terminate).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while common::app_backends(&cluster).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "server connections left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
