//! A lingering close: when the bridge ends a connection, it stops sending (FIN) and then reads
//! and discards whatever the client still sends, for at most [`LINGER`], before it closes.
//!
//! Why: the bridge refuses some requests before reading their bodies (a deploy with every upload
//! slot taken, a wrong token). Closing a socket that still has unread bytes makes the kernel
//! send a reset, and a reset makes the client's kernel discard the answer it had not read yet:
//! a client uploading a large component at once (most HTTP libraries do not wait for
//! `100 Continue`) would see "broken pipe" instead of the JSON refusal. Web servers have done
//! the same for decades (Apache's lingering close, nginx's `lingering_close`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The longest a closing connection keeps reading what the client still sends. At loopback or
/// LAN speeds a refused 64 MiB upload arrives well within it; a client that neither sends nor
/// closes holds the connection no longer than this.
pub const LINGER: Duration = Duration::from_secs(5);

/// How much a lingering connection reads per poll (on the stack: nothing is kept per connection).
const DISCARD_CHUNK: usize = 8 * 1024;

/// A stream whose shutdown lingers (see the module's documentation).
pub struct LingeringClose<S> {
    inner: S,
    linger: Duration,
    closing: Closing,
}

enum Closing {
    /// Not shutting down yet.
    Open,
    /// The write side is shut; reading and discarding until the client closes or the deadline.
    Lingering(Pin<Box<Sleep>>),
    /// Done lingering.
    Closed,
}

impl<S> LingeringClose<S> {
    /// Wraps `inner`; its shutdown lingers for at most `linger` ([`LINGER`] in the server).
    pub fn new(inner: S, linger: Duration) -> LingeringClose<S> {
        LingeringClose {
            inner,
            linger,
            closing: Closing::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> LingeringClose<S> {
    /// Reads and discards until the client closes, the read fails or the deadline passes.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Closing::Lingering(deadline) = &mut self.closing else {
            return Poll::Ready(());
        };
        let mut scratch = [0u8; DISCARD_CHUNK];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => {
                    ready!(deadline.as_mut().poll(cx));
                    return Poll::Ready(());
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.closing {
                Closing::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.closing = Closing::Lingering(Box::pin(tokio::time::sleep(this.linger)));
                }
                Closing::Lingering(_) => {
                    ready!(this.poll_discard(cx));
                    this.closing = Closing::Closed;
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// The server answers before reading a large body and shuts down: the client, still
    /// sending, finishes sending and reads the whole answer (a plain close resets it).
    #[tokio::test]
    async fn a_client_still_sending_reads_the_answer_given_before_the_close() {
        let (client, server) = connected_pair().await;
        let (mut client_read, mut client_write) = client.into_split();
        let sending = tokio::spawn(async move {
            let body = vec![7u8; 64 << 20];
            client_write.write_all(&body).await
        });
        let mut server = LingeringClose::new(server, LINGER);
        server.write_all(b"refused").await.unwrap();
        let closing = tokio::spawn(async move { server.shutdown().await });
        sending.await.unwrap().expect("the client sends its whole body");
        let mut answer = Vec::new();
        client_read.read_to_end(&mut answer).await.expect("no reset");
        assert_eq!(answer, b"refused");
        closing.await.unwrap().unwrap();
    }

    /// A client that neither sends nor closes holds a closing connection until the deadline,
    /// no longer (the shutdown ends without the client doing anything).
    #[tokio::test]
    async fn a_silent_client_is_let_go_at_the_deadline() {
        let (_client, server) = connected_pair().await;
        let linger = Duration::from_millis(200);
        let mut server = LingeringClose::new(server, linger);
        let started = std::time::Instant::now();
        server.shutdown().await.unwrap();
        assert!(started.elapsed() >= linger, "{:?}", started.elapsed());
    }

    /// A client that closes ends the linger before its deadline.
    #[tokio::test]
    async fn a_client_that_closes_ends_the_linger_at_once() {
        let (client, server) = connected_pair().await;
        drop(client);
        let mut server = LingeringClose::new(server, Duration::from_secs(600));
        tokio::time::timeout(Duration::from_secs(60), server.shutdown())
            .await
            .expect("the linger ends when the client closes")
            .unwrap();
    }
}
