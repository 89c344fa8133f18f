//! Tests of the backend status messages.

use super::*;

fn frame_of(encode: impl FnOnce(&mut BytesMut)) -> Frame {
    let mut out = BytesMut::new();
    encode(&mut out);
    let frame = Frame::parse(&mut out).unwrap().unwrap();
    assert!(out.is_empty(), "exactly one message encoded");
    frame
}

#[test]
fn error_response_carries_severity_sqlstate_and_message() {
    let e = ErrorFields::new(
        "FATAL",
        "53300",
        "too many clients for pool app/alice (max 20)",
    )
    .with(FIELD_HINT, "raise max_client_conn");
    let frame = frame_of(|o| e.encode_error(o));
    assert_eq!(frame.tag, b'E');
    let d = ErrorFields::decode(&frame).unwrap();
    assert_eq!(d, e);
    assert_eq!(d.severity(), Some("FATAL"));
    assert_eq!(d.code(), Some("53300"));
    assert_eq!(
        d.message(),
        Some("too many clients for pool app/alice (max 20)")
    );
    assert_eq!(d.field(FIELD_HINT), Some("raise max_client_conn"));
    assert_eq!(d.field(FIELD_DETAIL), None);
}

#[test]
fn decodes_a_server_error_from_wire_bytes() {
    let frame = Frame {
        tag: b'E',
        body: Bytes::from_static(
            b"SERREUR\0VERROR\0C42P01\0Mrelation \"t\" does not exist\0P15\0\0",
        ),
    };
    let e = ErrorFields::decode(&frame).unwrap();
    assert_eq!(e.severity(), Some("ERROR"), "non-localized severity wins");
    assert_eq!(e.code(), Some("42P01"));
    let notice = frame_of(|o| e.encode_notice(o));
    assert_eq!(notice.tag, b'N');
    assert_eq!(ErrorFields::decode(&notice).unwrap(), e);
    let unterminated = Frame {
        tag: b'E',
        body: Bytes::from_static(b"SERROR\0"),
    };
    assert!(ErrorFields::decode(&unterminated).is_err());
}

#[test]
fn parameter_status_backend_key_data_ready_for_query_command_complete() {
    let p = ParameterStatus {
        name: "server_version".into(),
        value: "16.2".into(),
    };
    assert_eq!(ParameterStatus::decode(&frame_of(|o| p.encode(o))), Ok(p));

    let k = BackendKeyData {
        process_id: 4242,
        secret_key: Bytes::from_static(&[9, 8, 7, 6]),
    };
    let frame = frame_of(|o| k.encode(o));
    assert_eq!(&frame.body[..], &[0, 0, 0x10, 0x92, 9, 8, 7, 6]);
    assert_eq!(BackendKeyData::decode(&frame), Ok(k));
    let short = Frame {
        tag: b'K',
        body: Bytes::from_static(&[0, 0, 0, 1, 2]),
    };
    assert!(BackendKeyData::decode(&short).is_err());

    for s in [
        TransactionStatus::Idle,
        TransactionStatus::InTransaction,
        TransactionStatus::Failed,
    ] {
        let z = ReadyForQuery(s);
        assert_eq!(ReadyForQuery::decode(&frame_of(|o| z.encode(o))), Ok(z));
    }
    let mut wire = BytesMut::new();
    ReadyForQuery(TransactionStatus::Idle).encode(&mut wire);
    assert_eq!(&wire[..], b"Z\0\0\0\x05I");
    assert!(ReadyForQuery::decode(&Frame {
        tag: b'Z',
        body: Bytes::from_static(b"Q")
    })
    .is_err());

    let c = CommandComplete {
        tag: "INSERT 0 5".into(),
    };
    assert_eq!(CommandComplete::decode(&frame_of(|o| c.encode(o))), Ok(c));
}

#[test]
fn wrong_tags_are_refused() {
    let f = Frame {
        tag: b'X',
        body: Bytes::from_static(b"a\0b\0"),
    };
    assert!(ParameterStatus::decode(&f).is_err());
    assert!(ErrorFields::decode(&f).is_err());
    assert!(CommandComplete::decode(&f).is_err());
}
