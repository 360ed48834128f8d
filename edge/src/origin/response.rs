//! Response bodies from origins: `OriginBody` enforces the pool's idle and
//! total timeouts and holds the server's connection slot (`Lease`) until
//! the body is done, whichever client (HTTP/1.1 or HTTP/2) read it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::body::BoxError;
use crate::origin::h2::H2Body;
use http_body_util::Either;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the origin sent nothing for {0:?} in the middle of a body")]
    Idle(Duration),
    #[error("the origin exchange went past its total timeout")]
    Total,
}

/// A body as an origin server's connection gives it: from hyper's client
/// (HTTP/1.1, `Left`), or from a stream of our HTTP/2 connection (`Right`).
pub type OriginStream = Either<Incoming, H2Body>;

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
                let next = crate::front::later(tokio::time::Instant::now(), this.idle_timeout);
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

/// Held while a response body streams: frees the connection slot and the
/// in-flight count when dropped.
pub struct Lease {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// Idle and total limits for the body.
    pub idle_timeout: Duration,
    /// Counts the body's bytes.
    pub bytes: prometheus::IntCounter,
    pub deadline: Option<Instant>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
