//! Which server responses the client is owed, in order.
//!
//! In transaction mode the proxy rewrites the client's extended-query stream: it renames
//! prepared statements, injects a Parse where the serving connection lacks a statement, drops a
//! Parse or Close the server must not see and answers it itself. The server's replies then no
//! longer match the client's requests one to one. [`ResponsePlan`] is the sans-IO bookkeeping
//! that keeps them aligned: one entry per request sent (or answered locally), consumed by
//! server messages in order, saying for each message whether it reaches the client, and when
//! a locally made answer (ParseComplete, CloseComplete) must be slotted in.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// What a request expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Parse: ParseComplete `1`.
    Parse,
    /// Bind: BindComplete `2`.
    Bind,
    /// Close: CloseComplete `3`.
    Close,
    /// Describe of a statement: ParameterDescription `t`, then RowDescription `T` or NoData `n`.
    DescribeStatement,
    /// Describe of a portal: RowDescription `T` or NoData `n`.
    DescribePortal,
    /// Execute: rows (and COPY traffic) until CommandComplete, EmptyQuery or PortalSuspended.
    Execute,
    /// Sync: ReadyForQuery.
    Sync,
    /// Simple Query or FunctionCall: everything until ReadyForQuery.
    Query,
    /// No reply: marks where the client ended a COPY FROM STDIN (CopyDone or CopyFail).
    CopyEnd,
}

#[derive(Debug)]
struct Entry {
    expect: Expect,
    /// Whether the replies reach the client (false for requests the proxy injected).
    forward: bool,
    /// A reply the proxy makes itself (whole framed messages), emitted when this entry
    /// reaches the head. Boxed: rare, and the entries move through the queue for every
    /// request, so they are kept small.
    synthetic: Option<Box<Bytes>>,
    /// ParameterDescription already seen (Describe statement).
    seen_first: bool,
    /// Describe statement sent again after a failed attempt whose ParameterDescription already
    /// reached the client: this one's is swallowed.
    first_already_sent: bool,
    /// For an injected or renamed Parse: the server-side name to forget if it fails.
    server_statement: Option<Arc<str>>,
    /// Sequence number of the client message that caused this entry (see
    /// [`ResponsePlan::set_origin`]).
    origin: u64,
    /// For a Bind or Describe of a statement pgwarden renamed: its server-side name.
    statement: Option<Arc<str>>,
}

/// The request at the head of the plan, as [`ResponsePlan::head`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// What it expects.
    pub(crate) expect: Expect,
    /// The client asked for it (its replies are forwarded, not made locally).
    pub(crate) from_client: bool,
    /// Sequence number of the client message behind it.
    pub(crate) origin: u64,
    /// The server-side statement a Bind or Describe used, if pgwarden renamed it.
    pub(crate) statement: Option<Arc<str>>,
    /// A Describe statement's ParameterDescription has been forwarded.
    pub(crate) answered_first: bool,
}

/// What to do with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Send it to the client.
    Forward,
    /// Drop it: it answers a request the client never made.
    Swallow,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ResponsePlan {
    entries: VecDeque<Entry>,
    /// The server is in COPY FROM STDIN (extended protocol) and the client has not ended it:
    /// Sync messages it sends now are ignored by the server and owe nothing.
    copy_in_open: bool,
    /// Syncs found to be ignored, not yet reported to the caller.
    ignored_syncs: usize,
    /// Server statement names whose Parse failed; the caller removes them from its cache.
    failed_statements: Vec<Arc<str>>,
    /// Stamped on entries pushed from now on.
    origin: u64,
}

impl ResponsePlan {
    /// Sets the client message sequence number stamped on the entries pushed next; call before
    /// routing each client message.
    pub(crate) fn set_origin(&mut self, origin: u64) {
        self.origin = origin;
    }

    /// The oldest outstanding request, if any.
    pub(crate) fn head(&self) -> Option<Head> {
        self.entries.front().map(|e| Head {
            expect: e.expect,
            from_client: e.forward && e.synthetic.is_none(),
            origin: e.origin,
            statement: e.statement.clone(),
            answered_first: e.seen_first && e.forward,
        })
    }

    /// Requests outstanding (including locally answered ones not yet emitted).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the replies of the request now at the head from the client (used when the proxy
    /// retries a failed batch: the Sync's ReadyForQuery belongs to the failed attempt).
    pub(crate) fn swallow_head(&mut self) {
        if let Some(head) = self.entries.front_mut() {
            head.forward = false;
        }
    }

    /// Records a request sent to the server.
    pub(crate) fn push(&mut self, expect: Expect, forward: bool) {
        match expect {
            Expect::Sync if self.copy_in_open => {
                self.ignored_syncs += 1;
                return;
            }
            Expect::CopyEnd => self.copy_in_open = false,
            _ => {}
        }
        self.entries.push_back(Entry {
            expect,
            forward,
            synthetic: None,
            seen_first: false,
            first_already_sent: false,
            server_statement: None,
            origin: self.origin,
            statement: None,
        });
    }

    /// Records a Bind or Describe of the server-side statement `statement` (when pgwarden
    /// renamed it), sent for the client.
    pub(crate) fn push_for_statement(&mut self, expect: Expect, statement: Option<Arc<str>>) {
        self.push(expect, true);
        if let Some(entry) = self.entries.back_mut() {
            entry.statement = statement;
        }
    }

    /// The Describe statement just pushed repeats one whose ParameterDescription the client
    /// already has: swallow that part of its reply.
    pub(crate) fn describe_repeats_parameters(&mut self) {
        if let Some(entry) = self.entries.back_mut() {
            entry.first_already_sent = entry.expect == Expect::DescribeStatement;
        }
    }

    /// Records a Parse sent to the server under `server_name`.
    pub(crate) fn push_parse(&mut self, server_name: Arc<str>, forward: bool) {
        self.entries.push_back(Entry {
            expect: Expect::Parse,
            forward,
            synthetic: None,
            seen_first: false,
            first_already_sent: false,
            server_statement: Some(server_name),
            origin: self.origin,
            statement: None,
        });
    }

    /// Records a request answered locally with the empty message `tag` (e.g. `b'1'`).
    pub(crate) fn push_synthetic(&mut self, tag: u8) {
        self.push_synthetic_bytes(Bytes::copy_from_slice(&[tag, 0, 0, 0, 4]));
    }

    /// Records a request answered locally with `messages` (framed, possibly several).
    pub(crate) fn push_synthetic_bytes(&mut self, messages: Bytes) {
        self.entries.push_back(Entry {
            expect: Expect::Parse,
            forward: true,
            synthetic: Some(Box::new(messages)),
            seen_first: false,
            first_already_sent: false,
            server_statement: None,
            origin: self.origin,
            statement: None,
        });
    }

    /// True when no reply is outstanding.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a locally made reply (or a COPY end marker) is at the head: only then has
    /// [`ResponsePlan::drain_synthetic`] anything to do.
    #[inline]
    pub(crate) fn local_at_head(&self) -> bool {
        self.entries
            .front()
            .is_some_and(|e| e.synthetic.is_some() || e.expect == Expect::CopyEnd)
    }

    /// Appends locally made replies now at the head to `out` (call before and after every
    /// server message, and after pushing).
    #[inline]
    pub(crate) fn drain_synthetic(&mut self, out: &mut BytesMut) {
        if self.local_at_head() {
            self.drain_local(out);
        }
    }

    #[cold]
    fn drain_local(&mut self, out: &mut BytesMut) {
        loop {
            self.pop_markers();
            if self.entries.front().is_none_or(|e| e.synthetic.is_none()) {
                break;
            }
            if let Some(messages) = self.entries.pop_front().and_then(|e| e.synthetic) {
                out.extend_from_slice(&messages);
            }
        }
    }

    /// Sync messages found to be ignored by the server (sent during COPY FROM STDIN) since
    /// the last call; the caller forgives them in its transaction tracker.
    pub(crate) fn take_ignored_syncs(&mut self) -> usize {
        std::mem::take(&mut self.ignored_syncs)
    }

    fn pop_markers(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.expect == Expect::CopyEnd)
        {
            self.entries.pop_front();
        }
    }

    /// CopyInResponse for an Execute: the server ignores Syncs until the client ends the COPY.
    fn copy_in_started(&mut self) {
        let mut i = 1;
        let mut ended = false;
        while i < self.entries.len() {
            match self.entries[i].expect {
                Expect::CopyEnd => {
                    ended = true;
                    break;
                }
                Expect::Sync if self.entries[i].synthetic.is_none() => {
                    self.entries.remove(i);
                    self.ignored_syncs += 1;
                }
                _ => i += 1,
            }
        }
        self.copy_in_open = !ended;
    }

    /// Whether a Parse failed since the last [`ResponsePlan::take_failed_statements`].
    pub(crate) fn has_failed_statements(&self) -> bool {
        !self.failed_statements.is_empty()
    }

    /// Server statement names whose Parse failed since the last call.
    pub(crate) fn take_failed_statements(&mut self) -> Vec<Arc<str>> {
        std::mem::take(&mut self.failed_statements)
    }

    /// Consumes one server message with tag `tag`.
    pub(crate) fn on_server_message(&mut self, tag: u8) -> Disposition {
        // Asynchronous messages can arrive at any time and belong to no request.
        if matches!(tag, b'S' | b'A') {
            return Disposition::Forward;
        }
        self.pop_markers();
        if tag == b'G'
            && self
                .entries
                .front()
                .is_some_and(|e| e.expect == Expect::Execute)
        {
            self.copy_in_started();
        }
        let Some(head) = self.entries.front_mut() else {
            return Disposition::Forward;
        };
        let forward = head.forward;
        let verdict = if forward {
            Disposition::Forward
        } else {
            Disposition::Swallow
        };
        if tag == b'N' {
            return verdict;
        }
        if tag == b'E' {
            return self.on_error();
        }
        let done = match (head.expect, tag) {
            (Expect::Parse, b'1') | (Expect::Bind, b'2') | (Expect::Close, b'3') => true,
            (Expect::DescribeStatement, b't') if !head.seen_first => {
                head.seen_first = true;
                if head.first_already_sent {
                    return Disposition::Swallow;
                }
                false
            }
            (Expect::DescribeStatement | Expect::DescribePortal, b'T' | b'n') => true,
            (Expect::Execute, b'C' | b'I' | b's') => true,
            (Expect::Execute, _) => false,
            (Expect::Sync | Expect::Query, b'Z') => true,
            (Expect::Query, _) => false,
            (_, b'Z') => {
                // Out of step (should not happen): settle everything up to the Sync.
                self.settle_until_ready();
                return verdict;
            }
            _ => false,
        };
        if done {
            self.entries.pop_front();
        }
        verdict
    }

    /// An ErrorResponse: inside a simple query it is part of the reply; in the extended
    /// protocol the server now skips every request up to the next Sync.
    fn on_error(&mut self) -> Disposition {
        let head = self.entries.front().expect("checked by caller");
        if head.expect == Expect::Query {
            return if head.forward {
                Disposition::Forward
            } else {
                Disposition::Swallow
            };
        }
        // An injected Parse that fails still explains the client's failure: forward it.
        let forward = head.forward || head.server_statement.is_some();
        while let Some(entry) = self.entries.front() {
            if entry.expect == Expect::Sync && entry.synthetic.is_none() {
                break;
            }
            let entry = self.entries.pop_front().expect("front exists");
            if let Some(name) = entry.server_statement {
                self.failed_statements.push(name);
            }
        }
        if forward {
            Disposition::Forward
        } else {
            Disposition::Swallow
        }
    }

    fn settle_until_ready(&mut self) {
        while let Some(entry) = self.entries.pop_front() {
            if matches!(entry.expect, Expect::Sync | Expect::Query) && entry.synthetic.is_none() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Disposition::*;

    #[test]
    fn entries_stay_small() {
        // One entry is pushed and popped per request: rare parts are boxed.
        assert!(
            std::mem::size_of::<Entry>() <= 56,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    fn feed(plan: &mut ResponsePlan, tags: &[u8]) -> Vec<Disposition> {
        tags.iter().map(|t| plan.on_server_message(*t)).collect()
    }

    #[test]
    fn injected_parse_is_swallowed_and_the_rest_forwarded() {
        let mut plan = ResponsePlan::default();
        plan.push_parse("s1".into(), false);
        plan.push(Expect::Bind, true);
        plan.push(Expect::Execute, true);
        plan.push(Expect::Sync, true);
        assert_eq!(
            feed(&mut plan, b"12DDCZ"),
            vec![Swallow, Forward, Forward, Forward, Forward, Forward]
        );
        assert!(plan.is_empty());
    }

    #[test]
    fn synthetic_parse_complete_is_slotted_in_order() {
        let mut plan = ResponsePlan::default();
        plan.push(Expect::Bind, true);
        plan.push_synthetic(b'1');
        plan.push(Expect::Sync, true);
        let mut out = BytesMut::new();
        plan.drain_synthetic(&mut out);
        assert!(out.is_empty(), "the Bind's reply comes first");
        assert_eq!(plan.on_server_message(b'2'), Forward);
        plan.drain_synthetic(&mut out);
        assert_eq!(&out[..], b"1\0\0\0\x04");
        assert_eq!(plan.on_server_message(b'Z'), Forward);
        assert!(plan.is_empty());
    }

    #[test]
    fn an_error_skips_to_sync_and_reports_failed_parses() {
        let mut plan = ResponsePlan::default();
        plan.push_parse("s1".into(), true);
        plan.push(Expect::Bind, true);
        plan.push_synthetic(b'3');
        plan.push(Expect::Execute, true);
        plan.push(Expect::Sync, true);
        assert_eq!(feed(&mut plan, b"EZ"), vec![Forward, Forward]);
        assert_eq!(plan.take_failed_statements(), vec![Arc::<str>::from("s1")]);
        assert!(plan.is_empty());
    }

    #[test]
    fn describe_statement_takes_two_messages_and_notices_pass() {
        let mut plan = ResponsePlan::default();
        plan.push(Expect::DescribeStatement, true);
        plan.push(Expect::Sync, true);
        assert_eq!(feed(&mut plan, b"tNTZ"), vec![Forward; 4]);
        assert!(plan.is_empty());
    }

    #[test]
    fn internal_query_is_swallowed_entirely_even_its_error() {
        let mut plan = ResponsePlan::default();
        plan.push(Expect::Query, false);
        plan.push(Expect::Query, true);
        assert_eq!(
            feed(&mut plan, b"CECZTDCZ"),
            vec![Swallow, Swallow, Swallow, Swallow, Forward, Forward, Forward, Forward]
        );
        assert!(plan.is_empty());
    }

    #[test]
    fn syncs_sent_during_extended_copy_in_owe_nothing() {
        // tokio-postgres: Bind, Execute, Sync, then (after CopyInResponse) data, CopyDone, Sync.
        let mut plan = ResponsePlan::default();
        plan.push(Expect::Bind, true);
        plan.push(Expect::Execute, true);
        plan.push(Expect::Sync, true);
        assert_eq!(feed(&mut plan, b"2G"), vec![Forward, Forward]);
        assert_eq!(plan.take_ignored_syncs(), 1);
        plan.push(Expect::Sync, true);
        assert_eq!(plan.take_ignored_syncs(), 1, "still copying");
        plan.push(Expect::CopyEnd, true);
        plan.push(Expect::Sync, true);
        assert_eq!(feed(&mut plan, b"CZ"), vec![Forward, Forward]);
        assert!(plan.is_empty());
        assert_eq!(plan.take_ignored_syncs(), 0);

        // The same with everything pipelined before the server answers.
        let mut plan = ResponsePlan::default();
        for e in [
            Expect::Bind,
            Expect::Execute,
            Expect::Sync,
            Expect::CopyEnd,
            Expect::Sync,
        ] {
            plan.push(e, true);
        }
        assert_eq!(feed(&mut plan, b"2GCZ"), vec![Forward; 4]);
        assert_eq!(plan.take_ignored_syncs(), 1);
        assert!(plan.is_empty());
    }

    #[test]
    fn copy_inside_a_query_and_async_messages_are_forwarded() {
        let mut plan = ResponsePlan::default();
        plan.push(Expect::Query, true);
        assert_eq!(feed(&mut plan, b"GSACZ"), vec![Forward; 5]);
        assert!(plan.is_empty());
        assert_eq!(plan.on_server_message(b'A'), Forward, "NOTIFY while idle");
    }
}
