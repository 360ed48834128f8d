//! `CountedBody` adds the bytes of its data frames to a counter as they
//! pass (bytes to or from clients, for the metrics, and for one request's
//! access-log line).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// One request's own count (its access-log line).
    tally: Option<Arc<AtomicU64>>,
}

/// A request's count of the body bytes received from its client, carried
/// in its extensions to where the body is read.
#[derive(Debug, Clone, Default)]
pub struct Received(pub Arc<AtomicU64>);

impl Received {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, counter: prometheus::IntCounter) -> Self {
        Self {
            inner,
            counter,
            also: None,
            tally: None,
        }
    }

    /// The bytes count on `tally` as well (None: not).
    pub fn tally(mut self, tally: Option<Arc<AtomicU64>>) -> Self {
        self.tally = tally;
        self
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
            if let Some(tally) = &this.tally {
                tally.fetch_add(data.len() as u64, Ordering::Relaxed);
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
