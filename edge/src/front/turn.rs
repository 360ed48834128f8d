//! An HTTP/2 connection's writes, sent when its task's turn ends.
//!
//! h2 flushes the socket after every response body it writes. A client
//! that sends ten requests at once has them read in one call and, when
//! the cache answers them, all ten answered in the same poll of the
//! connection's task; they still left in ten `sendto`s, and over TLS in
//! twenty records (h2 writes a frame's head and its data apart, and
//! BoringSSL seals each write on its own), each one read and opened again
//! by the client.
//!
//! Here the connection's writes collect in one buffer, and a flush that h2
//! asks for while the task is being polled is owed rather than done: when
//! the poll ends, before the task waits, what the turn wrote leaves in one
//! write (one TLS record for each 16 KiB). Nothing waits past the end of
//! the poll that wrote it, and a flush asked for outside a turn (the
//! handshake's) is done at once.
//!
//! The connection is shared by h2 (which owns its [`Held`] side) and the
//! task's [`Turns`], which flushes it at each turn's end: both are polled
//! by the one task, so the lock around it is never contended.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::front::batched::poll_send_held;

/// Bytes held before they are written without waiting for the turn's end:
/// what one TLS record carries.
const HOLD_LIMIT: usize = 16 * 1024;

/// The connection as h2 reads and writes it.
pub(crate) struct Held<T>(Arc<Mutex<Shared<T>>>);

/// The task's side: runs the connection's work in turns.
pub(crate) struct Turns<T>(Arc<Mutex<Shared<T>>>);

struct Shared<T> {
    io: T,
    /// Written, not yet handed to `io`: `out[sent..]`.
    out: Vec<u8>,
    sent: usize,
    /// Within a turn: flushes are owed to its end.
    holding: bool,
    /// A flush is owed: asked for during the turn, or not finished at the
    /// end of the last one.
    owed: bool,
    /// How the flush at a turn's end failed, for the next write or flush.
    failed: Option<io::Error>,
}

/// `io` split into the side h2 uses and the side that ends turns.
pub(crate) fn held<T>(io: T) -> (Held<T>, Turns<T>) {
    let shared = Arc::new(Mutex::new(Shared {
        io,
        out: Vec::new(),
        sent: 0,
        holding: false,
        owed: false,
        failed: None,
    }));
    (Held(shared.clone()), Turns(shared))
}

fn lock<T>(shared: &Mutex<Shared<T>>) -> MutexGuard<'_, Shared<T>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: AsyncWrite + Unpin> Turns<T> {
    /// Polls `work` (the connection's streams and h2 itself) in turns: the
    /// flushes each poll asks for are done together when it ends.
    pub(crate) async fn run<F: Future>(&self, work: F) -> F::Output {
        let mut work = pin!(work);
        poll_fn(|cx| {
            lock(&self.0).holding = true;
            let polled = work.as_mut().poll(cx);
            let mut shared = lock(&self.0);
            shared.holding = false;
            // Also when the work has ended: what its last turn wrote
            // goes, as far as the socket takes it without waiting.
            if shared.owed {
                match shared.poll_flush_now(cx) {
                    Poll::Ready(Ok(())) => shared.owed = false,
                    Poll::Ready(Err(e)) => {
                        // h2 learns it at its next write or flush.
                        shared.owed = false;
                        shared.failed = Some(e);
                        cx.waker().wake_by_ref();
                    }
                    // The socket is full: its readiness wakes the task,
                    // and the flush stays owed to the next turn's end.
                    Poll::Pending => {}
                }
            }
            polled
        })
        .await
    }
}

impl<T: AsyncWrite + Unpin> Shared<T> {
    /// Hands what is held to `io`, until all of it has gone or `io` is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_send_held(&mut self.io, &mut self.out, &mut self.sent, cx)
    }

    fn poll_flush_now(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn hold(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        let total: usize = bufs.iter().map(|buf| buf.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            let held = self.out.len() - self.sent;
            if held + total > HOLD_LIMIT && self.io.is_write_vectored() {
                // Plain TCP takes slices: what is held and a large write
                // go together, uncopied.
                if held == 0 {
                    return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
                }
                let mut slices = Vec::with_capacity(bufs.len() + 1);
                slices.push(IoSlice::new(&self.out[self.sent..]));
                slices.extend(bufs.iter().map(|buf| IoSlice::new(buf)));
                let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                if n < held {
                    self.sent += n;
                    continue;
                }
                self.out = Vec::new();
                self.sent = 0;
                if n > held {
                    return Poll::Ready(Ok(n - held));
                }
                continue;
            }
            // Held up to a record: under TLS each write is sealed as a
            // record of its own, so they go out whole, a frame's head with
            // its data.
            let room = HOLD_LIMIT - held;
            if room == 0 {
                ready!(self.poll_send(cx))?;
                continue;
            }
            if self.out.capacity() == 0 {
                // Once per record, not grown write by write.
                self.out.reserve_exact(HOLD_LIMIT);
            }
            let mut taken = 0;
            for buf in bufs {
                let n = buf.len().min(room - taken);
                self.out.extend_from_slice(&buf[..n]);
                taken += n;
                if taken == room {
                    break;
                }
            }
            return Poll::Ready(Ok(taken));
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.0).io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).hold(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        lock(&self.0).hold(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // Slices are gathered here, whatever is below.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.0);
        if let Some(e) = shared.failed.take() {
            return Poll::Ready(Err(e));
        }
        if shared.holding {
            shared.owed = true;
            return Poll::Ready(Ok(()));
        }
        shared.poll_flush_now(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = lock(&self.0);
        if let Some(e) = shared.failed.take() {
            return Poll::Ready(Err(e));
        }
        ready!(shared.poll_send(cx))?;
        Pin::new(&mut shared.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A socket that notes each write and flush it is given, and can be
    /// made full (writes wait) or broken (writes fail).
    #[derive(Clone, Default)]
    struct Wire(Arc<Mutex<Noted>>);

    #[derive(Default)]
    struct Noted {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        full: bool,
        broken: bool,
        waiting: Option<Waker>,
    }

    impl Wire {
        fn noted(&self) -> MutexGuard<'_, Noted> {
            self.0.lock().unwrap()
        }
        fn writes(&self) -> Vec<Vec<u8>> {
            self.noted().writes.clone()
        }
        fn make_room(&self) {
            let mut noted = self.noted();
            noted.full = false;
            if let Some(waker) = noted.waiting.take() {
                waker.wake();
            }
        }
    }

    impl AsyncRead for Wire {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Wire {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let mut noted = self.noted();
            if noted.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            if noted.full {
                noted.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
            noted.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.noted().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Polls `future` once.
    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(future).poll(&mut cx)
    }

    /// Outside a turn (the handshake), a flush is done when asked for.
    #[tokio::test]
    async fn a_flush_outside_a_turn_is_done_at_once() {
        let wire = Wire::default();
        let (mut held, _turns) = super::held(wire.clone());
        held.write_all(b"SETTINGS").await.unwrap();
        assert!(wire.writes().is_empty(), "held until the flush");
        held.flush().await.unwrap();
        assert_eq!(wire.writes(), vec![b"SETTINGS".to_vec()]);
        assert_eq!(wire.noted().flushes, 1);
    }

    /// The answers written and flushed during one poll leave in one write,
    /// after the poll, and the socket is flushed once.
    #[tokio::test]
    async fn a_turns_writes_leave_together_when_it_ends() {
        let wire = Wire::default();
        let (mut held, turns) = super::held(wire.clone());
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        let probe = wire.clone();
        let mut turn = Box::pin(turns.run(async move {
            for answer in [&b"one"[..], b"two", b"three"] {
                held.write_all(answer).await.unwrap();
                held.flush().await.unwrap();
            }
            assert!(probe.writes().is_empty(), "nothing leaves during the turn");
            wait.await.unwrap();
            held.write_all(b"four").await.unwrap();
            held.flush().await.unwrap();
        }));
        assert!(poll_once(&mut turn).is_pending());
        assert_eq!(wire.writes(), vec![b"onetwothree".to_vec()]);
        assert_eq!(wire.noted().flushes, 1);

        // The last turn, which ends the work, sends what it wrote too.
        go_on.send(()).unwrap();
        assert!(poll_once(&mut turn).is_ready());
        assert_eq!(
            wire.writes(),
            vec![b"onetwothree".to_vec(), b"four".to_vec()]
        );
        assert_eq!(wire.noted().flushes, 2);
    }

    /// A socket full at a turn's end: the flush stays owed, the socket's
    /// readiness wakes the task, and the next turn's end sends it, even
    /// when h2 asks for no flush in that turn.
    #[tokio::test]
    async fn a_flush_the_socket_cannot_take_is_owed_to_the_next_turn() {
        let wire = Wire::default();
        wire.noted().full = true;
        let (mut held, turns) = super::held(wire.clone());
        let mut turn = Box::pin(turns.run(async move {
            held.write_all(b"answer").await.unwrap();
            held.flush().await.unwrap();
            std::future::pending::<()>().await;
        }));
        assert!(poll_once(&mut turn).is_pending());
        assert!(wire.writes().is_empty());
        assert!(
            wire.noted().waiting.is_some(),
            "the full socket wakes the task"
        );
        wire.make_room();
        assert!(poll_once(&mut turn).is_pending());
        assert_eq!(wire.writes(), vec![b"answer".to_vec()]);
    }

    /// A flush that fails at a turn's end fails the connection's next
    /// write, and the task is woken to make it.
    #[tokio::test]
    async fn a_failed_flush_reaches_the_next_write() {
        let wire = Wire::default();
        wire.noted().broken = true;
        let (mut held, turns) = super::held(wire.clone());
        let failed = turns
            .run(async move {
                held.write_all(b"answer").await.unwrap();
                held.flush().await.unwrap();
                // The turn ends here: its flush fails.
                tokio::task::yield_now().await;
                held.write_all(b"next").await
            })
            .await;
        assert_eq!(failed.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    /// Writes larger than a record are cut into whole records under TLS
    /// (a socket that takes no slices), in order; where the socket takes
    /// slices they go through uncopied.
    #[tokio::test]
    async fn large_writes_fill_whole_records_in_order() {
        let wire = Wire::default();
        let (mut held, _turns) = super::held(wire.clone());
        let large: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        held.write_all(b"head").await.unwrap();
        held.write_all(&large).await.unwrap();
        held.flush().await.unwrap();
        let writes = wire.writes();
        assert!(writes.iter().all(|w| w.len() <= HOLD_LIMIT));
        assert_eq!(writes[0].len(), HOLD_LIMIT, "a whole record, head and data");
        let sent: Vec<u8> = writes.concat();
        assert_eq!(&sent[..4], b"head");
        assert_eq!(&sent[4..], &large[..]);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (near, far) = tokio::join!(near, listener.accept());
        let (near, mut far) = (near.unwrap(), far.unwrap().0);
        assert!(near.is_write_vectored());
        let (mut held, _turns) = super::held(near);
        held.write_all(b"head").await.unwrap();
        held.write_all(&large).await.unwrap();
        held.flush().await.unwrap();
        let mut got = vec![0u8; 4 + large.len()];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut got)
            .await
            .unwrap();
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..], &large[..]);
    }
}
