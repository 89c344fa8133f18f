//! Orphan selection and application_name tagging.

use super::*;

fn row(pid: i32, application_name: &str, state: &str, idle_secs: u64) -> BackendRow {
    BackendRow {
        pid,
        application_name: application_name.to_owned(),
        state: state.to_owned(),
        state_change_age: Duration::from_secs(idle_secs),
        backend_start: None,
    }
}

#[test]
fn tag_round_trips_and_is_short_hex() {
    let tag = InstanceTag::new("pgwarden");
    let text = tag.application_name();
    assert!(text.starts_with("pgwarden#"), "{text}");
    assert_eq!(tag.instance_id().len(), 8);
    assert!(tag.instance_id().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(InstanceTag::parse(&text), Some(tag));
}

#[test]
fn two_instances_get_different_ids() {
    let ids: std::collections::HashSet<_> = (0..20)
        .map(|_| InstanceTag::new("pgwarden").instance_id().to_owned())
        .collect();
    assert!(ids.len() > 1);
}

#[test]
fn parse_rejects_foreign_names() {
    assert_eq!(InstanceTag::parse("psql"), None);
    assert_eq!(InstanceTag::parse("pgwarden"), None);
    assert_eq!(InstanceTag::parse("pgwarden#"), None);
    assert_eq!(InstanceTag::parse("pgwarden#xyz12345"), None);
    assert_eq!(InstanceTag::parse("pgwarden#1234"), None);
    let parsed = InstanceTag::parse("my#app#deadBEEF").expect("tagged");
    assert_eq!(
        (parsed.name(), parsed.instance_id()),
        ("my#app", "deadbeef")
    );
}

#[test]
fn long_names_are_shortened_so_the_id_survives() {
    let tag = InstanceTag::new(&"é".repeat(60));
    let text = tag.application_name();
    assert!(text.len() <= APPLICATION_NAME_MAX, "{} bytes", text.len());
    assert_eq!(InstanceTag::parse(&text), Some(tag));
}

#[test]
fn selects_only_idle_orphans_of_dead_instances() {
    let own = InstanceTag::parse("pgwarden#0000aaaa").expect("tag");
    let policy = OrphanPolicy::for_instance(own);
    let rows = [
        row(1, "pgwarden#0000aaaa", "idle", 3600), // our own live instance
        row(2, "pgwarden#1111bbbb", "idle", 3600), // orphan
        row(3, "pgwarden#1111bbbb", "idle in transaction", 301), // orphan
        row(4, "pgwarden#1111bbbb", "active", 3600), // busy: never
        row(5, "pgwarden#1111bbbb", "idle", 299),  // young idle
        row(6, "psql", "idle", 3600),              // another application
        row(7, "billing#1111bbbb", "idle", 3600),  // another tagged application
        row(8, "pgwarden", "idle", 3600),          // untagged: not provably ours
        row(9, "pgwarden#2222cccc", "idle in transaction (aborted)", 900), // orphan
        row(10, "pgwarden#1111bbbb", "idle", 300), // exactly the threshold
    ];
    assert_eq!(select_orphans(&rows, &policy), vec![2, 3, 9]);
}

#[test]
fn threshold_is_configurable() {
    let own = InstanceTag::parse("pgwarden#0000aaaa").expect("tag");
    let policy = OrphanPolicy {
        idle_threshold: Duration::from_secs(10),
        ..OrphanPolicy::for_instance(own)
    };
    let rows = [row(5, "pgwarden#1111bbbb", "idle", 11)];
    assert_eq!(select_orphans(&rows, &policy), vec![5]);
}

#[test]
fn names_that_only_start_like_ours_are_not_ours() {
    let own = InstanceTag::parse("pgwarden#0000aaaa").expect("tag");
    let policy = OrphanPolicy::for_instance(own);
    let rows = [
        row(1, "pgwarden2#deadbeef", "idle", 3600), // another application, longer name
        row(2, "pgwarden#x#deadbeef", "idle", 3600), // name "pgwarden#x", not ours
        row(3, "pgwarden-probe", "idle", 3600),     // our probe's untagged logins
        row(4, "pgwarden#DEADBEEF", "idle", 3600),  // upper case: never made by pgwarden
        row(5, "pgwarden#deadbeef0", "idle", 3600), // id too long
        row(6, "pgwarden#deadbee", "idle", 3600),   // id too short
        row(7, "pgwarden#deadbeef ", "idle", 3600), // trailing space
        row(8, "xpgwarden#deadbeef", "idle", 3600), // prefix before our name
        row(9, "pgwarden#deadbeef", "idle", 3600),  // the only orphan
    ];
    assert_eq!(select_orphans(&rows, &policy), vec![9]);
}

#[test]
fn a_name_with_a_separator_is_matched_exactly_too() {
    // Another application called "app#x" has tags "app#x#{id}"; an instance named "app" must
    // leave them alone, and the reverse holds as well.
    let app = OrphanPolicy::for_instance(InstanceTag::parse("app#0000aaaa").expect("tag"));
    let app_x = OrphanPolicy::for_instance(InstanceTag::parse("app#x#0000aaaa").expect("tag"));
    let rows = [
        row(1, "app#x#deadbeef", "idle", 3600),
        row(2, "app#deadbeef", "idle", 3600),
    ];
    assert_eq!(select_orphans(&rows, &app), vec![2]);
    assert_eq!(select_orphans(&rows, &app_x), vec![1]);
}

#[test]
fn sibling_id_and_query_prefix() {
    let own = InstanceTag::parse("pgwarden#0000aaaa").expect("tag");
    assert_eq!(own.query_prefix(), "pgwarden#");
    assert_eq!(own.sibling_id("pgwarden#1234abcd"), Some("1234abcd"));
    assert_eq!(own.sibling_id("pgwarden#0000aaaa"), Some("0000aaaa"));
    assert_eq!(own.sibling_id("pgwarden2#1234abcd"), None);
    assert_eq!(own.sibling_id("pgwarden"), None);
    assert_eq!(own.sibling_id("pgwarden#"), None);
}
