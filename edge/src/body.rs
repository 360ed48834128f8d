//! Response bodies: a body from the origin streams to the client while a
//! copy fills the cache; the copy is stored only when the body ended cleanly
//! and stayed within the size limit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use outpost_cache::{Cache, PendingEntry};

pub struct StoringBody {
    inner: Incoming,
    copy: BytesMut,
    limit: usize,
    /// Dropped when the body grows past `limit` or fails.
    store: Option<(Arc<Cache>, PendingEntry)>,
}

impl StoringBody {
    pub fn new(inner: Incoming, cache: Arc<Cache>, pending: PendingEntry, limit: usize) -> Self {
        let expected = inner
            .size_hint()
            .exact()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        Self {
            inner,
            copy: BytesMut::with_capacity(expected.min(limit)),
            limit,
            store: Some((cache, pending)),
        }
    }
}

impl StoringBody {
    /// Stores the copy: the origin's body has ended cleanly.
    fn finish(&mut self) {
        if let Some((cache, pending)) = self.store.take() {
            cache.insert(pending, std::mem::take(&mut self.copy).freeze());
        }
    }
}

impl Body for StoringBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(data), Some(_)) = (frame.data_ref(), &this.store) {
                    if this.copy.len() + data.len() > this.limit {
                        this.store = None;
                        this.copy = BytesMut::new();
                    } else {
                        this.copy.extend_from_slice(data);
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
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Until the copy is stored, ask to be polled once more so the end is seen.
        self.store.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
