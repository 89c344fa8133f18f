//! The frontend's query messages: simple Query and the extended protocol (Parse, Bind, Describe,
//! Execute, Close, Sync, Flush).
//!
//! Only what a proxy needs is parsed: statement and portal names (for prepared-statement
//! tracking and renaming) and the SQL text. Parameter types, formats and values stay raw bytes,
//! so re-encoding with different names is cheap and lossless.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{put_cstr, write_message, Reader};
use crate::error::ProtocolError;
use crate::frame::Frame;

/// What Describe and Close refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `S`: a prepared statement.
    Statement,
    /// `P`: a portal.
    Portal,
}

impl Target {
    fn from_byte(message: &'static str, b: u8) -> Result<Self, ProtocolError> {
        match b {
            b'S' => Ok(Target::Statement),
            b'P' => Ok(Target::Portal),
            _ => Err(ProtocolError::malformed(
                message,
                "target is neither S nor P",
            )),
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// One query-family frontend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryMessage {
    /// `Q`: simple query; may contain several statements.
    Query {
        /// SQL text without the NUL terminator.
        sql: String,
    },
    /// `P`: create a prepared statement (`""` is the unnamed one).
    Parse {
        /// Statement name.
        statement: String,
        /// SQL text.
        query: String,
        /// Parameter type count and OIDs, raw.
        param_types: Bytes,
    },
    /// `B`: bind a statement to a portal.
    Bind {
        /// Portal name (`""` is the unnamed one).
        portal: String,
        /// Statement name.
        statement: String,
        /// Format codes, parameter values and result formats, raw.
        rest: Bytes,
    },
    /// `D`: describe a statement or portal.
    Describe {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// `E`: execute a portal.
    Execute {
        /// Portal name.
        portal: String,
        /// Row limit; 0 means no limit.
        max_rows: i32,
    },
    /// `C`: close a statement or portal.
    Close {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: String,
    },
    /// `S`: end of an extended-query batch; owes a ReadyForQuery.
    Sync,
    /// `H`: ask the server to flush its output.
    Flush,
}

impl QueryMessage {
    /// Decodes `frame` if its tag belongs to this family; `Ok(None)` for other tags.
    pub fn decode(frame: &Frame) -> Result<Option<QueryMessage>, ProtocolError> {
        let body = &frame.body;
        let message = match frame.tag {
            b'Q' => {
                let mut r = Reader::new("Query", body);
                let sql = r.cstr()?.to_owned();
                r.finish()?;
                QueryMessage::Query { sql }
            }
            b'P' => {
                let mut r = Reader::new("Parse", body);
                let statement = r.cstr()?.to_owned();
                let query = r.cstr()?.to_owned();
                let param_types = body.slice_ref(r.rest());
                QueryMessage::Parse {
                    statement,
                    query,
                    param_types,
                }
            }
            b'B' => {
                let mut r = Reader::new("Bind", body);
                let portal = r.cstr()?.to_owned();
                let statement = r.cstr()?.to_owned();
                let rest = body.slice_ref(r.rest());
                QueryMessage::Bind {
                    portal,
                    statement,
                    rest,
                }
            }
            b'D' | b'C' => {
                let name = if frame.tag == b'D' {
                    "Describe"
                } else {
                    "Close"
                };
                let mut r = Reader::new(name, body);
                let target = Target::from_byte(name, r.u8()?)?;
                let object = r.cstr()?.to_owned();
                r.finish()?;
                if frame.tag == b'D' {
                    QueryMessage::Describe {
                        target,
                        name: object,
                    }
                } else {
                    QueryMessage::Close {
                        target,
                        name: object,
                    }
                }
            }
            b'E' => {
                let mut r = Reader::new("Execute", body);
                let portal = r.cstr()?.to_owned();
                let max_rows = r.i32()?;
                r.finish()?;
                QueryMessage::Execute { portal, max_rows }
            }
            b'S' | b'H' => {
                if !body.is_empty() {
                    return Err(ProtocolError::malformed("Sync/Flush", "non-empty body"));
                }
                if frame.tag == b'S' {
                    QueryMessage::Sync
                } else {
                    QueryMessage::Flush
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(message))
    }

    /// The tag byte of this message.
    pub fn tag(&self) -> u8 {
        match self {
            QueryMessage::Query { .. } => b'Q',
            QueryMessage::Parse { .. } => b'P',
            QueryMessage::Bind { .. } => b'B',
            QueryMessage::Describe { .. } => b'D',
            QueryMessage::Execute { .. } => b'E',
            QueryMessage::Close { .. } => b'C',
            QueryMessage::Sync => b'S',
            QueryMessage::Flush => b'H',
        }
    }

    /// Appends this message, framed, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        write_message(out, Some(self.tag()), |out| match self {
            QueryMessage::Query { sql } => put_cstr(out, sql.as_bytes()),
            QueryMessage::Parse {
                statement,
                query,
                param_types,
            } => {
                put_cstr(out, statement.as_bytes());
                put_cstr(out, query.as_bytes());
                out.put_slice(param_types);
            }
            QueryMessage::Bind {
                portal,
                statement,
                rest,
            } => {
                put_cstr(out, portal.as_bytes());
                put_cstr(out, statement.as_bytes());
                out.put_slice(rest);
            }
            QueryMessage::Describe { target, name } | QueryMessage::Close { target, name } => {
                out.put_u8(target.to_byte());
                put_cstr(out, name.as_bytes());
            }
            QueryMessage::Execute { portal, max_rows } => {
                put_cstr(out, portal.as_bytes());
                out.put_i32(*max_rows);
            }
            QueryMessage::Sync | QueryMessage::Flush => {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: QueryMessage) {
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let frame = Frame::parse(&mut out).unwrap().unwrap();
        assert_eq!(QueryMessage::decode(&frame), Ok(Some(m)));
        assert!(out.is_empty());
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(QueryMessage::Query {
            sql: "select 1; select 2".into(),
        });
        round_trip(QueryMessage::Parse {
            statement: "s1".into(),
            query: "select $1::int".into(),
            param_types: Bytes::from_static(b"\0\x01\0\0\0\x17"),
        });
        round_trip(QueryMessage::Bind {
            portal: "".into(),
            statement: "s1".into(),
            rest: Bytes::from_static(b"\0\0\0\x01\0\0\0\x0142\0\0"),
        });
        round_trip(QueryMessage::Describe {
            target: Target::Statement,
            name: "s1".into(),
        });
        round_trip(QueryMessage::Close {
            target: Target::Portal,
            name: "p".into(),
        });
        round_trip(QueryMessage::Execute {
            portal: "".into(),
            max_rows: 100,
        });
        round_trip(QueryMessage::Sync);
        round_trip(QueryMessage::Flush);
    }

    #[test]
    fn parses_names_from_wire_bytes() {
        // As sent by libpq for PQprepare(conn, "stmt", "select $1", 1, NULL).
        let frame = Frame {
            tag: b'P',
            body: Bytes::from_static(b"stmt\0select $1\0\0\x01\0\0\0\0"),
        };
        let Some(QueryMessage::Parse {
            statement,
            query,
            param_types,
        }) = QueryMessage::decode(&frame).unwrap()
        else {
            panic!("not a Parse");
        };
        assert_eq!((statement.as_str(), query.as_str()), ("stmt", "select $1"));
        assert_eq!(&param_types[..], b"\0\x01\0\0\0\0");
    }

    #[test]
    fn renaming_a_statement_keeps_the_rest() {
        let frame = Frame {
            tag: b'B',
            body: Bytes::from_static(b"\0c1\0\0\0\0\x01\0\0\0\x011\0\0"),
        };
        let Some(QueryMessage::Bind { portal, rest, .. }) = QueryMessage::decode(&frame).unwrap()
        else {
            panic!("not a Bind");
        };
        let renamed = QueryMessage::Bind {
            portal,
            statement: "pgwarden_7".into(),
            rest,
        };
        let mut out = BytesMut::new();
        renamed.encode(&mut out);
        assert_eq!(&out[5..], b"\0pgwarden_7\0\0\0\0\x01\0\0\0\x011\0\0");
    }

    #[test]
    fn malformed_bodies_and_foreign_tags() {
        let bad = |tag, body: &'static [u8]| {
            QueryMessage::decode(&Frame {
                tag,
                body: Bytes::from_static(body),
            })
        };
        assert!(bad(b'Q', b"no terminator").is_err());
        assert!(bad(b'D', b"Xname\0").is_err());
        assert!(bad(b'E', b"\0\0\0").is_err());
        assert!(bad(b'S', b"x").is_err());
        assert!(bad(b'Q', b"a\0b\0").is_err());
        assert_eq!(bad(b'p', b"secret\0"), Ok(None));
    }
}
