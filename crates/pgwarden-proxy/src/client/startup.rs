//! A client's first moments: SSL/GSSAPI negotiation (TLS handshake included), the startup
//! packet with protocol version negotiation or a CancelRequest, and password authentication
//! (SCRAM-SHA-256, md5, trust) against the userlist or `auth_query`.

use bytes::{Bytes, BytesMut};
use pgwarden_protocol::auth::{
    Authentication, PasswordMessage, SaslInitialResponse, SaslResponse, SCRAM_SHA_256,
};
use pgwarden_protocol::md5::{md5_secret, md5_verify};
use pgwarden_protocol::scram::{ScramCredentials, ScramSecret, ScramServer, ScramVerdict};
use pgwarden_protocol::startup::{StartupMessage, StartupPacket};
use pgwarden_protocol::{Frame, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::ClientStream;
use super::{fatal, SessionEnd};
use crate::config::{AuthType, TlsMode};
use crate::proxy::Shared;
use crate::server::ServerCredentials;
use crate::userlist::Secret;

/// Reads the startup packet. An SSLRequest is answered `S` followed by the TLS handshake when
/// TLS is configured, `N` otherwise; a GSSENCRequest always `N`; each at most once, as in
/// PostgreSQL. A CancelRequest is served. A StartupMessage asking for a newer 3.x or carrying
/// `_pq_.` options gets NegotiateProtocolVersion and continues at 3.0; with
/// `tls_mode = require` a client not using TLS is refused. `Ok(None)` means the connection was
/// a cancel and is done.
pub(crate) async fn read_startup(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    shared: &Shared,
) -> Result<Option<StartupMessage>, SessionEnd> {
    let mut ssl_done = false;
    let mut gss_done = false;
    loop {
        match StartupPacket::parse(buf) {
            Ok(Some(StartupPacket::SslRequest)) if !ssl_done => {
                ssl_done = true;
                let Some(acceptor) = &shared.tls else {
                    // The client continues in clear text or gives up.
                    stream.write_all(b"N").await?;
                    continue;
                };
                if !buf.is_empty() {
                    // Bytes sent before the handshake would be taken as if they came over TLS.
                    return Err(fatal(
                        "08P01",
                        "received unencrypted data after SSL request",
                    ));
                }
                stream.write_all(b"S").await?;
                if let Err(e) = stream.upgrade(acceptor).await {
                    tracing::debug!(error = %e, "TLS handshake with a client failed");
                    return Err(SessionEnd::ClientGone);
                }
                // Inside TLS, GSSAPI encryption makes no sense (PostgreSQL refuses it too).
                gss_done = true;
            }
            Ok(Some(StartupPacket::GssEncRequest)) if !gss_done => {
                gss_done = true;
                // No GSSAPI: the client goes on with an SSLRequest or a StartupMessage.
                stream.write_all(b"N").await?;
            }
            Ok(Some(StartupPacket::SslRequest | StartupPacket::GssEncRequest)) => {
                return Err(fatal(
                    "08P01",
                    "unsupported frontend protocol: encryption was already negotiated",
                ));
            }
            Ok(Some(StartupPacket::Cancel(request))) => {
                shared
                    .cancels
                    .cancel(&request, |key| {
                        shared.pools.all().iter().any(|p| p.pool.cancel_wait(key))
                    })
                    .await;
                return Ok(None);
            }
            Ok(Some(StartupPacket::Startup(mut startup))) => {
                if shared.config.tls_mode == TlsMode::Require && !stream.is_tls() {
                    return Err(fatal(
                        "28000",
                        "pgwarden accepts only TLS connections (proxy.tls_mode = require); \
                         connect with sslmode=require",
                    ));
                }
                if let Some(answer) = startup.negotiate() {
                    let mut out = BytesMut::with_capacity(64);
                    answer.encode(&mut out);
                    stream.write_all(&out).await?;
                }
                return Ok(Some(startup));
            }
            Ok(None) => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(SessionEnd::ClientGone);
                }
            }
            Err(e @ ProtocolError::UnsupportedProtocolVersion { .. }) => {
                return Err(fatal(
                    "0A000",
                    format!("unsupported frontend protocol: {e}: pgwarden supports 3.0"),
                ));
            }
            Err(e) => return Err(fatal("08P01", format!("invalid startup packet: {e}"))),
        }
    }
}

/// Authenticates the client as `user`. On success returns SCRAM keys recovered from the
/// exchange (for pass-through server logins), if any.
pub(crate) async fn authenticate(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    shared: &Shared,
    user: &str,
    database: &str,
) -> Result<Option<ServerCredentials>, SessionEnd> {
    let auth_type = shared.config.auth_type;
    if auth_type == AuthType::Trust {
        return Ok(None);
    }
    let secret = match shared.userlist.get(user) {
        Some(secret) => Some(secret.clone()),
        None => shared.auth_query_secret(user, database).await?,
    };
    let Some(secret) = secret else {
        // Go through the motions so an unknown user looks like a wrong password.
        return Err(password_failed(user));
    };
    match (auth_type, secret) {
        (AuthType::Scram, Secret::Scram(secret)) => {
            let verified = scram_exchange(stream, buf, secret.clone(), user).await?;
            Ok(Some(ServerCredentials::ScramKeys(ScramCredentials::Keys {
                client_key: verified,
                server_key: secret.server_key,
            })))
        }
        (AuthType::Scram, Secret::Plain(password)) => {
            let salt: [u8; 16] = rand::random();
            let secret = ScramSecret::from_password(password.as_bytes(), &salt, 4096);
            scram_exchange(stream, buf, secret, user).await?;
            Ok(None)
        }
        (AuthType::Md5 | AuthType::Scram, Secret::Md5(hash)) => {
            md5_exchange(stream, buf, &hash, user).await?;
            Ok(None)
        }
        (AuthType::Md5, Secret::Plain(password)) => {
            md5_exchange(stream, buf, &md5_secret(user, password.as_bytes()), user).await?;
            Ok(None)
        }
        (AuthType::Md5, Secret::Scram(_)) => Err(fatal(
            "28000",
            format!(
                "user \"{user}\" has a SCRAM secret, which cannot check md5 authentication; \
                 use auth_type = scram-sha-256"
            ),
        )),
        (AuthType::Trust, _) => Ok(None),
    }
}

fn password_failed(user: &str) -> SessionEnd {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

async fn read_password_frame(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<Frame, SessionEnd> {
    loop {
        match Frame::parse_with_max(buf, 16 * 1024) {
            Ok(Some(frame)) if frame.tag == b'p' => return Ok(frame),
            Ok(Some(_)) => return Err(fatal("08P01", "expected a password message")),
            Ok(None) => {
                if stream.read_buf(buf).await? == 0 {
                    return Err(SessionEnd::ClientGone);
                }
            }
            Err(e) => return Err(fatal("08P01", format!("invalid password message: {e}"))),
        }
    }
}

async fn send(stream: &mut ClientStream, message: Authentication) -> Result<(), SessionEnd> {
    let mut out = BytesMut::with_capacity(64);
    message.encode(&mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    Ok(())
}

async fn scram_exchange(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    secret: ScramSecret,
    user: &str,
) -> Result<pgwarden_protocol::scram::ScramKey, SessionEnd> {
    send(
        stream,
        Authentication::Sasl {
            mechanisms: vec![SCRAM_SHA_256.to_string()],
        },
    )
    .await?;
    let frame = read_password_frame(stream, buf).await?;
    let initial = SaslInitialResponse::decode(&frame)
        .map_err(|e| fatal("08P01", format!("invalid SASL initial response: {e}")))?;
    let mut server = ScramServer::new(secret);
    let first = server
        .client_first(&initial.mechanism, initial.data.as_deref().unwrap_or(&[]))
        .map_err(|e| fatal("28000", format!("SCRAM exchange failed: {e}")))?;
    send(stream, Authentication::SaslContinue(Bytes::from(first))).await?;
    let frame = read_password_frame(stream, buf).await?;
    let response = SaslResponse::decode(&frame)
        .map_err(|e| fatal("08P01", format!("invalid SASL response: {e}")))?;
    match server.client_final(&response.data) {
        Ok(ScramVerdict::Accepted(verified)) => {
            send(
                stream,
                Authentication::SaslFinal(Bytes::from(verified.server_final)),
            )
            .await?;
            Ok(verified.client_key)
        }
        Ok(ScramVerdict::Rejected) | Err(_) => Err(password_failed(user)),
    }
}

async fn md5_exchange(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    hash: &str,
    user: &str,
) -> Result<(), SessionEnd> {
    let salt: [u8; 4] = rand::random();
    send(stream, Authentication::Md5Password { salt }).await?;
    let frame = read_password_frame(stream, buf).await?;
    let message = PasswordMessage::decode(&frame)
        .map_err(|e| fatal("08P01", format!("invalid password message: {e}")))?;
    if md5_verify(hash, salt, &message.password) {
        Ok(())
    } else {
        Err(password_failed(user))
    }
}
