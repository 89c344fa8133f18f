//! Which layer wins, and that every key remembers where its value came from.

use std::time::Duration;

use super::super::{Environment, Source};
use super::{load, TempConfig};

fn env(name: &str) -> Source {
    Source::Env {
        name: name.to_string(),
    }
}

fn flag(name: &str) -> Source {
    Source::Flag {
        name: name.to_string(),
    }
}

#[test]
fn defaults_alone_are_the_development_profile() {
    let loaded = load(None, &[], &[]);
    let s = &loaded.settings;
    assert_eq!(s.environment, Environment::Development);
    assert_eq!(
        s.upstream.url,
        "postgres://postgres@127.0.0.1:5432/postgres"
    );
    assert_eq!(s.upstream.application_name, "pgwarden");
    assert_eq!(s.upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.upstream.command_timeout, Duration::from_secs(30));
    assert!(s.upstream.server_settings.is_empty());
    assert_eq!((s.pool.max_size, s.pool.min_size), (10, 1));
    assert_eq!(s.pool.idle_timeout, Duration::from_secs(300));
    assert_eq!(s.pool.max_lifetime, Duration::from_secs(1800));
    assert_eq!(s.pool.max_uses, 0);
    assert_eq!(s.pool.acquire_timeout, Duration::from_secs(5));
    assert_eq!(s.pool.max_connecting, 2);
    assert_eq!(s.pool.leak_threshold, Duration::from_secs(30));
    assert_eq!(s.pool.keepalive_interval, Duration::from_secs(120));
    assert_eq!(s.pool.check_after_idle, Duration::from_secs(1));
    assert_eq!((s.redis.url.as_deref(), s.redis.max_size), (None, 4));
    assert_eq!(s.retry.initial_delay, Duration::from_secs(10));
    assert_eq!(s.retry.max_delay, Duration::from_secs(600));
    assert_eq!(s.retry.multiplier, 2.0);
    let dev = Source::Default {
        profile: Environment::Development,
    };
    assert!(
        loaded.entries().iter().all(|e| e.source == dev),
        "{:?}",
        loaded.entries()
    );
    assert_eq!(loaded.entries().len(), super::super::keys().len());
}

#[test]
fn production_profile_changes_its_defaults_only() {
    let loaded = load(None, &[("PGWARDEN_ENV", "production")], &[]);
    let s = &loaded.settings;
    assert_eq!(s.environment, Environment::Production);
    assert_eq!(s.pool.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.pool.leak_threshold, Duration::from_secs(60));
    assert_eq!(s.pool.max_size, 10);
    let prod = Source::Default {
        profile: Environment::Production,
    };
    assert_eq!(loaded.source("pool.idle_timeout"), Some(&prod));
    assert_eq!(loaded.source("environment"), Some(&env("PGWARDEN_ENV")));
}

#[test]
fn profile_is_taken_from_flag_over_env_over_file() {
    let file = TempConfig::new("environment = \"production\"\n");
    let from_file = load(Some(&file), &[], &[]);
    assert_eq!(from_file.settings.environment, Environment::Production);
    assert_eq!(
        from_file.settings.pool.leak_threshold,
        Duration::from_secs(60)
    );
    assert!(matches!(
        from_file.source("environment"),
        Some(Source::File { .. })
    ));

    let from_env = load(Some(&file), &[("PGWARDEN_ENV", "dev")], &[]);
    assert_eq!(from_env.settings.environment, Environment::Development);
    assert_eq!(
        from_env.settings.pool.idle_timeout,
        Duration::from_secs(300)
    );

    let from_flag = load(
        Some(&file),
        &[("PGWARDEN_ENV", "dev")],
        &[("environment", "PROD")],
    );
    assert_eq!(from_flag.settings.environment, Environment::Production);
    assert_eq!(from_flag.source("environment"), Some(&flag("environment")));
}

#[test]
fn an_explicit_value_beats_the_profile_default() {
    let file = TempConfig::new("environment = \"production\"\n[pool]\nidle_timeout = \"10m\"\n");
    let loaded = load(Some(&file), &[], &[]);
    assert_eq!(loaded.settings.pool.idle_timeout, Duration::from_secs(600));
    assert_eq!(
        loaded.source("pool.idle_timeout"),
        Some(&Source::File {
            path: file.path.clone()
        })
    );
}

#[test]
fn each_layer_beats_the_one_below() {
    let file = TempConfig::new("[pool]\nmax_size = 20\n");
    let file_source = Source::File {
        path: file.path.clone(),
    };

    let loaded = load(Some(&file), &[], &[]);
    assert_eq!(loaded.settings.pool.max_size, 20);
    assert_eq!(loaded.source("pool.max_size"), Some(&file_source));

    let fallback = [("DATABASE_POOL_MAX_SIZE", "30")];
    let loaded = load(Some(&file), &fallback, &[]);
    assert_eq!(loaded.settings.pool.max_size, 30);
    assert_eq!(
        loaded.source("pool.max_size"),
        Some(&env("DATABASE_POOL_MAX_SIZE"))
    );

    let both = [
        ("DATABASE_POOL_MAX_SIZE", "30"),
        ("PGWARDEN_POOL_MAX_SIZE", "40"),
    ];
    let loaded = load(Some(&file), &both, &[]);
    assert_eq!(loaded.settings.pool.max_size, 40);
    assert_eq!(
        loaded.source("pool.max_size"),
        Some(&env("PGWARDEN_POOL_MAX_SIZE"))
    );

    let loaded = load(Some(&file), &both, &[("pool.max_size", "50")]);
    assert_eq!(loaded.settings.pool.max_size, 50);
    assert_eq!(loaded.source("pool.max_size"), Some(&flag("pool.max_size")));

    // Keys no layer sets keep their default and say so.
    assert!(matches!(
        loaded.source("pool.min_size"),
        Some(Source::Default { .. })
    ));
}

#[test]
fn later_flags_win() {
    let loaded = load(None, &[], &[("pool.max_size", "5"), ("pool.max_size", "7")]);
    assert_eq!(loaded.settings.pool.max_size, 7);
}

#[test]
fn every_fallback_name_is_read_and_loses_to_its_pgwarden_name() {
    let fallbacks = [
        ("DATABASE_URL", "postgres://a@fallback/db"),
        ("DATABASE_COMMAND_TIMEOUT", "2.5"),
        ("DATABASE_POOL_MAX_SIZE", "8"),
        ("DATABASE_POOL_MIN_SIZE", "3"),
        ("DATABASE_MAX_IDLE_TIME", "45"),
        ("REDIS_URL", "redis://cache:6379/0"),
    ];
    let loaded = load(None, &fallbacks, &[]);
    let s = &loaded.settings;
    assert_eq!(s.upstream.url, "postgres://a@fallback/db");
    assert_eq!(s.upstream.command_timeout, Duration::from_millis(2500));
    assert_eq!((s.pool.max_size, s.pool.min_size), (8, 3));
    assert_eq!(s.pool.idle_timeout, Duration::from_secs(45));
    assert_eq!(s.redis.url.as_deref(), Some("redis://cache:6379/0"));
    assert_eq!(
        loaded.source("upstream.command_timeout"),
        Some(&env("DATABASE_COMMAND_TIMEOUT"))
    );

    let mut all = fallbacks.to_vec();
    all.extend([
        ("PGWARDEN_UPSTREAM_URL", "postgres://a@primary/db"),
        ("PGWARDEN_UPSTREAM_COMMAND_TIMEOUT", "1m"),
        ("PGWARDEN_POOL_MAX_SIZE", "9"),
        ("PGWARDEN_POOL_MIN_SIZE", "4"),
        ("PGWARDEN_POOL_IDLE_TIMEOUT", "0"),
        ("PGWARDEN_REDIS_URL", "rediss://secure:6380"),
    ]);
    let loaded = load(None, &all, &[]);
    let s = &loaded.settings;
    assert_eq!(s.upstream.url, "postgres://a@primary/db");
    assert_eq!(s.upstream.command_timeout, Duration::from_secs(60));
    assert_eq!((s.pool.max_size, s.pool.min_size), (9, 4));
    assert_eq!(s.pool.idle_timeout, Duration::ZERO);
    assert_eq!(s.redis.url.as_deref(), Some("rediss://secure:6380"));
    assert_eq!(loaded.source("redis.url"), Some(&env("PGWARDEN_REDIS_URL")));
}

#[test]
fn fallback_durations_accept_humantime_too() {
    let loaded = load(None, &[("DATABASE_COMMAND_TIMEOUT", "90s")], &[]);
    assert_eq!(
        loaded.settings.upstream.command_timeout,
        Duration::from_secs(90)
    );
}

#[test]
fn fallbacks_beat_the_file() {
    let file = TempConfig::new("[upstream]\nurl = \"postgres://a@file/db\"\n");
    let loaded = load(Some(&file), &[("DATABASE_URL", "postgres://a@env/db")], &[]);
    assert_eq!(loaded.settings.upstream.url, "postgres://a@env/db");
}

#[test]
fn every_key_has_a_pgwarden_env_name() {
    let values = [
        ("PGWARDEN_UPSTREAM_APPLICATION_NAME", "billing"),
        ("PGWARDEN_UPSTREAM_CONNECT_TIMEOUT", "2s"),
        ("PGWARDEN_POOL_MAX_LIFETIME", "1h"),
        ("PGWARDEN_POOL_MAX_USES", "1000"),
        ("PGWARDEN_POOL_ACQUIRE_TIMEOUT", "250ms"),
        ("PGWARDEN_POOL_MAX_CONNECTING", "4"),
        ("PGWARDEN_POOL_LEAK_THRESHOLD", "0"),
        ("PGWARDEN_POOL_KEEPALIVE_INTERVAL", "30s"),
        ("PGWARDEN_POOL_CHECK_AFTER_IDLE", "500ms"),
        ("PGWARDEN_REDIS_MAX_SIZE", "2"),
        ("PGWARDEN_RETRY_INITIAL_DELAY", "1s"),
        ("PGWARDEN_RETRY_MAX_DELAY", "1m"),
        ("PGWARDEN_RETRY_MULTIPLIER", "1.5"),
    ];
    let loaded = load(None, &values, &[]);
    let s = &loaded.settings;
    assert_eq!(s.upstream.application_name, "billing");
    assert_eq!(s.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(s.pool.max_lifetime, Duration::from_secs(3600));
    assert_eq!(s.pool.max_uses, 1000);
    assert_eq!(s.pool.acquire_timeout, Duration::from_millis(250));
    assert_eq!(s.pool.max_connecting, 4);
    assert_eq!(s.pool.leak_threshold, Duration::ZERO);
    assert_eq!(s.pool.keepalive_interval, Duration::from_secs(30));
    assert_eq!(s.pool.check_after_idle, Duration::from_millis(500));
    assert_eq!(s.redis.max_size, 2);
    assert_eq!(s.retry.initial_delay, Duration::from_secs(1));
    assert_eq!(s.retry.max_delay, Duration::from_secs(60));
    assert_eq!(s.retry.multiplier, 1.5);
    for (name, _) in values {
        assert!(
            loaded.entries().iter().any(|e| e.source == env(name)),
            "{name} not recorded"
        );
    }
}

#[test]
fn server_settings_merge_entry_by_entry_across_layers() {
    let file = TempConfig::new(
        "[upstream.server_settings]\nsearch_path = \"app\"\nstatement_timeout = 5000\njit = false\n",
    );
    let loaded = load(
        Some(&file),
        &[("PGWARDEN_UPSTREAM_SERVER_SETTINGS_WORK_MEM", "64MB")],
        &[("upstream.server_settings.search_path", "app, public")],
    );
    let map = &loaded.settings.upstream.server_settings;
    assert_eq!(
        map.get("search_path").map(String::as_str),
        Some("app, public")
    );
    assert_eq!(
        map.get("statement_timeout").map(String::as_str),
        Some("5000")
    );
    assert_eq!(map.get("jit").map(String::as_str), Some("off"));
    assert_eq!(map.get("work_mem").map(String::as_str), Some("64MB"));
    assert_eq!(
        loaded.source("upstream.server_settings.search_path"),
        Some(&flag("upstream.server_settings.search_path"))
    );
    assert_eq!(
        loaded.source("upstream.server_settings.work_mem"),
        Some(&env("PGWARDEN_UPSTREAM_SERVER_SETTINGS_WORK_MEM"))
    );
    assert!(matches!(
        loaded.source("upstream.server_settings.jit"),
        Some(Source::File { .. })
    ));
}

#[test]
fn the_file_can_be_named_by_pgwarden_config_and_the_flag_wins() {
    let named_by_env = TempConfig::new("[pool]\nmax_size = 11\n");
    let named_by_flag = TempConfig::new("[pool]\nmax_size = 12\n");
    let env_path = named_by_env.path.to_string_lossy().into_owned();

    let loaded = load(None, &[("PGWARDEN_CONFIG", &env_path)], &[]);
    assert_eq!(loaded.settings.pool.max_size, 11);
    assert_eq!(loaded.config_path.as_ref(), Some(&named_by_env.path));

    let loaded = load(Some(&named_by_flag), &[("PGWARDEN_CONFIG", &env_path)], &[]);
    assert_eq!(loaded.settings.pool.max_size, 12);
}

#[test]
fn empty_variables_count_as_unset() {
    let loaded = load(
        None,
        &[("DATABASE_URL", ""), ("PGWARDEN_POOL_MAX_SIZE", "")],
        &[],
    );
    assert_eq!(loaded.settings.pool.max_size, 10);
    assert!(matches!(
        loaded.source("upstream.url"),
        Some(Source::Default { .. })
    ));
}

#[test]
fn reserved_and_foreign_variables_are_accepted() {
    let loaded = load(
        None,
        &[
            ("PGWARDEN_LOG", "debug"),
            ("PATH", "/bin"),
            ("DATABASE_NAME", "x"),
        ],
        &[],
    );
    assert_eq!(loaded.settings.pool.max_size, 10);
}
