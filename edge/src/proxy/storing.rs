//! `StoringBody` streams a body to the client while a copy fills the cache,
//! and stores the copy only when the body ended cleanly and stayed within
//! the size limit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use outpost_cache::{Cache, FillWriter, Storing};

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
    /// `storing` is what [`Cache::admit`] began for this body.
    pub fn new(inner: B, cache: Arc<Cache>, storing: Storing) -> Self {
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
