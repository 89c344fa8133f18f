//! The client side of SCRAM-SHA-256, from a password or from recovered keys (pass-through).
//!
//! Call order: send [`ScramClient::client_first`] in SASLInitialResponse; feed the data of
//! AuthenticationSASLContinue to [`ScramClient::server_first`] and send what it returns in
//! SASLResponse; feed the data of AuthenticationSASLFinal to [`ScramClient::server_final`],
//! which checks that the server knew the secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{
    attributes, constant_time_eq, hmac, random_nonce, salted_keys, sha256, xor_in, ScramKey,
};
use crate::error::ProtocolError;

/// What the client proves its identity with.
#[derive(Clone)]
pub enum ScramCredentials {
    /// A password (raw bytes: no SASLprep normalisation is applied).
    Password(Vec<u8>),
    /// Keys recovered by [`super::ScramServer`] from a client's proof plus the secret's
    /// `ServerKey`; the server's salt and iteration count must be those of the same secret.
    Keys {
        /// The client's `ClientKey`.
        client_key: ScramKey,
        /// The secret's `ServerKey`, to check the server's signature.
        server_key: ScramKey,
    },
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScramCredentials::Password(_) => "Password(..)",
            ScramCredentials::Keys { .. } => "Keys { .. }",
        })
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the server-first-message.
    SentFirst,
    /// Waiting for the server-final-message; holds the expected signature.
    SentFinal { server_signature: ScramKey },
    /// Finished or failed.
    Done,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ScramClient {
    credentials: ScramCredentials,
    nonce: String,
    client_first: Vec<u8>,
    state: State,
}

fn fail(reason: &'static str) -> ProtocolError {
    ProtocolError::Authentication(reason)
}

const GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// A client exchange with a fresh random nonce.
    pub fn new(credentials: ScramCredentials) -> Self {
        Self::with_nonce(credentials, random_nonce())
    }

    /// A client exchange with a given nonce (printable ASCII without `,`); for tests.
    pub fn with_nonce(credentials: ScramCredentials, nonce: impl Into<String>) -> Self {
        let nonce = nonce.into();
        // PostgreSQL takes the user from the startup packet, so the SCRAM user name stays empty.
        let client_first = format!("{GS2_HEADER}n=,r={nonce}").into_bytes();
        ScramClient {
            credentials,
            nonce,
            client_first,
            state: State::SentFirst,
        }
    }

    /// The client-first-message, for SASLInitialResponse.
    pub fn client_first(&self) -> &[u8] {
        &self.client_first
    }

    /// Takes the server-first-message; returns the client-final-message for SASLResponse.
    pub fn server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if !matches!(self.state, State::SentFirst) {
            return Err(fail("server-first-message out of order"));
        }
        self.state = State::Done;
        let message = std::str::from_utf8(data).map_err(|_| fail("server-first is not UTF-8"))?;
        let mut attrs = attributes(message);
        let nonce = match attrs.next() {
            Some(('r', n)) if n.len() > self.nonce.len() && n.starts_with(&self.nonce) => n,
            _ => return Err(fail("server nonce does not extend the client nonce")),
        };
        let salt = match attrs.next() {
            Some(('s', s)) => STANDARD.decode(s).map_err(|_| fail("malformed salt"))?,
            _ => return Err(fail("server-first-message lacks a salt")),
        };
        let iterations: u32 = match attrs.next() {
            Some(('i', i)) => i.parse().map_err(|_| fail("malformed iteration count"))?,
            _ => return Err(fail("server-first-message lacks an iteration count")),
        };
        if iterations == 0 {
            return Err(fail("iteration count is zero"));
        }
        let (client_key, server_key) = match &self.credentials {
            ScramCredentials::Password(p) => salted_keys(p, &salt, iterations),
            ScramCredentials::Keys {
                client_key,
                server_key,
            } => (*client_key, *server_key),
        };
        let without_proof = format!("c={},r={nonce}", STANDARD.encode(GS2_HEADER));
        let bare = &self.client_first[GS2_HEADER.len()..];
        let auth_message = [bare, b",", data, b",", without_proof.as_bytes()].concat();
        let mut proof = hmac(&sha256(&client_key), &[&auth_message]);
        xor_in(&mut proof, &client_key);
        self.state = State::SentFinal {
            server_signature: hmac(&server_key, &[&auth_message]),
        };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Takes the server-final-message and checks the server's signature.
    pub fn server_final(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let State::SentFinal { server_signature } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(fail("server-final-message out of order"));
        };
        let message = std::str::from_utf8(data).map_err(|_| fail("server-final is not UTF-8"))?;
        match attributes(message).next() {
            Some(('v', v)) => {
                let v = STANDARD
                    .decode(v)
                    .map_err(|_| fail("malformed server signature"))?;
                if constant_time_eq(&v, &server_signature) {
                    Ok(())
                } else {
                    Err(fail(
                        "server signature does not match: the server does not know the secret",
                    ))
                }
            }
            Some(('e', _)) => Err(fail("server reported a SCRAM error")),
            _ => Err(fail("malformed server-final-message")),
        }
    }
}
