//! The `[databases]` routing table: both entry forms, merging, refusals naming the entry,
//! passwords masked.

use super::super::Source;
use super::{load, refuse, TempConfig};

#[test]
fn connection_strings_and_tables_both_route() {
    let file = TempConfig::new(
        "[databases]\n\
         alias = \"dbname=target pool_size=4\"\n\
         ro = { host = \"replica\", port = 6543, user = \"ro\", password = \"pw1\" }\n\
         [databases.\"*\"]\n\
         dbname = \"fallback\"\n",
    );
    let loaded = load(Some(&file), &[], &[("databases.extra", "user=x")]);
    let routes = &loaded.settings.databases;
    assert_eq!(routes.len(), 4);
    assert_eq!(routes["alias"].dbname.as_deref(), Some("target"));
    assert_eq!(routes["alias"].pool_size, Some(4));
    assert_eq!(routes["ro"].host.as_deref(), Some("replica"));
    assert_eq!(routes["ro"].port, Some(6543));
    assert_eq!(routes["ro"].password.as_deref(), Some("pw1"));
    assert_eq!(routes["*"].dbname.as_deref(), Some("fallback"));
    assert_eq!(routes["extra"].user.as_deref(), Some("x"));
    assert_eq!(
        loaded.source("databases.alias"),
        Some(&Source::File {
            path: file.path.clone()
        })
    );
    assert_eq!(
        loaded.source("databases.extra"),
        Some(&Source::Flag {
            name: "databases.extra".into()
        })
    );
}

#[test]
fn a_later_layer_replaces_one_whole_entry() {
    let file = TempConfig::new("[databases]\na = \"dbname=one user=u\"\nb = \"dbname=two\"\n");
    let loaded = load(Some(&file), &[], &[("databases.a", "dbname=three")]);
    let routes = &loaded.settings.databases;
    assert_eq!(routes["a"].dbname.as_deref(), Some("three"));
    assert_eq!(
        routes["a"].user, None,
        "the file's entry was replaced, not merged"
    );
    assert_eq!(routes["b"].dbname.as_deref(), Some("two"));
}

#[test]
fn passwords_in_routes_are_masked() {
    let file = TempConfig::new(
        "[databases]\n\
         a = \"dbname=x password='se cret'\"\n\
         b = { dbname = \"y\", password = \"hunter2\" }\n",
    );
    let loaded = load(Some(&file), &[], &[]);
    let text = loaded.render();
    assert!(
        !text.contains("se cret") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("dbname=x password=***"), "{text}");
    let debug = format!("{:?}", loaded.settings);
    assert!(
        !debug.contains("se cret") && !debug.contains("hunter2"),
        "{debug}"
    );
}

#[test]
fn unknown_keys_in_an_entry_are_refused_naming_it() {
    let file = TempConfig::new("[databases]\nalias = \"hots=db dbname=x\"\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("(databases.alias)"), "{message}");
    assert!(message.contains("unknown key \"hots\""), "{message}");

    let file = TempConfig::new("[databases]\nalias = { dbname = \"x\", hots = \"db\" }\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("databases.alias"), "{message}");
    assert!(message.contains("hots"), "{message}");

    let file = TempConfig::new("[databases.alias]\ndbname = \"x\"\nhots = \"db\"\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("databases.alias"), "{message}");
    assert!(message.contains("hots"), "{message}");

    let message = refuse(None, &[], &[("databases.alias", "hots=db password=pw9")]);
    assert!(
        message.starts_with("invalid configuration: databases.alias = "),
        "{message}"
    );
    assert!(!message.contains("pw9"), "{message}");
}

#[test]
fn bad_values_are_refused_naming_the_entry() {
    let message = refuse(None, &[], &[("databases.a", "port=0 password=pw9")]);
    assert!(
        message.contains("databases.a = \"port=0 password=***\""),
        "{message}"
    );
    assert!(message.contains("port must be 1-65535"), "{message}");
    let message = refuse(None, &[], &[("databases.a", "pool_size=0")]);
    assert!(
        message.contains("pool_size must be at least 1"),
        "{message}"
    );
    let file = TempConfig::new("[databases]\na = 5\n");
    let message = refuse(Some(&file), &[], &[]);
    assert!(message.contains("(databases.a)"), "{message}");
    assert!(message.contains("connection string"), "{message}");
    let message = refuse(None, &[], &[("proxy.max_prepared_statements", "0")]);
    assert!(
        message.contains("proxy.max_prepared_statements"),
        "{message}"
    );
}
