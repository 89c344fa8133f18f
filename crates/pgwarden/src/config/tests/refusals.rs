//! Every refusal: one line, naming the key and where the value came from, never a password.

use super::super::{ConfigError, Source};
use super::{refuse, refuse_err, TempConfig};

#[test]
fn min_size_above_max_size_names_both_keys_and_sources() {
    let file = TempConfig::new("[pool]\nmax_size = 3\n");
    let message = refuse(Some(&file), &[("PGWARDEN_POOL_MIN_SIZE", "5")], &[]);
    let expected = format!(
        "invalid configuration: pool.min_size = 5 (from env PGWARDEN_POOL_MIN_SIZE) is greater \
         than pool.max_size = 3 (from file {})",
        file.path.display()
    );
    assert_eq!(message, expected);
}

#[test]
fn max_delay_below_initial_delay_is_refused() {
    let message = refuse(
        None,
        &[],
        &[("retry.initial_delay", "2m"), ("retry.max_delay", "1m")],
    );
    assert!(message.contains("retry.max_delay = 1m (from flag retry.max_delay) is less than"));
    assert!(message.contains("retry.initial_delay = 2m"), "{message}");
}

#[test]
fn negative_durations_are_refused_from_every_layer() {
    let message = refuse(None, &[("PGWARDEN_POOL_IDLE_TIMEOUT", "-5s")], &[]);
    assert_eq!(
        message,
        "invalid configuration: pool.idle_timeout = \"-5s\" (from env PGWARDEN_POOL_IDLE_TIMEOUT): \
         durations must not be negative"
    );
    let message = refuse(None, &[("DATABASE_MAX_IDLE_TIME", "-5")], &[]);
    assert!(
        message.contains("(from env DATABASE_MAX_IDLE_TIME)"),
        "{message}"
    );
    assert!(message.contains("must not be negative"), "{message}");

    let file = TempConfig::new("[pool]\nidle_timeout = \"-5s\"\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(
        message.contains(&file.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("line 2 (pool.idle_timeout)"), "{message}");
    assert!(message.contains("must not be negative"), "{message}");
}

#[test]
fn unparsable_durations_are_refused() {
    let message = refuse(None, &[], &[("upstream.connect_timeout", "abc")]);
    assert!(message.starts_with(
        "invalid configuration: upstream.connect_timeout = \"abc\" (from flag upstream.connect_timeout): expected a duration"
    ), "{message}");
    let message = refuse(None, &[("PGWARDEN_UPSTREAM_COMMAND_TIMEOUT", "30")], &[]);
    assert!(message.contains("needs a unit"), "{message}");
}

#[test]
fn zero_sizes_and_timeouts_that_cannot_be_zero_are_refused() {
    for (key, value) in [
        ("pool.max_size", "0"),
        ("pool.max_connecting", "0"),
        ("redis.max_size", "0"),
        ("pool.acquire_timeout", "0s"),
        ("upstream.connect_timeout", "0"),
        ("upstream.command_timeout", "0ms"),
        ("retry.initial_delay", "0"),
    ] {
        let err = refuse_err(None, &[], &[(key, value)]);
        assert_eq!(err.key(), Some(key), "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("{key} = ")), "{message}");
        assert!(message.contains(&format!("(from flag {key})")), "{message}");
    }
}

#[test]
fn negative_and_non_numeric_counts_are_refused() {
    let message = refuse(None, &[("DATABASE_POOL_MAX_SIZE", "-1")], &[]);
    assert!(message.contains("pool.max_size = \"-1\" (from env DATABASE_POOL_MAX_SIZE)"));
    let message = refuse(None, &[("PGWARDEN_POOL_MAX_SIZE", "ten")], &[]);
    assert!(message.contains("expected a whole number"), "{message}");
}

#[test]
fn unknown_keys_in_the_file_name_the_file_the_line_and_the_key() {
    let file = TempConfig::new("[upstream]\nurl = \"postgres://h/db\"\n\n[pool]\nmax_sise = 3\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(
        message.contains(&file.path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("line 5 (pool.max_sise)"), "{message}");
    assert!(message.contains("unknown field `max_sise`"), "{message}");

    let file = TempConfig::new("[pol]\nmax_size = 3\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("unknown field `pol`"), "{message}");

    let file = TempConfig::new("environment = \"staging\"\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("line 1 (environment)"), "{message}");
}

#[test]
fn wrongly_typed_file_values_are_refused() {
    let file = TempConfig::new("[pool]\nmax_size = \"ten\"\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("line 2 (pool.max_size)"), "{message}");
}

#[test]
fn a_missing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let options = super::options(None, &[], &[]).with_config_path(&path);
    let err = super::super::Settings::load(&options).unwrap_err();
    assert!(matches!(err, ConfigError::ReadFile { .. }), "{err}");
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

#[test]
fn unknown_flag_keys_are_refused() {
    let err = refuse_err(None, &[], &[("pool.max_sise", "3")]);
    assert_eq!(
        err,
        ConfigError::UnknownKey {
            key: "pool.max_sise".into(),
            origin: Source::Flag {
                name: "pool.max_sise".into()
            },
        }
    );
    refuse(None, &[], &[("nosection", "3")]);
    refuse(None, &[], &[("upstream.server_settings", "x")]);
    refuse(None, &[], &[("upstream.server_settings.bad name", "x")]);
}

#[test]
fn unknown_pgwarden_variables_are_refused_with_a_suggestion() {
    let message = refuse(None, &[("PGWARDEN_POOL_MAX_SIZ", "3")], &[]);
    assert_eq!(
        message,
        "invalid configuration: unknown environment variable PGWARDEN_POOL_MAX_SIZ \
         (did you mean PGWARDEN_POOL_MAX_SIZE?)"
    );
    let message = refuse(None, &[("PGWARDEN_SOMETHING_ELSE_ENTIRELY", "1")], &[]);
    assert!(
        message.contains("PGWARDEN_SOMETHING_ELSE_ENTIRELY"),
        "{message}"
    );
    assert!(!message.contains("did you mean"), "{message}");
    refuse(None, &[("PGWARDEN_UPSTREAM_SERVER_SETTINGS_", "x")], &[]);
}

#[test]
fn an_unknown_profile_is_refused() {
    let message = refuse(None, &[("PGWARDEN_ENV", "staging")], &[]);
    assert!(
        message.contains("environment = \"staging\" (from env PGWARDEN_ENV)"),
        "{message}"
    );
}

#[test]
fn unparsable_upstream_urls_never_show_the_password() {
    let message = refuse(
        None,
        &[("DATABASE_URL", "postgres://app:hunter2@db:notaport/app")],
        &[],
    );
    assert!(message.contains("upstream.url"), "{message}");
    assert!(message.contains("(from env DATABASE_URL)"), "{message}");
    assert!(message.contains("app:***@db"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");

    let message = refuse(
        None,
        &[],
        &[("upstream.url", "host=db password=hunter2 port=x")],
    );
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn upstream_urls_without_a_host_are_refused() {
    let message = refuse(None, &[], &[("upstream.url", "postgres:///db")]);
    assert!(message.contains("upstream.url"), "{message}");
    assert!(message.ends_with("names no host"), "{message}");
}

#[test]
fn redis_urls_must_be_redis_urls() {
    let message = refuse(None, &[("REDIS_URL", "http://u:hunter2@cache")], &[]);
    assert!(message.contains("redis.url"), "{message}");
    assert!(message.contains("redis:// or rediss://"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    let message = refuse(None, &[("PGWARDEN_REDIS_URL", "not a url")], &[]);
    assert!(message.contains("not a URL"), "{message}");
}

#[test]
fn a_multiplier_below_one_is_refused() {
    let message = refuse(None, &[("PGWARDEN_RETRY_MULTIPLIER", "0.5")], &[]);
    assert_eq!(
        message,
        "invalid configuration: retry.multiplier = 0.5 (from env PGWARDEN_RETRY_MULTIPLIER): \
         must be at least 1 (1 = constant delay)"
    );
    let file = TempConfig::new("[retry]\nmultiplier = nan\n");
    refuse(Some(&file), &[], &[]);
    refuse(None, &[], &[("retry.multiplier", "inf")]);
}

#[test]
fn client_tls_files_are_read_at_load_and_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let one = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = write("cert.pem", &one.cert.pem());
    let key = write("key.pem", &one.key_pair.serialize_pem());
    let other_key = write("other.pem", &other.key_pair.serialize_pem());
    let missing = dir.path().join("nope.pem").display().to_string();

    let message = refuse(
        None,
        &[
            ("PGWARDEN_PROXY_TLS_CERT_FILE", &missing),
            ("PGWARDEN_PROXY_TLS_KEY_FILE", &key),
        ],
        &[],
    );
    assert!(
        message.contains("proxy.tls_cert_file")
            && message.contains("nope.pem")
            && message.contains("(from env PGWARDEN_PROXY_TLS_CERT_FILE)")
            && !message.contains('\n'),
        "{message}"
    );
    let message = refuse(
        None,
        &[],
        &[
            ("proxy.tls_cert_file", &cert),
            ("proxy.tls_key_file", &other_key),
        ],
    );
    assert!(message.contains("proxy.tls_key_file"), "{message}");
    let message = refuse(None, &[], &[("proxy.tls_cert_file", &cert)]);
    assert!(message.contains("needs proxy.tls_key_file"), "{message}");
    let message = refuse(None, &[], &[("proxy.tls_mode", "require")]);
    assert!(
        message.contains("proxy.tls_mode") && message.contains("needs proxy.tls_cert_file"),
        "{message}"
    );
    let message = refuse(None, &[], &[("proxy.tls_mode", "prefer")]);
    assert!(
        message.contains("expected disable, allow or require"),
        "{message}"
    );

    let loaded = super::super::Settings::load(&super::options(
        None,
        &[("PGWARDEN_PROXY_TLS_MODE", "require")],
        &[("proxy.tls_cert_file", &cert), ("proxy.tls_key_file", &key)],
    ))
    .expect("a matching certificate and key load");
    assert_eq!(loaded.settings.proxy.tls_mode, "require");
    assert_eq!(
        loaded.settings.proxy.tls_cert_file.as_deref(),
        Some(std::path::Path::new(&cert))
    );
}
