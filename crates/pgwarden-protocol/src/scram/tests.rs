//! SCRAM tests: the server against postgres-protocol's client and RFC 7677's vector, our client
//! against our server, and pass-through with a recovered ClientKey.

use super::*;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

fn secret_for(password: &str) -> ScramSecret {
    ScramSecret::parse(&postgres_protocol::password::scram_sha_256(
        password.as_bytes(),
    ))
    .unwrap()
}

/// Runs postgres-protocol's client against our server; returns the verdict.
fn reference_client_against(secret: ScramSecret, password: &str) -> ScramVerdict {
    let mut server = ScramServer::new(secret);
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested());
    let server_first = server
        .client_first("SCRAM-SHA-256", client.message())
        .unwrap();
    client.update(&server_first).unwrap();
    let verdict = server.client_final(client.message()).unwrap();
    if let ScramVerdict::Accepted(v) = &verdict {
        client
            .finish(&v.server_final)
            .expect("reference client accepts our signature");
    }
    verdict
}

#[test]
fn server_accepts_the_reference_client_and_recovers_its_client_key() {
    let password = "correct horse battery staple";
    let secret = secret_for(password);
    let ScramVerdict::Accepted(verified) = reference_client_against(secret.clone(), password)
    else {
        panic!("rejected the right password");
    };
    let (client_key, _) = salted_keys(password.as_bytes(), &secret.salt, secret.iterations);
    assert_eq!(verified.client_key, client_key);
    assert_eq!(sha256(&verified.client_key), secret.stored_key);
}

#[test]
fn server_rejects_a_wrong_password() {
    assert_eq!(
        reference_client_against(secret_for("right"), "wrong"),
        ScramVerdict::Rejected
    );
}

#[test]
fn secret_computed_here_matches_postgres_protocol() {
    let reference = secret_for("pencil");
    let ours = ScramSecret::from_password(b"pencil", &reference.salt, reference.iterations);
    assert_eq!(ours, reference);
    assert_eq!(ScramSecret::parse(&ours.to_string()), Ok(ours));
}

#[test]
fn rfc_7677_vector() {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let secret = ScramSecret::from_password(b"pencil", &salt, 4096);
    let mut server = ScramServer::with_nonce(secret, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
    let first = server
        .client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        .unwrap();
    assert_eq!(
        first,
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let verdict = server
        .client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
    let ScramVerdict::Accepted(v) = verdict else {
        panic!("RFC proof rejected")
    };
    assert_eq!(
        v.server_final,
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
}

/// Runs our client against our server; returns the verdict and the client's final result.
fn exchange(
    credentials: ScramCredentials,
    secret: ScramSecret,
) -> (ScramVerdict, Result<(), ProtocolError>) {
    let mut client = ScramClient::new(credentials);
    let mut server = ScramServer::new(secret);
    let first = server
        .client_first("SCRAM-SHA-256", client.client_first())
        .unwrap();
    let last = client.server_first(&first).unwrap();
    let verdict = server.client_final(&last).unwrap();
    let end = match &verdict {
        ScramVerdict::Accepted(v) => client.server_final(&v.server_final),
        ScramVerdict::Rejected => Ok(()),
    };
    (verdict, end)
}

#[test]
fn our_client_logs_in_with_a_password() {
    let secret = ScramSecret::from_password(b"s3cret", b"0123456789abcdef", 4096);
    let (verdict, end) = exchange(
        ScramCredentials::Password(b"s3cret".to_vec()),
        secret.clone(),
    );
    assert!(matches!(verdict, ScramVerdict::Accepted(_)));
    assert_eq!(end, Ok(()));
    let (verdict, _) = exchange(ScramCredentials::Password(b"nope".to_vec()), secret);
    assert_eq!(verdict, ScramVerdict::Rejected);
}

#[test]
fn pass_through_logs_in_with_the_recovered_client_key() {
    let password = "only the client knows this";
    let secret = secret_for(password);
    let ScramVerdict::Accepted(verified) = reference_client_against(secret.clone(), password)
    else {
        panic!("rejected");
    };
    let keys = ScramCredentials::Keys {
        client_key: verified.client_key,
        server_key: secret.server_key,
    };
    let (verdict, end) = exchange(keys, secret);
    assert!(matches!(verdict, ScramVerdict::Accepted(_)));
    assert_eq!(end, Ok(()));
}

#[test]
fn client_refuses_a_server_that_does_not_know_the_secret() {
    let real = ScramSecret::from_password(b"pw", b"salt-salt", 4096);
    let mut impostor = real.clone();
    impostor.server_key = [7; KEY_LEN];
    let mut client = ScramClient::new(ScramCredentials::Password(b"pw".to_vec()));
    let mut server = ScramServer::new(impostor);
    let first = server
        .client_first("SCRAM-SHA-256", client.client_first())
        .unwrap();
    let last = client.server_first(&first).unwrap();
    let ScramVerdict::Accepted(v) = server.client_final(&last).unwrap() else {
        panic!()
    };
    assert!(client.server_final(&v.server_final).is_err());
}

#[test]
fn client_refuses_a_nonce_that_does_not_extend_its_own() {
    let mut client = ScramClient::with_nonce(ScramCredentials::Password(b"pw".to_vec()), "abc");
    assert!(client.server_first(b"r=xyz123,s=c2FsdA==,i=4096").is_err());
    let mut client = ScramClient::with_nonce(ScramCredentials::Password(b"pw".to_vec()), "abc");
    assert!(client.server_first(b"r=abc123,s=c2FsdA==,i=0").is_err());
}

#[test]
fn server_refuses_malformed_or_unsupported_client_messages() {
    let secret = ScramSecret::from_password(b"pw", b"salt-salt", 16);
    let first = |mechanism: &str, data: &[u8]| {
        ScramServer::new(secret.clone()).client_first(mechanism, data)
    };
    assert!(first("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=a").is_err());
    assert!(first("SCRAM-SHA-256", b"p=tls-server-end-point,,n=,r=a").is_err());
    assert!(first("SCRAM-SHA-256", b"n,,n=,").is_err());
    assert!(first("SCRAM-SHA-256", b"garbage").is_err());
    assert!(first("SCRAM-SHA-256", b"n,a=admin,n=,r=abc").is_err());
    assert!(first("SCRAM-SHA-256", b"y,,n=,r=abc").is_ok());

    // A final message with a changed nonce or a missing proof.
    let mut server = ScramServer::with_nonce(secret.clone(), "SRV");
    server
        .client_first("SCRAM-SHA-256", b"n,,n=,r=abc")
        .unwrap();
    assert!(server.client_final(b"c=biws,r=abcOTHER,p=AAAA").is_err());
    let mut server = ScramServer::with_nonce(secret.clone(), "SRV");
    server
        .client_first("SCRAM-SHA-256", b"n,,n=,r=abc")
        .unwrap();
    assert!(server.client_final(b"c=biws,r=abcSRV").is_err());
    // Out of order.
    assert!(ScramServer::new(secret)
        .client_final(b"c=biws,r=x,p=y")
        .is_err());
}

#[test]
fn secrets_parse_strictly() {
    let good = "SCRAM-SHA-256$4096:c2FsdHNhbHQ=$\
                AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let secret = ScramSecret::parse(good).unwrap();
    assert_eq!(
        (secret.iterations, &secret.salt[..]),
        (4096, &b"saltsalt"[..])
    );
    assert_eq!(secret.to_string(), good);
    for bad in [
        "md5abcdef",
        "SCRAM-SHA-256$x:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$0:c2FsdHNhbHQ=$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        assert!(ScramSecret::parse(bad).is_err(), "{bad}");
    }
    assert!(
        !format!("{secret:?}").contains("AAAA"),
        "Debug hides the keys"
    );
}
