//! Splitting whole typed messages off a receive buffer: [`Frame::parse`] returns `Ok(None)` until
//! a message is complete, then removes it from the buffer without copying its body.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::header::{Header, DEFAULT_MAX_MESSAGE_LEN};

/// One complete typed message: its tag and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The tag byte, e.g. `b'Q'`.
    pub tag: u8,
    /// The body, without tag and length.
    pub body: Bytes,
}

impl Frame {
    /// Removes one complete message from the front of `buf` with the default size limit.
    ///
    /// Returns `Ok(None)` (leaving `buf` untouched, with capacity reserved for the rest) while
    /// the message is incomplete.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        Self::parse_with_max(buf, DEFAULT_MAX_MESSAGE_LEN)
    }

    /// Like [`Frame::parse`] with `max_len` as the largest accepted length field.
    pub fn parse_with_max(
        buf: &mut BytesMut,
        max_len: u32,
    ) -> Result<Option<Frame>, ProtocolError> {
        let Some(header) = Header::parse_with_max(buf, max_len)? else {
            return Ok(None);
        };
        if buf.len() < header.frame_len() {
            buf.reserve(header.frame_len() - buf.len());
            return Ok(None);
        }
        buf.advance(Header::SIZE);
        let body = buf.split_to(header.body_len()).freeze();
        Ok(Some(Frame {
            tag: header.tag(),
            body,
        }))
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.extend_from_slice(&Header::new(self.tag, self.body.len()).to_bytes());
        out.extend_from_slice(&self.body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_whole_message_then_splits_it_off() {
        let wire = b"Q\0\0\0\x0dselect 1\0S\0\0\0\x04";
        for cut in 0..14 {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(Frame::parse(&mut buf), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(&wire[..]);
        let q = Frame::parse(&mut buf).unwrap().unwrap();
        assert_eq!((q.tag, &q.body[..]), (b'Q', &b"select 1\0"[..]));
        let s = Frame::parse(&mut buf).unwrap().unwrap();
        assert_eq!((s.tag, s.body.len()), (b'S', 0));
        assert!(buf.is_empty());
        let mut out = BytesMut::new();
        q.encode(&mut out);
        s.encode(&mut out);
        assert_eq!(&out[..], &wire[..]);
    }

    #[test]
    fn respects_the_configured_maximum() {
        let mut buf = BytesMut::from(&b"D\0\0\x10\0"[..]);
        assert!(Frame::parse_with_max(&mut buf, 1024).is_err());
        assert_eq!(Frame::parse_with_max(&mut buf, 1 << 20), Ok(None));
    }
}
