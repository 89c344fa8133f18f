//! The untyped first packet a frontend sends: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest, told apart by the four-byte code after the length.
//!
//! ```text
//! +-----------------+---------------+----------------------------------------+
//! | length (u32 BE) | code (u32 BE) | rest: parameters / cancel key / nothing |
//! +-----------------+---------------+----------------------------------------+
//! ```
//! A server answers SSLRequest and GSSENCRequest with one byte (`S`/`G` yes, `N` no), not with
//! a message; a CancelRequest gets no answer at all.
//!
//! A StartupMessage asking for a newer minor version of protocol 3 than the server speaks, or
//! carrying protocol options (`_pq_.` parameters), is answered with
//! [`NegotiateProtocolVersion`] before authentication, as PostgreSQL does; the session then
//! continues at 3.0 without the options ([`StartupMessage::negotiate`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{put_cstr, write_message, Reader};
use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::header::MAX_STARTUP_PACKET_LEN;

/// Code of a CancelRequest packet.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;
/// Code of an SSLRequest packet.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// Code of a GSSENCRequest packet.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// Protocol version 3.0 as sent in a StartupMessage (major in the high 16 bits).
pub const PROTOCOL_VERSION_3_0: u32 = 3 << 16;
/// The newest minor version of protocol 3 this crate speaks.
pub const NEWEST_MINOR_VERSION: u16 = 0;
/// Startup parameters with this prefix are protocol options, not session parameters.
pub const PROTOCOL_OPTION_PREFIX: &str = "_pq_.";
/// Tag of NegotiateProtocolVersion.
pub const NEGOTIATE_PROTOCOL_VERSION_TAG: u8 = b'v';

/// A StartupMessage: protocol version and connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Minor protocol version requested (major is always 3).
    pub minor_version: u16,
    /// Parameters in the order sent (`user`, `database`, `application_name`, `options`, ...).
    pub parameters: Vec<(String, String)>,
}

impl StartupMessage {
    /// A protocol 3.0 StartupMessage with the given parameters.
    pub fn new(parameters: Vec<(String, String)>) -> Self {
        StartupMessage {
            minor_version: 0,
            parameters,
        }
    }

    /// The value of parameter `name`, if sent.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `user` parameter (parsing guarantees it is present).
    pub fn user(&self) -> &str {
        self.parameter("user").unwrap_or_default()
    }

    /// The `database` parameter, which defaults to the user name as in PostgreSQL.
    pub fn database(&self) -> &str {
        self.parameter("database").unwrap_or_else(|| self.user())
    }

    /// Settles the protocol version the way PostgreSQL does: when the client asked for a
    /// minor version newer than [`NEWEST_MINOR_VERSION`] or sent protocol options (`_pq_.*`,
    /// none of which is recognised), returns the [`NegotiateProtocolVersion`] to send before
    /// authentication. Either way the message is left at the version the session uses, with
    /// the protocol options removed from its parameters. Call once, right after parsing.
    pub fn negotiate(&mut self) -> Option<NegotiateProtocolVersion> {
        let mut unrecognized_options = Vec::new();
        self.parameters.retain(|(name, _)| {
            let option = name.starts_with(PROTOCOL_OPTION_PREFIX);
            if option {
                unrecognized_options.push(name.clone());
            }
            !option
        });
        let newer = self.minor_version > NEWEST_MINOR_VERSION;
        if !newer && unrecognized_options.is_empty() {
            return None;
        }
        // Newer minor versions are all compatible: continue with the newest we speak.
        self.minor_version = NEWEST_MINOR_VERSION;
        Some(NegotiateProtocolVersion {
            newest_minor: NEWEST_MINOR_VERSION,
            unrecognized_options,
        })
    }
}

/// NegotiateProtocolVersion (`v`): the server's answer to a StartupMessage asking for a newer
/// minor version or for protocol options it does not know. The session continues at
/// `3.newest_minor` without those options (a client may instead close the connection).
///
/// ```text
/// 'v' | length | version (i32: major << 16 | newest minor) | option count (i32) | names (cstr)*
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateProtocolVersion {
    /// Newest minor version of the requested major version (3) the server supports.
    pub newest_minor: u16,
    /// The protocol options (`_pq_.*`) the client sent that the server does not recognise.
    pub unrecognized_options: Vec<String>,
}

impl NegotiateProtocolVersion {
    /// Appends the framed message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(NEGOTIATE_PROTOCOL_VERSION_TAG), |out| {
            out.put_u32(PROTOCOL_VERSION_3_0 | u32::from(self.newest_minor));
            out.put_u32(u32::try_from(self.unrecognized_options.len()).unwrap_or(u32::MAX));
            for name in &self.unrecognized_options {
                put_cstr(out, name.as_bytes());
            }
        });
    }

    /// Reads the message from `frame` (tag `v`).
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        const NAME: &str = "NegotiateProtocolVersion";
        if frame.tag != NEGOTIATE_PROTOCOL_VERSION_TAG {
            return Err(ProtocolError::malformed(NAME, "wrong tag"));
        }
        let mut r = Reader::new(NAME, &frame.body);
        let version = r.i32()? as u32;
        if version >> 16 != 3 {
            return Err(ProtocolError::malformed(NAME, "major version is not 3"));
        }
        let count = r.i32()?;
        let count = usize::try_from(count)
            .map_err(|_| ProtocolError::malformed(NAME, "negative option count"))?;
        let mut unrecognized_options = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            unrecognized_options.push(r.cstr()?.to_owned());
        }
        r.finish()?;
        Ok(NegotiateProtocolVersion {
            newest_minor: version as u16,
            unrecognized_options,
        })
    }
}

/// A CancelRequest: which backend to interrupt and the key proving the right to do so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// Process id from BackendKeyData.
    pub process_id: i32,
    /// Secret key from BackendKeyData (4 bytes in protocol 3.0, up to 256 in 3.2).
    pub secret_key: Bytes,
}

/// The first packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// Start a session.
    Startup(StartupMessage),
    /// Ask for TLS; answered with one byte.
    SslRequest,
    /// Ask for GSSAPI encryption; answered with one byte.
    GssEncRequest,
    /// Cancel the query running on another connection.
    Cancel(CancelRequest),
}

fn invalid_length(length: u32, min: u32, max: u32) -> ProtocolError {
    ProtocolError::InvalidLength {
        tag: None,
        length,
        min,
        max,
    }
}

impl StartupPacket {
    /// Removes one startup packet from the front of `buf`; `Ok(None)` while it is incomplete.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<StartupPacket>, ProtocolError> {
        let Some(head) = buf.get(..8) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if !(8..=MAX_STARTUP_PACKET_LEN).contains(&len) {
            return Err(invalid_length(len, 8, MAX_STARTUP_PACKET_LEN));
        }
        if buf.len() < len as usize {
            return Ok(None);
        }
        let mut packet = buf.split_to(len as usize).freeze();
        packet.advance(8);
        let packet = match code {
            SSL_REQUEST_CODE | GSSENC_REQUEST_CODE if len != 8 => {
                return Err(invalid_length(len, 8, 8));
            }
            SSL_REQUEST_CODE => StartupPacket::SslRequest,
            GSSENC_REQUEST_CODE => StartupPacket::GssEncRequest,
            CANCEL_REQUEST_CODE => {
                if !(16..=8 + 4 + 256).contains(&len) {
                    return Err(invalid_length(len, 16, 8 + 4 + 256));
                }
                let process_id = packet.get_i32();
                StartupPacket::Cancel(CancelRequest {
                    process_id,
                    secret_key: packet,
                })
            }
            code if code >> 16 == 3 => StartupPacket::Startup(parse_startup(code, &packet)?),
            code => {
                return Err(ProtocolError::UnsupportedProtocolVersion {
                    major: (code >> 16) as u16,
                    minor: code as u16,
                })
            }
        };
        Ok(Some(packet))
    }

    /// Appends this packet, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, None, |out| match self {
            StartupPacket::SslRequest => out.put_u32(SSL_REQUEST_CODE),
            StartupPacket::GssEncRequest => out.put_u32(GSSENC_REQUEST_CODE),
            StartupPacket::Cancel(c) => {
                out.put_u32(CANCEL_REQUEST_CODE);
                out.put_i32(c.process_id);
                out.put_slice(&c.secret_key);
            }
            StartupPacket::Startup(s) => {
                out.put_u32(PROTOCOL_VERSION_3_0 | u32::from(s.minor_version));
                for (name, value) in &s.parameters {
                    put_cstr(out, name.as_bytes());
                    put_cstr(out, value.as_bytes());
                }
                out.put_u8(0);
            }
        });
    }
}

fn parse_startup(code: u32, body: &[u8]) -> Result<StartupMessage, ProtocolError> {
    let mut r = Reader::new("StartupMessage", body);
    let mut parameters = Vec::new();
    loop {
        let name = r.cstr()?;
        if name.is_empty() {
            break;
        }
        parameters.push((name.to_owned(), r.cstr()?.to_owned()));
    }
    r.finish()?;
    let message = StartupMessage {
        minor_version: code as u16,
        parameters,
    };
    if message.parameter("user").is_none_or(str::is_empty) {
        return Err(ProtocolError::malformed(
            "StartupMessage",
            "no user parameter",
        ));
    }
    Ok(message)
}

#[cfg(test)]
mod tests;
