//! [`ClientStream`]: a client's connection, plain TCP or TLS over TCP, as one type the
//! session reads and writes without knowing which.
//!
//! The forwarding loop polls the client's reads and writes by hand in one wait (see
//! `super::turn`), so the stream is never split into halves: the TLS variant is one rustls
//! stream, boxed once per session, with no lock. No allocation per message in either case.
//!
//! rustls buffers encrypted records it could not write yet. A write that returns leaves them
//! for later, so every poll of the TLS stream, reading or writing, first pushes them out: the
//! session always polls a read, which keeps them moving after the last write of a reply.
//! `flush` (from `AsyncWriteExt`) pushes them out before closing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The TLS stream (boxed in [`ClientStream`]: rustls's state is large, plain clients are many).
type Tls = TlsStream<TcpStream>;

/// A client connection.
pub(crate) enum ClientStream {
    /// Clear text, as accepted.
    Plain(TcpStream),
    /// After an SSLRequest answered `S` and a completed handshake.
    Tls(Box<Tls>),
    /// A TLS handshake took the TCP stream and failed; every operation fails.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "client connection closed")
}

impl ClientStream {
    /// Whether the client speaks TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// Runs the server side of a TLS handshake on a plain stream. Call right after answering
    /// an SSLRequest with `S`, with no client bytes buffered. On failure the stream is
    /// [`ClientStream::Closed`].
    pub(crate) async fn upgrade(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let ClientStream::Plain(tcp) = std::mem::replace(self, ClientStream::Closed) else {
            return Err(io::Error::other("TLS requested twice"));
        };
        let tls = acceptor.accept(tcp).await?;
        *self = ClientStream::Tls(Box::new(tls));
        Ok(())
    }

    /// The TCP stream of a clear-text client.
    pub(crate) fn plain_tcp(&self) -> Option<&TcpStream> {
        match self {
            ClientStream::Plain(tcp) => Some(tcp),
            _ => None,
        }
    }

    /// Writes what the socket takes of `buf` at once, without waiting: plain TCP only. A
    /// TLS stream reports `WouldBlock` (the forwarding loop writes it).
    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_write(buf),
            ClientStream::Tls(_) | ClientStream::Closed => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Polls for bytes from an idle client and appends them to `buf`. A plain stream takes a
    /// buffer (see `crate::buffers`) and reserves `chunk` bytes only once data is there (an
    /// idle client holds no buffer); a TLS stream reserves them first (rustls holds its own
    /// buffers anyway). `Ready(Ok(None))` is a spurious wake-up: nothing read, poll again.
    /// `Ready(Ok(Some(0)))` means the client closed. Holds no state between polls.
    /// `single_threaded`: the task runs on a current-thread runtime, where the I/O driver
    /// never runs while a task is being polled.
    pub(crate) fn poll_read_idle(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
        single_threaded: bool,
    ) -> Poll<io::Result<Option<usize>>> {
        match self {
            ClientStream::Plain(tcp) => {
                // `poll_read_ready` keeps the waker in the socket's registration: the waiting
                // task holds nothing for it (`readable()` would put a 200-byte waiter node
                // into every idle client's task).
                if let Err(e) = std::task::ready!(tcp.poll_read_ready(cx)) {
                    return Poll::Ready(Err(e));
                }
                crate::buffers::ensure(buf);
                buf.reserve(chunk);
                let room = buf.capacity() - buf.len();
                Poll::Ready(match tcp.try_read_buf(buf) {
                    Ok(n) => {
                        if n > 0 && n < room && single_threaded {
                            // A short read drained the socket. Tell the runtime, so the
                            // forwarding loop's next read of this client waits for the next
                            // readiness event instead of asking the kernel once more only to
                            // hear EAGAIN (one system call per transaction). Only on a
                            // current-thread runtime: no event can be processed between the
                            // read above and this, so none is lost.
                            let _ = tcp.try_io(tokio::io::Interest::READABLE, || {
                                Err::<(), _>(io::ErrorKind::WouldBlock.into())
                            });
                        }
                        Ok(Some(n))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(e),
                })
            }
            ClientStream::Tls(_) | ClientStream::Closed => {
                crate::buffers::ensure(buf);
                buf.reserve(chunk);
                tokio_util::io::poll_read_buf(Pin::new(self), cx, buf).map_ok(Some)
            }
        }
    }
}

/// Reads plaintext, first sending encrypted records earlier writes left in rustls.
fn tls_read(tls: &mut Tls, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    if let Poll::Ready(Err(e)) = Pin::new(&mut *tls).poll_flush(cx) {
        return Poll::Ready(Err(e));
    }
    Pin::new(tls).poll_read(cx, buf)
}

/// Writes plaintext once earlier records are out (that is the backpressure), then tries to
/// send the new records at once; what the socket does not take goes at the next poll.
fn tls_write(tls: &mut Tls, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
    match Pin::new(&mut *tls).poll_flush(cx) {
        Poll::Ready(Ok(())) => {}
        other => return other.map(|r| r.map(|()| 0)),
    }
    let n = match Pin::new(&mut *tls).poll_write(cx, data) {
        Poll::Ready(Ok(n)) => n,
        other => return other,
    };
    match Pin::new(&mut *tls).poll_flush(cx) {
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        _ => Poll::Ready(Ok(n)),
    }
}

fn tls_flush(tls: &mut Tls, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    Pin::new(tls).poll_flush(cx)
}

fn tls_shutdown(tls: &mut Tls, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    Pin::new(tls).poll_shutdown(cx)
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            ClientStream::Tls(tls) => tls_read(tls, cx, buf),
            ClientStream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, data),
            ClientStream::Tls(tls) => tls_write(tls, cx, data),
            ClientStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            ClientStream::Tls(tls) => tls_flush(tls, cx),
            ClientStream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            ClientStream::Tls(tls) => tls_shutdown(tls, cx),
            ClientStream::Closed => Poll::Ready(Err(closed())),
        }
    }
}
