//! The server side of SCRAM-SHA-256: checks a client's proof against a [`ScramSecret`].
//!
//! Call order: [`ScramServer::client_first`] with the SASLInitialResponse data (answer with
//! AuthenticationSASLContinue carrying the returned bytes), then [`ScramServer::client_final`]
//! with the SASLResponse data (answer with AuthenticationSASLFinal + AuthenticationOk when
//! accepted, with ErrorResponse `28P01` when rejected).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{
    attributes, constant_time_eq, hmac, random_nonce, sha256, xor_in, ScramKey, ScramSecret,
};
use crate::auth::SCRAM_SHA_256;
use crate::error::ProtocolError;

/// What a successful verification yields.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerified {
    /// The server-final-message, to send in AuthenticationSASLFinal.
    pub server_final: Vec<u8>,
    /// The client's `ClientKey`, recovered from its proof: with the secret's `ServerKey` it lets
    /// a proxy log in to the real server as this client (see [`super::ScramCredentials::Keys`]).
    pub client_key: ScramKey,
}

impl std::fmt::Debug for ScramVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerified").finish_non_exhaustive()
    }
}

/// The outcome of the client's final message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramVerdict {
    /// The proof matched the secret.
    Accepted(ScramVerified),
    /// The proof did not match: wrong password.
    Rejected,
}

#[derive(Debug)]
enum State {
    /// Waiting for the client-first-message.
    Initial,
    /// Waiting for the client-final-message.
    SentFirst {
        gs2_header: String,
        nonce: String,
        /// `client-first-bare + "," + server-first`, the start of AuthMessage.
        auth_prefix: String,
    },
    /// The exchange ended (successfully or not); no further input is accepted.
    Done,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ScramServer {
    secret: ScramSecret,
    server_nonce: String,
    state: State,
}

fn fail(reason: &'static str) -> ProtocolError {
    ProtocolError::Authentication(reason)
}

impl ScramServer {
    /// A server exchange for `secret` with a fresh random nonce.
    pub fn new(secret: ScramSecret) -> Self {
        Self::with_nonce(secret, random_nonce())
    }

    /// A server exchange with a given nonce (printable ASCII without `,`); for tests.
    pub fn with_nonce(secret: ScramSecret, server_nonce: impl Into<String>) -> Self {
        ScramServer {
            secret,
            server_nonce: server_nonce.into(),
            state: State::Initial,
        }
    }

    /// Takes the mechanism and data of SASLInitialResponse; returns the server-first-message.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, ProtocolError> {
        if !matches!(self.state, State::Initial) {
            return Err(fail("client-first-message out of order"));
        }
        self.state = State::Done;
        if mechanism != SCRAM_SHA_256 {
            return Err(fail("unsupported SASL mechanism"));
        }
        let message = std::str::from_utf8(data).map_err(|_| fail("client-first is not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = message.splitn(3, ',');
        let (flag, authzid, bare) = match (parts.next(), parts.next(), parts.next()) {
            (Some(f), Some(a), Some(b)) => (f, a, b),
            _ => return Err(fail("malformed client-first-message")),
        };
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(fail("channel binding is not supported")),
            _ => return Err(fail("malformed GS2 header")),
        }
        if !authzid.is_empty() {
            return Err(fail("authorization identity is not supported"));
        }
        let mut attrs = attributes(bare);
        if !matches!(attrs.next(), Some(('n', _))) {
            return Err(fail("client-first-message lacks a user name"));
        }
        let client_nonce = match attrs.next() {
            Some(('r', nonce)) if !nonce.is_empty() => nonce,
            _ => return Err(fail("client-first-message lacks a nonce")),
        };
        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&self.secret.salt),
            self.secret.iterations
        );
        self.state = State::SentFirst {
            gs2_header: format!("{flag},{authzid},"),
            nonce,
            auth_prefix: format!("{bare},{server_first}"),
        };
        Ok(server_first.into_bytes())
    }

    /// Takes the data of SASLResponse (the client-final-message) and checks the proof.
    pub fn client_final(&mut self, data: &[u8]) -> Result<ScramVerdict, ProtocolError> {
        let State::SentFirst {
            gs2_header,
            nonce,
            auth_prefix,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(fail("client-final-message out of order"));
        };
        let message = std::str::from_utf8(data).map_err(|_| fail("client-final is not UTF-8"))?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(fail("client-final-message lacks a proof"))?;
        let mut attrs = attributes(without_proof);
        match attrs.next() {
            Some(('c', binding))
                if STANDARD.decode(binding).ok() == Some(gs2_header.into_bytes()) => {}
            _ => return Err(fail("channel binding data does not match the GS2 header")),
        }
        match attrs.next() {
            Some(('r', r)) if r == nonce => {}
            _ => return Err(fail("nonce does not match")),
        }
        let proof: ScramKey = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(fail("malformed proof"))?;
        let auth_message = format!("{auth_prefix},{without_proof}");
        let mut client_key = hmac(&self.secret.stored_key, &[auth_message.as_bytes()]);
        xor_in(&mut client_key, &proof);
        if !constant_time_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Ok(ScramVerdict::Rejected);
        }
        let signature = hmac(&self.secret.server_key, &[auth_message.as_bytes()]);
        let server_final = format!("v={}", STANDARD.encode(signature)).into_bytes();
        Ok(ScramVerdict::Accepted(ScramVerified {
            server_final,
            client_key,
        }))
    }
}
