//! PostgreSQL wire protocol, both directions, without I/O and without a clock.
//!
//! A proxy reads and writes both sides of the protocol, so this crate parses and encodes frontend
//! messages (what clients send) and backend messages (what servers send). Everything here is a
//! pure function over byte slices or a state machine fed bytes; the async glue lives in the proxy.
//!
//! # Layout
//! - [`error`]: [`ProtocolError`], the one error type.
//! - [`header`]: [`Header::parse`], the five-byte header of typed messages, with a configurable
//!   maximum length; `Ok(None)` while short.
//! - [`frame`]: [`Frame::parse`] splits whole typed messages off a `BytesMut` without copying.
//! - [`startup`]: the untyped first packet (StartupMessage with its parameters, SSLRequest,
//!   GSSENCRequest, CancelRequest), with protocol version check, and NegotiateProtocolVersion
//!   for clients asking for a newer minor version or for `_pq_.` protocol options.
//! - [`query`]: the frontend's simple and extended query messages, names parsed for
//!   prepared-statement tracking, the rest kept raw.
//! - [`auth`]: Authentication requests (`R`) and the frontend's answers (`p`).
//! - [`response`]: ErrorResponse/NoticeResponse fields (SQLSTATE included), ParameterStatus,
//!   BackendKeyData, ReadyForQuery, CommandComplete.
//! - [`scram`]: SCRAM-SHA-256 as server (against a `pg_authid` secret, recovering the ClientKey)
//!   and as client (from a password or, for pass-through, from recovered keys).
//! - [`md5`]: md5 password authentication as server and as client.
//! - [`tracker`]: [`TransactionTracker`], which counts owed ReadyForQuery messages and says when
//!   a server connection is idle and may serve another client.
//!
//! Every message type follows one shape: `decode(&Frame)` to read, `encode(&mut BytesMut)` to
//! append the framed message. Nothing here does I/O or reads a clock; randomness is used only
//! for SCRAM nonces, and the `with_nonce` constructors make even that deterministic.
//!
//! # Example: when may a server connection be handed back?
//! ```
//! use pgwarden_protocol::{TransactionStatus, TransactionTracker};
//!
//! let mut tracker = TransactionTracker::ready();
//! // The client sends `Query("begin")`, in two chunks split inside the header.
//! let query = b"Q\0\0\0\x0abegin\0";
//! tracker.frontend_bytes(&query[..3]);
//! tracker.frontend_bytes(&query[3..]);
//! assert_eq!(tracker.owed(), 1);
//!
//! // The server answers CommandComplete and ReadyForQuery('T').
//! tracker.backend_bytes(b"C\0\0\0\x0aBEGIN\0Z\0\0\0\x05T");
//! assert_eq!(tracker.owed(), 0);
//! assert_eq!(tracker.transaction_status(), TransactionStatus::InTransaction);
//! assert!(!tracker.is_idle(), "inside a transaction the connection stays with its client");
//!
//! tracker.frontend_bytes(b"Q\0\0\0\x0bcommit\0");
//! tracker.backend_bytes(b"C\0\0\0\x0bCOMMIT\0Z\0\0\0\x05I");
//! assert!(tracker.is_idle());
//! ```

pub mod auth;
pub(crate) mod codec;
pub mod error;
pub mod frame;
pub mod header;
pub mod md5;
pub mod query;
pub mod response;
pub mod scram;
pub mod startup;
pub mod tracker;

pub use error::ProtocolError;
pub use frame::Frame;
pub use header::Header;
pub use tracker::{TransactionStatus, TransactionTracker};
