//! Response bodies from origins: `OriginBody` enforces the pool's idle and
//! total timeouts and holds the server's connection slot until the body is
//! done; `StoringBody` streams a body to the client while a copy fills the
//! cache, and stores the copy only when the body ended cleanly and stayed
//! within the size limit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use outpost_cache::{Cache, FillWriter, PendingEntry, Storing};
use tokio::time::Sleep;

use crate::origin::pool::Lease;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the origin sent nothing for {0:?} in the middle of a body")]
    Idle(Duration),
    #[error("the origin exchange went past its total timeout")]
    Total,
}

/// A body as an origin server's connection gives it: from hyper's client
/// (HTTP/1.1), or from a stream of our HTTP/2 connection (`mux.rs`).
pub enum OriginStream {
    Http1(Incoming),
    Http2(crate::origin::h2::H2Body),
}

impl Body for OriginStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            OriginStream::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            OriginStream::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OriginStream::Http1(body) => body.is_end_stream(),
            OriginStream::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OriginStream::Http1(body) => body.size_hint(),
            OriginStream::Http2(body) => body.size_hint(),
        }
    }
}

/// A body as it comes from an origin server.
pub struct OriginBody {
    inner: OriginStream,
    bytes: prometheus::IntCounter,
    lease: Option<Lease>,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl OriginBody {
    pub fn new(inner: OriginStream, lease: Lease) -> Self {
        let idle_timeout = lease.idle_timeout;
        let deadline = lease
            .deadline
            .map(|d| Box::pin(tokio::time::sleep_until(d.into())));
        Self {
            inner,
            bytes: lease.bytes.clone(),
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            deadline,
            lease: Some(lease),
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.lease = None;
            return Poll::Ready(Some(Err(BodyError::Total.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes.inc_by(data.len() as u64);
                }
                let next = tokio::time::Instant::now() + this.idle_timeout;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.lease = None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.lease = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                this.lease = None;
                Poll::Ready(Some(Err(BodyError::Idle(this.idle_timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Streams `inner` and stores it as it passes: in memory when it fits
/// there, and on disk chunk by chunk.
pub struct StoringBody<B> {
    inner: B,
    /// Dropped when the body grows past the limit or fails: nothing is stored.
    store: Option<(Arc<Cache>, Storing)>,
    /// The disk catching up: the body is read further once it has.
    backlog: Option<futures_util::future::BoxFuture<'static, ()>>,
    /// Requests waiting for this body to be stored, told once it is (or,
    /// when it is dropped unfinished, that it failed).
    waiting: Option<FillWriter>,
}

impl<B: Body<Data = Bytes> + Unpin> StoringBody<B> {
    pub fn new(inner: B, cache: Arc<Cache>, pending: PendingEntry, limit: usize) -> Self {
        let storing = cache.storing(pending, inner.size_hint().exact(), limit as u64);
        Self {
            inner,
            store: Some((cache, storing)),
            backlog: None,
            waiting: None,
        }
    }

    /// Tells the requests collapsed on `writer` when the body is stored.
    pub fn announcing(mut self, writer: FillWriter) -> Self {
        self.waiting = Some(writer);
        self
    }

    /// Stores the body: the origin's body has ended cleanly.
    fn finish(&mut self) {
        if let Some((cache, storing)) = self.store.take() {
            cache.finish(storing);
            if let Some(waiting) = self.waiting.take() {
                waiting.finish();
            }
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for StoringBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(backlog) = &mut this.backlog {
            ready!(backlog.as_mut().poll(cx));
            this.backlog = None;
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(data), Some((_, storing))) = (frame.data_ref(), &mut this.store) {
                    if storing.push(data) {
                        this.backlog = storing.backlog();
                    } else {
                        this.store = None;
                        this.waiting = None;
                    }
                }
                // With a known length, the server may stop polling as soon as
                // the last byte is out, so store as soon as the body is whole.
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                // A broken body is never stored.
                this.store = None;
                this.waiting = None;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Until the body is stored, ask to be polled once more so the end is seen.
        self.store.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that adds the bytes of its data frames to a counter as they
/// pass (bytes to or from clients, for the metrics).
pub struct CountedBody<B> {
    inner: B,
    counter: prometheus::IntCounter,
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, counter: prometheus::IntCounter) -> Self {
        Self { inner, counter }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
        {
            this.counter.inc_by(data.len() as u64);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
