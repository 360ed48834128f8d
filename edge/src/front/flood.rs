//! The guard in front of the HTTP/2 server: it follows the frames a client
//! sends on their way to h2 and cuts off control frame floods.
//!
//! Every PING and SETTINGS frame that asks for an answer costs the server
//! one. h2 answers them one at a time, so memory is safe, but the work is
//! not: past a budget (1000 at once, 100 a second after that) the guard
//! passes nothing more, from the start of the frame over the budget, and
//! tells the connection ([`Guard::flooded`]), which ends it with GOAWAY
//! ENHANCE_YOUR_CALM. The other floods (resets, CONTINUATION, empty DATA)
//! are h2's own limits, set in [`crate::front::h2`]. The guard also notes
//! that the client was heard from, for the keep-alive PINGs.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::front::sniff::PREFACE;

/// PING and SETTINGS frames a client may send at once, and per second
/// after that.
const CONTROL_BURST: f64 = 1000.0;
const CONTROL_PER_SECOND: f64 = 100.0;

const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;

/// What the guard tells its connection.
#[derive(Clone, Default)]
pub(crate) struct Guard(Arc<Signals>);

#[derive(Default)]
struct Signals {
    flooded: Notify,
    heard: AtomicBool,
}

impl Guard {
    /// Resolves once the client has gone over the control frame budget.
    pub(crate) async fn flooded(&self) {
        self.0.flooded.notified().await;
    }

    /// Whether the client sent anything since the last time this was asked.
    pub(crate) fn heard(&self) -> bool {
        self.0.heard.swap(false, Ordering::AcqRel)
    }
}

/// A client connection as h2 reads it, with the bytes already read off it
/// (`read`, as sniffed) first.
pub(crate) struct Guarded<T> {
    inner: T,
    read: bytes::BytesMut,
    scan: FrameScan,
    guard: Guard,
    /// Over the budget: nothing more passes.
    cut: bool,
}

impl<T> Guarded<T> {
    pub(crate) fn new(inner: T, read: bytes::BytesMut) -> (Self, Guard) {
        let guard = Guard::default();
        let guarded = Self {
            inner,
            read,
            scan: FrameScan::default(),
            guard: guard.clone(),
            cut: false,
        };
        (guarded, guard)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.cut {
            // The connection ends with GOAWAY; h2 has no more to read.
            return Poll::Pending;
        }
        let start = buf.filled().len();
        if this.read.is_empty() {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        } else {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read.split_to(n));
        }
        let fresh = &buf.filled()[start..];
        if fresh.is_empty() {
            return Poll::Ready(Ok(()));
        }
        this.guard.0.heard.store(true, Ordering::Release);
        if let Some(passed) = this.scan.feed(fresh) {
            tracing::debug!("HTTP/2 control frame flood; closing the connection");
            this.cut = true;
            buf.set_filled(start + passed);
            this.guard.0.flooded.notify_one();
            if passed == 0 {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Follows the client's frames: the preface, then each frame's 9-byte
/// header (RFC 9113 §4.1), gathered across reads, and its payload skipped.
struct FrameScan {
    header: [u8; 9],
    have: usize,
    /// Bytes to pass before the next frame header: the preface first, then
    /// each payload.
    skip: u64,
    tokens: f64,
    refilled: std::time::Instant,
}

impl Default for FrameScan {
    fn default() -> Self {
        Self {
            header: [0; 9],
            have: 0,
            skip: PREFACE.len() as u64,
            tokens: CONTROL_BURST,
            refilled: std::time::Instant::now(),
        }
    }
}

impl FrameScan {
    /// Follows `bytes`; Some(n) when the frame beginning at `n` goes over
    /// the control budget (everything before it may pass).
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < bytes.len() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - at);
                at += n;
                self.skip -= n as u64;
                continue;
            }
            let frame_start = at.saturating_sub(self.have);
            let n = (9 - self.have).min(bytes.len() - at);
            self.header[self.have..self.have + n].copy_from_slice(&bytes[at..at + n]);
            self.have += n;
            at += n;
            if self.have < 9 {
                continue;
            }
            self.have = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            let asks_answer = matches!(kind, FRAME_SETTINGS | FRAME_PING) && flags & FLAG_ACK == 0;
            if asks_answer && !self.take_token() {
                return Some(frame_start);
            }
            self.skip = u64::from(l0) << 16 | u64::from(l1) << 8 | u64::from(l2);
        }
        None
    }

    fn take_token(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * CONTROL_PER_SECOND).min(CONTROL_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn ping(flags: u8) -> Vec<u8> {
        let mut frame = vec![0, 0, 8, FRAME_PING, flags, 0, 0, 0, 0];
        frame.extend_from_slice(&[1; 8]);
        frame
    }

    /// What h2 would read of `input` (the first `sniffed` bytes already
    /// taken off the connection), and whether the guard called a flood.
    async fn through(input: &[u8], sniffed: usize) -> (Vec<u8>, bool) {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&input[sniffed..]).await.unwrap();
        client.shutdown().await.unwrap();
        let (mut guarded, guard) = Guarded::new(server, input[..sniffed].into());
        let mut out = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            guarded.read_to_end(&mut out),
        )
        .await;
        let flooded = tokio::time::timeout(std::time::Duration::from_millis(10), guard.flooded())
            .await
            .is_ok();
        // A cut connection never ends by itself: the GOAWAY ends it.
        assert_eq!(read.is_err(), flooded);
        (out, flooded)
    }

    /// PING and SETTINGS past the budget are cut at the frame boundary;
    /// ACKs and other frames are not counted.
    #[tokio::test]
    async fn a_control_frame_flood_is_cut_off() {
        let mut calm = PREFACE.to_vec();
        for _ in 0..500 {
            calm.extend_from_slice(&ping(0));
            calm.extend_from_slice(&ping(FLAG_ACK));
        }
        assert_eq!(through(&calm, PREFACE.len()).await, (calm.clone(), false));
        assert_eq!(through(&calm, 0).await, (calm, false));

        let mut flood = PREFACE.to_vec();
        for _ in 0..5_000 {
            flood.extend_from_slice(&ping(0));
        }
        let (out, flooded) = through(&flood, PREFACE.len()).await;
        assert!(flooded);
        let cut = PREFACE.len() + 1000 * 17;
        assert_eq!(out, flood[..cut], "the budget passes whole frames, no more");
    }

    /// Frame headers split across reads are followed all the same: the cut
    /// falls at the flood frame, or at the start of the read that finished
    /// its header.
    #[test]
    fn headers_are_gathered_across_reads() {
        let mut scan = FrameScan::default();
        let mut input = PREFACE.to_vec();
        for _ in 0..1001 {
            input.extend_from_slice(&ping(0));
        }
        let mut at = 0;
        let mut cut = None;
        for piece in input.chunks(5) {
            if let Some(n) = scan.feed(piece) {
                cut = Some(at + n);
                break;
            }
            at += piece.len();
        }
        // The frame over the budget begins here; a read that ends inside
        // its header has passed those bytes already.
        let start = PREFACE.len() + 1000 * 17;
        let cut = cut.expect("a cut");
        assert!((start..start + 9).contains(&cut), "{cut}");
    }
}
