//! The request path: route by host, build the key, answer from the cache or
//! fetch from the origin pool, store what may be stored, and mark every
//! answer with `Cache-Status` (RFC 9211).

pub(crate) mod actions;
pub(crate) mod client;
pub(crate) mod compress;
mod error_page;
mod exchange;
mod explain;
mod fetch;
pub(crate) mod headers;
mod hit;
pub(crate) mod metrics;
mod partial;
mod pass;
pub(crate) mod range;
pub(crate) mod respond;
mod revalidate;
mod route;
pub(crate) mod router;
mod slice;
pub(crate) mod status;
mod storing;
mod tunnel;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderName, Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use outpost_cache::{Cache, Coalescer};

use self::actions::RequestId;
use self::client::ClientBody;
use self::error_page::OwnAnswer;
use self::metrics::ProxyMetrics;
use self::status::{CacheStatus, Outcome};
use crate::hooks::{Hooks, RequestInfo};
use crate::observe::access_log::{self, AccessLog, LoggedBody};
use crate::observe::counted::{CountedBody, Received};
use crate::origin::interim::InterimSink;
use crate::origin::pool::Upstream;
use crate::proxy::router::Router;

pub(crate) use crate::body::BoxError;
/// A response body on its way to the client, whatever it was made from.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Everything a request needs, built from one config.
pub(crate) struct Proxy {
    pub(crate) router: Arc<Router>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) upstreams: HashMap<String, Arc<Upstream>>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    /// Largest body the cache keeps.
    pub(crate) max_object_size: usize,
    /// Misses in progress that others may join.
    pub(crate) coalescer: Arc<Coalescer>,
    /// Response headers clients never see (the purge tags, by default).
    pub(crate) hidden_headers: Vec<HeaderName>,
    /// One JSON line per request, when configured.
    pub(crate) access_log: Option<Arc<AccessLog>>,
    /// What the lines say, and of how many requests.
    pub(crate) log_format: access_log::LogFormat,
    /// Longest request target accepted (414 above it).
    pub(crate) max_uri_length: usize,
    /// The hosts each listener's TLS certificates serve (None for plain
    /// listeners): a request must name a host its connection's
    /// certificate serves.
    pub(crate) certificates: Vec<Option<Arc<router::CertNames>>>,
    /// How long an idle HTTP/1.1 keep-alive connection waits for a request.
    pub(crate) header_read_timeout: std::time::Duration,
    /// How long a client may take to send a request head.
    pub(crate) head_timeout: std::time::Duration,
    /// Shared by every config generation, so ids never repeat.
    pub(crate) request_ids: Arc<std::sync::atomic::AtomicU64>,
    /// Longest a request waits on another's fetch of the same key.
    pub(crate) coalesce_timeout: std::time::Duration,
    /// Keys being revalidated in the background (stale-while-revalidate).
    pub(crate) revalidating: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
    /// Whether the cache may answer while the fleet's purges are replayed
    /// or out of reach (None for a node on its own).
    pub(crate) fleet_gate: Option<Arc<crate::fleet::gate::Gate>>,
    /// Where misses of shielded sites go (None without a shield tier).
    pub(crate) fleet_shield: Option<Arc<crate::fleet::shield::Shield>>,
    /// Compression of what origins send uncompressed (None when off).
    pub(crate) compression: Option<Arc<compress::Compression>>,
    /// An embedder's hooks (None for the `outpost` command).
    pub(crate) hooks: Option<Arc<dyn Hooks>>,
    /// The keys that miss and are bypassed most, for the status page.
    pub(crate) recent: Arc<crate::observe::recent::Recent>,
}

/// The client's side of a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) tls: bool,
    /// The TLS version the handshake agreed (`TLSv1.3`); None for plain
    /// connections.
    pub(crate) tls_version: Option<&'static str>,
    /// The listener's place in the config.
    pub(crate) listener: usize,
    /// On TLS, the certificate the handshake chose by SNI.
    pub(crate) certificate: Option<usize>,
    /// The `Alt-Svc` advertisement of HTTP/3 on this listener's port, for
    /// answers over TCP (None when the listener has no QUIC).
    pub(crate) alt_svc: Option<&'static http::HeaderValue>,
}

/// What routing learned that the answer needs on its way out: the
/// request's id, the site (its error pages, its HSTS) and the rule's
/// response edits.
pub(crate) struct Outward {
    id: RequestId,
    site: Option<Arc<router::Site>>,
    /// The site's rule whose response edits apply (None: no rule's do).
    rule: Option<usize>,
    /// The request's values, when the rule's templates read them.
    vars: Option<actions::OwnedVars>,
    /// What the hooks are told of the request (None without hooks).
    info: Option<RequestInfo>,
    /// The tier a hit's body comes from, when the route said so itself
    /// (otherwise the answer's extensions say, or it is the origin).
    source: Option<metrics::Source>,
    /// The client connection's sink for interim answers, until the
    /// request's exchange takes it (beside the request rather than in its
    /// extensions: a map allocated for one value, on every request).
    interim: Option<InterimSink>,
}

/// How the proxy answered one request: the response, and how the cache
/// took part (None for Outpost's own refusals, which carry no
/// `Cache-Status`).
pub(crate) type Reply = (Option<CacheStatus>, Response<ProxyBody>);

impl Proxy {
    /// Answers one request, whatever protocol it came on. `interim`: where
    /// the origin's interim answers go (for the client's connection), when
    /// the protocol forwards them.
    pub(crate) async fn handle(
        self: Arc<Self>,
        conn: ConnInfo,
        mut req: Request<ClientBody>,
        interim: Option<InterimSink>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        self.metrics.arrived_on(req.version()).inc();
        let head = req.method() == http::Method::HEAD;
        let id = RequestId(self.request_ids.fetch_add(1, Ordering::Relaxed));
        // The sample chooses who is written to the log; the hooks' log
        // phase sees every request.
        let log = self
            .access_log
            .clone()
            .filter(|_| self.log_format.samples(id.0))
            .map(|log| (log, self.log_format.clone()));
        let mut logged =
            (log.is_some() || self.hooks.is_some()).then(|| (log, request_fields(id, conn, &req)));
        // The line counts the request body's bytes where it is read.
        let received = logged.as_ref().map(|_| {
            let received = Received::default();
            req.extensions_mut().insert(received.clone());
            received
        });
        let mut outward = Outward {
            id,
            site: None,
            rule: None,
            vars: None,
            info: self.hooks.as_ref().map(|_| RequestInfo {
                client: conn.remote,
                tls: conn.tls,
                host: String::new(),
                request_id: id.to_string(),
            }),
            source: None,
            interim,
        };
        let (status, mut response) = self.route(conn, req, &mut outward).await;
        let mut source = outward.source.unwrap_or_else(|| {
            response
                .extensions()
                .get::<metrics::Source>()
                .copied()
                .unwrap_or(metrics::Source::Origin)
        });
        if let Some(own) = response.extensions_mut().remove::<OwnAnswer>() {
            source = metrics::Source::Outpost;
            if let Some(cause) = &own.cause {
                tracing::warn!(request_id = %id, error = %cause, "origin request failed");
                if let Some((_, fields)) = &mut logged {
                    fields.insert("error".into(), cause.clone().into());
                }
            }
            let code = response.status().as_u16();
            let page = match &outward.site {
                Some(site) => site.error_page(code),
                None => self.router.error_page(code),
            };
            error_page::finish(&mut response, &own, page, id);
        }
        headers::remove_named(response.headers_mut(), &self.hidden_headers);
        // One value gives the field and the metric. Entries of caches
        // before this one (a shield, the origin's own) stay first (RFC 9211 §2).
        if let Some(status) = &status {
            let ours = status.header_value();
            let headers = response.headers_mut();
            let value = match headers.get(status::CACHE_STATUS) {
                None => ours,
                Some(_) => status::after_upstream(headers, &ours),
            };
            headers.insert(status::CACHE_STATUS, value);
        }
        if let Some(actions) = outward.site.as_ref().and_then(|s| s.actions(outward.rule)) {
            let code = response.status();
            let vars = outward.vars.as_ref().map(actions::OwnedVars::vars);
            actions.edit_response(code, response.headers_mut(), vars.as_ref());
        }
        // RFC 6797 §7.2: over TLS only.
        if conn.tls
            && let Some(hsts) = outward.site.as_ref().and_then(|s| s.hsts.clone())
        {
            response
                .headers_mut()
                .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        if let (Some(hooks), Some(info)) = (&self.hooks, &outward.info) {
            let (mut parts, body) = response.into_parts();
            hooks.response(info, &mut parts);
            response = Response::from_parts(parts, body);
        }
        let counter = self.metrics.client_bytes_out.clone();
        let from = self.metrics.sent_from(source).clone();
        let mut response =
            response.map(|body| CountedBody::new(body, counter).also(from).boxed_unsync());
        let label = Outcome::of(status.as_ref()).label();
        let site = outward.site.as_ref().map_or("", |s| s.name.as_str());
        self.metrics
            .requests
            .with_label_values(&[label, site, metrics::status_class(response.status())])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        if let Some((log, mut fields)) = logged {
            response_fields(&mut fields, &response);
            fields.insert(
                "ttfb_ms".into(),
                (started.elapsed().as_secs_f64() * 1000.0).into(),
            );
            if let Some(rule) = outward.rule {
                fields.insert("rule".into(), rule.into());
            }
            // A body never sent (HEAD, 1xx, 204, 304) or of a declared
            // length is complete at that length.
            let expected = if head || matches!(response.status().as_u16(), 100..=199 | 204 | 304) {
                Some(0)
            } else {
                response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
            };
            let (parts, body) = response.into_parts();
            let body = LoggedBody::new(
                body,
                access_log::Pending {
                    log,
                    hooks: self.hooks.clone(),
                    fields,
                    started,
                    expected,
                    received: received.unwrap_or_default(),
                },
            )
            .boxed_unsync();
            response = Response::from_parts(parts, body);
        }
        Ok(response)
    }
}

/// The access-log fields known when a request arrives.
fn request_fields<B>(
    id: RequestId,
    conn: ConnInfo,
    req: &Request<B>,
) -> serde_json::Map<String, serde_json::Value> {
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
    fields.insert("request_id".into(), id.to_string().into());
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
    fields.insert("tls_version".into(), conn.tls_version.into());
    for (name, field) in [
        (http::header::USER_AGENT, "user_agent"),
        (http::header::REFERER, "referer"),
    ] {
        if let Some(value) = req.headers().get(name) {
            fields.insert(
                field.into(),
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into(),
            );
        }
    }
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
        .get(status::CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    fields.insert("cache_status".into(), cache.into());
    if let Some(origin) = response
        .extensions()
        .get::<crate::origin::pool::OriginInfo>()
    {
        fields.insert("origin".into(), origin.server.clone().into());
        fields.insert(
            "origin_ms".into(),
            (origin.duration.as_secs_f64() * 1000.0).into(),
        );
    }
}
