//! A streaming splitter that walks a byte stream message by message without copying bodies.
//!
//! Its whole state is the partial header (up to eight bytes: the untyped startup packet's length
//! and code, or a typed message's tag and length) and the count of body bytes still to pass.
//! Bodies are handed out as borrowed slices of the caller's buffer.

use crate::error::ProtocolError;
use crate::header::{Header, MAX_STARTUP_PACKET_LEN};

/// Bytes of the untyped header read by the framer: length and request code.
const UNTYPED_HEADER: usize = 8;

/// One step of the walk over a stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A typed message's header was completed.
    Typed {
        /// The tag byte.
        tag: u8,
        /// Body bytes that follow.
        body_len: usize,
    },
    /// The untyped first packet's length and request code were completed.
    Untyped {
        /// Protocol version or special request code.
        code: u32,
    },
    /// A run of body bytes of the current message (never empty).
    Body(&'a [u8]),
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Framer {
    header: [u8; UNTYPED_HEADER],
    filled: usize,
    remaining: usize,
    untyped: bool,
}

impl Framer {
    /// A framer whose next message is the untyped startup packet (length + code + rest).
    pub(crate) fn untyped() -> Self {
        Framer {
            header: [0; UNTYPED_HEADER],
            filled: 0,
            remaining: 0,
            untyped: true,
        }
    }

    /// A framer for typed messages.
    pub(crate) fn typed() -> Self {
        Framer {
            untyped: false,
            ..Self::untyped()
        }
    }

    /// From the next header on, read typed messages (call after the startup packet's header).
    pub(crate) fn switch_to_typed(&mut self) {
        self.untyped = false;
    }

    /// True between messages: no partial header, no body left.
    pub(crate) fn at_boundary(&self) -> bool {
        self.filled == 0 && self.remaining == 0
    }

    /// The next message whole, when the framer sits between typed messages and `buf` holds
    /// all of it, with a valid header: its tag and body, consumed from `buf`. `None` (nothing
    /// consumed) otherwise; [`Framer::next`] then walks it piece by piece (and reports a bad
    /// header). The fast path for streams handed over in whole messages: no header bytes
    /// copied, one call per message, no error value built.
    #[inline]
    pub(crate) fn whole<'a>(&mut self, buf: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
        if self.untyped || !self.at_boundary() {
            return None;
        }
        let header = Header::parse(buf).ok()??;
        let (frame, rest) = buf.split_at_checked(header.frame_len())?;
        *buf = rest;
        Some((header.tag(), &frame[Header::SIZE..]))
    }

    /// Consumes bytes from the front of `buf` and returns the next piece, or `Ok(None)` once
    /// `buf` is exhausted. An error means the stream can no longer be framed.
    pub(crate) fn next<'a>(
        &mut self,
        buf: &mut &'a [u8],
    ) -> Result<Option<Piece<'a>>, ProtocolError> {
        if self.remaining > 0 {
            if buf.is_empty() {
                return Ok(None);
            }
            let (body, rest) = buf.split_at(self.remaining.min(buf.len()));
            *buf = rest;
            self.remaining -= body.len();
            return Ok(Some(Piece::Body(body)));
        }
        let need = if self.untyped {
            UNTYPED_HEADER
        } else {
            Header::SIZE
        };
        let take = (need - self.filled).min(buf.len());
        self.header[self.filled..self.filled + take].copy_from_slice(&buf[..take]);
        self.filled += take;
        *buf = &buf[take..];
        if self.filled < need {
            return Ok(None);
        }
        self.filled = 0;
        if self.untyped {
            let [l0, l1, l2, l3, c0, c1, c2, c3] = self.header;
            let len = u32::from_be_bytes([l0, l1, l2, l3]);
            if !(UNTYPED_HEADER as u32..=MAX_STARTUP_PACKET_LEN).contains(&len) {
                return Err(ProtocolError::InvalidLength {
                    tag: None,
                    length: len,
                    min: UNTYPED_HEADER as u32,
                    max: MAX_STARTUP_PACKET_LEN,
                });
            }
            self.remaining = len as usize - UNTYPED_HEADER;
            Ok(Some(Piece::Untyped {
                code: u32::from_be_bytes([c0, c1, c2, c3]),
            }))
        } else {
            let header = Header::parse(&self.header[..Header::SIZE])?
                .ok_or(ProtocolError::malformed("header", "incomplete"))?;
            self.remaining = header.body_len();
            Ok(Some(Piece::Typed {
                tag: header.tag(),
                body_len: header.body_len(),
            }))
        }
    }
}
