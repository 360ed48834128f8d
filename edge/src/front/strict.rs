//! The strict HTTP/1 connection hyper reads from: every byte the client
//! sends goes through the framing [`Checker`] first, request heads are
//! timed (slowloris), an idle keep-alive connection is closed, and the
//! origin's interim responses queued for the request being answered
//! ([`H1Queue`]) are written between hyper's messages.
//!
//! The idle clock is one timer per connection, moved only when it fires:
//! the service says when each answer begins and ends ([`Answers`]), and a
//! timer that fires while one is under way, or sooner than the idle time
//! after the last one ended, is set again for later. hyper's own head
//! timer was armed and cleared at every request, a tenth of the
//! instructions of a small hit.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::front::h1::Timeouts;
use crate::front::h1_check::Checker;
use crate::front::interim::H1Queue;
use crate::front::later;

pub(crate) struct Strict<T> {
    inner: T,
    checker: Checker,
    /// Interim responses to write, and the one being written.
    interim: H1Queue,
    sending: bytes::Bytes,
    /// Everything hyper wrote has been flushed: its output is between
    /// messages.
    flushed: bool,
    eof: bool,
    /// hyper's read, parked on the socket while bytes are held back; woken
    /// when an answer's status releases them.
    reader: Option<std::task::Waker>,
    /// How long a request head may take, from its first byte.
    head_timeout: Duration,
    /// Running while a head is awaited or arriving.
    head_deadline: Option<Pin<Box<Sleep>>>,
    /// How long the connection may wait for a request after an answer.
    idle_timeout: Duration,
    /// Fires at the earliest the connection can have been idle that long;
    /// dropped once it is a tunnel.
    idle_deadline: Option<Pin<Box<Sleep>>>,
    /// The task `idle_deadline` was last polled by.
    idle_polled_by: Option<std::task::Waker>,
    answers: Arc<Answers>,
}

/// The answers on one connection, as the service tells them: how many are
/// under way, and when the last one ended.
#[derive(Debug)]
pub(crate) struct Answers {
    /// When the connection was taken on: `ended` counts from here.
    opened: Instant,
    under_way: AtomicUsize,
    /// Nanoseconds from `opened` to the end of the last answer (zero
    /// before any ended: quiet since the connection was taken on).
    ended: AtomicU64,
}

impl Answers {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            under_way: AtomicUsize::new(0),
            ended: AtomicU64::new(0),
        }
    }

    /// An answer begins; it ends when the guard is dropped (with the
    /// answer's body, once written or abandoned).
    pub(crate) fn begin(self: &Arc<Self>) -> Answering {
        self.under_way.fetch_add(1, Ordering::AcqRel);
        Answering(self.clone())
    }

    /// Since when no answer has been under way: None while one is.
    fn quiet_since(&self) -> Option<Instant> {
        if self.under_way.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_nanos(self.ended.load(Ordering::Acquire)))
    }
}

/// One answer under way on a connection (see [`Answers::begin`]).
#[derive(Debug)]
pub(crate) struct Answering(Arc<Answers>);

impl Drop for Answering {
    fn drop(&mut self) {
        let answers = &self.0;
        let since = Instant::now().saturating_duration_since(answers.opened);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        answers.ended.store(nanos, Ordering::Release);
        answers.under_way.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T> Strict<T> {
    /// Wraps a client connection whose first bytes (`read`, as sniffed)
    /// were already taken off it. The first request head must be complete
    /// by `timeouts.first_head` (counted from the connection's start);
    /// later ones get `timeouts.head` from their first byte, and must
    /// begin within `timeouts.idle` of the last answer's end, or the
    /// connection closes.
    pub(crate) fn new(inner: T, read: &[u8], timeouts: &Timeouts) -> Self {
        let answers = Arc::new(Answers::new());
        let mut strict = Self {
            inner,
            checker: Checker::default(),
            interim: H1Queue::default(),
            sending: bytes::Bytes::new(),
            flushed: true,
            eof: false,
            reader: None,
            head_timeout: timeouts.head,
            head_deadline: Some(Box::pin(tokio::time::sleep_until(timeouts.first_head))),
            idle_timeout: timeouts.idle,
            idle_deadline: Some(Box::pin(tokio::time::sleep_until(later(
                answers.opened,
                timeouts.idle,
            )))),
            idle_polled_by: None,
            answers,
        };
        strict.checker.feed(read);
        if strict.checker.holds_bytes() || strict.checker.ready.is_empty() {
            // The first head is not through yet: its clock runs on.
            return strict;
        }
        strict.time_heads();
        strict
    }

    /// The queue of interim responses written on this connection.
    pub(crate) fn interim(&self) -> H1Queue {
        self.interim.clone()
    }

    /// Where the service says when its answers begin and end.
    pub(crate) fn answers(&self) -> Arc<Answers> {
        self.answers.clone()
    }

    /// Whether the connection has waited for a request longer than the
    /// idle time since its last answer ended. Registers for the moment it
    /// might have, when it has not.
    fn idle_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        if self.checker.is_tunnel() {
            self.idle_deadline = None;
        }
        let Some(deadline) = self.idle_deadline.as_mut() else {
            return false;
        };
        // A timer not yet due, already polled by this task, will wake it:
        // polling it again at every read would only register it again.
        let registered = self
            .idle_polled_by
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered && !deadline.is_elapsed() {
            return false;
        }
        if !registered {
            self.idle_polled_by = Some(cx.waker().clone());
        }
        while deadline.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            // A head under way has its own clock; an answer under way
            // (however slow its body) is not idleness.
            let heading = self.head_deadline.is_some()
                || self.checker.holds_bytes()
                || !self.checker.ready.is_empty();
            let due = match self.answers.quiet_since() {
                Some(since) if !heading => later(since, self.idle_timeout),
                _ => later(now, self.idle_timeout),
            };
            if due <= now {
                return true;
            }
            deadline.as_mut().reset(due);
        }
        false
    }

    /// Starts the head clock at a head's first byte, and stops it once
    /// the head is through.
    fn time_heads(&mut self) {
        if self.checker.awaits_head() && self.checker.holds_bytes() {
            if self.head_deadline.is_none() {
                self.head_deadline = Some(Box::pin(tokio::time::sleep(self.head_timeout)));
            }
        } else {
            self.head_deadline = None;
        }
    }

    /// Why the connection's last request was refused, if it was.
    #[cfg(test)]
    pub(crate) fn violation(&self) -> Option<crate::front::h1_check::Violation> {
        self.checker.violation()
    }

    /// hyper writes `data`: the start of an answer to an Upgrade request
    /// may release held-back bytes for hyper to read.
    fn answer_started(&mut self, data: &[u8]) {
        if self.checker.answer_started(data)
            && let Some(reader) = self.reader.take()
        {
            reader.wake();
        }
    }
}

impl<T: AsyncWrite + Unpin> Strict<T> {
    /// Writes the interim responses queued, where hyper's output is between
    /// messages (everything it wrote flushed), or finishes one already
    /// begun; Ready once none is left to write now.
    fn send_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Tunnels carry none (and must never get HTTP bytes of ours).
        if self.checker.is_tunnel() {
            return Poll::Ready(Ok(()));
        }
        let mut wrote = false;
        loop {
            if !self.sending.is_empty() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.sending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.sending.advance(n);
                wrote = true;
                continue;
            }
            self.interim.register(cx.waker());
            match self.flushed.then(|| self.interim.next()).flatten() {
                Some(head) => self.sending = head,
                None => break,
            }
        }
        if wrote {
            // Out now (TLS buffers otherwise), not with the final answer.
            let _ = Pin::new(&mut self.inner).poll_flush(cx)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Strict<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // hyper reads while a request is answered (to notice a client
        // going away): the moment to send its interim responses. A socket
        // too full to take them now is tried again on its next read or write.
        if let Poll::Ready(Err(e)) = this.send_interim(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            let ready = &mut this.checker.ready;
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof || this.checker.is_closed() {
                // End of stream: hyper answers what it has and closes.
                return Poll::Ready(Ok(()));
            }
            if this.checker.is_tunnel() && !this.checker.holds_bytes() {
                // An upgraded connection: nothing to check; read straight
                // into the caller's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            // Not zeroed: the read writes what it reports.
            let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut read = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    this.reader = Some(cx.waker().clone());
                    // Slowloris: a head that does not finish in time ends
                    // the connection (hyper sees the end of the stream).
                    if let Some(deadline) = this.head_deadline.as_mut()
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        tracing::debug!("a request head took too long; closing");
                        this.head_deadline = None;
                        this.checker.give_up();
                        return Poll::Ready(Ok(()));
                    }
                    if this.idle_too_long(cx) {
                        tracing::debug!("an idle keep-alive connection; closing");
                        this.idle_deadline = None;
                        this.checker.give_up();
                        return Poll::Ready(Ok(()));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        this.eof = true;
                        this.checker.end();
                        continue;
                    }
                    this.checker.feed(read.filled());
                    this.time_heads();
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Strict<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.send_interim(cx))?;
        this.answer_started(data);
        this.flushed = false;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.send_interim(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.answer_started(first);
            this.flushed = false;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // An interim response begun is finished: never half a head.
        while !this.sending.is_empty() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &this.sending))?;
            if n == 0 {
                break;
            }
            this.sending.advance(n);
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::front::h1_check::Violation;

    const BAD_REQUEST: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";

    fn timeouts() -> Timeouts {
        Timeouts {
            first_head: Instant::now() + Duration::from_secs(30),
            head: Duration::from_secs(30),
            idle: Duration::from_secs(30),
        }
    }

    fn strict<T>(inner: T) -> Strict<T> {
        Strict::new(inner, b"", &timeouts())
    }

    /// After an Upgrade request, the bytes wait for the answer: a 101 makes
    /// them tunnel data, anything else makes them the next request.
    #[tokio::test]
    async fn upgrades_wait_for_the_answer() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = strict(server);
        client
            .write_all(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\x81\x05hello")
            .await
            .unwrap();
        let mut head = vec![0u8; 1024];
        let n = strict.read(&mut head).await.unwrap();
        assert!(head[..n].ends_with(b"\r\n\r\n"));
        strict
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .await
            .unwrap();
        let mut frame = [0u8; 7];
        strict.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x81\x05hello");

        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = self::strict(server);
        client
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET / HTTP/1.1\n\n",
            )
            .await
            .unwrap();
        let n = strict.read(&mut head).await.unwrap();
        assert!(head[..n].ends_with(b"\r\n\r\n"));
        strict
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        let n = strict.read(&mut head).await.unwrap();
        assert_eq!(&head[..n], BAD_REQUEST);
        assert_eq!(strict.violation(), Some(Violation::BareLineFeed));
    }

    /// The bytes sniffed off the connection before it was wrapped are
    /// checked like any others.
    #[tokio::test]
    async fn sniffed_bytes_are_checked_first() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut strict = Strict::new(server, b"GET / HTTP/1.1\r\nHo", &timeouts());
        client.write_all(b"st: a\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut out = Vec::new();
        strict.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(strict.violation(), None);
    }

    /// The idle clock runs from the end of the last answer, however long
    /// that answer took: a slow answer is not idleness, and a connection
    /// quiet for the idle time after one is closed then, not sooner.
    #[tokio::test(start_paused = true)]
    async fn idle_time_counts_from_the_last_answers_end() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let idle = Duration::from_secs(5);
        let mut strict = Strict::new(
            server,
            b"",
            &Timeouts {
                first_head: Instant::now() + Duration::from_secs(1),
                head: Duration::from_secs(1),
                idle,
            },
        );
        let answers = strict.answers();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut head = vec![0u8; 1024];
        let n = strict.read(&mut head).await.unwrap();
        assert!(head[..n].ends_with(b"\r\n\r\n"));
        let answering = answers.begin();
        let reading = tokio::spawn(async move {
            let mut rest = Vec::new();
            strict.read_to_end(&mut rest).await.map(|_| rest)
        });
        // Three idle times into a slow answer: still open.
        tokio::time::sleep(idle * 3).await;
        assert!(!reading.is_finished());
        let ended = Instant::now();
        drop(answering);
        let rest = reading.await.unwrap().unwrap();
        assert!(rest.is_empty());
        assert_eq!(ended.elapsed(), idle);
    }
}
