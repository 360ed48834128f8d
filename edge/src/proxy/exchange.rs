//! One request on its way through the proxy, and the request head it
//! sends to the origin.

use std::sync::Arc;

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, request};
use outpost_cache::CacheKey;

use super::headers;
use super::router::RuleView;
use crate::origin::body::OutgoingBody;
use crate::origin::error::UpstreamError;
use crate::origin::pool::{Answer, Upstream};

use super::ConnInfo;

/// One request on its way through the proxy.
pub(super) struct Exchange {
    pub(super) conn: ConnInfo,
    pub(super) parts: request::Parts,
    /// The normalized path and query, as matched, keyed and forwarded.
    pub(super) target: http::Uri,
    /// The `Host` the client sent (with port, as written).
    pub(super) authority: String,
    pub(super) key: CacheKey,
    pub(super) rule: RuleView,
    pub(super) upstream: Arc<Upstream>,
}

impl Exchange {
    /// A copy that can outlive the client's request, for work done in the
    /// background on its behalf (the body is never needed: GET and HEAD).
    pub(super) fn detached(&self) -> Exchange {
        let mut parts = Request::new(()).into_parts().0;
        parts.method = self.parts.method.clone();
        parts.uri = self.parts.uri.clone();
        parts.version = self.parts.version;
        parts.headers = self.parts.headers.clone();
        Exchange {
            conn: self.conn,
            parts,
            target: self.target.clone(),
            authority: self.authority.clone(),
            key: self.key.clone(),
            rule: self.rule.clone(),
            upstream: self.upstream.clone(),
        }
    }

    /// Sends `outgoing` (a head from [`Exchange::origin_parts`]) without a
    /// body to the request's pool, on the server the key picks.
    pub(super) async fn send_bodiless(
        &self,
        outgoing: request::Parts,
    ) -> Result<Answer, UpstreamError> {
        self.upstream
            .send(self.key.hash(), outgoing, OutgoingBody::Empty)
            .await
    }

    /// Request head for the origin with `headers` prepared for forwarding.
    pub(super) fn origin_parts(&self, headers: &HeaderMap) -> request::Parts {
        let mut parts = Request::new(()).into_parts().0;
        parts.method = self.parts.method.clone();
        parts.uri = self.target.clone();
        parts.headers = headers.clone();
        if matches!(parts.method, Method::GET | Method::HEAD) {
            // The cache sends these without a body (whatever the client
            // sent is dropped), so no length may promise one.
            parts.headers.remove(CONTENT_LENGTH);
        }
        // The client's connection, for the origin's interim responses.
        if let Some(interim) = self
            .parts
            .extensions
            .get::<crate::origin::interim::InterimSink>()
        {
            parts.extensions.insert(interim.clone());
        }
        let host = self.upstream.host_header(&self.authority).to_owned();
        headers::to_origin(
            &mut parts.headers,
            self.conn.remote.ip(),
            self.conn.tls,
            &host,
            self.parts.version,
        );
        parts
    }
}
