//! Small helpers shared by every message family: a cursor that reads a message body field by
//! field, and a writer that frames an outgoing message (tag, back-patched length, body).

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;

/// Reads the fields of one message body in order; every read checks bounds.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    message: &'static str,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, naming `message` in errors.
    pub(crate) fn new(message: &'static str, buf: &'a [u8]) -> Self {
        Reader { message, buf }
    }

    fn short(&self) -> ProtocolError {
        ProtocolError::malformed(self.message, "body too short")
    }

    /// Reads `n` raw bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian `i32`.
    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a NUL-terminated string's bytes (without the NUL).
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::malformed(
                self.message,
                "missing string terminator",
            ))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Reads a NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<&'a str, ProtocolError> {
        let message = self.message;
        std::str::from_utf8(self.cstr_bytes()?)
            .map_err(|_| ProtocolError::malformed(message, "string is not UTF-8"))
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::malformed(self.message, "trailing bytes"))
        }
    }
}

/// Appends one framed message to `out`: writes the tag (if any), reserves the length, lets `body`
/// write, then back-patches the length.
pub(crate) fn write_message(out: &mut BytesMut, tag: Option<u8>, body: impl FnOnce(&mut BytesMut)) {
    if let Some(tag) = tag {
        out.put_u8(tag);
    }
    let start = out.len();
    out.put_u32(0);
    body(out);
    let len = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends `s` and a NUL terminator.
pub(crate) fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}
