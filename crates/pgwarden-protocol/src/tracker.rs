//! The transaction tracker: watches both directions of one client–server connection and says
//! when the server connection is idle, i.e. owes no response and sits outside a transaction, so
//! it can be handed to another client.
//!
//! It counts responses owed: every Query (`Q`), Sync (`S`) and FunctionCall (`F`) the frontend
//! sends, and the startup packet, each owe exactly one ReadyForQuery (`Z`) from the backend; each
//! ReadyForQuery settles one and records the transaction status it carries. Message bodies are
//! skipped by length without being copied; the state per direction is a partial header and a
//! count of bytes still to skip.
//!
//! Feed it the plaintext of each direction in order (after TLS is terminated), in chunks of any
//! size. A framing error (an absurd length, a tag that is neither letter nor digit, an unknown startup code) marks the
//! connection desynchronized for good: it must be discarded.

mod framer;
#[cfg(test)]
mod tests;

use self::framer::{Framer, Piece};
use crate::startup::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};

/// The transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block; queries are rejected until it ends.
    Failed,
}

impl TransactionStatus {
    /// Reads ReadyForQuery's status byte (`I`, `T` or `E`).
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'I' => Some(TransactionStatus::Idle),
            b'T' => Some(TransactionStatus::InTransaction),
            b'E' => Some(TransactionStatus::Failed),
            _ => None,
        }
    }

    /// The status byte as sent in ReadyForQuery.
    pub fn to_byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

/// Tracks owed responses and the transaction status of one connection. See the module docs.
#[derive(Debug, Clone)]
pub struct TransactionTracker {
    /// Splits the frontend's bytes; untyped until the startup packet has been seen.
    frontend: Framer,
    /// Splits the backend's bytes.
    backend: Framer,
    /// ReadyForQuery messages the backend still owes.
    owed: usize,
    /// Status of the last ReadyForQuery.
    status: TransactionStatus,
    /// SSLRequest/GSSENCRequest packets whose one-byte answer has not arrived yet.
    negotiation_answers_owed: usize,
    /// The StartupMessage has been seen: the frontend now sends typed messages.
    started: bool,
    /// Extended-query messages (Parse, Bind, Describe, Execute, Close, Flush) were sent since the
    /// last Sync: the server holds per-batch state even though no response is owed yet.
    open_batch: bool,
    /// The current backend message is ReadyForQuery and its status byte is still to come.
    reading_status: bool,
    /// A framing error was seen; nothing is tracked any more.
    desynchronized: bool,
}

impl TransactionTracker {
    /// A tracker for a connection whose frontend has not sent its startup packet yet (the first
    /// frontend message is untyped: length + payload; SSLRequest/GSSENCRequest answers are a single
    /// byte from the backend, not a message).
    pub fn before_startup() -> Self {
        TransactionTracker {
            frontend: Framer::untyped(),
            backend: Framer::typed(),
            owed: 0,
            status: TransactionStatus::Idle,
            negotiation_answers_owed: 0,
            started: false,
            open_batch: false,
            reading_status: false,
            desynchronized: false,
        }
    }

    /// A tracker for a connection already past startup (idle, nothing owed).
    pub fn ready() -> Self {
        TransactionTracker {
            frontend: Framer::typed(),
            started: true,
            ..Self::before_startup()
        }
    }

    /// Feed bytes the frontend wrote towards the server, in order, in arbitrary chunk sizes (a
    /// message header may be split across calls). Counts responses owed: each Query `Q`, Sync `S`,
    /// FunctionCall `F` owes one ReadyForQuery; the startup packet owes one.
    ///
    /// Call it with every chunk before (or as) it is written to the server.
    pub fn frontend_bytes(&mut self, mut buf: &[u8]) {
        while !self.desynchronized && !buf.is_empty() {
            if let Some((tag, _)) = self.frontend.whole(&mut buf) {
                self.frontend_tag(tag);
                continue;
            }
            match self.frontend.next(&mut buf) {
                Ok(None) => return,
                Ok(Some(Piece::Body(_))) => {}
                Ok(Some(Piece::Typed { tag, .. })) => self.frontend_tag(tag),
                Ok(Some(Piece::Untyped { code })) => match code {
                    SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => self.negotiation_answers_owed += 1,
                    // The server answers nothing and closes; the tracker stays not-started.
                    CANCEL_REQUEST_CODE => {}
                    code if code >> 16 == 3 => {
                        self.owed += 1;
                        self.started = true;
                        self.frontend.switch_to_typed();
                    }
                    _ => self.desynchronized = true,
                },
                Err(_) => self.desynchronized = true,
            }
        }
    }

    /// Feed bytes the backend sent, in arbitrary chunks. Each ReadyForQuery `Z` settles one owed
    /// response and records its status byte.
    ///
    /// Call it with every chunk read from the server, before it is forwarded to the client.
    pub fn backend_bytes(&mut self, mut buf: &[u8]) {
        while !self.desynchronized && !buf.is_empty() {
            if self.negotiation_answers_owed > 0 && self.backend.at_boundary() {
                match buf.first() {
                    None => return,
                    Some(b'S' | b'N' | b'G') => {
                        self.negotiation_answers_owed -= 1;
                        buf = &buf[1..];
                        continue;
                    }
                    // Very old servers answer an SSLRequest with an ErrorResponse message.
                    Some(_) => self.negotiation_answers_owed = 0,
                }
            }
            if self.negotiation_answers_owed == 0 {
                match self.backend.whole(&mut buf) {
                    Some((b'Z', body)) => {
                        match body {
                            [status] => self.ready_for_query(*status),
                            _ => self.desynchronized = true,
                        }
                        continue;
                    }
                    Some(_) => continue,
                    None => {}
                }
            }
            match self.backend.next(&mut buf) {
                Ok(None) => return,
                Ok(Some(Piece::Typed {
                    tag: b'Z',
                    body_len,
                })) => {
                    if body_len == 1 {
                        self.reading_status = true;
                    } else {
                        self.desynchronized = true;
                    }
                }
                Ok(Some(Piece::Body(body))) if self.reading_status => {
                    self.reading_status = false;
                    self.ready_for_query(body[0]);
                }
                Ok(Some(_)) => {}
                Err(_) => self.desynchronized = true,
            }
        }
    }

    /// Feed what the caller wrote towards the server in one step, usually one whole message
    /// (a routed request): the same as [`TransactionTracker::frontend_bytes`], with a shortcut
    /// when `bytes` is exactly one message and the stream sits between messages.
    #[inline]
    pub fn frontend_written(&mut self, bytes: &[u8]) {
        if self.started && !self.desynchronized && self.frontend.at_boundary() {
            if let Ok(Some(header)) = crate::Header::parse(bytes) {
                if header.frame_len() == bytes.len() {
                    return self.frontend_tag(header.tag());
                }
            }
        }
        self.frontend_bytes(bytes)
    }

    /// A typed frontend message with tag `tag` begins.
    #[inline]
    fn frontend_tag(&mut self, tag: u8) {
        match tag {
            b'Q' | b'F' => self.owed += 1,
            b'S' => {
                self.owed += 1;
                self.open_batch = false;
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' => self.open_batch = true,
            _ => {}
        }
    }

    /// A ReadyForQuery with status byte `status` arrived: it settles one owed response.
    #[inline]
    fn ready_for_query(&mut self, status: u8) {
        match TransactionStatus::from_byte(status) {
            Some(status) => {
                self.status = status;
                self.owed = self.owed.saturating_sub(1);
            }
            None => self.desynchronized = true,
        }
    }

    /// Feed one whole backend message (tag, length and body), framed by the caller: the same
    /// as [`TransactionTracker::backend_bytes`] with it, minus framing it a second time. The
    /// caller checks its header ([`crate::Header::parse`]) and passes exactly one message.
    #[inline]
    pub fn backend_message(&mut self, frame: &[u8]) {
        if self.desynchronized || self.negotiation_answers_owed > 0 || !self.backend.at_boundary() {
            return self.backend_bytes(frame);
        }
        debug_assert!(
            crate::Header::parse(frame)
                .is_ok_and(|h| h.is_some_and(|h| h.frame_len() == frame.len())),
            "backend_message takes one whole message"
        );
        if frame.first() == Some(&b'Z') {
            match frame {
                [_, 0, 0, 0, 5, status] => self.ready_for_query(*status),
                _ => self.desynchronized = true,
            }
        }
    }

    /// The status carried by the last ReadyForQuery (`Idle` before the first one).
    pub fn transaction_status(&self) -> TransactionStatus {
        self.status
    }

    /// True when nothing is owed and the last ReadyForQuery said Idle: the connection can be
    /// handed to someone else.
    ///
    /// Also requires that startup has completed, that no extended-query batch is open (Parse,
    /// Bind, ... sent without their Sync), that both directions sit between messages, and that
    /// the stream is not desynchronized.
    pub fn is_idle(&self) -> bool {
        self.started
            && !self.desynchronized
            && self.owed == 0
            && self.status == TransactionStatus::Idle
            && !self.open_batch
            && self.negotiation_answers_owed == 0
            && self.frontend.at_boundary()
            && self.backend.at_boundary()
    }

    /// Forgets `n` owed ReadyForQuery messages the backend will never send: Sync messages a
    /// frontend sent while the backend was in COPY FROM STDIN mode of the extended protocol,
    /// which PostgreSQL ignores. The caller knows from the message order which ones those are.
    pub fn forgive_owed(&mut self, n: usize) {
        self.owed = self.owed.saturating_sub(n);
    }

    /// ReadyForQuery messages the backend still owes.
    pub fn owed(&self) -> usize {
        self.owed
    }

    /// A fatal framing problem was seen (absurd length): the connection must be discarded.
    pub fn is_desynchronized(&self) -> bool {
        self.desynchronized
    }
}
