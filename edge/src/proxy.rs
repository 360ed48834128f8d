//! The request path: route by host, build the key, answer from the cache or
//! fetch from the origin pool, store what may be stored, and mark every
//! answer with `Cache-Status` (RFC 9211).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HOST, IF_MATCH, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, request};
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use outpost_cache::{
    Cache, CacheKey, Coalescer, Entry, Leader, Lookup, Role, STREAM_SHARE_MAX, SharedBody,
    SharedHead, normalize_host, normalize_path,
};
use outpost_purge_api::Metrics;

use crate::access_log::{self, AccessLog, LoggedBody};
use crate::body::{CountedBody, OriginBody, StoringBody};
use crate::headers::{self, PSEUDONYM};
use crate::range::{self, Ranges};
use crate::router::{Router, RuleView, host_name};
use crate::upstream::{Answer, OutgoingBody, Upstream, UpstreamError};
use hyper_util::rt::TokioIo;

pub use crate::body::BoxError;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// How long a key whose answer could not be shared is fetched without
/// coalescing (hit-for-pass).
const HIT_FOR_PASS: std::time::Duration = std::time::Duration::from_secs(30);

/// Everything a request needs, built from one config.
pub struct Proxy {
    pub router: Arc<Router>,
    pub cache: Arc<Cache>,
    pub upstreams: HashMap<String, Arc<Upstream>>,
    pub metrics: Arc<Metrics>,
    /// Largest body the cache keeps.
    pub max_object_size: usize,
    /// Misses in progress that others may join.
    pub coalescer: Arc<Coalescer>,
    /// Response headers clients never see (the purge tags, by default).
    pub hidden_headers: Vec<HeaderName>,
    /// One JSON line per request, when configured.
    pub access_log: Option<Arc<AccessLog>>,
    /// Longest request target accepted (414 above it).
    pub max_uri_length: usize,
    /// Each listener's TLS certificates (None for plain ones): a request
    /// must name a host its connection's certificate serves.
    pub tls: Vec<Option<Arc<crate::tls::Tls>>>,
    /// Shared by every config generation, so ids never repeat.
    pub request_ids: Arc<std::sync::atomic::AtomicU64>,
    /// Longest a request waits on another's fetch of the same key.
    pub coalesce_timeout: std::time::Duration,
    /// Keys being revalidated in the background (stale-while-revalidate).
    pub revalidating: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
}

/// The client's side of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// The listener's place in the config.
    pub listener: usize,
    /// On TLS, the certificate the handshake chose by SNI.
    pub certificate: Option<usize>,
}

/// How an answer came about, for metrics.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Hit,
    Stale,
    Miss,
    Bypass,
    Collapsed,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
            Outcome::Collapsed => "collapsed",
            Outcome::Error => "error",
        }
    }
}

impl Proxy {
    pub async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let logged = self
            .access_log
            .as_ref()
            .map(|log| (log.clone(), request_fields(&self.request_ids, conn, &req)));
        let (outcome, response) = self.route(conn, req).await;
        let counter = self.metrics.client_bytes_out.clone();
        let mut response = response.map(|body| CountedBody::new(body, counter).boxed_unsync());
        for name in &self.hidden_headers {
            response.headers_mut().remove(name);
        }
        let label = outcome.label();
        self.metrics.requests.with_label_values(&[label]).inc();
        self.metrics
            .request_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        if let Some((log, mut fields)) = logged {
            response_fields(&mut fields, &response);
            let (parts, body) = response.into_parts();
            let body = LoggedBody::new(
                body,
                access_log::Pending {
                    log,
                    fields,
                    started,
                },
            )
            .boxed_unsync();
            response = Response::from_parts(parts, body);
        }
        Ok(response)
    }

    async fn route(
        self: &Arc<Self>,
        conn: ConnInfo,
        req: Request<Incoming>,
    ) -> (Outcome, Response<ProxyBody>) {
        let (mut parts, body) = req.into_parts();
        // RFC 9110 §15.5.15.
        let target_length = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target_length > self.max_uri_length {
            return (
                Outcome::Error,
                plain(
                    StatusCode::URI_TOO_LONG,
                    &format!("the request target is over {} bytes\n", self.max_uri_length),
                ),
            );
        }
        // RFC 9112 §3.2: more than one Host is a bad request.
        if parts.headers.get_all(HOST).iter().count() > 1 {
            return (Outcome::Error, protocol_error("more than one Host\n"));
        }
        // RFC 9112 §3.2.2 has an absolute-form target's authority win over
        // Host, and RFC 9113 §8.3.1 calls a request whose Host differs from
        // its :authority malformed. A target and a Host naming two places is
        // how caches get poisoned: refuse it rather than pick one.
        if let (Some(target), Some(host)) = (parts.uri.authority(), parts.headers.get(HOST))
            && !same_authority(target, host, conn.tls)
        {
            return (
                Outcome::Error,
                protocol_error("the request target and Host name different hosts\n"),
            );
        }
        // HTTP/2 without :path and :authority reaches here with no target.
        if parts.uri.path().is_empty() {
            return (Outcome::Error, protocol_error("no request target\n"));
        }
        let authority = match parts.uri.authority() {
            Some(a) => Some(a.as_str().to_owned()),
            None => parts
                .headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        let Some((authority, host)) = authority.and_then(|a| host_name(&a).map(|h| (a, h))) else {
            return (
                Outcome::Error,
                plain(StatusCode::BAD_REQUEST, "missing or invalid Host\n"),
            );
        };
        let Some(site) = self.router.site(&host) else {
            return (
                Outcome::Error,
                plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!("no site is served for host {host}\n"),
                ),
            );
        };
        // RFC 9110 §15.5.20, RFC 9113 §9.1.1: a connection is for the
        // hosts its certificate serves; a request for another host (whose
        // certificate the client never checked) goes elsewhere.
        if let Some(chosen) = conn.certificate
            && let Some(Some(tls)) = self.tls.get(conn.listener)
            && tls.names.choose(Some(&host)) != chosen
        {
            return (
                Outcome::Error,
                plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!("this connection's certificate does not serve {host}\n"),
                ),
            );
        }
        let websocket_over_h2 = parts.method == Method::CONNECT
            && parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if parts.method == Method::CONNECT && !websocket_over_h2 {
            return (
                Outcome::Error,
                plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n"),
            );
        }
        // Purges go through the side API only: the public listener neither
        // acts on these methods nor passes them to an origin.
        if matches!(parts.method.as_str(), "PURGE" | "BAN" | "REFRESH") {
            return (
                Outcome::Error,
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "purges go through the admin API\n",
                ),
            );
        }
        let Some(upstream) = self.upstreams.get(&site.origin).cloned() else {
            return (
                Outcome::Error,
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "site has no origin pool\n",
                ),
            );
        };
        // One normalized path for matching, keying and forwarding.
        let path = match normalize_path(parts.uri.path()) {
            Ok(path) => path,
            Err(e) => {
                return (
                    Outcome::Error,
                    plain(StatusCode::BAD_REQUEST, &format!("{e}\n")),
                );
            }
        };
        let target = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let Ok(target) = target.parse::<http::Uri>() else {
            return (
                Outcome::Error,
                plain(StatusCode::BAD_REQUEST, "invalid request target\n"),
            );
        };
        let rule = site.rule_for(target.path());
        if rule.ignore_client_no_cache {
            strip_client_no_cache(&mut parts.headers);
        }
        let bypass = rule.bypass;
        let path_and_query = target.path_and_query().map_or("/", |p| p.as_str());
        let key = CacheKey::new(
            if conn.tls { "https" } else { "http" },
            &authority,
            path_and_query,
            &rule.query,
        );
        let request = Exchange {
            conn,
            parts,
            target,
            authority,
            key,
            rule,
            upstream,
        };

        if is_websocket_upgrade(&request.parts) || websocket_over_h2 {
            drop(body);
            return self.tunnel(request, websocket_over_h2).await;
        }
        let cacheable_method = matches!(request.parts.method, Method::GET | Method::HEAD);
        if !cacheable_method || bypass {
            let status = if bypass { "fwd=bypass" } else { "fwd=method" };
            return self.pass(request, body, status).await;
        }
        // A GET or HEAD carries no meaningful body; drop whatever came.
        drop(body);
        let now = self.cache.now();
        let lookup = self.cache.lookup_tiered(&request.key, &request.parts).await;
        // RFC 9111 §5.2.1.7: only a stored response that may be used as is, or a 504.
        if request_directive(&request.parts.headers, "only-if-cached")
            && !matches!(lookup, Lookup::Fresh(_))
        {
            let mut res = plain(
                StatusCode::GATEWAY_TIMEOUT,
                "only-if-cached: nothing usable is stored\n",
            );
            set_cache_status(res.headers_mut(), "detail=only-if-cached");
            return (Outcome::Miss, res);
        }
        match lookup {
            Lookup::Fresh(entry) => {
                let ttl = entry.time_to_live(now).as_secs();
                (
                    Outcome::Hit,
                    unvalidated(
                        &entry,
                        from_cache(
                            &self.cache,
                            &entry,
                            &request.parts,
                            now,
                            &format!("hit; ttl={ttl}"),
                        ),
                    ),
                )
            }
            // RFC 5861 §3: within stale-while-revalidate, answer at once and
            // revalidate in the background; a client's no-cache still waits.
            Lookup::Stale(entry)
                if entry.stale_while_revalidate(now)
                    && !request_directive(&request.parts.headers, "no-cache") =>
            {
                let stale_for = entry.staleness(now).as_secs();
                self.revalidate_in_background(&request, entry.clone());
                let status = format!("hit; ttl=-{stale_for}; detail=stale-while-revalidate");
                (
                    Outcome::Hit,
                    unvalidated(
                        &entry,
                        from_cache(&self.cache, &entry, &request.parts, now, &status),
                    ),
                )
            }
            Lookup::Stale(entry) => self.revalidate(request, entry, "stale").await,
            // RFC 9211 §2.2: a fresh response the request's directives refused.
            Lookup::Refused(entry) => self.revalidate(request, entry, "request").await,
            Lookup::VaryMiss => self.fetch(request, "fwd=vary-miss").await,
            Lookup::Miss => self.fetch(request, "fwd=miss").await,
        }
    }

    /// Forwards a request the cache takes no part in, body and all.
    async fn pass(
        &self,
        request: Exchange,
        body: Incoming,
        status: &str,
    ) -> (Outcome, Response<ProxyBody>) {
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
            return (Outcome::Error, too_large(limit));
        }
        let exceeded = Arc::new(AtomicBool::new(false));
        let outgoing = request.origin_parts(&request.parts.headers);
        let body = outgoing_body(
            CountedBody::new(body, self.metrics.client_bytes_in.clone()),
            limit,
            &exceeded,
        )
        .await;
        if exceeded.load(Ordering::SeqCst) {
            return (Outcome::Error, too_large(limit.unwrap_or_default()));
        }
        let request_time = self.cache.now();
        let sent = request
            .upstream
            .send(request.key.hash(), outgoing, body)
            .await;
        // A streamed body that ran over the limit broke the origin request.
        if sent.is_err() && exceeded.load(Ordering::SeqCst) {
            return (Outcome::Error, too_large(limit.unwrap_or_default()));
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
                    let (_, response) = self
                        .store_and_relay(view, answer, request_time, status, None)
                        .await;
                    return (Outcome::Bypass, response);
                }
                (Outcome::Bypass, relay(answer, status))
            }
            Err(e) => (Outcome::Error, upstream_error(&e)),
        }
    }

    /// A WebSocket upgrade (RFC 6455 §4, RFC 9110 §7.8): the request goes
    /// to the origin with its Upgrade; only when the origin answers 101 is
    /// the client answered and the two connections joined, byte for byte,
    /// until either side closes. Any other answer is an ordinary response,
    /// and the client's connection goes on as HTTP. Never cached.
    ///
    /// Over HTTP/2 (`over_h2`, RFC 8441) the client's extended CONNECT
    /// becomes an HTTP/1.1 upgrade towards the origin, with a key of our
    /// own whose accept value the origin must prove, and the origin's 101
    /// becomes a 200 on the client's stream.
    async fn tunnel(&self, mut request: Exchange, over_h2: bool) -> (Outcome, Response<ProxyBody>) {
        let Some(client_side) = request
            .parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
        else {
            return (
                Outcome::Error,
                protocol_error("this connection cannot be upgraded\n"),
            );
        };
        if !request.upstream.speaks_http1() {
            return (
                Outcome::Error,
                plain(
                    StatusCode::BAD_GATEWAY,
                    "WebSocket needs an origin pool that speaks HTTP/1.1\n",
                ),
            );
        }
        let mut outgoing = request.origin_parts(&request.parts.headers);
        // A tunnel's answer is its 101; nothing goes before it.
        outgoing.extensions.remove::<crate::interim::Interim>();
        if over_h2 {
            outgoing.method = Method::GET;
        }
        outgoing.headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        outgoing
            .headers
            .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        outgoing.headers.remove(CONTENT_LENGTH);
        let key = if over_h2 {
            match websocket_key() {
                Ok(key) => Some(key),
                Err(e) => {
                    return (
                        Outcome::Error,
                        plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
                    );
                }
            }
        } else {
            None
        };
        if let Some(key) = &key
            && let Ok(value) = HeaderValue::from_str(key)
        {
            outgoing
                .headers
                .insert(http::header::SEC_WEBSOCKET_KEY, value);
        }
        let answer = match request
            .upstream
            .send(request.key.hash(), outgoing, OutgoingBody::Empty)
            .await
        {
            Ok(answer) => answer,
            Err(e) => return (Outcome::Error, upstream_error(&e)),
        };
        if answer.response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return (Outcome::Bypass, relay(answer, "fwd=bypass"));
        }
        let Answer {
            mut response,
            lease,
            ..
        } = answer;
        // RFC 6455 §4.1: the origin proves it read our key.
        if let Some(key) = &key {
            let accepted = response
                .headers()
                .get(http::header::SEC_WEBSOCKET_ACCEPT)
                .and_then(|v| v.to_str().ok());
            if accepted != Some(websocket_accept(key).as_str()) {
                return (
                    Outcome::Error,
                    plain(
                        StatusCode::BAD_GATEWAY,
                        "the origin's Sec-WebSocket-Accept does not match\n",
                    ),
                );
            }
        }
        let origin_side = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        let upgrade = parts.headers.get(http::header::UPGRADE).cloned();
        headers::strip_hop_by_hop(&mut parts.headers);
        if over_h2 {
            // RFC 8441 §5: a 2xx opens the stream; the accept value is
            // HTTP/1.1's business alone.
            parts.status = StatusCode::OK;
            parts.headers.remove(http::header::SEC_WEBSOCKET_ACCEPT);
            parts.version = http::Version::HTTP_2;
        } else {
            parts.headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            parts.headers.insert(
                http::header::UPGRADE,
                upgrade.unwrap_or(HeaderValue::from_static("websocket")),
            );
            parts.version = http::Version::HTTP_11;
        }
        set_cache_status(&mut parts.headers, "fwd=bypass");
        tokio::spawn(async move {
            let (client, origin) = match tokio::try_join!(client_side, origin_side) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                    return;
                }
            };
            let (mut client, mut origin) = (TokioIo::new(client), TokioIo::new(origin));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
                tracing::debug!(error = %e, "WebSocket tunnel ended");
            }
            // The origin connection's slot is held for the tunnel's life.
            drop(lease);
        });
        (Outcome::Bypass, Response::from_parts(parts, empty()))
    }

    /// Sends a conditional request for a stale entry with the cache's own
    /// validators (RFC 9111 §4.3.1); a 304 that names the stored
    /// representation refreshes it, anything else replaces it.
    async fn revalidate(
        &self,
        request: Exchange,
        entry: Arc<Entry>,
        reason: &str,
    ) -> (Outcome, Response<ProxyBody>) {
        let mut headers = request.parts.headers.clone();
        for name in [
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_MATCH,
            IF_UNMODIFIED_SINCE,
            IF_RANGE,
            RANGE,
        ] {
            headers.remove(name);
        }
        if let Some(etag) = entry.headers().get(ETAG.as_str()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = entry.headers().get(LAST_MODIFIED.as_str()) {
            headers.insert(IF_MODIFIED_SINCE, modified);
        }
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request
            .upstream
            .send(request.key.hash(), outgoing, OutgoingBody::Empty)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                let now = self.cache.now();
                let detail = if entry.stale_if_error(now) {
                    "stale-if-error"
                } else if entry.stale_if_unreachable(now, request.rule.stale_if_unreachable) {
                    "origin-unreachable"
                } else {
                    return (Outcome::Error, upstream_error(&e));
                };
                tracing::warn!(error = %e, key = %request.key, detail, "origin failed; serving stale");
                let response = from_cache(
                    &self.cache,
                    &entry,
                    &request.parts,
                    now,
                    &format!("fwd=stale; detail={detail}"),
                );
                return (Outcome::Stale, unvalidated(&entry, response));
            }
        };
        // RFC 5861 §4: these answers count as errors too.
        let status = answer.response.status();
        if matches!(status.as_u16(), 500 | 502 | 503 | 504) {
            let now = self.cache.now();
            if entry.stale_if_error(now) {
                let label = format!(
                    "fwd=stale; fwd-status={}; detail=stale-if-error",
                    status.as_u16()
                );
                return (
                    Outcome::Stale,
                    unvalidated(
                        &entry,
                        from_cache(&self.cache, &entry, &request.parts, now, &label),
                    ),
                );
            }
        }
        if answer.response.status() == StatusCode::NOT_MODIFIED {
            let now = self.cache.now();
            let (mut parts, _) = answer.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            return match self.cache.refresh(
                &request.key,
                &entry,
                &request.parts,
                &parts,
                request_time,
                now,
            ) {
                Some(refreshed) => (
                    Outcome::Stale,
                    from_cache(
                        &self.cache,
                        &refreshed,
                        &request.parts,
                        now,
                        &format!("fwd={reason}; fwd-status=304"),
                    ),
                ),
                // The 304 was about another representation: fetch it whole.
                None => self.fetch(request, &format!("fwd={reason}")).await,
            };
        }
        // RFC 9111 §4.3.5: a 200 to a HEAD freshens the stored GET response
        // when the validators it carries (and its Content-Length) agree with
        // the stored ones; otherwise the stored response stays stale.
        if request.parts.method == Method::HEAD
            && status == StatusCode::OK
            && head_agrees(&entry, answer.response.headers())
        {
            let now = self.cache.now();
            let (mut parts, _) = answer.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            let refreshed = self.cache.refresh(
                &request.key,
                &entry,
                &request.parts,
                &parts,
                request_time,
                now,
            );
            let answered = refreshed.as_ref().unwrap_or(&entry);
            return (
                Outcome::Stale,
                from_cache(
                    &self.cache,
                    answered,
                    &request.parts,
                    now,
                    &format!("fwd={reason}; fwd-status=200"),
                ),
            );
        }
        self.store_and_relay(
            request,
            answer,
            request_time,
            &format!("fwd={reason}"),
            None,
        )
        .await
    }

    /// Fetches a miss from the origin, storing the answer if it may be stored.
    ///
    /// A range request fetches the whole object, so that later ranges are
    /// hits, and takes its range from the stream; when the object turns out
    /// larger than the cache keeps, the range is asked of the origin instead.
    async fn fetch(&self, request: Exchange, status: &str) -> (Outcome, Response<ProxyBody>) {
        // Plain GETs collapse onto one fetch; a range or an authenticated
        // request fetches on its own.
        let collapsible = request.parts.method == Method::GET
            && !request.parts.headers.contains_key(RANGE)
            && !request
                .parts
                .headers
                .contains_key(http::header::AUTHORIZATION);
        if !collapsible {
            return self.fetch_alone(request, status, None).await;
        }
        match self.coalescer.join(*request.key.hash()) {
            Role::Leader(leader) => self.fetch_alone(request, status, Some(leader)).await,
            Role::Pass => self.fetch_alone(request, status, None).await,
            Role::Follower(fill) => {
                self.metrics.coalesced.inc();
                let waited = Instant::now();
                let head = fill.head(self.coalesce_timeout).await;
                self.metrics
                    .coalesce_wait
                    .observe(waited.elapsed().as_secs_f64());
                if let Some(head) = head {
                    let same_variant = outpost_cache::variant_of(
                        &head.headers,
                        &request.rule.key_fields,
                        &request.parts.headers,
                    )
                    .is_some_and(|variant| variant == head.variant);
                    if same_variant && head.body == SharedBody::Stored {
                        let left = self.coalesce_timeout.saturating_sub(waited.elapsed());
                        if fill.completed(left).await
                            && let Lookup::Fresh(entry) =
                                self.cache.lookup_tiered(&request.key, &request.parts).await
                        {
                            let now = self.cache.now();
                            let response = from_cache(
                                &self.cache,
                                &entry,
                                &request.parts,
                                now,
                                &format!("{status}; collapsed"),
                            );
                            return (Outcome::Collapsed, unvalidated(&entry, response));
                        }
                    } else if same_variant {
                        let mut parts = Response::new(()).into_parts().0;
                        parts.status = head.status;
                        parts.headers = head.headers.clone();
                        let body = http_body_util::StreamBody::new(
                            fill.body().map(|frame| frame.map_err(BoxError::from)),
                        );
                        return (
                            Outcome::Collapsed,
                            to_client(parts, body.boxed_unsync(), &format!("{status}; collapsed")),
                        );
                    }
                }
                self.fetch_alone(request, status, None).await
            }
        }
    }

    /// Fetches from the origin; a `leader` shares the answer with the
    /// requests that collapsed onto it, when it can be stored.
    async fn fetch_alone(
        &self,
        request: Exchange,
        status: &str,
        leader: Option<Leader>,
    ) -> (Outcome, Response<ProxyBody>) {
        let wants_range = request.parts.headers.contains_key(RANGE);
        let mut headers = request.parts.headers.clone();
        if wants_range {
            headers.remove(RANGE);
            headers.remove(IF_RANGE);
        }
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request
            .upstream
            .send(request.key.hash(), outgoing, OutgoingBody::Empty)
            .await
        {
            Ok(answer) => answer,
            Err(e) => return (Outcome::Error, upstream_error(&e)),
        };
        let oversized = answer
            .response
            .body()
            .size_hint()
            .exact()
            .is_none_or(|n| n > self.max_object_size as u64);
        if wants_range && oversized {
            drop(answer);
            let outgoing = request.origin_parts(&request.parts.headers);
            return match request
                .upstream
                .send(request.key.hash(), outgoing, OutgoingBody::Empty)
                .await
            {
                Ok(answer) => (
                    Outcome::Miss,
                    relay(answer, &format!("{status}; detail=range-passed")),
                ),
                Err(e) => (Outcome::Error, upstream_error(&e)),
            };
        }
        self.store_and_relay(request, answer, request_time, status, leader)
            .await
    }

    async fn store_and_relay(
        &self,
        request: Exchange,
        answer: Answer,
        request_time: SystemTime,
        status: &str,
        mut leader: Option<Leader>,
    ) -> (Outcome, Response<ProxyBody>) {
        let response_time: SystemTime = self.cache.now();
        let Answer {
            response, lease, ..
        } = answer;
        let (mut parts, body) = response.into_parts();
        let body = OriginBody::new(body, lease);
        headers::strip_hop_by_hop(&mut parts.headers);
        let mut status = status.to_owned();
        let body = if request.parts.method != Method::GET {
            body.boxed_unsync()
        } else {
            match self
                .cache
                .prepare(
                    &request.key,
                    &request.parts,
                    &parts,
                    request_time,
                    response_time,
                    request.rule.store_rules(parts.status.as_u16()),
                )
                .map(|pending| {
                    pending.with_key_fields(&request.rule.key_fields, &request.parts.headers)
                }) {
                Ok(pending) => {
                    let length = body.size_hint().exact();
                    if length.is_some_and(|n| n > self.max_object_size as u64) {
                        status.push_str("; detail=too-large");
                        if let Some(leader) = leader.take() {
                            leader.decline_for(HIT_FOR_PASS);
                        }
                        body.boxed_unsync()
                    } else {
                        status.push_str("; stored");
                        let variant = pending.variant().to_owned();
                        let storing = StoringBody::new(
                            body,
                            self.cache.clone(),
                            pending,
                            self.max_object_size,
                        );
                        match (leader, length) {
                            (Some(leader), Some(length)) if length <= STREAM_SHARE_MAX => {
                                share(leader, &parts, variant, storing)
                            }
                            // Too large to hold for the followers: they
                            // read it from the cache once it is stored.
                            (Some(leader), Some(_)) => {
                                let writer = leader.share(SharedHead {
                                    status: parts.status,
                                    headers: parts.headers.clone(),
                                    variant,
                                    body: SharedBody::Stored,
                                });
                                storing.announcing(writer).boxed_unsync()
                            }
                            _ => storing.boxed_unsync(),
                        }
                    }
                }
                Err(reason) => {
                    status.push_str("; detail=");
                    status.push_str(reason.as_str());
                    if let Some(leader) = leader.take() {
                        leader.decline_for(HIT_FOR_PASS);
                    }
                    body.boxed_unsync()
                }
            }
        };
        // A range the client asked for, cut from the whole object as it streams.
        if request.parts.method == Method::GET
            && parts.status == StatusCode::OK
            && let Some(len) = body.size_hint().exact()
        {
            match range::evaluate(&request.parts.headers, len, &parts.headers) {
                Ranges::Whole => {}
                Ranges::Partial(ranges) if ranges.len() == 1 => {
                    parts.status = StatusCode::PARTIAL_CONTENT;
                    set_header(
                        &mut parts.headers,
                        CONTENT_RANGE,
                        &range::content_range(ranges[0], len),
                    );
                    set_header(
                        &mut parts.headers,
                        CONTENT_LENGTH,
                        &(ranges[0].1 - ranges[0].0 + 1).to_string(),
                    );
                    let body = range::SliceBody::new(body, ranges[0]).boxed_unsync();
                    return (Outcome::Miss, to_client(parts, body, &status));
                }
                // Several ranges of an object still arriving: the whole
                // object is an answer the RFC allows (§14.2).
                Ranges::Partial(_) => {}
                Ranges::Unsatisfiable => {
                    // The object still fills the cache behind the 416.
                    tokio::spawn(async move { drop(body.collect().await) });
                    return (
                        Outcome::Miss,
                        to_client_empty(parts, unsatisfiable(len), &status),
                    );
                }
            }
        }
        (Outcome::Miss, to_client(parts, body, &status))
    }
}

/// Shares a storable response with the requests collapsed onto it: a task
/// reads the origin's body into the cache and the fill, whoever's client
/// goes away, and every client (the leader's too) reads the fill.
fn share(
    leader: Leader,
    parts: &http::response::Parts,
    variant: String,
    mut storing: StoringBody<OriginBody>,
) -> ProxyBody {
    let writer = leader.share(SharedHead {
        status: parts.status,
        headers: parts.headers.clone(),
        variant,
        body: SharedBody::Streamed,
    });
    let fill = writer.fill().clone();
    tokio::spawn(async move {
        while let Some(frame) = storing.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        writer.push(data.clone());
                    }
                }
                // Dropping the writer fails the fill for every reader.
                Err(_) => return,
            }
        }
        // The entry is in the cache now; only then is the fill forgotten.
        writer.finish();
    });
    http_body_util::StreamBody::new(fill.body().map(|frame| frame.map_err(BoxError::from)))
        .boxed_unsync()
}

/// The access-log fields known when a request arrives.
fn request_fields<B>(
    ids: &std::sync::atomic::AtomicU64,
    conn: ConnInfo,
    req: &Request<B>,
) -> serde_json::Map<String, serde_json::Value> {
    let n = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = SystemTime::now();
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    let mut fields = serde_json::Map::new();
    fields.insert("time".into(), access_log::rfc3339(now).into());
    fields.insert(
        "request_id".into(),
        format!("{:x}-{n:x}", std::process::id()).into(),
    );
    fields.insert("client".into(), conn.remote.to_string().into());
    fields.insert("method".into(), req.method().as_str().into());
    fields.insert("host".into(), host.unwrap_or_default().into());
    fields.insert(
        "path".into(),
        req.uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .into(),
    );
    fields.insert("protocol".into(), format!("{:?}", req.version()).into());
    fields.insert("tls".into(), conn.tls.into());
    fields
}

/// The access-log fields known once the response head is ready.
fn response_fields(
    fields: &mut serde_json::Map<String, serde_json::Value>,
    response: &Response<ProxyBody>,
) {
    fields.insert("status".into(), response.status().as_u16().into());
    let cache = response
        .headers()
        .get(CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    fields.insert("cache_status".into(), cache.into());
    if let Some(origin) = response.extensions().get::<crate::upstream::OriginInfo>() {
        fields.insert("origin".into(), origin.server.clone().into());
        fields.insert(
            "origin_ms".into(),
            (origin.duration.as_secs_f64() * 1000.0).into(),
        );
    }
}

/// A 416 head for an object of `len` bytes (RFC 9110 §15.5.17).
fn unsatisfiable(len: u64) -> (StatusCode, HeaderMap) {
    let mut headers = HeaderMap::new();
    set_header(&mut headers, CONTENT_RANGE, &format!("bytes */{len}"));
    (StatusCode::RANGE_NOT_SATISFIABLE, headers)
}

/// An origin response head replaced by a body-less answer (`status`,
/// `headers`), keeping the origin's validators and caching fields.
fn to_client_empty(
    mut parts: http::response::Parts,
    (code, extra): (StatusCode, HeaderMap),
    status: &str,
) -> Response<ProxyBody> {
    parts.status = code;
    for name in [CONTENT_LENGTH, CONTENT_TYPE, http::header::CONTENT_ENCODING] {
        parts.headers.remove(name);
    }
    for (name, value) in &extra {
        parts.headers.insert(name, value.clone());
    }
    to_client(parts, empty(), status)
}

fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

impl Proxy {
    /// Revalidates `entry` off the client's path, at most once at a time per key.
    fn revalidate_in_background(self: &Arc<Self>, request: &Exchange, entry: Arc<Entry>) {
        let key = *request.key.hash();
        if !self
            .revalidating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
        {
            return;
        }
        let proxy = self.clone();
        let exchange = request.detached();
        tokio::spawn(async move {
            let (_, response) = proxy.revalidate(exchange, entry, "stale").await;
            // Reading the body to its end is what stores a new copy.
            let _ = response.into_body().collect().await;
            proxy
                .revalidating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    /// RFC 9111 §4.4: after a successful unsafe request, the stored
    /// responses for its target and for the same-origin URIs in its
    /// `Location` and `Content-Location` are no longer used.
    fn invalidate(&self, request: &Exchange, response: &HeaderMap) {
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
    fn same_origin_key(&self, request: &Exchange, reference: &str) -> Option<CacheKey> {
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
        let rule = site.rule_for(&path);
        let target = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        Some(CacheKey::new(scheme, &authority, &target, &rule.query))
    }

    /// RFC 9110 §9.3.3: a POST response with explicit freshness and a
    /// `Content-Location` naming the POST's own target may answer later
    /// GETs of it.
    fn reusable_post(&self, request: &Exchange, response: &HeaderMap) -> bool {
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

/// Removes the client's `no-cache` and `no-store` (and `Pragma: no-cache`)
/// for a rule that sets them aside.
fn strip_client_no_cache(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let name = d.split('=').next().unwrap_or_default().trim();
            !name.eq_ignore_ascii_case("no-cache") && !name.eq_ignore_ascii_case("no-store")
        })
        .map(str::to_owned)
        .collect();
    headers.remove(http::header::CACHE_CONTROL);
    headers.remove(http::header::PRAGMA);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(http::header::CACHE_CONTROL, value);
    }
}

/// Whether the request's Cache-Control carries `directive`.
fn request_directive(headers: &HeaderMap, directive: &str) -> bool {
    outpost_cache::Directives::from_headers(headers).has(directive)
}

/// One request on its way through the proxy.
struct Exchange {
    conn: ConnInfo,
    parts: request::Parts,
    /// The normalized path and query, as matched, keyed and forwarded.
    target: http::Uri,
    /// The `Host` the client sent (with port, as written).
    authority: String,
    key: CacheKey,
    rule: RuleView,
    upstream: Arc<Upstream>,
}

impl Exchange {
    /// A copy that can outlive the client's request, for work done in the
    /// background on its behalf (the body is never needed: GET and HEAD).
    fn detached(&self) -> Exchange {
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

    /// Request head for the origin with `headers` prepared for forwarding.
    fn origin_parts(&self, headers: &HeaderMap) -> request::Parts {
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
        if let Some(interim) = self.parts.extensions.get::<crate::interim::Interim>() {
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

/// A response from the origin passed on as it came, marked with `Cache-Status`.
fn relay(answer: Answer, status: &str) -> Response<ProxyBody> {
    let (mut parts, body) = answer.response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    to_client(
        parts,
        OriginBody::new(body, answer.lease).boxed_unsync(),
        status,
    )
}

/// Request bodies up to this size are read whole before they are sent, so
/// that a failover can send them again.
const REPLAYABLE_BODY: u64 = 64 * 1024;

/// The request body as the pool sends it; a body that runs over `limit`
/// ends in an error there and sets `exceeded`.
async fn outgoing_body(
    body: CountedBody<Incoming>,
    limit: Option<u64>,
    exceeded: &Arc<AtomicBool>,
) -> OutgoingBody {
    if body.is_end_stream() {
        return OutgoingBody::Empty;
    }
    let body = match limit {
        Some(limit) => {
            let exceeded = exceeded.clone();
            let limited =
                http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
            limited
                .map_err(move |e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        exceeded.store(true, Ordering::SeqCst);
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

fn too_large(limit: u64) -> Response<ProxyBody> {
    let mut res = plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is over {limit} bytes\n"),
    );
    // The rest of the body is not read: the connection cannot go on.
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// An origin's response head (hop-by-hop fields already gone) made ready
/// for the client: our `Via` hop and `Cache-Status`.
fn to_client(
    mut parts: http::response::Parts,
    body: ProxyBody,
    status: &str,
) -> Response<ProxyBody> {
    headers::append_via(&mut parts.headers, parts.version);
    set_cache_status(&mut parts.headers, status);
    // The client's connection decides its own version.
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, body)
}

/// Answers from a stored entry: `Age`, `Cache-Status`, and a 304 when the
/// client's own validators match (RFC 9110 §13.1).
fn from_cache(
    cache: &Cache,
    entry: &Entry,
    req: &request::Parts,
    now: SystemTime,
    status: &str,
) -> Response<ProxyBody> {
    // The stored validators are read from `headers` below: what is added
    // here (Age, Via, Cache-Status) is none of them.
    let mut headers = entry.headers().to_map(3);
    headers.insert(
        http::header::AGE,
        HeaderValue::from(entry.age(now).as_secs()),
    );
    headers::append_via(&mut headers, http::Version::HTTP_11);
    set_cache_status(&mut headers, status);
    // RFC 9110 §13.2.1: conditions apply only to a 2xx representation.
    if entry.status().is_success()
        && not_modified(&headers, entry.freshness().response_time, &req.headers)
    {
        for name in [
            CONTENT_LENGTH,
            CONTENT_TYPE,
            http::header::CONTENT_ENCODING,
            http::header::CONTENT_LANGUAGE,
        ] {
            headers.remove(name);
        }
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        *res.headers_mut() = headers;
        return res;
    }
    let len = entry.body_len();
    if req.method == Method::GET && entry.status() == StatusCode::OK {
        match range::evaluate(&req.headers, len, &headers) {
            Ranges::Whole => {}
            Ranges::Unsatisfiable => {
                let (code, extra) = unsatisfiable(len);
                for name in [CONTENT_LENGTH, CONTENT_TYPE, http::header::CONTENT_ENCODING] {
                    headers.remove(name);
                }
                headers.extend(extra);
                let mut res = Response::new(empty());
                *res.status_mut() = code;
                *res.headers_mut() = headers;
                return res;
            }
            Ranges::Partial(ranges) => {
                let pieces = if let [(start, end)] = ranges[..] {
                    set_header(
                        &mut headers,
                        CONTENT_RANGE,
                        &range::content_range((start, end), len),
                    );
                    vec![range::Piece::Range(start, end)]
                } else {
                    let boundary = boundary(entry, now);
                    let content_type = headers
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    set_header(
                        &mut headers,
                        CONTENT_TYPE,
                        &format!("multipart/byteranges; boundary={boundary}"),
                    );
                    range::multipart_pieces(len, &ranges, content_type.as_deref(), &boundary)
                };
                let length: u64 = pieces
                    .iter()
                    .map(|piece| match piece {
                        range::Piece::Text(text) => text.len() as u64,
                        range::Piece::Range(start, end) => end - start + 1,
                    })
                    .sum();
                set_header(&mut headers, CONTENT_LENGTH, &length.to_string());
                let mut res = Response::new(stored_body(cache, entry, pieces));
                *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                *res.headers_mut() = headers;
                return res;
            }
        }
    }
    let body = if req.method == Method::HEAD {
        empty()
    } else if let Some(body) = entry.resident_body() {
        full(body.clone())
    } else if len == 0 {
        empty()
    } else {
        stored_body(cache, entry, vec![range::Piece::Range(0, len - 1)])
    };
    let mut res = Response::new(body);
    *res.status_mut() = entry.status();
    *res.headers_mut() = headers;
    res
}

/// A body made of text and ranges of a stored entry, read from memory or
/// disk as it is sent.
fn stored_body(cache: &Cache, entry: &Entry, pieces: Vec<range::Piece>) -> ProxyBody {
    if let Some(body) = entry.resident_body() {
        let mut out = bytes::BytesMut::new();
        for piece in pieces {
            match piece {
                range::Piece::Text(text) => out.extend_from_slice(&text),
                range::Piece::Range(start, end) => {
                    out.extend_from_slice(&body[start as usize..=end as usize]);
                }
            }
        }
        return full(out.freeze());
    }
    let streams: Vec<_> = pieces
        .into_iter()
        .map(|piece| match piece {
            range::Piece::Text(text) => futures_util::stream::once(async move { Ok(text) }).boxed(),
            range::Piece::Range(start, end) => cache.body(entry, start, end),
        })
        .collect();
    let frames = futures_util::stream::iter(streams)
        .flatten()
        .map(|piece| piece.map(http_body::Frame::data).map_err(BoxError::from));
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// A response from cache sent without revalidation loses the fields a
/// qualified `no-cache` names (RFC 9111 §5.2.2.4).
fn unvalidated(entry: &Entry, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    for field in entry.unvalidated_fields() {
        response.headers_mut().remove(field.as_str());
    }
    response
}

/// A multipart boundary that the body is vanishingly unlikely to contain.
fn boundary(entry: &Entry, now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = blake3::hash(format!("{}#{nanos}#{}", entry.key(), entry.body_len()).as_bytes());
    format!("outpost-{}", &digest.to_hex()[..24])
}

/// Whether a 200 to a HEAD describes the stored response (RFC 9111 §4.3.5):
/// each validator it carries (ETag, Last-Modified) and its Content-Length,
/// if it has one, equal the stored ones.
fn head_agrees(entry: &Entry, head: &HeaderMap) -> bool {
    let same = |name: HeaderName| {
        head.get(&name)
            .is_none_or(|value| entry.headers().get(name.as_str()).as_ref() == Some(value))
    };
    let length = head
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim().parse::<u64>().ok() == Some(entry.body_len()));
    same(ETAG) && same(LAST_MODIFIED) && length
}

/// Whether the request's `If-None-Match` (weak comparison) or, without it,
/// `If-Modified-Since` says the client's copy is current. RFC 9111 §4.3.2:
/// a stored response without Last-Modified is dated by its Date, or else
/// by when it was `received`.
fn not_modified(stored: &HeaderMap, received: SystemTime, req: &HeaderMap) -> bool {
    if !req.contains_key(IF_NONE_MATCH) && !req.contains_key(IF_MODIFIED_SINCE) {
        return false;
    }
    let inm: Vec<&str> = req
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if !inm.is_empty() {
        let Some(etag) = stored.get(ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        return inm.iter().any(|t| *t == "*" || weak(t) == weak(etag));
    }
    let since = req
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(outpost_cache::parse_http_date);
    let date = |name| {
        stored
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(outpost_cache::parse_http_date)
    };
    let modified = date(LAST_MODIFIED)
        .or_else(|| date(http::header::DATE))
        .unwrap_or(received);
    since.is_some_and(|since| modified <= since)
}

fn set_cache_status(headers: &mut HeaderMap, status: &str) {
    let mut text = String::with_capacity(PSEUDONYM.len() + 2 + status.len());
    text.push_str(PSEUDONYM);
    text.push_str("; ");
    text.push_str(status);
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)) {
        headers.insert(CACHE_STATUS, value);
    }
}

fn upstream_error(e: &UpstreamError) -> Response<ProxyBody> {
    let status = match e {
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        UpstreamError::Connect(_) | UpstreamError::Failed(_) => StatusCode::BAD_GATEWAY,
    };
    tracing::warn!(error = %e, "origin request failed");
    let mut res = plain(status, &format!("{e}\n"));
    set_cache_status(res.headers_mut(), "fwd=miss; detail=origin-error");
    res
}

/// A 400 for a request whose framing or target cannot be trusted: the
/// connection closes after it (HTTP/1.1; hyper drops the field on h2).
fn protocol_error(text: &str) -> Response<ProxyBody> {
    let mut res = plain(StatusCode::BAD_REQUEST, text);
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// A `Sec-WebSocket-Key` of our own: 16 random bytes, base64 (RFC 6455 §4.1).
fn websocket_key() -> Result<String, boring::error::ErrorStack> {
    let mut nonce = [0u8; 16];
    boring::rand::rand_bytes(&mut nonce)?;
    Ok(boring::base64::encode_block(&nonce))
}

/// The `Sec-WebSocket-Accept` an origin must answer `key` with (RFC 6455 §4.2.2).
fn websocket_accept(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    boring::base64::encode_block(&boring::sha::sha1(format!("{key}{GUID}").as_bytes()))
}

/// An HTTP/1.1 request to switch to WebSocket: `Upgrade: websocket` and
/// `Connection: upgrade` on a GET (RFC 6455 §4.1). Other upgrades are not
/// offered: their Upgrade field is dropped as hop-by-hop and the request
/// is served as HTTP (RFC 9110 §7.8 lets a server ignore it).
fn is_websocket_upgrade(parts: &request::Parts) -> bool {
    let has_token = |name: http::HeaderName, token: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    parts.method == Method::GET
        && parts.version == http::Version::HTTP_11
        && has_token(http::header::UPGRADE, "websocket")
        && has_token(http::header::CONNECTION, "upgrade")
}

/// Whether a target's authority and a Host value name the same host and
/// port (names compared without case or a trailing dot, a missing port
/// being the scheme's default).
fn same_authority(target: &http::uri::Authority, host: &HeaderValue, tls: bool) -> bool {
    let Some(host) = host
        .to_str()
        .ok()
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
    else {
        return false;
    };
    let default = if tls { 443 } else { 80 };
    host_name(target.as_str()) == host_name(host.as_str())
        && target.port_u16().unwrap_or(default) == host.port_u16().unwrap_or(default)
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res = Response::new(full(Bytes::from(text.to_owned())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §1.3's worked example, and keys of 16 bytes.
    #[test]
    fn websocket_keys_and_accept_values() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (a, b) = (websocket_key().unwrap(), websocket_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(boring::base64::decode_block(&a).unwrap().len(), 16);
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// When a stored response was received, for the tests of `not_modified`.
    const RECEIVED: SystemTime = SystemTime::UNIX_EPOCH;

    /// RFC 9111 §4.3.2: without Last-Modified, If-Modified-Since is judged
    /// against the stored Date, or else the time the response was received.
    #[test]
    fn if_modified_since_falls_back_to_date_then_receipt() {
        let dated = map(&[("date", "Tue, 01 Sep 2026 00:00:00 GMT")]);
        let after = map(&[("if-modified-since", "Wed, 02 Sep 2026 00:00:00 GMT")]);
        let before = map(&[("if-modified-since", "Mon, 31 Aug 2026 00:00:00 GMT")]);
        assert!(not_modified(&dated, RECEIVED, &after));
        assert!(!not_modified(&dated, RECEIVED, &before));
        let received = outpost_cache::parse_http_date("Tue, 01 Sep 2026 00:00:00 GMT").unwrap();
        assert!(not_modified(&HeaderMap::new(), received, &after));
        assert!(!not_modified(&HeaderMap::new(), received, &before));
        let invalid = map(&[("if-modified-since", "yesterday")]);
        assert!(!not_modified(&dated, RECEIVED, &invalid));
    }

    /// RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
    #[test]
    fn if_none_match_compares_weakly() {
        let stored = map(&[("etag", "W/\"v1\"")]);
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "\"v1\"")])
        ));
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "\"x\", W/\"v1\"")])
        ));
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "*")])
        ));
        assert!(!not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "\"v2\"")])
        ));
    }

    /// RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    #[test]
    fn if_modified_since_applies_only_without_if_none_match() {
        let stored = map(&[
            ("last-modified", "Tue, 01 Sep 2026 00:00:00 GMT"),
            ("etag", "\"a\""),
        ]);
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-modified-since", "Wed, 02 Sep 2026 00:00:00 GMT")])
        ));
        assert!(!not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-modified-since", "Mon, 31 Aug 2026 00:00:00 GMT")])
        ));
        assert!(!not_modified(
            &stored,
            RECEIVED,
            &map(&[
                ("if-modified-since", "Wed, 02 Sep 2026 00:00:00 GMT"),
                ("if-none-match", "\"b\"")
            ])
        ));
    }
}
