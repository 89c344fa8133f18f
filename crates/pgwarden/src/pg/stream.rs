//! The socket under every pooled PostgreSQL connection, watched by a [`TransactionTracker`].
//!
//! tokio-postgres does not say whether a connection is inside a transaction or still owes
//! responses. The pool must know that when a guard comes back, so a connection dropped
//! mid-transaction (or mid-query, by a panic or a cancelled task) is never handed to the next
//! caller dirty. This stream wraps the TCP socket and feeds every byte written and read to the
//! protocol crate's tracker, which only reads message headers and skips bodies by length.
//! Cost: one uncontended mutex lock per read or write call, no copy, no allocation.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use pgwarden_protocol::TransactionTracker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream whose traffic is observed by a shared [`TransactionTracker`].
#[derive(Debug)]
pub(crate) struct ObservedStream {
    inner: TcpStream,
    tracker: Arc<Mutex<TransactionTracker>>,
}

impl ObservedStream {
    /// Wraps `inner`; the tracker starts before the startup packet.
    pub(crate) fn new(inner: TcpStream) -> (Self, Arc<Mutex<TransactionTracker>>) {
        let tracker = Arc::new(Mutex::new(TransactionTracker::before_startup()));
        let stream = ObservedStream {
            inner,
            tracker: Arc::clone(&tracker),
        };
        (stream, tracker)
    }
}

impl AsyncRead for ObservedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                self.tracker.lock().backend_bytes(new);
            }
        }
        poll
    }
}

impl AsyncWrite for ObservedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            if n > 0 {
                self.tracker.lock().frontend_bytes(&buf[..n]);
            }
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
