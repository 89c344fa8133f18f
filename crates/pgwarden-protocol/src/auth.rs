//! Authentication messages, both directions: the backend's Authentication requests (`R`) and the
//! frontend's answers (`p`: PasswordMessage, SASLInitialResponse or SASLResponse, told apart only
//! by the exchange in progress).

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{put_cstr, write_message, Reader};
use crate::error::ProtocolError;
use crate::frame::Frame;

/// Tag of Authentication messages.
pub const AUTHENTICATION_TAG: u8 = b'R';
/// Tag of the frontend's password, SASLInitialResponse and SASLResponse messages.
pub const PASSWORD_TAG: u8 = b'p';

/// The mechanism name of SCRAM-SHA-256.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// A backend Authentication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// Code 0: authenticated.
    Ok,
    /// Code 3: send the password in clear text.
    CleartextPassword,
    /// Code 5: send `md5` + md5(md5(password + user) + salt).
    Md5Password {
        /// Four random bytes.
        salt: [u8; 4],
    },
    /// Code 10: start SASL with one of these mechanisms.
    Sasl {
        /// Mechanism names, e.g. `SCRAM-SHA-256`.
        mechanisms: Vec<String>,
    },
    /// Code 11: SASL challenge (for SCRAM, the server-first-message).
    SaslContinue(Bytes),
    /// Code 12: SASL outcome (for SCRAM, the server-final-message).
    SaslFinal(Bytes),
}

impl Authentication {
    /// Decodes an `R` frame.
    pub fn decode(frame: &Frame) -> Result<Authentication, ProtocolError> {
        const NAME: &str = "Authentication";
        if frame.tag != AUTHENTICATION_TAG {
            return Err(ProtocolError::malformed(NAME, "unexpected tag"));
        }
        let mut r = Reader::new(NAME, &frame.body);
        let auth = match r.i32()? {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = r.bytes(4)?;
                Authentication::Md5Password {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = r.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m.to_owned());
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue(frame.body.slice_ref(r.rest())),
            12 => Authentication::SaslFinal(frame.body.slice_ref(r.rest())),
            _ => {
                return Err(ProtocolError::malformed(
                    NAME,
                    "unsupported authentication code",
                ))
            }
        };
        r.finish()?;
        Ok(auth)
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(AUTHENTICATION_TAG), |out| match self {
            Authentication::Ok => out.put_i32(0),
            Authentication::CleartextPassword => out.put_i32(3),
            Authentication::Md5Password { salt } => {
                out.put_i32(5);
                out.put_slice(salt);
            }
            Authentication::Sasl { mechanisms } => {
                out.put_i32(10);
                for m in mechanisms {
                    put_cstr(out, m.as_bytes());
                }
                out.put_u8(0);
            }
            Authentication::SaslContinue(data) => {
                out.put_i32(11);
                out.put_slice(data);
            }
            Authentication::SaslFinal(data) => {
                out.put_i32(12);
                out.put_slice(data);
            }
        });
    }
}

fn expect_password_tag(frame: &Frame, name: &'static str) -> Result<(), ProtocolError> {
    if frame.tag == PASSWORD_TAG {
        Ok(())
    } else {
        Err(ProtocolError::malformed(name, "unexpected tag"))
    }
}

/// PasswordMessage: a clear-text or md5-hashed password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordMessage {
    /// The password bytes without the NUL terminator (`md5...` for md5).
    pub password: Bytes,
}

impl PasswordMessage {
    /// Decodes a `p` frame as a PasswordMessage.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        expect_password_tag(frame, "PasswordMessage")?;
        let mut r = Reader::new("PasswordMessage", &frame.body);
        let password = frame.body.slice_ref(r.cstr_bytes()?);
        r.finish()?;
        Ok(PasswordMessage { password })
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(PASSWORD_TAG), |out| put_cstr(out, &self.password));
    }
}

/// SASLInitialResponse: the chosen mechanism and its first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    /// Chosen mechanism, e.g. `SCRAM-SHA-256`.
    pub mechanism: String,
    /// Initial response (for SCRAM, the client-first-message); `None` when sent as length -1.
    pub data: Option<Bytes>,
}

impl SaslInitialResponse {
    /// Decodes a `p` frame as a SASLInitialResponse.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        const NAME: &str = "SASLInitialResponse";
        expect_password_tag(frame, NAME)?;
        let mut r = Reader::new(NAME, &frame.body);
        let mechanism = r.cstr()?.to_owned();
        let len = r.i32()?;
        let data = match usize::try_from(len) {
            Ok(n) => Some(frame.body.slice_ref(r.bytes(n)?)),
            Err(_) if len == -1 => None,
            Err(_) => return Err(ProtocolError::malformed(NAME, "negative length")),
        };
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(PASSWORD_TAG), |out| {
            put_cstr(out, self.mechanism.as_bytes());
            match &self.data {
                Some(data) => {
                    out.put_i32(i32::try_from(data.len()).unwrap_or(i32::MAX));
                    out.put_slice(data);
                }
                None => out.put_i32(-1),
            }
        });
    }
}

/// SASLResponse: a further message of the exchange (for SCRAM, the client-final-message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslResponse {
    /// The mechanism's data.
    pub data: Bytes,
}

impl SaslResponse {
    /// Decodes a `p` frame as a SASLResponse.
    pub fn decode(frame: &Frame) -> Result<Self, ProtocolError> {
        expect_password_tag(frame, "SASLResponse")?;
        Ok(SaslResponse {
            data: frame.body.clone(),
        })
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(PASSWORD_TAG), |out| out.put_slice(&self.data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(encode: impl FnOnce(&mut BytesMut)) -> Frame {
        let mut out = BytesMut::new();
        encode(&mut out);
        let frame = Frame::parse(&mut out).unwrap().unwrap();
        assert!(out.is_empty());
        frame
    }

    #[test]
    fn authentication_requests_round_trip() {
        for auth in [
            Authentication::Ok,
            Authentication::CleartextPassword,
            Authentication::Md5Password {
                salt: *b"\x01\x02\x03\x04",
            },
            Authentication::Sasl {
                mechanisms: vec![SCRAM_SHA_256.into(), "SCRAM-SHA-256-PLUS".into()],
            },
            Authentication::SaslContinue(Bytes::from_static(b"r=abc,s=c2FsdA==,i=4096")),
            Authentication::SaslFinal(Bytes::from_static(b"v=xyz")),
        ] {
            let frame = frame_of(|out| auth.encode(out));
            assert_eq!(Authentication::decode(&frame), Ok(auth));
        }
    }

    #[test]
    fn authentication_wire_format() {
        let frame = frame_of(|out| Authentication::Md5Password { salt: *b"salt" }.encode(out));
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        assert_eq!(&wire[..], b"R\0\0\0\x0c\0\0\0\x05salt");
        let ok = Frame {
            tag: b'R',
            body: Bytes::from_static(b"\0\0\0\0extra"),
        };
        assert!(Authentication::decode(&ok).is_err());
        let gss = Frame {
            tag: b'R',
            body: Bytes::from_static(b"\0\0\0\x07"),
        };
        assert!(Authentication::decode(&gss).is_err());
    }

    #[test]
    fn frontend_answers_round_trip() {
        let p = PasswordMessage {
            password: Bytes::from_static(b"md5abc"),
        };
        assert_eq!(PasswordMessage::decode(&frame_of(|o| p.encode(o))), Ok(p));
        for data in [Some(Bytes::from_static(b"n,,n=,r=nonce")), None] {
            let i = SaslInitialResponse {
                mechanism: SCRAM_SHA_256.into(),
                data,
            };
            assert_eq!(
                SaslInitialResponse::decode(&frame_of(|o| i.encode(o))),
                Ok(i)
            );
        }
        let r = SaslResponse {
            data: Bytes::from_static(b"c=biws,r=x,p=y"),
        };
        assert_eq!(SaslResponse::decode(&frame_of(|o| r.encode(o))), Ok(r));
    }

    #[test]
    fn sasl_initial_response_rejects_a_length_past_the_body() {
        let frame = Frame {
            tag: b'p',
            body: Bytes::from_static(b"SCRAM-SHA-256\0\0\0\0\x09short"),
        };
        assert!(SaslInitialResponse::decode(&frame).is_err());
        let wrong_tag = Frame {
            tag: b'Q',
            body: Bytes::from_static(b"x\0"),
        };
        assert!(PasswordMessage::decode(&wrong_tag).is_err());
    }
}
