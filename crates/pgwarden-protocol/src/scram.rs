//! SCRAM-SHA-256 (RFC 5802 / 7677) as PostgreSQL speaks it, both as server and as client, as
//! sans-IO state machines fed the SASL payloads of `p` and `R` messages.
//!
//! - [`ScramSecret`]: the verifier stored in `pg_authid`
//!   (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`).
//! - [`ScramServer`]: verifies a client against a secret; on success it also yields the
//!   `ClientKey` recovered from the proof.
//! - [`ScramClient`]: logs in with a password, or with a recovered `ClientKey` and the secret's
//!   `ServerKey` ("SCRAM pass-through": a proxy that verified a client can log in to the server
//!   as that client without knowing the password).
//!
//! Channel binding is not offered (the `-PLUS` mechanism); a client that demands it is refused.

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::error::ProtocolError;

pub use self::client::{ScramClient, ScramCredentials};
pub use self::server::{ScramServer, ScramVerdict, ScramVerified};

/// Length of SHA-256 outputs, and so of every SCRAM key.
pub const KEY_LEN: usize = 32;

/// A SCRAM-SHA-256 key (ClientKey, StoredKey, ServerKey, ...).
pub type ScramKey = [u8; KEY_LEN];

/// The SCRAM verifier PostgreSQL stores for a role.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt (raw bytes).
    pub salt: Vec<u8>,
    /// `H(ClientKey)`: checks a client's proof.
    pub stored_key: ScramKey,
    /// `HMAC(SaltedPassword, "Server Key")`: signs the server's final message.
    pub server_key: ScramKey,
}

impl fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
    pub fn parse(s: &str) -> Result<ScramSecret, ProtocolError> {
        let bad = ProtocolError::Authentication("malformed SCRAM secret");
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or(bad.clone())?;
        let (params, keys) = rest.split_once('$').ok_or(bad.clone())?;
        let (iterations, salt) = params.split_once(':').ok_or(bad.clone())?;
        let (stored, server) = keys.split_once(':').ok_or(bad.clone())?;
        let iterations: u32 = iterations.parse().map_err(|_| bad.clone())?;
        let salt = STANDARD.decode(salt).map_err(|_| bad.clone())?;
        let key = |b64: &str| -> Result<ScramKey, ProtocolError> {
            let raw = STANDARD.decode(b64).map_err(|_| bad.clone())?;
            raw.try_into().map_err(|_| bad.clone())
        };
        if iterations == 0 || salt.is_empty() {
            return Err(bad);
        }
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Computes the secret for `password` (used as raw bytes, without SASLprep normalisation).
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> ScramSecret {
        let keys = salted_keys(password, salt, iterations);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&keys.0),
            server_key: keys.1,
        }
    }
}

impl fmt::Display for ScramSecret {
    /// Formats in `pg_authid` syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

/// `(ClientKey, ServerKey)` derived from a password.
pub(crate) fn salted_keys(password: &[u8], salt: &[u8], iterations: u32) -> (ScramKey, ScramKey) {
    let salted = hi(password, salt, iterations);
    (
        hmac(&salted, &[b"Client Key"]),
        hmac(&salted, &[b"Server Key"]),
    )
}

/// PBKDF2-HMAC-SHA-256 with one output block (`Hi` in RFC 5802).
pub(crate) fn hi(password: &[u8], salt: &[u8], iterations: u32) -> ScramKey {
    let mut prev = hmac(password, &[salt, &[0, 0, 0, 1]]);
    let mut out = prev;
    for _ in 1..iterations {
        prev = hmac(password, &[&prev]);
        xor_in(&mut out, &prev);
    }
    out
}

/// HMAC-SHA-256 of the concatenated `parts`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> ScramKey {
    // HMAC accepts keys of any length, so this constructor cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> ScramKey {
    Sha256::digest(data).into()
}

/// `a ^= b`.
pub(crate) fn xor_in(a: &mut ScramKey, b: &ScramKey) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Equality without an early exit, so timing does not reveal how many bytes matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Splits `key=value` attributes of a SCRAM message.
pub(crate) fn attributes(message: &str) -> impl Iterator<Item = (char, &str)> {
    message.split(',').map(|part| {
        let mut chars = part.chars();
        match (chars.next(), chars.next()) {
            (Some(k), Some('=')) => (k, &part[2..]),
            _ => ('\0', part),
        }
    })
}

/// A fresh printable nonce (base64 of 18 random bytes).
pub(crate) fn random_nonce() -> String {
    let bytes: [u8; 18] = rand::random();
    STANDARD.encode(bytes)
}
