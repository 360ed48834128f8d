//! A client socket under TLS, read and written in batches.
//!
//! BoringSSL reads a record in two calls (its 5-byte header, then the
//! rest) and writes each `SSL_write` as its own record, each reaching the
//! socket on its own: a 1 KiB hit over HTTPS cost two `recvfrom` and, on
//! HTTP/2 (head and data written apart), two `sendto`. Here reads fill a
//! small buffer in one call, and writes collect until the layer above
//! flushes (hyper and h2 flush after each batch of answers; BoringSSL
//! after each handshake flight), so each batch leaves in one `sendto`.
//!
//! The read buffer (4 KiB) lives with the connection; the write buffer
//! only while it holds bytes. That is what tokio's `BufStream` does not
//! offer: it keeps both at full size for the connection's life, 20 KiB or
//! more for every idle TLS connection, where BoringSSL itself lets its
//! buffers go when they are empty.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Read in one call at most, when the reader asks for less.
const READ_CHUNK: usize = 4 * 1024;
/// Writes held before they go out without waiting for a flush. TLS
/// records are at most 16 KiB (plus their overhead): two fit.
const WRITE_LIMIT: usize = 34 * 1024;

pub(crate) struct Batched<T> {
    io: T,
    /// Read from the socket, not yet taken: `read[taken..filled]`.
    read: Option<Box<[u8]>>,
    taken: usize,
    filled: usize,
    /// Written by the layer above, not yet sent: `write[sent..]`.
    write: Vec<u8>,
    sent: usize,
}

impl<T> Batched<T> {
    pub(crate) fn new(io: T) -> Self {
        Self {
            io,
            read: None,
            taken: 0,
            filled: 0,
            write: Vec::new(),
            sent: 0,
        }
    }
}

impl<T: AsyncWrite + Unpin> Batched<T> {
    /// Sends what is held, until all of it has gone or the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_send_held(&mut self.io, &mut self.write, &mut self.sent, cx)
    }
}

/// Writes `held[*sent..]` to `io` until all of it has gone or `io` is
/// full; then lets the buffer go, so that an idle connection keeps none.
pub(super) fn poll_send_held<T: AsyncWrite + Unpin>(
    io: &mut T,
    held: &mut Vec<u8>,
    sent: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *sent < held.len() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, &held[*sent..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *sent += n;
    }
    *held = Vec::new();
    *sent = 0;
    Poll::Ready(Ok(()))
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.taken == this.filled {
            // A large read goes straight to the caller's buffer.
            if buf.remaining() >= READ_CHUNK {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let chunk = this
                .read
                .get_or_insert_with(|| vec![0; READ_CHUNK].into_boxed_slice());
            let mut filling = ReadBuf::new(chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut filling))?;
            this.taken = 0;
            this.filled = filling.filled().len();
            if this.filled == 0 {
                // The end of the stream.
                this.read = None;
                return Poll::Ready(Ok(()));
            }
        }
        let Some(chunk) = &this.read else {
            return Poll::Ready(Ok(()));
        };
        let held = &chunk[this.taken..this.filled];
        let n = held.len().min(buf.remaining());
        buf.put_slice(&held[..n]);
        this.taken += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write.len() + data.len() > WRITE_LIMIT {
            ready!(this.poll_send(cx))?;
            if data.len() >= WRITE_LIMIT {
                return Pin::new(&mut this.io).poll_write(cx, data);
            }
        }
        this.write.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small writes reach the peer together at the flush, in order; a
    /// write larger than the batch goes out as it comes, after what was
    /// held; reads of any size see the bytes in order.
    #[tokio::test]
    async fn bytes_pass_whole_and_in_order() {
        let (near, mut far) = tokio::io::duplex(1 << 20);
        let mut batched = Batched::new(near);
        batched.write_all(b"head").await.unwrap();
        batched.write_all(b"body").await.unwrap();
        let mut got = [0u8; 8];
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), far.read(&mut got))
                .await
                .is_err(),
            "held until the flush"
        );
        batched.flush().await.unwrap();
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"headbody");

        let large: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        batched.write_all(b"first").await.unwrap();
        batched.write_all(&large).await.unwrap();
        batched.flush().await.unwrap();
        let mut got = vec![0u8; 5 + large.len()];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..5], b"first");
        assert_eq!(&got[5..], &large[..]);

        far.write_all(&large).await.unwrap();
        drop(far);
        let mut read = Vec::new();
        let mut small = [0u8; 5];
        // Small reads (as BoringSSL's record headers) then one large one.
        for _ in 0..3 {
            let n = batched.read(&mut small).await.unwrap();
            read.extend_from_slice(&small[..n]);
        }
        batched.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, large);
        assert!(batched.write.is_empty());
    }
}
