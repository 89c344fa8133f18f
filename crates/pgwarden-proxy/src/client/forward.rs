//! Moving messages between a client and the server connection serving it.
//!
//! Client -> server: whole messages are taken off the client's buffer; most are copied as
//! they are, a few are rewritten: named prepared statements get pgwarden's server-side name
//! (prepared on demand on whichever connection serves the client), a Close of a named statement
//! is answered locally, and session-changing commands are noted. Every message sent records
//! the replies it owes in the [`ResponsePlan`].
//!
//! Server -> client: only headers are parsed; each whole message is forwarded or swallowed as
//! the plan says, and the transaction tracker sees every byte.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pgwarden_protocol::response::{CommandComplete, ReadyForQuery};
use pgwarden_protocol::{Header, TransactionStatus};

use super::{error_message, fatal, reprepare, ClientStatement, DeferredTx, Session, SessionEnd};
use crate::config::PoolMode;
use crate::params::SessionParams;
use crate::responses::{Disposition, Expect, ResponsePlan};
use crate::server::ServerConnection;

/// Appends a simple query the client did not send; its replies are swallowed.
pub(crate) fn push_internal_query(out: &mut BytesMut, plan: &mut ResponsePlan, sql: &str) {
    out.put_u8(b'Q');
    out.put_u32((4 + sql.len() + 1) as u32);
    out.put_slice(sql.as_bytes());
    out.put_u8(0);
    plan.push(Expect::Query, false);
}

/// The NUL-terminated string at the start of `body`, and the rest after its NUL.
pub(super) fn split_cstr(body: &[u8]) -> Option<(&[u8], &[u8])> {
    // Empty names (the unnamed statement and portal) are the common case; memchr's set-up
    // costs more than it saves on a handful of bytes, and pays off on query texts.
    let nul = match body.first() {
        Some(0) => 0,
        _ => memchr::memchr(0, body)?,
    };
    Some((&body[..nul], &body[nul + 1..]))
}

/// pgwarden's server-side name for a statement: a hash of its text and parameter types, so
/// every client preparing the same statement shares one server-side statement.
fn server_name(parse_rest: &[u8]) -> Arc<str> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parse_rest.hash(&mut h);
    Arc::from(format!("pgw_{:016x}", h.finish()))
}

pub(super) fn put_message(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.put_u8(tag);
    out.put_u32((4 + len) as u32);
    for p in parts {
        out.put_slice(p);
    }
}

/// The first keyword of a statement, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Set,
    Reset,
    Discard,
    Listen,
    Deallocate,
    Other,
}

impl Keyword {
    /// The first word of `sql` (after whitespace, comments and opening parentheses), compared
    /// without regard to case. Called for every Query and Parse: no copy of the word, at most
    /// one comparison.
    fn of(sql: &[u8]) -> Keyword {
        let mut s = sql;
        loop {
            while s
                .first()
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b'(')
            {
                s = &s[1..];
            }
            if s.starts_with(b"--") {
                s = &s[memchr::memchr(b'\n', s).unwrap_or(s.len())..];
            } else if s.starts_with(b"/*") {
                let end = memchr::memmem::find(s, b"*/").map_or(s.len(), |p| p + 2);
                s = &s[end..];
            } else {
                break;
            }
        }
        // Picked by the first letter: most statements (SELECT aside) are told apart by it
        // alone, and one comparison settles the rest.
        let is = |word: &[u8]| {
            s.len() >= word.len()
                && s[..word.len()].eq_ignore_ascii_case(word)
                && !s.get(word.len()).is_some_and(|b| b.is_ascii_alphabetic())
        };
        match s.first().map(|b| b.to_ascii_lowercase()) {
            Some(b's') if is(b"set") => Keyword::Set,
            Some(b'r') if is(b"reset") => Keyword::Reset,
            Some(b'l') if is(b"listen") => Keyword::Listen,
            Some(b'd') if is(b"discard") => Keyword::Discard,
            Some(b'd') if is(b"deallocate") => Keyword::Deallocate,
            _ => Keyword::Other,
        }
    }

    /// `SET`, `RESET` and `DISCARD` change session parameters.
    fn changes_session(self) -> bool {
        matches!(self, Keyword::Set | Keyword::Reset | Keyword::Discard)
    }
}

/// A simple Query whose whole text opens or ends a transaction in its plainest form: what a
/// deferred start of transaction (see [`Session::answer_transaction_control`]) may answer
/// without a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxControl {
    /// `BEGIN`, `BEGIN WORK`, `BEGIN TRANSACTION`, `START TRANSACTION`.
    Begin,
    /// `COMMIT` or `END` (each also with `WORK` or `TRANSACTION`).
    Commit,
    /// `ROLLBACK` or `ABORT` (each also with `WORK` or `TRANSACTION`).
    Rollback,
    /// Anything else, options (`ISOLATION LEVEL`, `READ ONLY`, `AND CHAIN`), comments and
    /// second statements included: it goes to the server as usual.
    Other,
}

impl TxControl {
    /// Sorts a Query's text (without its NUL): any case, whitespace around the words and one
    /// trailing semicolon allowed. Checked for the first Query of every transaction: longer
    /// texts are told apart by their length alone.
    pub(super) fn of(sql: &[u8]) -> TxControl {
        if sql.len() > 40 {
            return TxControl::Other;
        }
        let mut s = sql.trim_ascii();
        if let Some(rest) = s.strip_suffix(b";") {
            s = rest.trim_ascii_end();
        }
        let mut words = s
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let (Some(first), second, None) = (words.next(), words.next(), words.next()) else {
            return TxControl::Other;
        };
        let is = |w: &[u8], word: &[u8]| w.eq_ignore_ascii_case(word);
        let plain = second.is_none_or(|w| is(w, b"work") || is(w, b"transaction"));
        if (is(first, b"begin") && plain)
            || (is(first, b"start") && second.is_some_and(|w| is(w, b"transaction")))
        {
            TxControl::Begin
        } else if (is(first, b"commit") || is(first, b"end")) && plain {
            TxControl::Commit
        } else if (is(first, b"rollback") || is(first, b"abort")) && plain {
            TxControl::Rollback
        } else {
            TxControl::Other
        }
    }
}

/// The query text of a Parse body (after the statement name) if it changes the session.
fn session_change_text(parse_rest: &[u8]) -> Option<String> {
    let query = split_cstr(parse_rest)?.0;
    Keyword::of(query)
        .changes_session()
        .then(|| String::from_utf8_lossy(query).into_owned())
}

/// PostgreSQL's own message for a cancelled statement; the request waited for a server
/// connection and never ran.
const CANCELLED_WHILE_WAITING: &str = "canceling statement due to user request";

/// The replies made for a deferred transaction's plain BEGIN, COMMIT and ROLLBACK: the bytes of
/// CommandComplete and ReadyForQuery, written out (the encoders allocate the tag; a test
/// checks these against them).
const BEGIN_REPLY: &[u8] = b"C\0\0\0\x0aBEGIN\0Z\0\0\0\x05T";
const COMMIT_REPLY: &[u8] = b"C\0\0\0\x0bCOMMIT\0Z\0\0\0\x05I";
const ROLLBACK_REPLY: &[u8] = b"C\0\0\0\x0dROLLBACK\0Z\0\0\0\x05I";

/// PostgreSQL's own message for a statement in a failed transaction block.
const IN_FAILED_TRANSACTION: &str =
    "current transaction is aborted, commands ignored until end of transaction block";

/// Why LISTEN is refused in transaction mode.
const LISTEN_REFUSED: &str = "LISTEN is not supported in transaction pooling mode: \
    notifications arrive on a server connection other clients share. Use a pool with \
    pool_mode = session.";

/// A Parse body (after the statement name) whose query raises [`LISTEN_REFUSED`] with
/// SQLSTATE 0A000 when executed; the parameter types are kept so Bind still matches.
fn refuse_listen_parse(parse_rest: &[u8]) -> Vec<u8> {
    let types = split_cstr(parse_rest).map_or(&[][..], |(_, t)| t);
    let sql = format!(
        "DO $pgwarden$BEGIN RAISE EXCEPTION USING ERRCODE = '0A000', MESSAGE = '{}'; \
         END$pgwarden$",
        LISTEN_REFUSED.replace('\'', "''")
    );
    let mut out = Vec::with_capacity(sql.len() + 1 + types.len());
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
    out.extend_from_slice(types);
    out
}

impl Session {
    /// Handles every whole message in the client's buffer. `Ok(true)` when it stopped at a
    /// message that needs a server connection and none was idle: the caller waits for one
    /// (in [`Session::serve`]) and calls this again, which goes on from that message.
    /// (Not an `async fn`: the wait is awaited by the forwarding loop itself, so a waiting
    /// client's task, woken when a connection is handed to it, walks two state machines less
    /// at every poll, each a cache line of its own at hundreds of clients.)
    pub(super) fn handle_client_messages(&mut self) -> Result<bool, SessionEnd> {
        let max = self.shared.config.max_message_len;
        // Work on the buffer taken out of `self`, so messages are routed by reference (no
        // per-message allocation or reference count); consumed bytes are dropped at the end.
        let mut buf = std::mem::take(&mut self.buf_client);
        let mut at = 0;
        let result = loop {
            let header = match Header::parse_with_max(&buf[at..], max) {
                Ok(Some(h)) => h,
                Ok(None) => break Ok(false),
                Err(e) => break Err(fatal("08P01", format!("invalid message from client: {e}"))),
            };
            let len = header.frame_len();
            if buf.len() - at < len {
                // Whole-message handling keeps rewriting simple; COPY data costs the buffering
                // of one message.
                buf.reserve(len - (buf.len() - at));
                break Ok(false);
            }
            let tag = header.tag();
            if tag == b'X' {
                break Err(SessionEnd::ClientGone);
            }
            if self.skip_until_sync {
                // What follows a cancelled wait in the same extended-query batch is dropped
                // up to the Sync, which is answered (PostgreSQL's behaviour after an error).
                if tag == b'S' {
                    self.skip_until_sync = false;
                    let mut reply = BytesMut::with_capacity(6);
                    ReadyForQuery(self.transaction_status()).encode(&mut reply);
                    self.plan.push_synthetic_bytes(reply.freeze());
                    self.plan.drain_synthetic(&mut self.to_client);
                }
                at += len;
                continue;
            }
            // A plain BEGIN, or the end of a transaction no server connection has seen yet, is
            // answered here (transaction mode): nothing to wait for, no server round trip.
            if self.server.is_none()
                && (self.deferred != DeferredTx::None
                    || (tag == b'Q'
                        && self.mode == PoolMode::Transaction
                        && self.shared.config.defer_begin))
                && self.answer_transaction_control(tag, &buf[at..at + len])
            {
                at += len;
                continue;
            }
            // Checked here first: the rest of a batch finds the server connection held.
            let held = match self.server {
                Some(_) => true,
                None => match self.take_server_now() {
                    Some(held) => held,
                    // Nothing idle: the caller waits, this message stays in the buffer.
                    None => break Ok(true),
                },
            };
            match held {
                true => {}
                false => {
                    // A CancelRequest arrived while the request waited for a server
                    // connection: it fails as PostgreSQL fails a query cancelled before it
                    // ran, and never reaches a server.
                    let mut reply = error_message("ERROR", "57014", CANCELLED_WHILE_WAITING);
                    if self.deferred == DeferredTx::Open {
                        // The error aborts the transaction the client opened.
                        self.deferred = DeferredTx::Failed;
                    }
                    if matches!(tag, b'Q' | b'F' | b'S') {
                        ReadyForQuery(self.transaction_status()).encode(&mut reply);
                    } else {
                        self.skip_until_sync = true;
                    }
                    self.plan.push_synthetic_bytes(reply.freeze());
                    self.plan.drain_synthetic(&mut self.to_client);
                    at += len;
                    continue;
                }
            }
            let seq = self.batch.record(tag, &buf[at..at + len]);
            self.plan.set_origin(seq);
            let before = self.to_server.len();
            if self.deferred == DeferredTx::Open {
                // The client's BEGIN goes out now, in the same write as the statement behind
                // it (after the parameters' realignment, which must not be part of the
                // transaction).
                self.deferred = DeferredTx::None;
                self.begin_in_flight = Some(self.plan.len());
                push_internal_query(&mut self.to_server, &mut self.plan, "BEGIN");
            }
            if let Err(e) = self.route(tag, &buf[at..at + len]) {
                break Err(e);
            }
            at += len;
            let server = self.server.as_deref_mut().expect("ensured above");
            server.tracker.frontend_written(&self.to_server[before..]);
            self.plan.drain_synthetic(&mut self.to_client);
        };
        // Once per batch, after every message of it was counted above: each Sync forgiven
        // here was counted there, so the owed count ends as if each were forgiven right
        // after its own message.
        if let Some(server) = self.server.as_deref_mut() {
            server.tracker.forgive_owed(self.plan.take_ignored_syncs());
        }
        buf.advance(at);
        self.buf_client = buf;
        result
    }

    /// Sends one client message on (possibly rewritten) and records the replies it owes.
    pub(super) fn route(&mut self, tag: u8, frame: &[u8]) -> Result<(), SessionEnd> {
        let body = &frame[5..];
        match tag {
            b'Q' => return self.route_query(frame),
            b'P' => {
                let (name, rest) =
                    split_cstr(body).ok_or_else(|| fatal("08P01", "malformed Parse message"))?;
                let query = split_cstr(rest).map_or(&[][..], |(q, _)| q);
                let keyword = Keyword::of(query);
                // LISTEN in the extended protocol fails on the server with the simple
                // protocol's explanation: the error then aborts the batch (and any transaction)
                // exactly as PostgreSQL's own errors do.
                let refused = (self.mode == PoolMode::Transaction && keyword == Keyword::Listen)
                    .then(|| refuse_listen_parse(rest));
                let rest = refused.as_deref().unwrap_or(rest);
                if name.is_empty() {
                    // Bind of the unnamed statement applies it; remember it only when it
                    // changes the session (no allocation for ordinary statements).
                    self.unnamed_session_sql = keyword
                        .changes_session()
                        .then(|| String::from_utf8_lossy(query).into_owned());
                    match refused {
                        Some(_) => put_message(&mut self.to_server, b'P', &[b"\0", rest]),
                        None => self.to_server.extend_from_slice(frame),
                    }
                    self.plan.push(Expect::Parse, true);
                    return Ok(());
                }
                let statement = ClientStatement {
                    server_name: server_name(rest),
                    parse_rest: Bytes::copy_from_slice(rest),
                };
                let server_name = Arc::clone(&statement.server_name);
                self.statements
                    .insert(Bytes::copy_from_slice(name), statement.clone());
                if self.server_has(&server_name) {
                    self.plan.push_synthetic(b'1');
                } else {
                    self.prepare_on_server(&statement, true);
                }
            }
            b'B' => {
                let (portal, rest) =
                    split_cstr(body).ok_or_else(|| fatal("08P01", "malformed Bind message"))?;
                let (name, rest) =
                    split_cstr(rest).ok_or_else(|| fatal("08P01", "malformed Bind message"))?;
                let statement = self.lookup(name);
                let session_sql = match &statement {
                    None if name.is_empty() => self.unnamed_session_sql.clone(),
                    None => None,
                    Some(statement) => session_change_text(&statement.parse_rest),
                };
                let renamed = statement.as_ref().map(|s| Arc::clone(&s.server_name));
                match statement {
                    Some(statement) => {
                        self.ensure_prepared(&statement);
                        put_message(
                            &mut self.to_server,
                            b'B',
                            &[portal, b"\0", statement.server_name.as_bytes(), b"\0", rest],
                        );
                    }
                    None => self.to_server.extend_from_slice(frame),
                }
                self.plan.push_for_statement(Expect::Bind, renamed);
                if let Some(sql) = session_sql {
                    // Executed by the Execute that follows; realigned after the batch's Sync.
                    self.note_session_change(&sql);
                    self.params_fix_due = true;
                }
            }
            b'D' => {
                let target = body.first().copied();
                let name = split_cstr(body.get(1..).unwrap_or_default())
                    .map(|(n, _)| n)
                    .ok_or_else(|| fatal("08P01", "malformed Describe message"))?;
                if target == Some(b'S') {
                    let statement = self.lookup(name);
                    let renamed = statement.as_ref().map(|s| Arc::clone(&s.server_name));
                    match statement {
                        Some(statement) => {
                            self.ensure_prepared(&statement);
                            put_message(
                                &mut self.to_server,
                                b'D',
                                &[b"S", statement.server_name.as_bytes(), b"\0"],
                            );
                        }
                        None => self.to_server.extend_from_slice(frame),
                    }
                    self.plan
                        .push_for_statement(Expect::DescribeStatement, renamed);
                } else {
                    self.to_server.extend_from_slice(frame);
                    self.plan.push(Expect::DescribePortal, true);
                }
            }
            b'C' => {
                let target = body.first().copied();
                let name = split_cstr(body.get(1..).unwrap_or_default())
                    .map(|(n, _)| n)
                    .ok_or_else(|| fatal("08P01", "malformed Close message"))?;
                if target == Some(b'S') && !name.is_empty() {
                    // The server-side statement stays cached for other clients.
                    self.statements.remove(name);
                    self.plan.push_synthetic(b'3');
                } else {
                    self.to_server.extend_from_slice(frame);
                    self.plan.push(Expect::Close, true);
                }
            }
            b'E' => {
                self.to_server.extend_from_slice(frame);
                self.plan.push(Expect::Execute, true);
            }
            b'S' => {
                self.to_server.extend_from_slice(frame);
                self.plan.push(Expect::Sync, true);
                if std::mem::take(&mut self.params_fix_due) {
                    self.realign_server_params();
                }
            }
            b'F' => {
                self.to_server.extend_from_slice(frame);
                self.plan.push(Expect::Query, true);
            }
            b'c' | b'f' => {
                self.to_server.extend_from_slice(frame);
                self.plan.push(Expect::CopyEnd, true);
            }
            b'H' | b'd' => self.to_server.extend_from_slice(frame),
            other => {
                return Err(fatal(
                    "08P01",
                    format!("unexpected message type {:?} from client", other as char),
                ))
            }
        }
        Ok(())
    }

    fn route_query(&mut self, frame: &[u8]) -> Result<(), SessionEnd> {
        let sql = &frame[5..frame.len().saturating_sub(1)];
        let keyword = Keyword::of(sql);
        if self.mode == PoolMode::Transaction && keyword == Keyword::Listen {
            let mut reply = error_message("ERROR", "0A000", LISTEN_REFUSED);
            ReadyForQuery(self.transaction_status()).encode(&mut reply);
            self.plan.push_synthetic_bytes(reply.freeze());
            return Ok(());
        }
        if keyword == Keyword::Deallocate {
            return self.route_deallocate(frame);
        }
        if keyword.changes_session() {
            self.note_session_change(&String::from_utf8_lossy(sql));
            self.to_server.extend_from_slice(frame);
            self.plan.push(Expect::Query, true);
            self.realign_server_params();
            return Ok(());
        }
        self.to_server.extend_from_slice(frame);
        self.plan.push(Expect::Query, true);
        Ok(())
    }

    /// Records the effect of `SET`/`RESET`/`DISCARD` text about to run on the server: on the
    /// client's session (`RESET` returns to its startup values, as on a direct connection) and
    /// on the server connection, where `RESET` (also `SET x TO DEFAULT`, `RESET ALL`, `DISCARD
    /// ALL`) returns to the *server connection's* session defaults, its own login values.
    /// [`Session::realign_server_params`] then closes the gap.
    fn note_session_change(&mut self, sql: &str) {
        if self.params.apply_sql(sql, &self.startup_params) {
            self.params_version += 1;
        }
        let discard = Keyword::of(sql.as_bytes()) == Keyword::Discard;
        if discard {
            self.statements.clear();
        }
        let login = SessionParams::server_default(&self.shared.config.application_name);
        if let Some(server) = self.server.as_deref_mut() {
            if discard {
                server.prepared.clear();
            }
            server.params.apply_sql(sql, &login);
        }
    }

    /// Queues the statements that give the server connection the client's parameters again,
    /// right behind what was just sent (so a `SHOW` in the same transaction already sees
    /// them); call after a session-changing Query, or after the Sync of such a batch.
    fn realign_server_params(&mut self) {
        let Some(server) = self.server.as_deref_mut() else {
            return;
        };
        if let Some(fix) = self.params.sync_sql(&server.params) {
            push_internal_query(&mut self.to_server, &mut self.plan, &fix);
        }
        server.params = self.params.clone();
        server.params_owner = Some((self.id, self.params_version));
    }

    /// `DEALLOCATE name` of a statement pgwarden renamed is answered locally; `DEALLOCATE ALL`
    /// also drops the server connection's cache.
    fn route_deallocate(&mut self, frame: &[u8]) -> Result<(), SessionEnd> {
        let sql = String::from_utf8_lossy(&frame[5..frame.len().saturating_sub(1)]).to_string();
        let words: Vec<String> = sql
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .map(|w| w.to_string())
            .collect();
        let name = match words.as_slice() {
            [_, n] | [_, _, n] => n.clone(),
            _ => String::new(),
        };
        if name.eq_ignore_ascii_case("all") {
            self.statements.clear();
            if let Some(server) = self.server.as_deref_mut() {
                server.prepared.clear();
            }
        } else {
            let key = name.trim_matches('"');
            if self.statements.remove(key.as_bytes()).is_some() {
                let mut reply = BytesMut::new();
                CommandComplete {
                    tag: "DEALLOCATE".into(),
                }
                .encode(&mut reply);
                ReadyForQuery(self.transaction_status()).encode(&mut reply);
                self.plan.push_synthetic_bytes(reply.freeze());
                return Ok(());
            }
        }
        self.to_server.extend_from_slice(frame);
        self.plan.push(Expect::Query, true);
        Ok(())
    }

    fn transaction_status(&self) -> TransactionStatus {
        match &self.server {
            Some(s) => s.tracker.transaction_status(),
            None => match self.deferred {
                DeferredTx::None => TransactionStatus::Idle,
                DeferredTx::Open => TransactionStatus::InTransaction,
                DeferredTx::Failed => TransactionStatus::Failed,
            },
        }
    }

    /// Answers, without a server connection, what needs none (transaction mode, no server
    /// connection held): a plain `BEGIN` (the transaction is then deferred: the server sees the
    /// `BEGIN` right before the client's next statement, in the same write, so it costs no
    /// round trip of its own and no server connection sits idle in it), and the `COMMIT` or
    /// `ROLLBACK` of a deferred transaction in which nothing was sent. In a deferred
    /// transaction that failed here, every other message fails as PostgreSQL fails it
    /// (25P02). `false`: the message goes to a server connection as usual.
    pub(super) fn answer_transaction_control(&mut self, tag: u8, frame: &[u8]) -> bool {
        debug_assert!(
            self.plan.is_empty(),
            "no request outstanding without a server"
        );
        let control = match tag {
            b'Q' => TxControl::of(&frame[5..frame.len().saturating_sub(1)]),
            _ => TxControl::Other,
        };
        let reply: &'static [u8] = match (self.deferred, control) {
            (DeferredTx::None, TxControl::Begin) => {
                self.deferred = DeferredTx::Open;
                BEGIN_REPLY
            }
            (DeferredTx::Open, TxControl::Commit) => {
                self.deferred = DeferredTx::None;
                COMMIT_REPLY
            }
            (DeferredTx::Open | DeferredTx::Failed, TxControl::Commit | TxControl::Rollback) => {
                // COMMIT of a failed transaction rolls it back, and says so.
                self.deferred = DeferredTx::None;
                ROLLBACK_REPLY
            }
            (DeferredTx::Failed, _) => {
                if matches!(tag, b'd' | b'c' | b'f') {
                    // No COPY is running: PostgreSQL ignores these too.
                    return true;
                }
                if tag == b'S' {
                    ReadyForQuery(TransactionStatus::Failed).encode(&mut self.to_client);
                    return true;
                }
                if tag == b'H' {
                    // Nothing is pending to flush.
                    return true;
                }
                let mut reply = error_message("ERROR", "25P02", IN_FAILED_TRANSACTION);
                if matches!(tag, b'Q' | b'F') {
                    ReadyForQuery(TransactionStatus::Failed).encode(&mut reply);
                } else {
                    // An extended-query batch: the rest of it is dropped up to its Sync.
                    self.skip_until_sync = true;
                }
                self.to_client.extend_from_slice(&reply);
                return true;
            }
            _ => return false,
        };
        self.to_client.extend_from_slice(reply);
        true
    }

    fn lookup(&self, name: &[u8]) -> Option<ClientStatement> {
        if name.is_empty() {
            return None;
        }
        self.statements.get(name).cloned()
    }

    fn server_has(&self, server_name: &str) -> bool {
        self.server
            .as_ref()
            .is_some_and(|s| s.prepared.contains(server_name))
    }

    /// Injects a Parse for `statement` if the serving connection lacks it.
    fn ensure_prepared(&mut self, statement: &ClientStatement) {
        if !self.server_has(&statement.server_name) {
            self.prepare_on_server(statement, false);
        }
    }

    fn prepare_on_server(&mut self, statement: &ClientStatement, client_asked: bool) {
        let cap = self.shared.config.max_prepared_statements;
        let server: &mut ServerConnection = self.server.as_deref_mut().expect("server held");
        if let Some(evicted) = server.prepared.insert(&statement.server_name, cap) {
            put_message(
                &mut self.to_server,
                b'C',
                &[b"S", evicted.as_bytes(), b"\0"],
            );
            self.plan.push(Expect::Close, false);
        }
        put_message(
            &mut self.to_server,
            b'P',
            &[
                statement.server_name.as_bytes(),
                b"\0",
                &statement.parse_rest,
            ],
        );
        self.plan
            .push_parse(Arc::clone(&statement.server_name), client_asked);
    }

    /// Follows the replies up to the deferred `BEGIN`'s (`ahead` ReadyForQuery before it):
    /// an error from it, or a ReadyForQuery that is not in a transaction, ends the session
    /// (the client's statements behind it ran outside the transaction it opened).
    fn check_deferred_begin(
        &mut self,
        ahead: usize,
        tag: u8,
        frame: std::ops::Range<usize>,
    ) -> Result<(), SessionEnd> {
        let server: &mut ServerConnection = self.server.as_deref_mut().expect("server held");
        let failed = match (tag, ahead) {
            (b'Z', 0) => {
                self.begin_in_flight = None;
                // ReadyForQuery's last byte is the transaction status.
                server.rbuf.get(frame.end - 1) != Some(&b'T')
            }
            (b'Z', n) => {
                self.begin_in_flight = Some(n - 1);
                false
            }
            (b'E', 0) => true,
            _ => false,
        };
        if failed {
            self.begin_in_flight = None;
            server.broken = true;
            return Err(fatal(
                "08006",
                "pgwarden could not start the transaction on its server connection (its BEGIN \
                 failed); the statements sent behind it may have run outside the transaction",
            ));
        }
        Ok(())
    }

    /// Sorts every whole message the server sent into forwarded and swallowed.
    ///
    /// Consecutive forwarded messages are copied to the client's buffer in one piece; when
    /// everything read is forwarded and nothing else waits for the client (the usual reply),
    /// the read buffer itself becomes the client's buffer, without a copy.
    pub(super) fn handle_server_messages(&mut self) -> Result<(), SessionEnd> {
        let mut retry = None;
        let mut stale_names = Vec::new();
        // Bytes of the read buffer handled, and where the run of forwarded messages not yet
        // copied to the client starts.
        let mut at = 0;
        let mut run = 0;
        loop {
            if self.plan.local_at_head() {
                let server = self.server.as_deref_mut().expect("server held");
                self.to_client.extend_from_slice(&server.rbuf[run..at]);
                run = at;
                self.plan.drain_synthetic(&mut self.to_client);
            }
            let server: &mut ServerConnection = self.server.as_deref_mut().expect("server held");
            let header = match Header::parse(&server.rbuf[at..]) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    server.broken = true;
                    return Err(fatal("08P01", format!("invalid message from server: {e}")));
                }
            };
            let len = header.frame_len();
            if server.rbuf.len() - at < len {
                server.rbuf.reserve(len - (server.rbuf.len() - at));
                break;
            }
            let tag = header.tag();
            // A stale statement's refusal (rare): maybe prepared again and retried.
            let stale = (tag == b'E'
                && reprepare::may_fail_stale(self.plan.head().as_ref())
                && reprepare::is_stale_plan_error(&server.rbuf[at..at + len]))
            .then(|| self.plan.head())
            .flatten();
            let status = server.tracker.transaction_status();
            let mut disposition = self.plan.on_server_message(tag);
            if let Some(failed) = stale {
                match self.on_stale_statement(failed, status) {
                    reprepare::Verdict::Retry {
                        seq,
                        tail,
                        parameters_sent,
                    } => {
                        retry = Some((seq, tail, parameters_sent));
                        disposition = Disposition::Swallow;
                    }
                    reprepare::Verdict::PassThrough(name) => stale_names.push(name),
                }
            }
            if let Some(ahead) = self.begin_in_flight {
                self.check_deferred_begin(ahead, tag, at..at + len)?;
            }
            let server: &mut ServerConnection = self.server.as_deref_mut().expect("server held");
            if disposition == Disposition::Swallow {
                self.to_client.extend_from_slice(&server.rbuf[run..at]);
                run = at + len;
            }
            server.tracker.backend_message(&server.rbuf[at..at + len]);
            at += len;
            if tag == b'Z' {
                // One request done: the next one in flight gets its own query_timeout.
                self.query_deadline = None;
                self.query_cancelled = false;
            }
        }
        let server: &mut ServerConnection = self.server.as_deref_mut().expect("server held");
        // Syncs found ignored (COPY FROM STDIN) are forgiven once, as after client messages.
        server.tracker.forgive_owed(self.plan.take_ignored_syncs());
        if run == 0 && at > 0 && at == server.rbuf.len() && self.to_client.is_empty() {
            std::mem::swap(&mut self.to_client, &mut server.rbuf);
        } else {
            self.to_client.extend_from_slice(&server.rbuf[run..at]);
            server.rbuf.advance(at);
        }
        // Rare (a failed Parse): checked before the list is taken out of the plan.
        if self.plan.has_failed_statements() {
            for name in self.plan.take_failed_statements() {
                server.prepared.remove(&name);
            }
        }
        for name in stale_names {
            self.drop_stale_statement(&name);
        }
        if let Some((seq, tail, parameters_sent)) = retry {
            self.replay(seq, tail, parameters_sent)?;
            self.plan.drain_synthetic(&mut self.to_client);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_skips_space_comments_and_parentheses() {
        assert_eq!(
            Keyword::of(b"  -- hi\n /* x */ LISTEN foo"),
            Keyword::Listen
        );
        assert_eq!(Keyword::of(b"Set search_path = a"), Keyword::Set);
        assert_eq!(Keyword::of(b"(reset all)"), Keyword::Reset);
        assert_eq!(Keyword::of(b"DISCARD ALL"), Keyword::Discard);
        assert_eq!(Keyword::of(b"deallocate s1"), Keyword::Deallocate);
        assert_eq!(Keyword::of(b"deallocatex s1"), Keyword::Other);
        assert_eq!(Keyword::of(b"settle"), Keyword::Other);
        assert_eq!(Keyword::of(b"SELECT 1"), Keyword::Other);
        assert_eq!(Keyword::of(b"/* unterminated set"), Keyword::Other);
        assert_eq!(Keyword::of(b"-- only a comment"), Keyword::Other);
        assert_eq!(Keyword::of(b""), Keyword::Other);
        assert!(Keyword::of(b"set x = 1").changes_session());
        assert!(!Keyword::of(b"listen x").changes_session());
    }

    #[test]
    fn only_plain_transaction_control_is_recognised() {
        for sql in [
            "BEGIN",
            " begin ; ",
            "Begin Work",
            "BEGIN TRANSACTION;",
            "start transaction",
        ] {
            assert_eq!(TxControl::of(sql.as_bytes()), TxControl::Begin, "{sql}");
        }
        for sql in ["COMMIT", "commit work;", "END", "end transaction"] {
            assert_eq!(TxControl::of(sql.as_bytes()), TxControl::Commit, "{sql}");
        }
        for sql in ["ROLLBACK", "rollback transaction;", "ABORT", "abort work"] {
            assert_eq!(TxControl::of(sql.as_bytes()), TxControl::Rollback, "{sql}");
        }
        for sql in [
            "",
            ";",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "BEGIN READ ONLY",
            "begin; select 1",
            "BEGIN;;",
            "START",
            "START WORK",
            "COMMIT AND CHAIN",
            "ROLLBACK TO SAVEPOINT a",
            "-- c\nBEGIN",
            "BEGINNING",
            "BEGIN WORKS",
            "SELECT 1",
            "begin                                                  ",
        ] {
            assert_eq!(TxControl::of(sql.as_bytes()), TxControl::Other, "{sql:?}");
        }
    }

    #[test]
    fn deferred_transaction_replies_are_what_the_encoders_make() {
        for (reply, tag, status) in [
            (BEGIN_REPLY, "BEGIN", TransactionStatus::InTransaction),
            (COMMIT_REPLY, "COMMIT", TransactionStatus::Idle),
            (ROLLBACK_REPLY, "ROLLBACK", TransactionStatus::Idle),
        ] {
            let mut made = BytesMut::new();
            CommandComplete { tag: tag.into() }.encode(&mut made);
            ReadyForQuery(status).encode(&mut made);
            assert_eq!(reply, &made[..], "{tag}");
        }
    }

    #[test]
    fn same_text_same_server_name() {
        assert_eq!(
            server_name(b"select 1\0\0\0"),
            server_name(b"select 1\0\0\0")
        );
        assert_ne!(
            server_name(b"select 1\0\0\0"),
            server_name(b"select 2\0\0\0")
        );
    }
}
