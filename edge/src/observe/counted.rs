//! `CountedBody` adds the bytes of its data frames to a counter as they
//! pass (bytes to or from clients, for the metrics).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// A body that adds the bytes of its data frames to a counter as they
/// pass (bytes to or from clients, for the metrics).
pub struct CountedBody<B> {
    inner: B,
    counter: prometheus::IntCounter,
    /// A second counter the same bytes go to (by where they came from).
    also: Option<prometheus::IntCounter>,
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, counter: prometheus::IntCounter) -> Self {
        Self {
            inner,
            counter,
            also: None,
        }
    }

    /// The bytes count on `counter` as well.
    pub fn also(mut self, counter: prometheus::IntCounter) -> Self {
        self.also = Some(counter);
        self
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
            if let Some(also) = &this.also {
                also.inc_by(data.len() as u64);
            }
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
