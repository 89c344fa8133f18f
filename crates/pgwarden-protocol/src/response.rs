//! Backend status messages a proxy reads and writes: ErrorResponse and NoticeResponse (with their
//! fields, SQLSTATE included), ParameterStatus, BackendKeyData, ReadyForQuery, CommandComplete.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{put_cstr, write_message, Reader};
use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::tracker::TransactionStatus;

fn expect_tag(frame: &Frame, tag: u8, name: &'static str) -> Result<(), ProtocolError> {
    if frame.tag == tag {
        Ok(())
    } else {
        Err(ProtocolError::malformed(name, "unexpected tag"))
    }
}

/// Field code of the localized severity (`S`).
pub const FIELD_SEVERITY: u8 = b'S';
/// Field code of the non-localized severity (`V`).
pub const FIELD_SEVERITY_NONLOCALIZED: u8 = b'V';
/// Field code of the SQLSTATE (`C`).
pub const FIELD_CODE: u8 = b'C';
/// Field code of the primary message (`M`).
pub const FIELD_MESSAGE: u8 = b'M';
/// Field code of the detail (`D`).
pub const FIELD_DETAIL: u8 = b'D';
/// Field code of the hint (`H`).
pub const FIELD_HINT: u8 = b'H';

/// The fields of an ErrorResponse (`E`) or NoticeResponse (`N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// `(code, value)` pairs in wire order.
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// Tag of ErrorResponse.
    pub const ERROR_TAG: u8 = b'E';
    /// Tag of NoticeResponse.
    pub const NOTICE_TAG: u8 = b'N';

    /// Fields for a message with severity (e.g. `FATAL`), SQLSTATE (e.g. `53300`) and text; the
    /// severity is written both localized and non-localized, as PostgreSQL does.
    pub fn new(severity: &str, code: &str, message: impl Into<String>) -> Self {
        ErrorFields {
            fields: vec![
                (FIELD_SEVERITY, severity.to_owned()),
                (FIELD_SEVERITY_NONLOCALIZED, severity.to_owned()),
                (FIELD_CODE, code.to_owned()),
                (FIELD_MESSAGE, message.into()),
            ],
        }
    }

    /// Adds a field (e.g. [`FIELD_DETAIL`], [`FIELD_HINT`]).
    pub fn with(mut self, code: u8, value: impl Into<String>) -> Self {
        self.fields.push((code, value.into()));
        self
    }

    /// The first value of field `code`.
    pub fn field(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// Severity, preferring the non-localized `V` field.
    pub fn severity(&self) -> Option<&str> {
        self.field(FIELD_SEVERITY_NONLOCALIZED)
            .or_else(|| self.field(FIELD_SEVERITY))
    }

    /// SQLSTATE (`C`).
    pub fn code(&self) -> Option<&str> {
        self.field(FIELD_CODE)
    }

    /// Primary message (`M`).
    pub fn message(&self) -> Option<&str> {
        self.field(FIELD_MESSAGE)
    }

    /// Decodes an `E` or `N` frame.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        const NAME: &str = "ErrorResponse/NoticeResponse";
        if frame.tag != Self::ERROR_TAG && frame.tag != Self::NOTICE_TAG {
            return Err(ProtocolError::malformed(NAME, "unexpected tag"));
        }
        let mut r = Reader::new(NAME, &frame.body);
        let mut fields = Vec::new();
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            fields.push((code, String::from_utf8_lossy(r.cstr_bytes()?).into_owned()));
        }
        r.finish()?;
        Ok(ErrorFields { fields })
    }

    /// Appends an ErrorResponse with these fields to `out`.
    pub fn encode_error(&self, out: &mut BytesMut) {
        self.encode(Self::ERROR_TAG, out);
    }

    /// Appends a NoticeResponse with these fields to `out`.
    pub fn encode_notice(&self, out: &mut BytesMut) {
        self.encode(Self::NOTICE_TAG, out);
    }

    fn encode(&self, tag: u8, out: &mut BytesMut) {
        write_message(out, Some(tag), |out| {
            for (code, value) in &self.fields {
                out.put_u8(*code);
                put_cstr(out, value.as_bytes());
            }
            out.put_u8(0);
        });
    }
}

/// ParameterStatus (`S`): a run-time parameter's current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    /// Parameter name, e.g. `server_version`.
    pub name: String,
    /// Its value.
    pub value: String,
}

impl ParameterStatus {
    /// Tag of ParameterStatus.
    pub const TAG: u8 = b'S';

    /// Decodes an `S` frame from the backend.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        expect_tag(frame, Self::TAG, "ParameterStatus")?;
        let mut r = Reader::new("ParameterStatus", &frame.body);
        let status = ParameterStatus {
            name: r.cstr()?.to_owned(),
            value: r.cstr()?.to_owned(),
        };
        r.finish()?;
        Ok(status)
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(Self::TAG), |out| {
            put_cstr(out, self.name.as_bytes());
            put_cstr(out, self.value.as_bytes());
        });
    }
}

/// BackendKeyData (`K`): what a client needs to send a CancelRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    /// Backend process id.
    pub process_id: i32,
    /// Secret key (4 bytes in protocol 3.0, up to 256 in 3.2).
    pub secret_key: Bytes,
}

impl BackendKeyData {
    /// Tag of BackendKeyData.
    pub const TAG: u8 = b'K';

    /// Decodes a `K` frame.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        expect_tag(frame, Self::TAG, "BackendKeyData")?;
        let mut r = Reader::new("BackendKeyData", &frame.body);
        let process_id = r.i32()?;
        let secret_key = frame.body.slice_ref(r.rest());
        if !(4..=256).contains(&secret_key.len()) {
            return Err(ProtocolError::malformed(
                "BackendKeyData",
                "secret key of 4..=256 bytes",
            ));
        }
        Ok(BackendKeyData {
            process_id,
            secret_key,
        })
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(Self::TAG), |out| {
            out.put_i32(self.process_id);
            out.put_slice(&self.secret_key);
        });
    }
}

/// ReadyForQuery (`Z`): the backend is ready for the next query, in this transaction status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery(pub TransactionStatus);

impl ReadyForQuery {
    /// Tag of ReadyForQuery.
    pub const TAG: u8 = b'Z';

    /// Decodes a `Z` frame.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        expect_tag(frame, Self::TAG, "ReadyForQuery")?;
        match frame.body[..] {
            [b] => {
                TransactionStatus::from_byte(b)
                    .map(ReadyForQuery)
                    .ok_or(ProtocolError::malformed(
                        "ReadyForQuery",
                        "unknown status byte",
                    ))
            }
            _ => Err(ProtocolError::malformed(
                "ReadyForQuery",
                "body is not one byte",
            )),
        }
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(Self::TAG), |out| out.put_u8(self.0.to_byte()));
    }
}

/// CommandComplete (`C`): a statement finished; its tag says what it did (`INSERT 0 5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    /// The command tag.
    pub tag: String,
}

impl CommandComplete {
    /// Tag byte of CommandComplete.
    pub const TAG: u8 = b'C';

    /// Decodes a `C` frame from the backend.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        expect_tag(frame, Self::TAG, "CommandComplete")?;
        let mut r = Reader::new("CommandComplete", &frame.body);
        let tag = r.cstr()?.to_owned();
        r.finish()?;
        Ok(CommandComplete { tag })
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(Self::TAG), |out| {
            put_cstr(out, self.tag.as_bytes())
        });
    }
}

#[cfg(test)]
mod tests;
