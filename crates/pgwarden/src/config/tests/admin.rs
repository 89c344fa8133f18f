//! `[admin]`: off unless `admin.listen` is set, from any layer; an address or nothing.

use super::{load, refuse, TempConfig};

#[test]
fn the_admin_listener_is_off_by_default_and_set_by_file_env_or_flag() {
    assert_eq!(load(None, &[], &[]).settings.admin.listen, None);
    let file = TempConfig::new("[admin]\nlisten = \"127.0.0.1:9187\"\n");
    let from_file = load(Some(&file), &[], &[]).settings.admin.listen;
    assert_eq!(from_file, Some("127.0.0.1:9187".parse().unwrap()));
    let env = [("PGWARDEN_ADMIN_LISTEN", "0.0.0.0:9000")];
    let from_env = load(Some(&file), &env, &[]).settings.admin.listen;
    assert_eq!(from_env, Some("0.0.0.0:9000".parse().unwrap()));
    // An empty value switches it off again.
    let off = load(Some(&file), &[], &[("admin.listen", "")])
        .settings
        .admin
        .listen;
    assert_eq!(off, None);
}

#[test]
fn an_admin_listen_that_is_not_an_address_is_refused() {
    let message = refuse(None, &[("PGWARDEN_ADMIN_LISTEN", "localhost")], &[]);
    assert_eq!(
        message,
        "invalid configuration: admin.listen = localhost (from env PGWARDEN_ADMIN_LISTEN): \
         expected an address like 127.0.0.1:9187"
    );
}
