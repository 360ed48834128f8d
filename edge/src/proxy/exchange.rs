//! One request on its way through the proxy, and the request head it
//! sends to the origin.

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, request};
use outpost_cache::CacheKey;

use super::headers;
use super::router::RuleView;
use crate::fleet::shield::CDN_LOOP;
use crate::origin::body::OutgoingBody;
use crate::origin::error::{Chain, UpstreamError};
use crate::origin::pool::{Answer, Upstream};

use super::ConnInfo;

/// One request on its way through the proxy.
pub(super) struct Exchange {
    pub(super) conn: ConnInfo,
    pub(super) parts: request::Parts,
    /// The normalized path and query the origin is asked for: as matched
    /// and keyed, unless the rule rewrites it.
    pub(super) target: http::Uri,
    /// The client's normalized target, when a rewrite changed it: a member
    /// of the fleet (the shield tier) routes, rewrites and keys it again.
    pub(super) client_target: Option<http::Uri>,
    /// An embedder's hooks, told of each head sent to an origin.
    pub(super) hooks: Option<Arc<dyn crate::hooks::Hooks>>,
    /// The `Host` the client sent (with port, as written).
    pub(super) authority: String,
    pub(super) key: CacheKey,
    pub(super) rule: RuleView,
    pub(super) upstream: Arc<Upstream>,
    /// For a shielded site's key owned by another member: the members'
    /// pool, asked before `upstream`.
    pub(super) shield: Option<Shielding>,
    /// Where the origin's interim answers go: the client connection's
    /// sink (None for work done in the background).
    pub(super) interim: Option<crate::origin::interim::InterimSink>,
}

/// Where a miss goes before the origin: the key's owner in the fleet.
#[derive(Clone)]
pub(super) struct Shielding {
    pub(super) members: Arc<Upstream>,
    /// The fleet's `CDN-Loop` entry.
    pub(super) loop_value: HeaderValue,
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
            client_target: self.client_target.clone(),
            hooks: self.hooks.clone(),
            authority: self.authority.clone(),
            key: self.key.clone(),
            rule: self.rule.clone(),
            upstream: self.upstream.clone(),
            shield: self.shield.clone(),
            interim: None,
        }
    }

    /// Sends `outgoing` (a head from [`Exchange::origin_parts`]) without a
    /// body to the request's pool, on the server the key picks. A shielded
    /// request goes to the key's owner first (then the next members); when
    /// none answers, or the answer is a server error, to the origin.
    pub(super) async fn send_bodiless(
        &self,
        outgoing: request::Parts,
    ) -> Result<Answer, UpstreamError> {
        if let Some(shield) = &self.shield {
            let mut to_member = copy_head(&outgoing);
            if let Some(target) = &self.client_target {
                to_member.uri = target.clone();
            }
            // The owner routes by the client's host, whatever the origin is sent.
            if let Ok(host) = HeaderValue::from_str(&self.authority) {
                to_member.headers.insert(HOST, host);
            }
            to_member
                .headers
                .append(CDN_LOOP, shield.loop_value.clone());
            match shield
                .members
                .send(self.key.hash(), to_member, OutgoingBody::Empty)
                .await
            {
                Ok(answer) if !answer.response.status().is_server_error() => return Ok(answer),
                Ok(answer) => tracing::debug!(
                    status = %answer.response.status(),
                    "the key's owner answered with a server error; asking the origin"
                ),
                Err(e) => tracing::debug!(
                    error = %Chain(&e),
                    "no member answered for the key; asking the origin"
                ),
            }
        }
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
        if let Some(interim) = &self.interim {
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
        if let Some(hooks) = &self.hooks {
            parts.headers.remove(crate::hooks::KEY_FIELD);
            hooks.origin_request(&mut parts);
        }
        parts
    }
}

/// A second copy of a request head (with the client's interim-response
/// sink, if any), for a second destination.
fn copy_head(parts: &request::Parts) -> request::Parts {
    let mut copy = Request::new(()).into_parts().0;
    copy.method = parts.method.clone();
    copy.uri = parts.uri.clone();
    copy.version = parts.version;
    copy.headers = parts.headers.clone();
    if let Some(interim) = parts
        .extensions
        .get::<crate::origin::interim::InterimSink>()
    {
        copy.extensions.insert(interim.clone());
    }
    copy
}
