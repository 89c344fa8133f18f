//! One wait of the forwarding loop, polled by hand.
//!
//! Each turn of the loop waits for the first of: a shutdown signal, room to write to either
//! peer, bytes from either peer. A `select!` over futures for these costs, at every wake-up,
//! a loop over its branches with their enabled masks, a future built and dropped per branch,
//! and a read future per socket: about 300 instructions per statement on top of the socket
//! polls themselves. [`Turn::poll`] does the same polls in the same order as plain calls.
//! Timers (`idle_transaction_timeout`, `query_timeout`) are off by default; when one is armed
//! the loop puts its sleep beside the turn in a `select!`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_util::io::poll_read_buf;

use super::stream::ClientStream;
use super::BACKPRESSURE_LIMIT;
use crate::signals::{self, Signals};

/// What ended a wait of the forwarding loop.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// Bytes read from the client (0: it closed).
    ClientRead(usize),
    /// Some of the bytes owed to the client were written.
    ClientWrote,
    /// Bytes read from the server (0: it closed or failed, reading or writing).
    ServerRead(usize),
    /// Some of the bytes owed to the server were written.
    ServerWrote,
    /// The server connection sat idle inside a transaction for `idle_transaction_timeout`.
    IdleInTransaction,
    /// The request in flight ran past `query_timeout`.
    QueryTimeout,
    /// Shutdown started and the session is at a point where it may end.
    Shutdown,
    /// The drain timeout expired.
    DrainExpired,
}

/// The server side of a turn: its socket and its read buffer.
pub(super) struct ServerSide<'a> {
    pub(super) stream: &'a mut TcpStream,
    pub(super) rbuf: &'a mut BytesMut,
    /// Between two transactions (session mode): a shutdown ends the session here.
    pub(super) at_boundary: bool,
}

/// Everything one wait polls, borrowed from the session for the turn.
pub(super) struct Turn<'a> {
    pub(super) signals: &'a Signals,
    pub(super) client: &'a mut ClientStream,
    pub(super) server: Option<ServerSide<'a>>,
    pub(super) to_server: &'a mut BytesMut,
    pub(super) to_client: &'a mut BytesMut,
    pub(super) buf_client: &'a mut BytesMut,
}

impl Turn<'_> {
    /// Polls, in order: the signals (an atomic load each; the session's task is woken when
    /// one fires), the writes (they drain buffers), the server's read, the client's read.
    /// The first one ready ends the turn; the pending ones have registered the task's waker.
    /// A write is one plain `send` of the buffer (a vectored `writev`, which `write_buf` picks
    /// for a TCP stream, costs the kernel more for one buffer); the bytes written leave the
    /// buffer in the same poll.
    /// An `Err` is a failure of the client's socket; the server's failures read as
    /// `ServerRead(0)`.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Event>> {
        match &self.server {
            Some(server) => {
                if self.signals.is_set(signals::DRAIN_EXPIRED) {
                    return Poll::Ready(Ok(Event::DrainExpired));
                }
                if server.at_boundary && self.signals.is_set(signals::SHUTDOWN) {
                    return Poll::Ready(Ok(Event::Shutdown));
                }
            }
            None => {
                if self.signals.is_set(signals::SHUTDOWN) {
                    return Poll::Ready(Ok(Event::Shutdown));
                }
            }
        }
        if let Some(server) = self.server.as_mut() {
            if !self.to_server.is_empty() {
                match Pin::new(&mut *server.stream).poll_write(cx, self.to_server) {
                    Poll::Ready(Ok(n)) => {
                        self.to_server.advance(n);
                        return Poll::Ready(Ok(Event::ServerWrote));
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Ok(Event::ServerRead(0))),
                    Poll::Pending => {}
                }
            }
        }
        if !self.to_client.is_empty() {
            match Pin::new(&mut *self.client).poll_write(cx, self.to_client) {
                Poll::Ready(Ok(n)) => {
                    self.to_client.advance(n);
                    return Poll::Ready(Ok(Event::ClientWrote));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if let Some(server) = self.server.as_mut() {
            if self.to_client.len() < BACKPRESSURE_LIMIT {
                if let Poll::Ready(read) =
                    poll_read_buf(Pin::new(&mut *server.stream), cx, server.rbuf)
                {
                    return Poll::Ready(Ok(Event::ServerRead(read.unwrap_or(0))));
                }
            }
        }
        // Without a server connection the client is read whatever is buffered (its requests
        // queue for one); with one, reading pauses while its requests pile up unsent.
        if self.server.is_none() || self.buf_client.len() < BACKPRESSURE_LIMIT {
            if let Poll::Ready(read) =
                poll_read_buf(Pin::new(&mut *self.client), cx, self.buf_client)
            {
                return Poll::Ready(read.map(Event::ClientRead));
            }
        }
        Poll::Pending
    }
}
