//! Requests the cache takes no part in (methods other than GET and HEAD,
//! `cache: bypass` rules): forwarded body and all, with the invalidations
//! a successful unsafe request makes (RFC 9111 §4.4) and POST responses
//! that may answer later GETs (RFC 9110 §9.3.3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::client::ClientBody;
use crate::observe::counted::Received;
use bytes::Bytes;
use http::header::{IF_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use outpost_cache::{CacheKey, normalize_host, normalize_path};

use super::router::host_name;
use crate::observe::counted::CountedBody;
use crate::origin::body::{ClientFault, OutgoingBody};

use super::exchange::Exchange;
use super::respond::{plain, relay, upstream_error};
use super::status::CacheStatus;
use super::{BoxError, Proxy, ProxyBody, Reply};

impl Proxy {
    /// Forwards a request the cache takes no part in, body and all.
    pub(super) async fn pass(
        &self,
        request: Exchange,
        body: ClientBody,
        status: CacheStatus,
    ) -> Reply {
        let unsafe_method = !matches!(
            request.parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        let limit = request.rule.max_request_body;
        // RFC 9110 §15.5.14: a body over the rule's limit is 413; a declared
        // length says so before anything goes to the origin.
        if let Some(limit) = limit
            && body.size_hint().lower() > limit
        {
            return (None, too_large(limit));
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let fault = ClientFault::default();
        let mut outgoing = request.origin_parts(&request.parts.headers);
        outgoing.extensions.insert(fault.clone());
        let body = outgoing_body(
            CountedBody::new(body, self.metrics.client_bytes_in.clone()).tally(
                request
                    .parts
                    .extensions
                    .get::<Received>()
                    .map(|r| r.0.clone()),
            ),
            limit,
            &exceeded,
            &fault,
        )
        .await;
        if exceeded.load(Ordering::SeqCst) {
            return (None, too_large(limit.unwrap_or_default()));
        }
        let request_time = self.cache.now();
        let sent = request
            .upstream
            .send(request.key.hash(), outgoing, body)
            .await;
        // A streamed body that ran over the limit broke the origin request.
        if sent.is_err() && exceeded.load(Ordering::SeqCst) {
            return (None, too_large(limit.unwrap_or_default()));
        }
        match sent {
            Ok(answer) => {
                // RFC 9111 §4.4: a successful unsafe request invalidates the stored response.
                if unsafe_method
                    && (answer.response.status().is_success()
                        || answer.response.status().is_redirection())
                {
                    self.invalidate(&request, answer.response.headers());
                }
                if self.reusable_post(&request, answer.response.headers()) {
                    // Stored as the answer to a GET of the same target.
                    let mut view = request.detached();
                    view.parts.method = Method::GET;
                    view.parts.headers.remove(RANGE);
                    view.parts.headers.remove(IF_RANGE);
                    if let Some(compression) = &self.compression
                        && view.rule.compress
                    {
                        compression.negotiate(&mut view.parts.headers);
                    }
                    return self
                        .store_and_relay(view, answer, request_time, status, None)
                        .await;
                }
                (Some(status), relay(answer))
            }
            Err(e) => upstream_error(&e),
        }
    }

    /// RFC 9111 §4.4: after a successful unsafe request, the stored
    /// responses for its target and for the same-origin URIs in its
    /// `Location` and `Content-Location` are no longer used.
    pub(super) fn invalidate(&self, request: &Exchange, response: &HeaderMap) {
        self.cache.invalidate(&request.key);
        for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
            if let Some(key) = response
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|target| self.same_origin_key(request, target))
            {
                self.cache.invalidate(&key);
            }
        }
    }

    /// The cache key of a URI reference (`Location`, `Content-Location`) that
    /// names a resource of the request's own origin; None for another
    /// origin's, or one that does not parse.
    pub(super) fn same_origin_key(&self, request: &Exchange, reference: &str) -> Option<CacheKey> {
        let scheme = if request.conn.tls { "https" } else { "http" };
        let uri = reference.parse::<http::Uri>().ok()?;
        let authority = match (uri.scheme_str(), uri.authority()) {
            (None, None) => request.authority.clone(),
            (Some(s), Some(a))
                if s.eq_ignore_ascii_case(scheme)
                    && normalize_host(scheme, a.as_str())
                        == normalize_host(scheme, &request.authority) =>
            {
                a.as_str().to_owned()
            }
            _ => return None,
        };
        let path = normalize_path(uri.path()).ok()?;
        let site = host_name(&request.authority).and_then(|h| self.router.site(&h))?;
        let rule = site.rule_for(&path, request.conn.tls);
        let path = rule.key_path(&path).ok()?;
        let target = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        Some(CacheKey::new(scheme, &authority, &target, &rule.query))
    }

    /// RFC 9110 §9.3.3: a POST response with explicit freshness and a
    /// `Content-Location` naming the POST's own target may answer later
    /// GETs of it.
    pub(super) fn reusable_post(&self, request: &Exchange, response: &HeaderMap) -> bool {
        request.parts.method == Method::POST
            && !request.rule.bypass
            && outpost_cache::has_explicit_freshness(response)
            && response
                .get(http::header::CONTENT_LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|target| self.same_origin_key(request, target))
                .is_some_and(|key| key.text() == request.key.text())
    }
}

/// Request bodies up to this size are read whole before they are sent, so
/// that a failover can send them again.
pub(super) const REPLAYABLE_BODY: u64 = 64 * 1024;

/// The request body as the pool sends it; a body that runs over `limit`
/// ends in an error there and sets `exceeded`.
pub(super) async fn outgoing_body(
    body: CountedBody<ClientBody>,
    limit: Option<u64>,
    exceeded: &Arc<AtomicBool>,
    fault: &ClientFault,
) -> OutgoingBody {
    if body.is_end_stream() {
        return OutgoingBody::Empty;
    }
    // Whatever fails on the client's side is the client's fault: a body
    // that breaks, or one over the limit.
    let broke = fault.clone();
    let body = body.map_err(move |e| {
        broke.set();
        e
    });
    let body = match limit {
        Some(limit) => {
            let exceeded = exceeded.clone();
            let fault = fault.clone();
            let limited =
                http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
            limited
                .map_err(move |e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        exceeded.store(true, Ordering::SeqCst);
                        fault.set();
                    }
                    e
                })
                .boxed_unsync()
        }
        None => body.map_err(BoxError::from).boxed_unsync(),
    };
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= REPLAYABLE_BODY)
    {
        return match body.collect().await {
            Ok(collected) => OutgoingBody::Buffered(collected.to_bytes()),
            // The client broke off: send what fails the same way at the origin.
            Err(e) => OutgoingBody::Streaming(
                http_body_util::StreamBody::new(futures_util::stream::once(async move {
                    Err::<http_body::Frame<Bytes>, BoxError>(e)
                }))
                .boxed_unsync(),
            ),
        };
    }
    OutgoingBody::Streaming(body)
}

pub(super) fn too_large(limit: u64) -> Response<ProxyBody> {
    let mut res = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is over {limit} bytes\n"),
    );
    // The rest of the body is not read: the connection cannot go on.
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}
