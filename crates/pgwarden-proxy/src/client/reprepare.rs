//! Transparent re-prepare after a schema change.
//!
//! pgwarden keeps a client's named statements prepared on server connections under its own
//! names and reuses them across clients and transactions. When a table they read changes shape
//! (`ALTER TABLE t ADD COLUMN` under a `SELECT *`), PostgreSQL refuses the next Bind or Describe
//! of such a statement with `cached plan must not change result type` (SQLSTATE 0A000). On a
//! direct connection a client that prepared after the change never sees that error; through
//! pgwarden it would, because the server-side statement is older than the client's Parse.
//!
//! So when the error answers the client's Describe of a statement pgwarden renamed (or its
//! Bind, when the client sent the statement's Parse earlier in the same batch), and nothing of
//! the failed batch can be lost by running it again, the error is kept from the client, the
//! stale server-side statement is closed and prepared again, and the client's messages from
//! the failed one up to its Sync are sent again. The conditions (all checked):
//!
//! - the server connection was outside an explicit transaction when the batch started (inside
//!   one, the error has aborted the transaction: the client gets it as PostgreSQL sent it);
//! - no Execute precedes the failed message in its batch (whatever it did was rolled back with
//!   the batch's implicit transaction, and its results already reached the client);
//! - the batch's Sync is the last request sent (nothing pipelined behind it would be answered
//!   out of order);
//! - the batch is small enough to have been kept ([`KEEP_LIMIT`]) and was not retried already.
//!
//! Otherwise the client gets PostgreSQL's error, as on a direct connection (a Bind of a
//! statement the client described before the change cannot be answered with rows of another
//! shape), and the stale server-side statement is closed, so the client's next Parse of it
//! prepares it afresh instead of being answered from pgwarden's cache.
//!
//! [`BatchLog`] keeps the client's extended-protocol messages since the last Sync (one copy of
//! each, dropped at the next batch) so they can be routed again.

use std::sync::Arc;

use bytes::BytesMut;
use pgwarden_protocol::response::ErrorFields;
use pgwarden_protocol::{Frame, Header, TransactionStatus};

use super::forward::{put_message, split_cstr};
use super::{Session, SessionEnd};
use crate::responses::{Expect, Head};

/// Largest batch kept for a retry; bigger ones (large Bind parameters) are not retried.
const KEEP_LIMIT: usize = 64 * 1024;

/// The client's messages of the current extended-protocol batch. See the module
/// documentation.
#[derive(Debug, Default)]
pub(crate) struct BatchLog {
    /// Whole client frames since the last Sync, as the client sent them.
    frames: BytesMut,
    /// Sequence number of the first frame in `frames`.
    first_seq: u64,
    /// Sequence number the next client message gets.
    next_seq: u64,
    /// The last frame kept is a Sync: the next message starts a new batch.
    complete: bool,
    /// The batch cannot be replayed (too big, or it holds a simple Query, COPY data or a
    /// function call).
    unusable: bool,
    /// The batch was replayed once already.
    retried: bool,
    /// Frames are being kept: since the batch's first message naming a prepared statement.
    /// Until one does (the unnamed statements of `-M extended`), nothing can fail stale and
    /// nothing is copied.
    keeping: bool,
    /// An Execute went by before keeping began: no kept message can be retried.
    executed_unkept: bool,
}

impl BatchLog {
    /// Records one client frame about to be routed; returns its sequence number.
    #[inline]
    pub(crate) fn record(&mut self, tag: u8, frame: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.complete {
            self.frames.clear();
            self.first_seq = seq;
            self.complete = false;
            self.unusable = false;
            self.retried = false;
            self.keeping = false;
            self.executed_unkept = false;
        }
        let replayable = matches!(tag, b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'S');
        if !replayable || self.frames.len() + frame.len() > KEEP_LIMIT {
            self.unusable = true;
            self.frames.clear();
        }
        if !self.unusable {
            if !self.keeping && names_statement(tag, frame) {
                self.keeping = true;
                self.first_seq = seq;
            }
            if self.keeping {
                crate::buffers::ensure(&mut self.frames);
                self.frames.extend_from_slice(frame);
            } else if tag == b'E' {
                self.executed_unkept = true;
            }
        }
        // A simple Query ends its own batch, like a Sync.
        self.complete = matches!(tag, b'S' | b'Q');
        seq
    }

    /// The sequence number the next client message gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// An empty log whose next message gets `next_seq` (a parked session resuming).
    pub(crate) fn starting_at(next_seq: u64) -> BatchLog {
        BatchLog {
            next_seq,
            first_seq: next_seq,
            complete: true,
            ..BatchLog::default()
        }
    }

    /// Frees the buffer of a finished batch (between transactions).
    pub(crate) fn release_memory(&mut self) {
        if self.complete && self.frames.capacity() > 0 {
            self.frames.clear();
            crate::buffers::give(&mut self.frames);
        }
    }

    /// The kept frames from the message numbered `seq` up to the batch's Sync, when the batch
    /// can be replayed from there: complete, kept whole, not retried, and no Execute before
    /// `seq`.
    fn tail_from(&self, seq: u64) -> Option<BytesMut> {
        if !self.complete
            || self.unusable
            || self.retried
            || self.executed_unkept
            || !self.keeping
            || seq < self.first_seq
        {
            return None;
        }
        let mut at = 0;
        for _ in self.first_seq..seq {
            let header = Header::parse(&self.frames[at..]).ok()??;
            if header.tag() == b'E' {
                return None;
            }
            at += header.frame_len();
        }
        (at < self.frames.len()).then(|| BytesMut::from(&self.frames[at..]))
    }

    /// Whether a Parse of the client statement `name` was kept before message `seq` in the
    /// current batch.
    fn parsed_before(&self, seq: u64, name: &[u8]) -> bool {
        let mut at = 0;
        for _ in self.first_seq..seq {
            let Ok(Some(header)) = Header::parse(&self.frames[at..]) else {
                return false;
            };
            let frame = &self.frames[at..at + header.frame_len()];
            if header.tag() == b'P' && frame[5..].split(|b| *b == 0).next() == Some(name) {
                return true;
            }
            at += header.frame_len();
        }
        false
    }
}

/// Whether an ErrorResponse frame is PostgreSQL's refusal to run a prepared statement whose
/// result columns changed. The routine name is checked too, since the message is translated
/// under a non-English `lc_messages`.
pub(crate) fn is_stale_plan_error(frame: &[u8]) -> bool {
    let mut buf = BytesMut::from(frame);
    let Ok(Some(frame)) = Frame::parse(&mut buf) else {
        return false;
    };
    let Ok(fields) = ErrorFields::decode(&frame) else {
        return false;
    };
    fields.code() == Some("0A000")
        && (fields.message() == Some("cached plan must not change result type")
            || fields.field(b'R') == Some("RevalidateCachedQuery"))
}

/// Whether the request at the head is one a stale statement fails: the client's own Bind or
/// Describe of a statement pgwarden renamed.
pub(crate) fn may_fail_stale(head: Option<&Head>) -> bool {
    head.is_some_and(|h| {
        h.from_client
            && h.statement.is_some()
            && matches!(h.expect, Expect::Bind | Expect::DescribeStatement)
    })
}

/// What to do about a stale statement's refusal.
pub(crate) enum Verdict {
    /// Swallow the rest of the failed attempt and route these messages (the first numbered
    /// as given) again.
    Retry {
        /// Sequence number of the first message of `tail`.
        seq: u64,
        /// The failed message up to its Sync.
        tail: BytesMut,
        /// The failed Describe's ParameterDescription already reached the client.
        parameters_sent: bool,
    },
    /// Let the client have the error; drop this server-side statement so the client's next
    /// Parse of it reaches the server.
    PassThrough(Arc<str>),
}

impl Session {
    /// Called for a stale statement's ErrorResponse (see [`is_stale_plan_error`]) that answers
    /// `failed`, after the plan consumed it; `status` is the server connection's transaction
    /// status when the batch started.
    ///
    /// A Describe is retried: the client asked for the statement's description and gets the
    /// new one. A Bind is retried only when the client sent the Parse of that statement earlier
    /// in the same batch (it cannot hold a description from before the change); otherwise its
    /// description is out of date and PostgreSQL's own error is the honest answer (drivers such
    /// as pgx and JDBC prepare again on it), as on a direct connection.
    pub(super) fn on_stale_statement(
        &mut self,
        failed: Head,
        status: TransactionStatus,
    ) -> Verdict {
        let stale = failed.statement.clone().expect("checked by may_fail_stale");
        let retry = (status == TransactionStatus::Idle && self.plan.len() == 1)
            .then(|| self.batch.tail_from(failed.origin))
            .flatten()
            .filter(|tail| {
                let Ok(Some(header)) = Header::parse(tail) else {
                    return false;
                };
                let Some(name) = statement_named(header.tag(), &tail[5..header.frame_len()]) else {
                    return false;
                };
                header.tag() == b'D' || self.batch.parsed_before(failed.origin, name)
            });
        match retry {
            Some(tail) => {
                self.batch.retried = true;
                self.plan.swallow_head();
                Verdict::Retry {
                    seq: failed.origin,
                    tail,
                    parameters_sent: failed.answered_first,
                }
            }
            None => Verdict::PassThrough(stale),
        }
    }

    /// Forgets the server-side statement `name` and closes it on the server (Close and Sync,
    /// their replies kept from the client) once the client's batch is complete; PostgreSQL
    /// accepts Close even in an aborted transaction. Until then it stays cached and is dropped
    /// at its next failure.
    pub(super) fn drop_stale_statement(&mut self, name: &str) {
        if !self.batch.complete {
            return;
        }
        let Some(server) = self.server.as_deref_mut() else {
            return;
        };
        if !server.prepared.contains(name) {
            return;
        }
        server.prepared.remove(name);
        let before = self.to_server.len();
        put_message(&mut self.to_server, b'C', &[b"S", name.as_bytes(), b"\0"]);
        self.plan.push(Expect::Close, false);
        put_message(&mut self.to_server, b'S', &[]);
        self.plan.push(Expect::Sync, false);
        server.tracker.frontend_bytes(&self.to_server[before..]);
    }

    /// Closes the stale server-side statement and routes `tail` (the failed message, numbered
    /// `first_seq`, up to its Sync) again, as if the client had just sent it.
    /// `parameters_sent`: the failed message was a Describe whose ParameterDescription already
    /// reached the client (PostgreSQL sends it before revalidating the statement).
    pub(super) fn replay(
        &mut self,
        first_seq: u64,
        mut tail: BytesMut,
        parameters_sent: bool,
    ) -> Result<(), SessionEnd> {
        let header = Header::parse(&tail).ok().flatten();
        let stale = header
            .and_then(|h| statement_named(h.tag(), &tail[5..h.frame_len()]))
            .and_then(|name| self.statements.get(name))
            .map(|s| Arc::clone(&s.server_name));
        if let (Some(stale), Some(server)) = (stale, self.server.as_deref_mut()) {
            tracing::debug!(statement = %stale, "result type changed; preparing the statement again");
            server.prepared.remove(&stale);
            let before = self.to_server.len();
            put_message(&mut self.to_server, b'C', &[b"S", stale.as_bytes(), b"\0"]);
            self.plan.push(Expect::Close, false);
            server.tracker.frontend_bytes(&self.to_server[before..]);
        }
        let mut seq = first_seq;
        while let Ok(Some(header)) = Header::parse(&tail) {
            let len = header.frame_len();
            let frame = tail.split_to(len);
            self.plan.set_origin(seq);
            seq += 1;
            let before = self.to_server.len();
            self.route(header.tag(), &frame)?;
            if seq == first_seq + 1 && parameters_sent {
                self.plan.describe_repeats_parameters();
            }
            let server = self.server.as_deref_mut().expect("server held");
            server.tracker.frontend_written(&self.to_server[before..]);
            server.tracker.forgive_owed(self.plan.take_ignored_syncs());
        }
        Ok(())
    }
}

/// Whether a client frame names a prepared statement: a Parse, Bind or Describe of one.
fn names_statement(tag: u8, frame: &[u8]) -> bool {
    let body = frame.get(5..).unwrap_or_default();
    match tag {
        b'P' => body.first().is_some_and(|b| *b != 0),
        b'B' | b'D' => statement_named(tag, body).is_some(),
        _ => false,
    }
}

/// The statement a Bind or Describe-statement body names.
fn statement_named(tag: u8, body: &[u8]) -> Option<&[u8]> {
    let name = match tag {
        // Bind: the portal, then the statement.
        b'B' => split_cstr(split_cstr(body)?.1)?.0,
        b'D' if body.first() == Some(&b'S') => split_cstr(&body[1..])?.0,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn tail_starts_at_the_failed_message_and_needs_a_whole_batch() {
        let mut log = BatchLog::default();
        let bind = frame(b'B', b"\0s1\0\0\0\0\0\0\0");
        let exec = frame(b'E', b"\0\0\0\0\0");
        let sync = frame(b'S', b"");
        let b = log.record(b'B', &bind);
        assert_eq!(log.tail_from(b), None, "no Sync yet");
        log.record(b'E', &exec);
        log.record(b'S', &sync);
        let tail = log.tail_from(b).unwrap();
        assert_eq!(
            &tail[..],
            [bind.clone(), exec.clone(), sync.clone()].concat()
        );
        assert_eq!(statement_named(b'B', &bind[5..]), Some(&b"s1"[..]));

        // A second Bind after an Execute in the same batch is not replayable.
        let b1 = log.record(b'B', &bind);
        log.record(b'E', &exec);
        let b2 = log.record(b'B', &bind);
        log.record(b'E', &exec);
        log.record(b'S', &sync);
        assert!(log.tail_from(b1).is_some());
        assert_eq!(log.tail_from(b2), None);
    }

    #[test]
    fn unnamed_statements_are_not_kept() {
        let mut log = BatchLog::default();
        let parse = frame(b'P', b"\0select 1\0\0\0");
        let bind = frame(b'B', b"\0\0\0\0\0\0\0\0");
        let exec = frame(b'E', b"\0\0\0\0\0");
        let sync = frame(b'S', b"");
        let p = log.record(b'P', &parse);
        log.record(b'B', &bind);
        log.record(b'E', &exec);
        log.record(b'S', &sync);
        assert!(log.frames.is_empty(), "nothing copied");
        assert_eq!(log.tail_from(p), None);

        // Kept from the first message naming a statement; the unnamed ones before are not.
        let named_bind = frame(b'B', b"\0s1\0\0\0\0\0\0\0");
        log.record(b'P', &parse);
        let b = log.record(b'B', &named_bind);
        log.record(b'E', &exec);
        log.record(b'S', &sync);
        assert_eq!(
            &log.tail_from(b).unwrap()[..],
            [named_bind.clone(), exec.clone(), sync.clone()].concat()
        );

        // An Execute before keeping began rules out a retry of anything kept after it.
        log.record(b'B', &bind);
        log.record(b'E', &exec);
        let b = log.record(b'B', &named_bind);
        log.record(b'E', &exec);
        log.record(b'S', &sync);
        assert_eq!(log.tail_from(b), None);

        // A named Parse starts keeping, so a Bind after it knows the statement was parsed.
        let named_parse = frame(b'P', b"s1\0select 1\0\0\0");
        log.record(b'P', &named_parse);
        let b = log.record(b'B', &named_bind);
        log.record(b'S', &sync);
        assert!(log.parsed_before(b, b"s1"));
    }

    #[test]
    fn simple_queries_and_big_batches_are_not_kept() {
        let mut log = BatchLog::default();
        let q = log.record(b'Q', &frame(b'Q', b"select 1\0"));
        assert_eq!(log.tail_from(q), None);
        let big = frame(b'B', &vec![1u8; KEEP_LIMIT]);
        let b = log.record(b'B', &big);
        log.record(b'S', &frame(b'S', b""));
        assert_eq!(log.tail_from(b), None);
    }

    #[test]
    fn recognises_the_stale_plan_error() {
        let mut out = BytesMut::new();
        ErrorFields::new("ERROR", "0A000", "cached plan must not change result type")
            .encode_error(&mut out);
        assert!(is_stale_plan_error(&out));
        let mut out = BytesMut::new();
        ErrorFields::new("ERROR", "0A000", "LISTEN is not supported").encode_error(&mut out);
        assert!(!is_stale_plan_error(&out));
    }
}
