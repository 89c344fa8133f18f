//! `pgwarden check-config` as a user runs it: a TOML file, environment variables and flags in,
//! the effective values with their sources out, passwords masked, exit 2 on invalid input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built binary with exactly `env` as its environment.
fn pgwarden(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run pgwarden")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `text` to `<dir>/pgwarden.toml`.
fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pgwarden.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// The line of `key` in the rendered table.
fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"))
}

#[test]
fn check_config_shows_effective_values_and_their_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "environment = \"production\"\n\
         [upstream]\n\
         url = \"postgres://app:file-secret@db.internal:6432/app\"\n\
         [pool]\n\
         max_size = 12\n\
         min_size = 2\n\
         [upstream.server_settings]\n\
         search_path = \"app\"\n",
    );
    let config_text = config.to_string_lossy().into_owned();
    let output = pgwarden(
        &["check-config", "--set", "pool.acquire_timeout=2s"],
        &[
            ("PGWARDEN_CONFIG", &config_text),
            ("PGWARDEN_POOL_MIN_SIZE", "3"),
            ("DATABASE_COMMAND_TIMEOUT", "45"),
        ],
    );
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));

    let file_source = format!("file {config_text}");
    assert!(line(&out, "environment").ends_with(&file_source));
    assert!(line(&out, "upstream.url").contains("postgres://app:***@db.internal:6432/app"));
    assert!(line(&out, "upstream.url").ends_with(&file_source));
    assert!(line(&out, "pool.max_size").contains("12"));
    assert!(line(&out, "pool.min_size").contains('3'));
    assert!(line(&out, "pool.min_size").ends_with("env PGWARDEN_POOL_MIN_SIZE"));
    assert!(line(&out, "upstream.command_timeout").contains("45s"));
    assert!(line(&out, "upstream.command_timeout").ends_with("env DATABASE_COMMAND_TIMEOUT"));
    assert!(line(&out, "pool.acquire_timeout").ends_with("flag pool.acquire_timeout"));
    // The production profile's default, not development's 5m.
    assert!(line(&out, "pool.idle_timeout").contains("1m"));
    assert!(line(&out, "pool.idle_timeout").ends_with("default (production)"));
    assert!(line(&out, "upstream.server_settings.search_path").contains("app"));
    assert!(!out.contains("file-secret"), "password leaked:\n{out}");
}

#[test]
fn flags_beat_environment_and_the_config_flag_beats_pgwarden_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[pool]\nmax_size = 12\n");
    let output = pgwarden(
        &[
            "--config",
            config.to_str().unwrap(),
            "--pool-max-size",
            "30",
            "--upstream-url",
            "postgres://u:flag-secret@flaghost/db",
            "--env",
            "prod",
            "check-config",
        ],
        &[
            ("PGWARDEN_CONFIG", "/nonexistent/pgwarden.toml"),
            ("PGWARDEN_POOL_MAX_SIZE", "20"),
            ("DATABASE_URL", "postgres://u@envhost/db"),
        ],
    );
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(line(&out, "pool.max_size").contains("30"));
    assert!(line(&out, "pool.max_size").ends_with("flag pool.max_size"));
    assert!(line(&out, "upstream.url").contains("postgres://u:***@flaghost/db"));
    assert!(line(&out, "environment").ends_with("flag environment"));
    assert!(!out.contains("flag-secret"));
}

#[test]
fn defaults_alone_are_valid() {
    let output = pgwarden(&["check-config"], &[]);
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    assert!(line(&out, "upstream.url").contains("postgres://postgres@127.0.0.1:5432/postgres"));
    assert!(line(&out, "pool.idle_timeout").ends_with("default (development)"));
}

#[test]
fn an_invalid_combination_exits_2_naming_both_keys_and_sources() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[pool]\nmax_size = 3\n");
    let output = pgwarden(
        &["check-config", "--config", config.to_str().unwrap()],
        &[("PGWARDEN_POOL_MIN_SIZE", "5")],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let err = stderr(&output);
    let expected = format!(
        "invalid configuration: pool.min_size = 5 (from env PGWARDEN_POOL_MIN_SIZE) is greater \
         than pool.max_size = 3 (from file {})",
        config.display()
    );
    assert_eq!(err.trim_end(), expected);
}

#[test]
fn invalid_values_exit_2_with_the_key_named() {
    /// Arguments after `check-config`, environment, and what the refusal must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            &[],
            &[("PGWARDEN_POOL_IDLE_TIMEOUT", "-5s")],
            "pool.idle_timeout",
        ),
        (&["--set", "pool.max_size=0"], &[], "pool.max_size"),
        (
            &[],
            &[("PGWARDEN_RETRY_MULTIPLIER", "0.5")],
            "retry.multiplier",
        ),
        (
            &[],
            &[("PGWARDEN_POOL_MAX_SIZ", "3")],
            "PGWARDEN_POOL_MAX_SIZE",
        ),
        (&["--env", "staging"], &[], "environment"),
    ];
    for (args, env, named) in cases {
        let mut all = vec!["check-config"];
        all.extend_from_slice(args);
        let output = pgwarden(&all, env);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(named), "{named} not named in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    }
}

#[test]
fn an_unknown_file_key_exits_2_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[pool]\nmax_sise = 3\n");
    let output = pgwarden(&["--config", config.to_str().unwrap(), "check-config"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("max_sise"), "{err}");
}

#[test]
fn a_bad_url_exits_2_without_showing_the_password() {
    let output = pgwarden(
        &["check-config"],
        &[("DATABASE_URL", "postgres://app:hunter2@db:notaport/app")],
    );
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("upstream.url") && err.contains("DATABASE_URL"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "password leaked: {err}");
}

#[test]
fn databases_entries_are_shown_masked_and_unknown_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[databases]\n\
         alias = \"dbname=target user=ro password=route-secret\"\n\
         other = { host = \"replica\", password = \"table-secret\" }\n",
    );
    let output = pgwarden(&["--config", config.to_str().unwrap(), "check-config"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(line(&out, "databases.alias").contains("dbname=target user=ro password=***"));
    assert!(line(&out, "databases.other").contains("host=replica password=***"));
    assert!(
        !out.contains("route-secret") && !out.contains("table-secret"),
        "{out}"
    );

    for text in [
        "[databases]\nalias = \"dbname=target hots=db password=route-secret\"\n",
        "[databases]\nalias = { dbname = \"target\", hots = \"db\" }\n",
    ] {
        let config = write_config(dir.path(), text);
        let output = pgwarden(&["--config", config.to_str().unwrap(), "check-config"], &[]);
        assert_eq!(output.status.code(), Some(2), "{text}");
        let err = stderr(&output);
        assert!(
            err.contains("databases.alias") && err.contains("hots"),
            "{err}"
        );
        assert!(!err.contains("route-secret"), "password leaked: {err}");
    }
}

#[test]
fn the_version_names_no_build_kind_for_the_usual_build() {
    // The build script adds "(profile-guided build)" only under `-Cprofile-use`; the tests'
    // own build has no such flag. Run through cargo, which also puts the build script's
    // variables in the binary's environment: they must not trip the PGWARDEN_* check.
    let out = pgwarden(&["--version"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim_end(),
        format!("pgwarden {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pgwarden"))
        .arg("check-config")
        .env_remove("PGWARDEN_CONFIG")
        .output()
        .expect("run pgwarden");
    assert!(out.status.success(), "{}", stderr(&out));
}
