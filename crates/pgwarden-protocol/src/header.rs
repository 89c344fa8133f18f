//! Framing of typed messages: the five-byte header (tag + length) every message after the startup
//! packet begins with, and the limits that tell a sane length from a desynchronized stream.
//!
//! ```text
//! +-----+-----------------+---------------------+
//! | tag | length (u32 BE) | body (length - 4)   |
//! +-----+-----------------+---------------------+
//! ```
//! The length counts itself but not the tag.

use crate::error::ProtocolError;

/// Largest typed message accepted by default (1 GiB, PostgreSQL's own allocation limit).
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 1 << 30;

/// Largest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_LEN: u32 = 10_000;

/// The header of one typed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    tag: u8,
    len: u32,
}

impl Header {
    /// Bytes a header occupies on the wire.
    pub const SIZE: usize = 5;

    /// Reads a header at the start of `buf` with [`DEFAULT_MAX_MESSAGE_LEN`] as the limit.
    ///
    /// Returns `Ok(None)` while fewer than [`Header::SIZE`] bytes are available.
    pub fn parse(buf: &[u8]) -> Result<Option<Header>, ProtocolError> {
        Self::parse_with_max(buf, DEFAULT_MAX_MESSAGE_LEN)
    }

    /// Reads a header at the start of `buf`, refusing lengths above `max_len` (the length field,
    /// which counts its own four bytes but not the tag).
    ///
    /// Returns `Ok(None)` while fewer than [`Header::SIZE`] bytes are available, and an error when
    /// the tag is not an ASCII letter or digit (ParseComplete is `1`) or the length is below 4 or above `max_len`.
    pub fn parse_with_max(buf: &[u8], max_len: u32) -> Result<Option<Header>, ProtocolError> {
        let Some(bytes) = buf.get(..Self::SIZE) else {
            return Ok(None);
        };
        let tag = bytes[0];
        if !tag.is_ascii_alphanumeric() {
            return Err(ProtocolError::UnknownTag(tag));
        }
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        if len < 4 || len > max_len {
            return Err(ProtocolError::InvalidLength {
                tag: Some(char::from(tag)),
                length: len,
                min: 4,
                max: max_len,
            });
        }
        Ok(Some(Header { tag, len }))
    }

    /// Builds a header for a body of `body_len` bytes (used by encoders and tests).
    ///
    /// # Panics
    /// When the body is larger than a `u32` length field can describe.
    pub fn new(tag: u8, body_len: usize) -> Header {
        let len = u32::try_from(body_len + 4).expect("message body larger than 4 GiB");
        Header { tag, len }
    }

    /// The tag byte, e.g. `b'Q'`.
    pub fn tag(&self) -> u8 {
        self.tag
    }

    /// The length field: body length plus the four length bytes.
    pub fn length(&self) -> u32 {
        self.len
    }

    /// Length of the body that follows the header.
    pub fn body_len(&self) -> usize {
        self.len as usize - 4
    }

    /// Length of the whole message on the wire, header included.
    pub fn frame_len(&self) -> usize {
        self.len as usize + 1
    }

    /// The five header bytes as they appear on the wire.
    pub fn to_bytes(&self) -> [u8; 5] {
        let l = self.len.to_be_bytes();
        [self.tag, l[0], l[1], l[2], l[3]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_needs_more_bytes() {
        for n in 0..Header::SIZE {
            assert_eq!(Header::parse(&b"Q\0\0\0\x09"[..n]), Ok(None));
        }
    }

    #[test]
    fn parses_tag_and_length() {
        let h = Header::parse(b"Q\0\0\0\x09select").unwrap().unwrap();
        assert_eq!(h.tag(), b'Q');
        assert_eq!(h.length(), 9);
        assert_eq!(h.body_len(), 5);
        assert_eq!(h.frame_len(), 10);
        assert_eq!(h.to_bytes(), *b"Q\0\0\0\x09");
        assert_eq!(Header::new(b'Q', 5), h);
    }

    #[test]
    fn rejects_lengths_below_four_and_above_max() {
        assert!(matches!(
            Header::parse(b"Q\0\0\0\x03"),
            Err(ProtocolError::InvalidLength { length: 3, .. })
        ));
        assert!(Header::parse_with_max(b"D\0\0\x01\0", 255).is_err());
        assert!(Header::parse_with_max(b"D\0\0\0\xff", 255)
            .unwrap()
            .is_some());
        assert!(Header::parse(b"D\x7f\xff\xff\xff").is_err());
    }

    #[test]
    fn rejects_tags_that_are_not_letters_or_digits() {
        assert_eq!(
            Header::parse(b"\0\0\0\0\x04"),
            Err(ProtocolError::UnknownTag(0))
        );
        assert_eq!(
            Header::parse(b"!\0\0\0\x04"),
            Err(ProtocolError::UnknownTag(b'!'))
        );
        assert!(Header::parse(b"1\0\0\0\x04").unwrap().is_some());
    }
}
