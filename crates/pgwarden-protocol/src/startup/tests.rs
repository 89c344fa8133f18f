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
