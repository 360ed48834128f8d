//! Where an origin's interim (1xx) responses go: the client connection
//! the request came on gives each request a sink (beside the request, to
//! `Proxy::handle`), the proxy hands it on in the origin request's
//! extensions, and the HTTP/1.1 and HTTP/2 clients pass every interim
//! head they receive into it (RFC 9110 §15.2: a proxy forwards the 1xx
//! responses it did not ask for). What the sink forwards, and how, is the
//! client connection's business.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

/// What takes one interim head.
type Send1xx = dyn Fn(StatusCode, &HeaderMap) + Send + Sync;

/// A request's sink for interim responses; cheap to clone.
#[derive(Clone)]
pub(crate) struct InterimSink(Arc<Send1xx>);

impl InterimSink {
    pub(crate) fn new(send: impl Fn(StatusCode, &HeaderMap) + Send + Sync + 'static) -> Self {
        Self(Arc::new(send))
    }

    /// Passes one interim head on towards the client.
    pub(crate) fn send(&self, status: StatusCode, headers: &HeaderMap) {
        (self.0)(status, headers);
    }
}
