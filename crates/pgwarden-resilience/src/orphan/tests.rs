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
