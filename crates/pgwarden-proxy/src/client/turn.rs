//! One wait of the forwarding loop, polled by hand.
//!
//! Each turn of the loop waits for the first of: a shutdown signal, room to write to either
//! peer, bytes from either peer. A `select!` over futures for these costs, at every wake-up,
//! a loop over its branches with their enabled masks, a future built and dropped per branch,
//! and a read future per socket: about 300 instructions per statement on top of the socket
//! polls themselves. [`Turn::poll`] does the same polls in the same order as plain calls.
//! Timers (`idle_transaction_timeout`, `query_timeout`) are off by default; at most one is
//! armed at a time, and the loop polls its sleep (kept in the session) after the turn.
//!
//! Reads that are known to be pending are not polled again ([`Armed`]). Inside a transaction
//! each statement wakes the task twice (the client's request, the server's reply), and after
//! each wake-up both sockets' reads used to be polled once or twice more: 6.4 read polls per
//! statement, 3 of them on a socket that had not fired, each a readiness check, a waker
//! comparison under a lock and a cooperative-budget update in tokio. A socket whose read
//! returned `Pending` keeps this task's waker until it becomes ready, and tokio marks it ready
//! before it takes the waker: so while a read is armed, a look at the socket's readiness (one
//! atomic load) tells whether polling it could give anything.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, Interest};
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

/// Which reads returned `Pending` with this task's waker and have not been seen ready since
/// (see the module documentation). Cleared when the session's task or its server connection
/// changes, and whenever anything else may have taken the readiness away (the idle client
/// read, which clears it after a short read). The idle wait between transactions consults the
/// client's flag too: the turn that waited for the reply usually left the waker there.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Armed {
    pub(super) server: bool,
    pub(super) client: bool,
}

/// Whether an armed read of `tcp` would still be pending: its readiness is not set. Once it
/// is set the read is disarmed and polled for real.
pub(super) fn still_pending(tcp: &TcpStream, armed: &mut bool) -> bool {
    if !*armed {
        return false;
    }
    // `try_io` fails with `WouldBlock` at once when the socket is not marked ready; when it
    // is, it calls the closure, which does no I/O and succeeds, so the readiness stays.
    let pending = tcp.try_io(Interest::READABLE, || Ok(())).is_err();
    *armed = pending;
    pending
}

/// Arms a read that just returned `Pending`, unless the cooperative budget may have caused it
/// (then no waker was left with the socket and the task is woken to run again anyway).
fn arm_if_pending<T>(poll: &Poll<T>, armed: &mut bool) {
    *armed = poll.is_pending() && tokio::task::coop::has_budget_remaining();
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
    /// Inside a transaction opened by a deferred BEGIN (no server connection yet): a shutdown
    /// lets it finish, as it lets a transaction holding a server connection finish.
    pub(super) in_deferred: bool,
    pub(super) client: &'a mut ClientStream,
    pub(super) server: Option<ServerSide<'a>>,
    pub(super) to_server: &'a mut BytesMut,
    pub(super) to_client: &'a mut BytesMut,
    pub(super) buf_client: &'a mut BytesMut,
    pub(super) armed: &'a mut Armed,
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
                if self.signals.is_set(signals::DRAIN_EXPIRED) {
                    return Poll::Ready(Ok(Event::DrainExpired));
                }
                if !self.in_deferred && self.signals.is_set(signals::SHUTDOWN) {
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
            if self.to_client.len() < BACKPRESSURE_LIMIT
                && !still_pending(server.stream, &mut self.armed.server)
            {
                let read = poll_read_buf(Pin::new(&mut *server.stream), cx, server.rbuf);
                arm_if_pending(&read, &mut self.armed.server);
                if let Poll::Ready(read) = read {
                    return Poll::Ready(Ok(Event::ServerRead(read.unwrap_or(0))));
                }
            }
        }
        // Without a server connection the client is read whatever is buffered (its requests
        // queue for one); with one, reading pauses while its requests pile up unsent.
        if (self.server.is_none() || self.buf_client.len() < BACKPRESSURE_LIMIT)
            && !self
                .client
                .plain_tcp()
                .is_some_and(|tcp| still_pending(tcp, &mut self.armed.client))
        {
            let read = poll_read_buf(Pin::new(&mut *self.client), cx, self.buf_client);
            // A TLS stream is never armed: rustls may hold decrypted bytes the socket's
            // readiness does not announce, and its reads also push out pending records.
            if self.client.plain_tcp().is_some() {
                arm_if_pending(&read, &mut self.armed.client);
            }
            if let Poll::Ready(read) = read {
                return Poll::Ready(read.map(Event::ClientRead));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (b, _) = listener.accept().await.unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn a_read_held_back_by_the_cooperative_budget_is_not_armed() {
        let (mut a, _b) = pair().await;
        let mut buf = BytesMut::with_capacity(64);
        std::future::poll_fn(|cx| {
            // Nothing to read, budget left: the waker stays with the socket; armed.
            let mut armed = false;
            let read = poll_read_buf(Pin::new(&mut a), cx, &mut buf);
            arm_if_pending(&read, &mut armed);
            assert!(read.is_pending() && armed);
            // The budget spent: tokio answers `Pending` without touching the socket.
            while let Poll::Ready(restore) = tokio::task::coop::poll_proceed(cx) {
                restore.made_progress();
            }
            let read = poll_read_buf(Pin::new(&mut a), cx, &mut buf);
            arm_if_pending(&read, &mut armed);
            assert!(read.is_pending() && !armed, "armed without a waker");
            Poll::Ready(())
        })
        .await;
    }

    #[tokio::test]
    async fn an_armed_read_is_released_once_the_socket_is_ready() {
        let (a, mut b) = pair().await;
        let mut armed = true;
        assert!(still_pending(&a, &mut armed), "nothing sent yet");
        assert!(armed);
        b.write_all(b"x").await.unwrap();
        a.readable().await.unwrap();
        assert!(!still_pending(&a, &mut armed), "ready: poll it");
        assert!(!armed);
        // Not armed: always polled, whatever the readiness.
        assert!(!still_pending(&a, &mut armed));
    }
}
