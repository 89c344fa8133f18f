//! Tests of startup packet parsing and encoding.

use super::*;

fn wire(packet: &StartupPacket) -> BytesMut {
    let mut out = BytesMut::new();
    packet.encode(&mut out);
    out
}

#[test]
fn startup_message_round_trips_and_waits_for_all_bytes() {
    let packet = StartupPacket::Startup(StartupMessage::new(vec![
        ("user".into(), "alice".into()),
        ("database".into(), "app".into()),
        ("application_name".into(), "psql".into()),
    ]));
    let bytes = wire(&packet);
    assert_eq!(&bytes[4..8], &[0, 3, 0, 0]);
    for cut in 0..bytes.len() {
        let mut partial = BytesMut::from(&bytes[..cut]);
        assert_eq!(StartupPacket::parse(&mut partial), Ok(None));
    }
    let mut buf = bytes.clone();
    buf.extend_from_slice(b"Q");
    let parsed = StartupPacket::parse(&mut buf).unwrap().unwrap();
    assert_eq!(parsed, packet);
    assert_eq!(&buf[..], b"Q", "only the packet is consumed");
    let StartupPacket::Startup(m) = parsed else {
        panic!()
    };
    assert_eq!(
        (m.user(), m.database(), m.parameter("application_name")),
        ("alice", "app", Some("psql"))
    );
}

#[test]
fn database_defaults_to_user() {
    let m = StartupMessage::new(vec![("user".into(), "bob".into())]);
    assert_eq!(m.database(), "bob");
}

#[test]
fn special_requests_are_recognised() {
    for packet in [
        StartupPacket::SslRequest,
        StartupPacket::GssEncRequest,
        StartupPacket::Cancel(CancelRequest {
            process_id: 42,
            secret_key: Bytes::from_static(&[1, 2, 3, 4]),
        }),
    ] {
        let mut buf = wire(&packet);
        assert_eq!(StartupPacket::parse(&mut buf), Ok(Some(packet)));
    }
    let mut ssl = BytesMut::from(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f][..]);
    assert_eq!(
        StartupPacket::parse(&mut ssl),
        Ok(Some(StartupPacket::SslRequest))
    );
}

#[test]
fn rejects_old_protocol_missing_user_and_absurd_lengths() {
    let mut v2 = BytesMut::from(&b"\0\0\0\x12\0\x02\0\0user\0bob\0\0"[..]);
    assert_eq!(
        StartupPacket::parse(&mut v2),
        Err(ProtocolError::UnsupportedProtocolVersion { major: 2, minor: 0 })
    );
    let mut no_user = BytesMut::from(&b"\0\0\0\x14\0\x03\0\0database\0x\0\0"[..]);
    assert!(StartupPacket::parse(&mut no_user).is_err());
    let mut huge = BytesMut::from(&b"\0\x01\0\0\0\x03\0\0"[..]);
    assert!(matches!(
        StartupPacket::parse(&mut huge),
        Err(ProtocolError::InvalidLength { .. })
    ));
    let mut unterminated = BytesMut::from(&b"\0\0\0\x0e\0\x03\0\0user\0b"[..]);
    assert!(StartupPacket::parse(&mut unterminated).is_err());
    let mut long_ssl = BytesMut::from(&[0, 0, 0, 9, 0x04, 0xd2, 0x16, 0x2f, 0][..]);
    assert!(StartupPacket::parse(&mut long_ssl).is_err());
}

#[test]
fn minor_version_is_kept() {
    let mut buf = BytesMut::from(&b"\0\0\0\x12\0\x03\0\x02user\0bob\0\0"[..]);
    let Some(StartupPacket::Startup(m)) = StartupPacket::parse(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(m.minor_version, 2);
}

fn startup(minor: u16, parameters: &[(&str, &str)]) -> StartupMessage {
    StartupMessage {
        minor_version: minor,
        parameters: parameters
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn plain_3_0_needs_no_negotiation() {
    let mut m = startup(0, &[("user", "bob"), ("application_name", "x")]);
    let before = m.clone();
    assert_eq!(m.negotiate(), None);
    assert_eq!(m, before);
}

#[test]
fn newer_minor_versions_are_negotiated_down_to_3_0() {
    for minor in [1, 2, 9, u16::MAX] {
        let mut m = startup(minor, &[("user", "bob")]);
        assert_eq!(
            m.negotiate(),
            Some(NegotiateProtocolVersion {
                newest_minor: 0,
                unrecognized_options: vec![],
            })
        );
        assert_eq!(m.minor_version, 0);
        assert_eq!(m.user(), "bob");
    }
}

#[test]
fn protocol_options_are_listed_and_never_become_session_parameters() {
    let mut m = startup(
        0,
        &[
            ("user", "bob"),
            ("_pq_.compression", "on"),
            ("search_path", "app"),
            ("_pq_.test", "1"),
        ],
    );
    let answer = m.negotiate().expect("options need an answer");
    assert_eq!(answer.newest_minor, 0);
    assert_eq!(
        answer.unrecognized_options,
        ["_pq_.compression", "_pq_.test"]
    );
    assert_eq!(
        m.parameters,
        startup(0, &[("user", "bob"), ("search_path", "app")]).parameters
    );
    assert_eq!(m.negotiate(), None, "a second call finds nothing left");
}

#[test]
fn negotiate_protocol_version_wire_format_and_round_trip() {
    let message = NegotiateProtocolVersion {
        newest_minor: 0,
        unrecognized_options: vec!["_pq_.a".into(), "_pq_.bc".into()],
    };
    let mut out = BytesMut::new();
    message.encode(&mut out);
    let mut expected = vec![b'v', 0, 0, 0, 27, 0, 3, 0, 0, 0, 0, 0, 2];
    expected.extend_from_slice(b"_pq_.a\0_pq_.bc\0");
    assert_eq!(&out[..], &expected[..]);
    let frame = Frame::parse(&mut out).unwrap().unwrap();
    assert_eq!(NegotiateProtocolVersion::decode(&frame), Ok(message));

    let mut none = BytesMut::new();
    NegotiateProtocolVersion {
        newest_minor: 0,
        unrecognized_options: vec![],
    }
    .encode(&mut none);
    assert_eq!(&none[..], b"v\0\0\0\x0c\0\x03\0\0\0\0\0\0");
}

#[test]
fn malformed_negotiate_protocol_version_is_refused() {
    let decode = |body: &'static [u8]| {
        NegotiateProtocolVersion::decode(&Frame {
            tag: b'v',
            body: Bytes::from_static(body),
        })
    };
    assert!(
        decode(b"\0\x03\0\0\0\0\0\x01").is_err(),
        "one option announced, none sent"
    );
    assert!(decode(b"\0\x02\0\0\0\0\0\0").is_err(), "major version 2");
    assert!(
        decode(b"\0\x03\0\0\xff\xff\xff\xff").is_err(),
        "negative count"
    );
    assert!(decode(b"\0\x03\0\0\0\0\0\0x").is_err(), "trailing bytes");
    assert!(NegotiateProtocolVersion::decode(&Frame {
        tag: b'R',
        body: Bytes::new(),
    })
    .is_err());
}
