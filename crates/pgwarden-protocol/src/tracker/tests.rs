//! Pure tests of the transaction tracker: whole conversations fed in every possible chunking.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn untyped(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut out = (rest.len() as u32 + 8).to_be_bytes().to_vec();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

fn startup_packet() -> Vec<u8> {
    untyped(196_608, b"user\0alice\0database\0app\0\0")
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

fn rfq(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn command_complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstr(tag))
}

/// A result of one row: RowDescription, DataRow, CommandComplete.
fn one_row() -> Vec<u8> {
    concat(&[
        msg(
            b'T',
            b"\0\x01?column?\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        ),
        msg(b'D', b"\0\x01\0\0\0\x011"),
        command_complete("SELECT 1"),
    ])
}

fn error_response() -> Vec<u8> {
    msg(b'E', b"SERROR\0C42601\0Msyntax error\0\0")
}

#[test]
fn simple_query_owes_one_until_ready_for_query() {
    let mut t = TransactionTracker::ready();
    assert!(t.is_idle());
    t.frontend_bytes(&query("select 1"));
    assert_eq!(t.owed(), 1);
    assert!(!t.is_idle());
    t.backend_bytes(&one_row());
    assert_eq!(t.owed(), 1);
    assert!(!t.is_idle());
    t.backend_bytes(&rfq(b'I'));
    assert_eq!(t.owed(), 0);
    assert_eq!(t.transaction_status(), TransactionStatus::Idle);
    assert!(t.is_idle());
    assert!(!t.is_desynchronized());
}

#[test]
fn pipelined_queries_in_one_chunk_are_all_counted() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&concat(&[
        query("select 1"),
        query("select 2"),
        query("select 3"),
    ]));
    assert_eq!(t.owed(), 3);
    t.backend_bytes(&concat(&[one_row(), rfq(b'I'), one_row(), rfq(b'I')]));
    assert_eq!(t.owed(), 1);
    assert!(!t.is_idle());
    t.backend_bytes(&concat(&[one_row(), rfq(b'I')]));
    assert!(t.is_idle());
}

#[test]
fn extended_pipeline_with_several_syncs() {
    let batch = concat(&[
        msg(b'P', b"s1\0select $1\0\0\0"),
        msg(b'B', b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0"),
        msg(b'D', b"P\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]);
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&concat(&[batch.clone(), batch.clone(), batch]));
    assert_eq!(t.owed(), 3);
    let reply = concat(&[msg(b'1', b""), msg(b'2', b""), one_row(), rfq(b'I')]);
    // '1' and '2' are digits: ParseComplete and BindComplete must still frame correctly.
    t.backend_bytes(&reply);
    assert_eq!(t.owed(), 2);
    t.backend_bytes(&reply);
    assert_eq!(t.owed(), 1);
    assert!(!t.is_idle());
    t.backend_bytes(&reply);
    assert!(t.is_idle(), "{t:?}");
}

#[test]
fn extended_messages_without_sync_keep_the_connection_busy() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&concat(&[msg(b'P', b"\0select 1\0\0\0"), msg(b'H', b"")]));
    t.backend_bytes(&msg(b'1', b""));
    assert_eq!(t.owed(), 0);
    assert!(!t.is_idle(), "an unsynced Parse leaves server-side state");
    t.frontend_bytes(&msg(b'S', b""));
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&rfq(b'I'));
    assert!(t.is_idle());
}

#[test]
fn error_inside_transaction_reports_failed_until_rollback() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("begin"));
    t.backend_bytes(&concat(&[command_complete("BEGIN"), rfq(b'T')]));
    assert_eq!(t.owed(), 0);
    assert_eq!(t.transaction_status(), TransactionStatus::InTransaction);
    assert!(!t.is_idle());

    t.frontend_bytes(&query("selec 1"));
    t.backend_bytes(&concat(&[error_response(), rfq(b'E')]));
    assert_eq!(t.transaction_status(), TransactionStatus::Failed);
    assert!(!t.is_idle());

    t.frontend_bytes(&query("rollback"));
    t.backend_bytes(&concat(&[command_complete("ROLLBACK"), rfq(b'I')]));
    assert_eq!(t.transaction_status(), TransactionStatus::Idle);
    assert!(t.is_idle());
}

#[test]
fn error_in_extended_batch_still_settles_on_sync() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&concat(&[
        msg(b'P', b"\0selec\0\0\0"),
        msg(b'B', b"\0\0\0\0\0\0\0\0"),
        msg(b'E', b"\0\0\0\0\0"),
        msg(b'S', b""),
    ]));
    // The server skips Bind and Execute after the error and answers the Sync once.
    t.backend_bytes(&concat(&[error_response(), rfq(b'I')]));
    assert!(t.is_idle());
}

#[test]
fn copy_in_completes_with_copy_done() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("copy t from stdin"));
    t.backend_bytes(&msg(b'G', b"\0\0\x01\0\0"));
    assert_eq!(t.owed(), 1);
    t.frontend_bytes(&concat(&[msg(b'd', b"1\tone\n"), msg(b'd', b"2\ttwo\n")]));
    t.frontend_bytes(&msg(b'c', b""));
    assert_eq!(t.owed(), 1);
    assert!(!t.is_idle());
    t.backend_bytes(&concat(&[command_complete("COPY 2"), rfq(b'I')]));
    assert!(t.is_idle());
}

#[test]
fn copy_in_aborted_with_copy_fail() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("copy t from stdin"));
    t.backend_bytes(&msg(b'G', b"\0\0\0"));
    t.frontend_bytes(&concat(&[
        msg(b'd', b"1\n"),
        msg(b'f', b"client gave up\0"),
    ]));
    t.backend_bytes(&concat(&[error_response(), rfq(b'I')]));
    assert!(t.is_idle());
}

#[test]
fn copy_out_does_not_change_what_is_owed() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("copy t to stdout"));
    t.backend_bytes(&concat(&[
        msg(b'H', b"\0\0\0"),
        msg(b'd', b"1\n"),
        msg(b'c', b""),
        command_complete("COPY 1"),
    ]));
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&rfq(b'I'));
    assert!(t.is_idle());
}

#[test]
fn function_call_owes_one() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&msg(b'F', b"\0\0\x04\xd2\0\0\0\0\0\0"));
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&concat(&[msg(b'V', b"\xff\xff\xff\xff"), rfq(b'I')]));
    assert!(t.is_idle());
}

fn md5_startup_conversation() -> (Vec<u8>, Vec<u8>) {
    let frontend = concat(&[startup_packet(), msg(b'p', b"md5abcdef\0")]);
    let backend = concat(&[
        msg(b'R', b"\0\0\0\x05salt"),
        msg(b'R', b"\0\0\0\0"),
        msg(b'S', b"server_version\x0016.2\0"),
        msg(b'S', b"client_encoding\0UTF8\0"),
        msg(b'K', b"\0\0\x30\x39\x12\x34\x56\x78"),
        rfq(b'I'),
    ]);
    (frontend, backend)
}

#[test]
fn startup_sequence_owes_one_ready_for_query() {
    let mut t = TransactionTracker::before_startup();
    assert!(!t.is_idle(), "nothing has started yet");
    let (frontend, backend) = md5_startup_conversation();
    t.frontend_bytes(&frontend);
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&backend[..backend.len() - 6]);
    assert!(!t.is_idle());
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&backend[backend.len() - 6..]);
    assert!(t.is_idle());
    t.frontend_bytes(&query("select 1"));
    assert_eq!(t.owed(), 1);
}

#[test]
fn sasl_exchange_messages_owe_nothing() {
    let mut t = TransactionTracker::before_startup();
    t.frontend_bytes(&startup_packet());
    t.backend_bytes(&msg(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0"));
    t.frontend_bytes(&msg(b'p', b"SCRAM-SHA-256\0\0\0\0\x04n,,x"));
    t.backend_bytes(&msg(b'R', b"\0\0\0\x0br=abc"));
    t.frontend_bytes(&msg(b'p', b"c=biws,r=abc,p=xyz"));
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&concat(&[
        msg(b'R', b"\0\0\0\x0cv=xyz"),
        msg(b'R', b"\0\0\0\0"),
    ]));
    assert!(!t.is_idle());
    t.backend_bytes(&concat(&[msg(b'K', b"\0\0\0\x01\0\0\0\x02"), rfq(b'I')]));
    assert!(t.is_idle());
}

#[test]
fn ssl_request_refused_then_startup() {
    let mut t = TransactionTracker::before_startup();
    t.frontend_bytes(&untyped(80_877_103, b""));
    assert_eq!(t.owed(), 0);
    t.backend_bytes(b"N");
    let (frontend, backend) = md5_startup_conversation();
    t.frontend_bytes(&frontend);
    t.backend_bytes(&backend);
    assert!(t.is_idle(), "{t:?}");
}

#[test]
fn gssenc_then_ssl_then_startup() {
    let mut t = TransactionTracker::before_startup();
    t.frontend_bytes(&untyped(80_877_104, b""));
    t.backend_bytes(b"N");
    t.frontend_bytes(&untyped(80_877_103, b""));
    t.backend_bytes(b"S");
    // TLS terminated by the caller; the plaintext startup follows.
    let (frontend, backend) = md5_startup_conversation();
    t.frontend_bytes(&frontend);
    assert!(!t.is_idle());
    t.backend_bytes(&backend);
    assert!(t.is_idle());
    assert!(!t.is_desynchronized());
}

#[test]
fn cancel_request_never_becomes_idle() {
    let mut t = TransactionTracker::before_startup();
    t.frontend_bytes(&untyped(80_877_102, b"\0\0\x30\x39\x12\x34\x56\x78"));
    assert_eq!(t.owed(), 0);
    assert!(!t.is_idle());
    assert!(!t.is_desynchronized());
}

#[test]
fn asynchronous_backend_messages_change_nothing() {
    let mut t = TransactionTracker::ready();
    t.backend_bytes(&concat(&[
        msg(b'A', b"\0\0\0\x01chan\0payload\0"),
        msg(b'N', b"SWARNING\0C01000\0Mhi\0\0"),
        msg(b'S', b"TimeZone\0UTC\0"),
    ]));
    assert!(t.is_idle());
    assert_eq!(t.owed(), 0);
}

#[test]
fn half_received_message_is_not_idle() {
    let mut t = TransactionTracker::ready();
    let notice = msg(b'N', b"SWARNING\0Mhi\0\0");
    t.backend_bytes(&notice[..7]);
    assert!(!t.is_idle());
    t.backend_bytes(&notice[7..]);
    assert!(t.is_idle());
    t.frontend_bytes(&query("select 1")[..3]);
    assert!(!t.is_idle());
}

#[test]
fn ready_for_query_header_without_status_byte_settles_nothing() {
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("begin"));
    let z = rfq(b'T');
    t.backend_bytes(&z[..5]);
    assert_eq!(t.owed(), 1);
    t.backend_bytes(&z[5..]);
    assert_eq!(t.owed(), 0);
    assert_eq!(t.transaction_status(), TransactionStatus::InTransaction);
}

/// One way of feeding a tracker.
type Feed = Box<dyn Fn(&mut TransactionTracker)>;

#[test]
fn absurd_lengths_desynchronize() {
    let cases: [(&str, Feed); 7] = [
        (
            "frontend huge",
            Box::new(|t| t.frontend_bytes(b"Q\xff\xff\xff\xff")),
        ),
        (
            "frontend below 4",
            Box::new(|t| t.frontend_bytes(b"Q\0\0\0\x02")),
        ),
        (
            "backend huge",
            Box::new(|t| t.backend_bytes(b"D\x7f\0\0\0")),
        ),
        (
            "backend non-letter tag",
            Box::new(|t| t.backend_bytes(b"\0\0\0\0\x04")),
        ),
        (
            "ready for query too long",
            Box::new(|t| t.backend_bytes(&msg(b'Z', b"II"))),
        ),
        ("bad status byte", Box::new(|t| t.backend_bytes(&rfq(b'X')))),
        (
            "frontend garbage",
            Box::new(|t| t.frontend_bytes(b"\x16\x03\x01\x02\x00")),
        ),
    ];
    for (name, feed) in cases {
        let mut t = TransactionTracker::ready();
        feed(&mut t);
        assert!(t.is_desynchronized(), "{name}");
        assert!(!t.is_idle(), "{name}");
        // Nothing afterwards brings it back.
        t.frontend_bytes(&query("select 1"));
        t.backend_bytes(&rfq(b'I'));
        assert!(t.is_desynchronized(), "{name}");
        assert!(!t.is_idle(), "{name}");
    }
}

#[test]
fn absurd_startup_packets_desynchronize() {
    for packet in [
        (20_000u32)
            .to_be_bytes()
            .iter()
            .chain(&196_608u32.to_be_bytes())
            .copied()
            .collect(),
        (4u32)
            .to_be_bytes()
            .iter()
            .chain(&196_608u32.to_be_bytes())
            .copied()
            .collect(),
        untyped(2 << 16, b"user\0bob\0\0"),
    ] {
        let mut t = TransactionTracker::before_startup();
        t.frontend_bytes(&packet);
        assert!(t.is_desynchronized(), "{packet:?}");
    }
}

#[test]
fn a_length_just_large_is_not_absurd() {
    let mut t = TransactionTracker::ready();
    // A 64 MiB CopyData header: accepted; the body is skipped without being buffered.
    t.frontend_bytes(b"d\x04\0\0\x04");
    assert!(!t.is_desynchronized());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        t.frontend_bytes(&chunk);
    }
    t.frontend_bytes(&query("select 1"));
    assert_eq!(t.owed(), 1);
}

/// A whole conversation: startup, simple and extended queries, a transaction with an error and
/// a COPY. Returns the interleaving as (is_frontend, bytes) turns and the expected end state.
fn conversation() -> Vec<(bool, Vec<u8>)> {
    let (startup_f, startup_b) = md5_startup_conversation();
    vec![
        (true, untyped(80_877_103, b"")),
        (false, b"N".to_vec()),
        (true, startup_f),
        (false, startup_b),
        (true, concat(&[query("begin"), query("selec")])),
        (
            false,
            concat(&[
                command_complete("BEGIN"),
                rfq(b'T'),
                error_response(),
                rfq(b'E'),
            ]),
        ),
        (true, query("rollback")),
        (false, concat(&[command_complete("ROLLBACK"), rfq(b'I')])),
        (
            true,
            concat(&[
                msg(b'P', b"\0select 1\0\0\0"),
                msg(b'B', b"\0\0\0\0\0\0\0\0"),
                msg(b'E', b"\0\0\0\0\0"),
                msg(b'S', b""),
                msg(b'S', b""),
            ]),
        ),
        (
            false,
            concat(&[
                msg(b'1', b""),
                msg(b'2', b""),
                one_row(),
                rfq(b'I'),
                rfq(b'I'),
            ]),
        ),
        (true, query("copy t from stdin")),
        (false, msg(b'G', b"\0\0\0")),
        (true, concat(&[msg(b'd', b"1\n"), msg(b'c', b"")])),
        (false, concat(&[command_complete("COPY 1"), rfq(b'I')])),
    ]
}

fn replay(chunking: &mut dyn FnMut(usize) -> Vec<usize>) -> TransactionTracker {
    let mut t = TransactionTracker::before_startup();
    for (is_frontend, bytes) in conversation() {
        let mut rest = &bytes[..];
        for size in chunking(bytes.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            if is_frontend {
                t.frontend_bytes(chunk);
            } else {
                t.backend_bytes(chunk);
            }
        }
        assert!(rest.is_empty());
    }
    t
}

#[test]
fn whole_conversation_in_one_chunk_per_turn_ends_idle() {
    let t = replay(&mut |len| vec![len]);
    assert!(t.is_idle(), "{t:?}");
}

#[test]
fn split_at_every_offset_gives_the_same_result() {
    let turns = conversation();
    for (turn, (_, bytes)) in turns.iter().enumerate() {
        for cut in 0..=bytes.len() {
            let mut n = 0;
            let t = replay(&mut |len| {
                let sizes = if n == turn {
                    vec![cut, len - cut]
                } else {
                    vec![len]
                };
                n += 1;
                sizes
            });
            assert!(t.is_idle(), "turn {turn} cut {cut}: {t:?}");
        }
    }
}

#[test]
fn byte_by_byte_gives_the_same_result() {
    let t = replay(&mut |len| vec![1; len]);
    assert!(t.is_idle(), "{t:?}");
}

#[test]
fn random_chunkings_give_the_same_result() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..200 {
        let t = replay(&mut |mut len| {
            let mut sizes = Vec::new();
            while len > 0 {
                let n = rng.gen_range(0..=len.min(9));
                sizes.push(n);
                len -= n;
            }
            sizes
        });
        assert!(t.is_idle(), "{t:?}");
    }
}

#[test]
fn state_between_turns_matches_the_protocol() {
    use TransactionStatus::{Failed, Idle};
    let mut t = TransactionTracker::before_startup();
    // (owed, status, idle) after each turn of `conversation()`.
    let expected = [
        (0, Idle, false),
        (0, Idle, false),
        (1, Idle, false),
        (0, Idle, true),
        (2, Idle, false),
        (0, Failed, false),
        (1, Failed, false),
        (0, Idle, true),
        (2, Idle, false),
        (0, Idle, true),
        (1, Idle, false),
        (1, Idle, false),
        (1, Idle, false),
        (0, Idle, true),
    ];
    for (n, ((is_frontend, bytes), want)) in conversation().into_iter().zip(expected).enumerate() {
        if is_frontend {
            t.frontend_bytes(&bytes);
        } else {
            t.backend_bytes(&bytes);
        }
        assert_eq!(
            (t.owed(), t.transaction_status(), t.is_idle()),
            want,
            "turn {n}"
        );
    }
}

#[test]
fn status_byte_round_trip() {
    for s in [
        TransactionStatus::Idle,
        TransactionStatus::InTransaction,
        TransactionStatus::Failed,
    ] {
        assert_eq!(TransactionStatus::from_byte(s.to_byte()), Some(s));
    }
    assert_eq!(TransactionStatus::from_byte(b'X'), None);
}

/// Splits a run of whole typed messages into frames.
fn frames(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = crate::Header::parse(bytes).unwrap().unwrap().frame_len();
        let (frame, rest) = bytes.split_at(len);
        out.push(frame);
        bytes = rest;
    }
    out
}

#[test]
fn whole_messages_give_the_same_states_as_bytes() {
    let mut by_bytes = TransactionTracker::before_startup();
    let mut by_message = TransactionTracker::before_startup();
    for (n, (is_frontend, bytes)) in conversation().into_iter().enumerate() {
        if is_frontend {
            by_bytes.frontend_bytes(&bytes);
            if by_message.started {
                for frame in frames(&bytes) {
                    by_message.frontend_written(frame);
                }
            } else {
                // The untyped startup packet: the method falls back to framing bytes.
                by_message.frontend_written(&bytes);
            }
            assert_eq!(by_message.owed(), by_bytes.owed(), "turn {n}");
            assert_eq!(by_message.is_idle(), by_bytes.is_idle(), "turn {n}");
            continue;
        }
        by_bytes.backend_bytes(&bytes);
        if by_message.negotiation_answers_owed > 0 {
            // The one-byte answer to SSLRequest is no message: the method falls back.
            by_message.backend_message(&bytes);
        } else {
            for frame in frames(&bytes) {
                by_message.backend_message(frame);
            }
        }
        assert_eq!(
            (
                by_message.owed(),
                by_message.transaction_status(),
                by_message.is_idle()
            ),
            (
                by_bytes.owed(),
                by_bytes.transaction_status(),
                by_bytes.is_idle()
            ),
            "turn {n}"
        );
    }
    assert!(by_message.is_idle());
}

#[test]
fn a_whole_ready_for_query_of_the_wrong_size_or_status_desynchronizes() {
    for bad in [msg(b'Z', b""), msg(b'Z', b"II"), msg(b'Z', b"X")] {
        let mut t = TransactionTracker::ready();
        t.frontend_bytes(&query("select 1"));
        t.backend_message(&bad);
        assert!(t.is_desynchronized(), "{bad:?}");
        assert!(!t.is_idle());
    }
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("begin"));
    t.backend_message(&command_complete("BEGIN"));
    t.backend_message(&rfq(b'T'));
    assert_eq!(t.transaction_status(), TransactionStatus::InTransaction);
    assert_eq!(t.owed(), 0);
}

#[test]
fn a_whole_message_after_a_partial_one_is_framed_as_bytes() {
    // Half a DataRow fed as bytes, then the rest: `backend_message` must not take the rest
    // for a message of its own.
    let mut t = TransactionTracker::ready();
    t.frontend_bytes(&query("select 1"));
    let row = one_row();
    let (head, tail) = row.split_at(3);
    t.backend_bytes(head);
    t.backend_message(tail);
    t.backend_message(&command_complete("SELECT 1"));
    t.backend_message(&rfq(b'I'));
    assert!(t.is_idle(), "{t:?}");
}

#[test]
fn written_bytes_that_are_not_one_message_are_framed_as_bytes() {
    // Two messages in one write: both count.
    let mut t = TransactionTracker::ready();
    t.frontend_written(&concat(&[query("select 1"), query("select 2")]));
    assert_eq!(t.owed(), 2);
    // Half a Query written, then the rest with a Sync: the rest is no message of its own.
    let mut t = TransactionTracker::ready();
    let q = query("select 1");
    let (head, tail) = q.split_at(6);
    t.frontend_written(head);
    assert_eq!(
        t.owed(),
        1,
        "the header is complete once the tag and length arrived"
    );
    t.frontend_written(&concat(&[tail.to_vec(), msg(b'S', b"")]));
    assert_eq!(t.owed(), 2);
    // A bad header desynchronizes, as with frontend_bytes.
    let mut t = TransactionTracker::ready();
    t.frontend_written(&[b'Q', 0, 0, 0, 1]);
    assert!(t.is_desynchronized());
    // Nothing written changes nothing.
    let mut t = TransactionTracker::ready();
    t.frontend_written(&[]);
    assert!(t.is_idle());
}
