//! Request bodies on their way to an origin: one that can be sent again
//! on failover, or one that streams once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

use crate::body::BoxError;

/// A request body for an origin, whatever it was made from.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// A request body as the pool sends it: one that can be sent again, or one
/// that streams once.
pub enum OutgoingBody {
    Empty,
    Buffered(Bytes),
    Streaming(UpstreamBody),
}

impl OutgoingBody {
    pub(crate) fn replayable(&self) -> bool {
        !matches!(self, OutgoingBody::Streaming(_))
    }

    /// The body for one attempt; a streaming body can be taken once only.
    pub(crate) fn take(&mut self) -> Option<UpstreamBody> {
        match std::mem::replace(self, OutgoingBody::Empty) {
            OutgoingBody::Empty => {
                Some(Empty::new().map_err(|never| match never {}).boxed_unsync())
            }
            OutgoingBody::Buffered(bytes) => {
                *self = OutgoingBody::Buffered(bytes.clone());
                Some(
                    Full::new(bytes)
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
            }
            OutgoingBody::Streaming(body) => Some(body),
        }
    }
}

/// Set when the client's side of a request body failed (a malformed
/// chunked body, a client gone mid-body): the exchange that broke is then
/// the client's fault, not the server's, and counts nothing against the
/// server's health. Travels in the request's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientFault(Arc<AtomicBool>);

impl ClientFault {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(crate) fn happened(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
