//! The one error type of the crate: everything that can be wrong with bytes a peer sent.
//!
//! Every variant means the peer broke the protocol; none is retryable on the same connection.
//! A proxy answers a client with SQLSTATE `08P01` (protocol violation) and discards a server
//! connection.

use thiserror::Error;

/// A protocol violation found while framing, parsing or authenticating.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// A message header announced a length that cannot be right (below the minimum or above the
    /// configured maximum). The byte stream can no longer be split into messages.
    #[error("message {tag:?} announces length {length}, allowed {min}..={max}")]
    InvalidLength {
        /// The tag byte, or `None` for the untyped startup packet.
        tag: Option<char>,
        /// The announced length (including the four length bytes).
        length: u32,
        /// The smallest length accepted for this message.
        min: u32,
        /// The largest length accepted for this message.
        max: u32,
    },
    /// A tag byte that starts no known message: the stream is out of step.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// The startup packet asked for a protocol version other than 3.x.
    #[error("unsupported protocol version {major}.{minor}")]
    UnsupportedProtocolVersion {
        /// Major version requested.
        major: u16,
        /// Minor version requested.
        minor: u16,
    },
    /// A message body does not match its declared layout.
    #[error("malformed {message}: {reason}")]
    Malformed {
        /// The message being parsed, e.g. `"Bind"`.
        message: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// An authentication exchange received something it did not expect.
    #[error("authentication exchange failed: {0}")]
    Authentication(&'static str),
}

impl ProtocolError {
    /// Shorthand for [`ProtocolError::Malformed`].
    pub(crate) fn malformed(message: &'static str, reason: &'static str) -> Self {
        ProtocolError::Malformed { message, reason }
    }
}
