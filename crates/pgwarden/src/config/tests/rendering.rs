//! What `check-config` shows: every key, its value and source, passwords masked.

use super::super::Source;
use super::{load, TempConfig};

#[test]
fn render_lists_every_key_with_value_and_source() {
    let file = TempConfig::new("[pool]\nmin_size = 2\n");
    let loaded = load(Some(&file), &[("PGWARDEN_POOL_MAX_SIZE", "8")], &[]);
    let text = loaded.render();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for {key} in\n{text}"))
            .to_string()
    };
    assert!(line("pool.max_size").contains("8"));
    assert!(line("pool.max_size").ends_with("env PGWARDEN_POOL_MAX_SIZE"));
    assert!(line("pool.min_size").ends_with(&format!("file {}", file.path.display())));
    assert!(line("pool.idle_timeout").contains("5m"));
    assert!(line("pool.idle_timeout").ends_with("default (development)"));
    assert!(line("redis.url").contains("(not set)"));
    for key in super::super::keys() {
        line(&key);
    }
}

#[test]
fn passwords_are_masked_everywhere_they_are_shown() {
    let loaded = load(
        None,
        &[
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/app"),
            ("REDIS_URL", "redis://:redispw@cache:6379/0"),
        ],
        &[],
    );
    let text = loaded.render();
    assert!(text.contains("postgres://app:***@db:5432/app"), "{text}");
    assert!(text.contains("redis://:***@cache:6379/0"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("redispw"),
        "{text}"
    );
    let debug = format!("{:?}", loaded.settings);
    assert!(
        !debug.contains("hunter2") && !debug.contains("redispw"),
        "{debug}"
    );
    // The settings themselves keep the real URL for connecting.
    assert_eq!(
        loaded.settings.upstream.url,
        "postgres://app:hunter2@db:5432/app"
    );
}

#[test]
fn server_settings_entries_follow_the_upstream_keys() {
    let loaded = load(
        None,
        &[],
        &[("upstream.server_settings.search_path", "app")],
    );
    let keys: Vec<&str> = loaded.entries().iter().map(|e| e.key.as_str()).collect();
    let at = keys
        .iter()
        .position(|k| *k == "upstream.server_settings.search_path")
        .unwrap();
    assert_eq!(keys[at - 1], "upstream.command_timeout");
    assert_eq!(keys[at + 1], "pool.max_size");
    assert_eq!(
        loaded.entries()[at].source,
        Source::Flag {
            name: "upstream.server_settings.search_path".into()
        }
    );
}

#[test]
fn the_documentation_names_every_key_and_variable() {
    let doc = include_str!("../../../../../docs/configuration.md");
    for key in super::super::keys() {
        let field = key.rsplit('.').next().unwrap_or(&key);
        assert!(
            doc.contains(&format!("`{field}`")),
            "docs/configuration.md lacks `{field}`"
        );
        let name = super::super::env_name(&key);
        assert!(doc.contains(&name), "docs/configuration.md lacks {name}");
    }
    for fallback in super::super::FALLBACKS {
        assert!(
            doc.contains(fallback.name),
            "docs/configuration.md lacks {}",
            fallback.name
        );
    }
}

#[test]
fn the_documented_sample_file_is_valid_and_spells_out_the_defaults() {
    let doc = include_str!("../../../../../docs/configuration.md");
    let start = doc.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("end of the toml block");
    let file = TempConfig::new(&doc[start..end]);
    let from_sample = load(Some(&file), &[], &[]).settings;
    let defaults = load(None, &[], &[]).settings;
    assert_eq!(from_sample, defaults);
}
