//! Logging in to PostgreSQL as a client: the startup packet, then whichever authentication the
//! server asks for (trust, clear-text, md5, SCRAM-SHA-256 from a password or from pass-through
//! keys), then ParameterStatus and BackendKeyData up to the first ReadyForQuery.

use bytes::{Bytes, BytesMut};
use pgwarden_protocol::auth::{
    Authentication, PasswordMessage, SaslInitialResponse, SaslResponse, SCRAM_SHA_256,
};
use pgwarden_protocol::md5::{md5_client_response, md5_response_from_secret};
use pgwarden_protocol::response::{BackendKeyData, ErrorFields, ParameterStatus};
use pgwarden_protocol::scram::{ScramClient, ScramCredentials};
use pgwarden_protocol::startup::{StartupMessage, StartupPacket};
use pgwarden_protocol::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::ServerError;

/// How pgwarden proves itself to the server.
#[derive(Clone)]
pub enum ServerCredentials {
    /// No password known (the server must trust us).
    None,
    /// A password.
    Password(String),
    /// An md5 hash (`md5...`) of password + user, usable for md5 authentication only.
    Md5Hash(String),
    /// SCRAM keys recovered from a client's exchange (pass-through).
    ScramKeys(ScramCredentials),
}

impl std::fmt::Debug for ServerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerCredentials::None => "None",
            ServerCredentials::Password(_) => "Password(..)",
            ServerCredentials::Md5Hash(_) => "Md5Hash(..)",
            ServerCredentials::ScramKeys(_) => "ScramKeys(..)",
        })
    }
}

/// What the server told us during login.
pub(crate) struct LoginOutcome {
    pub(crate) parameters: Vec<(String, String)>,
    pub(crate) key: Option<BackendKeyData>,
}

/// Runs the startup exchange on a fresh TCP stream; `buf` keeps any bytes read past it.
pub(crate) async fn login(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    user: &str,
    database: &str,
    application_name: &str,
    credentials: &ServerCredentials,
) -> Result<LoginOutcome, ServerError> {
    let mut out = BytesMut::with_capacity(256);
    StartupPacket::Startup(StartupMessage::new(vec![
        ("user".into(), user.into()),
        ("database".into(), database.into()),
        ("application_name".into(), application_name.into()),
        ("client_encoding".into(), "UTF8".into()),
    ]))
    .encode(&mut out);
    stream.write_all(&out).await?;

    let mut scram: Option<ScramClient> = None;
    let mut parameters = Vec::new();
    let mut key = None;
    loop {
        let frame = read_frame(stream, buf).await?;
        out.clear();
        match frame.tag {
            b'R' => match Authentication::decode(&frame)? {
                Authentication::Ok => {}
                Authentication::CleartextPassword => {
                    let ServerCredentials::Password(p) = credentials else {
                        return Err(missing_password(user, "password"));
                    };
                    PasswordMessage {
                        password: Bytes::copy_from_slice(p.as_bytes()),
                    }
                    .encode(&mut out);
                }
                Authentication::Md5Password { salt } => {
                    let response = match credentials {
                        ServerCredentials::Password(p) => {
                            md5_client_response(user, p.as_bytes(), salt)
                        }
                        ServerCredentials::Md5Hash(h) => md5_response_from_secret(h, salt)
                            .ok_or_else(|| missing_password(user, "md5"))?,
                        _ => return Err(missing_password(user, "md5")),
                    };
                    PasswordMessage {
                        password: Bytes::from(response.into_bytes()),
                    }
                    .encode(&mut out);
                }
                Authentication::Sasl { mechanisms } => {
                    if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(ServerError::Auth(format!(
                            "server offers SASL mechanisms {mechanisms:?}, pgwarden speaks only {SCRAM_SHA_256}"
                        )));
                    }
                    let creds = match credentials {
                        ServerCredentials::Password(p) => {
                            ScramCredentials::Password(p.as_bytes().to_vec())
                        }
                        ServerCredentials::ScramKeys(k) => k.clone(),
                        _ => return Err(missing_password(user, "SCRAM-SHA-256")),
                    };
                    let client = ScramClient::new(creds);
                    SaslInitialResponse {
                        mechanism: SCRAM_SHA_256.to_string(),
                        data: Some(Bytes::copy_from_slice(client.client_first())),
                    }
                    .encode(&mut out);
                    scram = Some(client);
                }
                Authentication::SaslContinue(data) => {
                    let client = scram.as_mut().ok_or(ServerError::Auth(
                        "SASL continue without a SASL exchange".into(),
                    ))?;
                    let response = client.server_first(&data)?;
                    SaslResponse {
                        data: Bytes::from(response),
                    }
                    .encode(&mut out);
                }
                Authentication::SaslFinal(data) => {
                    let client = scram.as_mut().ok_or(ServerError::Auth(
                        "SASL final without a SASL exchange".into(),
                    ))?;
                    client.server_final(&data)?;
                }
            },
            b'S' => {
                let p = ParameterStatus::decode(&frame)?;
                parameters.push((p.name, p.value));
            }
            b'K' => key = Some(BackendKeyData::decode(&frame)?),
            b'E' => return Err(ServerError::Rejected(ErrorFields::decode(&frame)?)),
            b'N' => {}
            b'Z' => return Ok(LoginOutcome { parameters, key }),
            other => {
                return Err(ServerError::Protocol(
                    pgwarden_protocol::ProtocolError::UnknownTag(other),
                ))
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
    }
}

fn missing_password(user: &str, method: &str) -> ServerError {
    ServerError::Auth(format!(
        "server asks {method} authentication for user \"{user}\" but pgwarden has no password for it \
         (set it in the upstream URL, the route, or the auth_file)"
    ))
}

/// Reads one whole message from `stream`, buffering in `buf`.
pub(crate) async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Frame, ServerError> {
    loop {
        if let Some(frame) = Frame::parse(buf)? {
            return Ok(frame);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(ServerError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )));
        }
    }
}
