//! md5 password authentication (`AuthenticationMD5Password`), as server and as client.
//!
//! The stored secret is `md5` + hex(md5(password + user)); the client answers a 4-byte salt with
//! `md5` + hex(md5(hex(md5(password + user)) + salt)). A proxy holding only the stored secret can
//! therefore both check a client and answer a server ([`md5_response_from_secret`]).

use ::md5::{Digest, Md5};

use crate::scram::constant_time_eq;

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret PostgreSQL stores for md5: `md5` + hex(md5(password + user)).
pub fn md5_secret(user: &str, password: &[u8]) -> String {
    format!("md5{}", md5_hex(&[password, user.as_bytes()]))
}

/// The client's PasswordMessage contents for `salt`, from the password.
pub fn md5_client_response(user: &str, password: &[u8], salt: [u8; 4]) -> String {
    let inner = md5_hex(&[password, user.as_bytes()]);
    format!("md5{}", md5_hex(&[inner.as_bytes(), &salt]))
}

/// The client's PasswordMessage contents for `salt`, from a stored `md5...` secret; `None` when
/// `secret` is not an md5 secret.
pub fn md5_response_from_secret(secret: &str, salt: [u8; 4]) -> Option<String> {
    let inner = secret.strip_prefix("md5").filter(|h| h.len() == 32)?;
    Some(format!("md5{}", md5_hex(&[inner.as_bytes(), &salt])))
}

/// Server side: does `response` (PasswordMessage contents) prove knowledge of `secret`?
pub fn md5_verify(secret: &str, salt: [u8; 4], response: &[u8]) -> bool {
    md5_response_from_secret(secret, salt)
        .is_some_and(|expected| constant_time_eq(expected.as_bytes(), response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_secret_for_postgres_postgres() {
        assert_eq!(
            md5_secret("postgres", b"postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
    }

    #[test]
    fn agrees_with_postgres_protocol() {
        let salt = [0x12, 0x34, 0x56, 0x78];
        assert_eq!(
            md5_secret("alice", b"pw"),
            postgres_protocol::password::md5(b"pw", "alice")
        );
        let reference = postgres_protocol::authentication::md5_hash(b"alice", b"pw", salt);
        assert_eq!(md5_client_response("alice", b"pw", salt), reference);
        let secret = md5_secret("alice", b"pw");
        assert_eq!(
            md5_response_from_secret(&secret, salt),
            Some(reference.clone())
        );
        assert!(md5_verify(&secret, salt, reference.as_bytes()));
    }

    #[test]
    fn rejects_wrong_password_salt_or_secret() {
        let salt = *b"abcd";
        let secret = md5_secret("bob", b"right");
        assert!(!md5_verify(
            &secret,
            salt,
            md5_client_response("bob", b"wrong", salt).as_bytes()
        ));
        assert!(!md5_verify(
            &secret,
            *b"abce",
            md5_client_response("bob", b"right", salt).as_bytes()
        ));
        assert!(!md5_verify("SCRAM-SHA-256$...", salt, b"md5whatever"));
        assert_eq!(md5_response_from_secret("md5short", salt), None);
    }
}
