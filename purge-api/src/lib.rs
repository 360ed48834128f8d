//! Outpost's side API: purge, health and Prometheus metrics, on its own
//! port, with bearer-token auth for everything that changes state.
//!
//! The edge owns the sockets and calls [`Admin::handle`] for each request.

mod metrics;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use outpost_cache::{Cache, CacheKey};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

pub use metrics::Metrics;

/// Every route the side API serves and its methods (HEAD goes with GET);
/// `docs/openapi.yaml` documents exactly these, which a test checks.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/stats", &["GET"]),
    ("/purge", &["POST"]),
    ("/reload", &["POST"]),
];

/// Largest purge request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Turns a purge URL into the cache key the edge would build for it, using
/// the matching site's rules.
pub type KeyForUrl = dyn Fn(&str) -> Result<CacheKey, String> + Send + Sync;

/// The state of the origin pools, as the edge reports it.
pub type OriginsSource = dyn Fn() -> Vec<PoolStatus> + Send + Sync;

/// Re-reads the config file and switches to it, or refuses it and keeps
/// the one serving. Ok carries a JSON summary of the new config; Err the
/// reasons it was refused (`FILE:LINE:COL: key: message` lines).
pub type ReloadHook = dyn Fn() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<serde_json::Value, Vec<String>>> + Send>,
    > + Send
    + Sync;

/// One origin pool in `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub servers: Vec<ServerStatus>,
}

/// One origin server (one address) in `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStatus {
    /// The URL as configured.
    pub url: String,
    /// The address it resolved to.
    pub address: String,
    /// Takes traffic: passes its checks and is not ejected.
    pub healthy: bool,
    pub passes_checks: bool,
    /// Milliseconds left in a passive ejection; 0 when not ejected.
    pub ejected_for_ms: u64,
    pub in_flight: usize,
    /// Label used for this server in metrics.
    #[serde(skip)]
    pub label: String,
}

/// What the side API works on.
pub struct AdminParts {
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    pub tokens: Tokens,
    pub key_for_url: Arc<KeyForUrl>,
    pub origins: Arc<OriginsSource>,
    /// `POST /reload`; None where the edge cannot reload (it answers 501).
    pub reload: Option<Arc<ReloadHook>>,
}

/// Bearer tokens of the side API.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// May do everything; with none (and no scoped tokens) every
    /// state-changing call is refused.
    pub full: Option<String>,
    /// May purge URLs, prefixes and hosts of their hosts only.
    pub scoped: Vec<(String, Vec<String>)>,
}

/// What a presented token may purge.
enum Scope {
    All,
    Hosts(Vec<String>),
}

/// A token's blake3 hash, and the hosts it is limited to (None: all).
type TokenTable = Vec<([u8; 32], Option<Vec<String>>)>;

/// Prefix and everything purges allowed in a burst, refilled one a second.
const PURGE_BURST: f64 = 10.0;

pub struct Admin {
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
    /// Swapped whole when a reload changes the scoped tokens.
    tokens: std::sync::RwLock<Arc<TokenTable>>,
    /// Token bucket for prefix and everything purges.
    bulk_purges: std::sync::Mutex<(f64, std::time::Instant)>,
    key_for_url: Arc<KeyForUrl>,
    origins: Arc<OriginsSource>,
    reload: Option<Arc<ReloadHook>>,
    request_ids: AtomicU64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    urls: Option<Vec<String>>,
    prefixes: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    everything: Option<bool>,
    /// Mark stale instead of deleting.
    #[serde(default)]
    soft: bool,
}

impl Admin {
    pub fn new(parts: AdminParts) -> Self {
        Self {
            cache: parts.cache,
            metrics: parts.metrics,
            tokens: std::sync::RwLock::new(Arc::new(token_table(&parts.tokens))),
            bulk_purges: std::sync::Mutex::new((PURGE_BURST, std::time::Instant::now())),
            key_for_url: parts.key_for_url,
            origins: parts.origins,
            reload: parts.reload,
            request_ids: AtomicU64::new(0),
        }
    }

    /// Replaces the bearer tokens (a reload may change the scoped ones).
    pub fn set_tokens(&self, tokens: &Tokens) {
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(token_table(tokens));
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = self.next_request_id();
        match (req.uri().path(), req.method()) {
            // Serving starts only once the config is loaded and every
            // listener is bound, so an answering side API means ready.
            ("/readyz", &Method::GET | &Method::HEAD) => {
                if self.cache.disk_pending() {
                    json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "starting", "waiting_for": "disk tier"}),
                    )
                } else {
                    json_response(StatusCode::OK, json!({"status": "ready"}))
                }
            }
            ("/healthz", &Method::GET | &Method::HEAD) => {
                json_response(StatusCode::OK, json!({"status": "ok"}))
            }
            ("/stats", &Method::GET | &Method::HEAD) => json_response(StatusCode::OK, self.stats()),
            ("/metrics", &Method::GET | &Method::HEAD) => {
                self.refresh_gauges();
                let mut res = Response::new(Full::new(Bytes::from(self.metrics.render())));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                res
            }
            ("/purge", &Method::POST) => self.purge(req, &request_id).await,
            ("/reload", &Method::POST) => self.reload(&req, &request_id).await,
            (path, _) => match ROUTES.iter().find(|(route, _)| *route == path) {
                Some((_, methods)) => {
                    let mut res = error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method not allowed",
                        &request_id,
                    );
                    let allow = methods
                        .iter()
                        .flat_map(|m| {
                            if *m == "GET" {
                                vec!["GET", "HEAD"]
                            } else {
                                vec![*m]
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    if let Ok(value) = http::HeaderValue::from_str(&allow) {
                        res.headers_mut().insert(http::header::ALLOW, value);
                    }
                    res
                }
                None => error(StatusCode::NOT_FOUND, "no such route", &request_id),
            },
        }
    }

    async fn purge<B>(&self, req: Request<B>, request_id: &str) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(scope) = self.scope(&req) else {
            self.metrics
                .purges
                .with_label_values(&["urls", "unauthorized"])
                .inc();
            return unauthorized(request_id);
        };
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("body over {MAX_BODY} bytes"),
                    request_id,
                );
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the body: {e}"),
                    request_id,
                );
            }
        };
        let purge: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid purge request: {e}"),
                    request_id,
                );
            }
        };
        let lists = [
            ("urls", &purge.urls),
            ("prefixes", &purge.prefixes),
            ("hosts", &purge.hosts),
            ("tags", &purge.tags),
        ];
        if let Some((name, _)) = lists
            .iter()
            .find(|(_, list)| list.as_ref().is_some_and(|l| l.is_empty()))
        {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{name} is empty"),
                request_id,
            );
        }
        if purge.everything == Some(false) {
            return error(
                StatusCode::BAD_REQUEST,
                "everything must be true when given",
                request_id,
            );
        }
        if lists.iter().all(|(_, list)| list.is_none()) && purge.everything.is_none() {
            return error(
                StatusCode::BAD_REQUEST,
                "name what to purge: urls, prefixes, hosts, tags or everything",
                request_id,
            );
        }
        if let Err(denied) = self.check_scope(&scope, &purge) {
            self.metrics
                .purges
                .with_label_values(&["any", "forbidden"])
                .inc();
            return error(StatusCode::FORBIDDEN, &denied, request_id);
        }
        if (purge.prefixes.is_some() || purge.everything.is_some()) && !self.take_bulk_purge() {
            self.metrics
                .purges
                .with_label_values(&["any", "rate_limited"])
                .inc();
            let mut res = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many prefix or everything purges; try again shortly",
                request_id,
            );
            res.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            return res;
        }
        let soft = purge.soft;
        let mut matched = 0;
        let mut kinds = Vec::new();
        let failures = self.cache.journal_failures();
        if let Some(urls) = &purge.urls {
            let mut keys = Vec::with_capacity(urls.len() * 2);
            for url in urls {
                // A URL names its object over both schemes.
                for variant in scheme_variants(url) {
                    match (self.key_for_url)(&variant) {
                        Ok(key) => keys.push(key),
                        Err(e) => return error(StatusCode::BAD_REQUEST, &e, request_id),
                    }
                }
            }
            matched += self.cache.purge_urls(&keys, soft);
            kinds.push("urls");
        }
        if let Some(prefixes) = &purge.prefixes {
            let mut normalized = Vec::with_capacity(prefixes.len());
            for prefix in prefixes {
                match normalize_prefix(prefix) {
                    Ok(p) => normalized.push(p),
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e, request_id),
                }
            }
            matched += self.cache.purge_prefixes(&normalized, soft);
            kinds.push("prefixes");
        }
        if let Some(hosts) = &purge.hosts {
            let mut normalized = Vec::with_capacity(hosts.len());
            for host in hosts {
                match normalize_prefix(host) {
                    Ok(p) if p.ends_with('/') && p.matches('/').count() == 1 => {
                        normalized.push(p.trim_end_matches('/').to_owned())
                    }
                    _ => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("{host:?} is not a host name"),
                            request_id,
                        );
                    }
                }
            }
            matched += self.cache.purge_hosts(&normalized, soft);
            kinds.push("hosts");
        }
        if let Some(tags) = &purge.tags {
            matched += self.cache.purge_tags(tags, soft);
            kinds.push("tags");
        }
        if purge.everything == Some(true) {
            matched += self.cache.purge_everything(soft);
            kinds.push("everything");
        }
        if self.cache.journal_failures() > failures {
            for kind in &kinds {
                self.metrics
                    .purges
                    .with_label_values(&[kind, "not_durable"])
                    .inc();
            }
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the purge applies now, but the purge journal could not be written: it may not outlive a restart",
                request_id,
            );
        }
        for kind in &kinds {
            self.metrics.purges.with_label_values(&[kind, "ok"]).inc();
        }
        tracing::info!(request_id, kinds = ?kinds, soft, matched, "purge");
        json_response(
            StatusCode::OK,
            json!({"matched": matched, "purged": matched, "soft": soft, "request_id": request_id}),
        )
    }

    /// `POST /reload`: only a full token may reload. The body, if any, is
    /// ignored: the edge re-reads the file it was started with.
    async fn reload<B>(&self, req: &Request<B>, request_id: &str) -> Response<Full<Bytes>> {
        match self.scope(req) {
            None => return unauthorized(request_id),
            Some(Scope::Hosts(_)) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "a token scoped to hosts may not reload the config",
                    request_id,
                );
            }
            Some(Scope::All) => {}
        }
        let Some(reload) = &self.reload else {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                "this process cannot reload its config",
                request_id,
            );
        };
        match reload().await {
            Ok(summary) => {
                tracing::info!(request_id, "config reloaded through the side API");
                json_response(
                    StatusCode::OK,
                    json!({"status": "reloaded", "config": summary, "request_id": request_id}),
                )
            }
            Err(errors) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({
                    "error": "the new config was refused; the old one keeps serving",
                    "errors": errors,
                    "request_id": request_id,
                }),
            ),
        }
    }

    /// Sets the gauges that are read from the live state rather than counted.
    fn refresh_gauges(&self) {
        let usage = self.cache.usage();
        self.metrics
            .cache_objects
            .with_label_values(&["memory"])
            .set(clamp(usage.memory_objects));
        self.metrics
            .cache_bytes
            .with_label_values(&["memory"])
            .set(clamp(usage.memory_bytes));
        let evictions = self.metrics.cache_evictions.with_label_values(&["memory"]);
        evictions.inc_by(usage.memory_evictions.saturating_sub(evictions.get()));
        let catch_up = |counter: prometheus::IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        let m = &self.metrics;
        catch_up(
            m.cache_hits.with_label_values(&["memory"]),
            usage.memory_hits,
        );
        catch_up(
            m.cache_misses.with_label_values(&["memory"]),
            usage.memory_misses,
        );
        m.disk_open.set(i64::from(usage.disk.is_some()));
        catch_up(m.disk_errors.with_label_values(&["io"]), usage.disk_faults);
        if let Some(disk) = usage.disk {
            catch_up(m.cache_hits.with_label_values(&["disk"]), disk.hits);
            catch_up(m.cache_misses.with_label_values(&["disk"]), disk.misses);
            catch_up(m.disk_errors.with_label_values(&["damaged"]), disk.damaged);
            catch_up(
                m.disk_io_bytes.with_label_values(&["write"]),
                disk.bytes_written,
            );
            catch_up(
                m.disk_io_bytes.with_label_values(&["read"]),
                disk.bytes_read,
            );
            m.cache_capacity
                .with_label_values(&["disk"])
                .set(clamp(disk.capacity));
            m.cache_bytes
                .with_label_values(&["disk"])
                .set(clamp(disk.bytes));
            m.cache_objects
                .with_label_values(&["disk"])
                .set(clamp(disk.objects));
            catch_up(
                m.cache_evictions.with_label_values(&["disk"]),
                disk.evictions,
            );
        }
        // A reload may have removed servers: only the current ones report.
        self.metrics.origin_up.reset();
        for pool in (self.origins)() {
            for server in pool.servers {
                self.metrics
                    .origin_up
                    .with_label_values(&[pool.name.as_str(), server.label.as_str()])
                    .set(i64::from(server.healthy));
            }
        }
    }

    /// `GET /stats`: the cache's size and hit ratio, and the origins' health.
    fn stats(&self) -> serde_json::Value {
        let usage = self.cache.usage();
        let count = |status: &str| self.metrics.requests.with_label_values(&[status]).get();
        let (hits, stale, misses) = (count("hit"), count("stale"), count("miss"));
        let lookups = hits + stale + misses;
        let hit_ratio = if lookups == 0 {
            0.0
        } else {
            (hits + stale) as f64 / lookups as f64
        };
        json!({
            "cache": {
                "memory": {
                    "objects": usage.memory_objects,
                    "bytes": usage.memory_bytes,
                    "evictions": usage.memory_evictions,
                    "hits": usage.memory_hits,
                    "misses": usage.memory_misses,
                },
                "disk": usage.disk.map(|disk| json!({
                    "capacity": disk.capacity,
                    "objects": disk.objects,
                    "bytes": disk.bytes,
                    "evictions": disk.evictions,
                    "hits": disk.hits,
                    "misses": disk.misses,
                    "damaged": disk.damaged,
                    "errors": disk.errors,
                    "bytes_written": disk.bytes_written,
                    "bytes_read": disk.bytes_read,
                })),
                "disk_pending": usage.disk_pending,
            },
            "requests": {
                "hit": hits,
                "stale": stale,
                "miss": misses,
                "bypass": count("bypass"),
                "error": count("error"),
            },
            "hit_ratio": hit_ratio,
            "origins": (self.origins)(),
        })
    }

    /// The scope of the presented bearer token; None when it is missing or
    /// matches no configured token. Every token is compared, in constant time.
    fn scope<B>(&self, req: &Request<B>) -> Option<Scope> {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())?;
        // Compare hashes so that neither the length nor the bytes of a
        // token leak through timing.
        let given = blake3::hash(given.as_bytes());
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut found = None;
        for (expected, hosts) in tokens.iter() {
            if bool::from(given.as_bytes().ct_eq(expected)) && found.is_none() {
                found = Some(match hosts {
                    None => Scope::All,
                    Some(hosts) => Scope::Hosts(hosts.clone()),
                });
            }
        }
        found
    }

    /// A scoped token may purge URLs, prefixes and hosts of its hosts only.
    fn check_scope(&self, scope: &Scope, purge: &PurgeRequest) -> Result<(), String> {
        let Scope::Hosts(allowed) = scope else {
            return Ok(());
        };
        if purge.tags.is_some() || purge.everything.is_some() {
            return Err("this token may not purge tags or everything".into());
        }
        let in_scope = |host: &str| {
            let host = host.to_ascii_lowercase();
            let host = host
                .split(':')
                .next()
                .unwrap_or_default()
                .trim_end_matches('.');
            allowed
                .iter()
                .any(|pattern| match pattern.strip_prefix("*.") {
                    Some(suffix) => {
                        host.len() > suffix.len()
                            && host.ends_with(suffix)
                            && host[..host.len() - suffix.len()].ends_with('.')
                    }
                    None => pattern == host,
                })
        };
        let url_hosts = purge.urls.iter().flatten().map(|url| {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            rest.split(['/', '?', '#'])
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        let prefix_hosts = purge
            .prefixes
            .iter()
            .flatten()
            .map(|p| p.split('/').next().unwrap_or_default().to_owned());
        let hosts = purge.hosts.iter().flatten().cloned();
        for host in url_hosts.chain(prefix_hosts).chain(hosts) {
            if !in_scope(&host) {
                return Err(format!("this token may not purge host {host:?}"));
            }
        }
        Ok(())
    }

    /// Takes one prefix-or-everything purge from the bucket; false when empty.
    fn take_bulk_purge(&self) -> bool {
        let mut bucket = self.bulk_purges.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64()).min(PURGE_BURST);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("{started:x}-{n:06x}")
    }
}

/// A prefix as purges match it: host (lower-case, no trailing dot, no
/// default port, which is unknown without a scheme) and path, no scheme.
/// A bare host becomes `host/`.
fn normalize_prefix(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.contains("://") {
        return Err(format!(
            "{text:?}: prefixes name a host and path without a scheme"
        ));
    }
    let (host, path) = match text.find('/') {
        Some(i) => text.split_at(i),
        None => (text, "/"),
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(format!("{text:?} does not start with a host"));
    }
    let path = outpost_cache::normalize_path(path).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(format!("{host}{path}"))
}

/// The URL as given and with the other of http and https.
fn scheme_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") {
        variants.push(format!("http://{}", &url[8..]));
    } else if lower.starts_with("http://") {
        variants.push(format!("https://{}", &url[7..]));
    }
    variants
}

/// The lookup table of `tokens`; blank tokens never match.
fn token_table(tokens: &Tokens) -> TokenTable {
    let hash = |t: &str| *blake3::hash(t.trim().as_bytes()).as_bytes();
    let mut table = Vec::new();
    if let Some(full) = tokens.full.as_deref().filter(|t| !t.trim().is_empty()) {
        table.push((hash(full), None));
    }
    for (token, hosts) in &tokens.scoped {
        if !token.trim().is_empty() {
            table.push((
                hash(token),
                Some(hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            ));
        }
    }
    table
}

fn unauthorized(request_id: &str) -> Response<Full<Bytes>> {
    let mut res = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token",
        request_id,
    );
    res.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    res
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(value.to_string())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    res
}

fn error(status: StatusCode, message: &str, request_id: &str) -> Response<Full<Bytes>> {
    json_response(status, json!({"error": message, "request_id": request_id}))
}

#[cfg(test)]
mod tests {
    use outpost_cache::{Fetched, KeyFields, PolicyOptions, StoreRules, SystemClock};
    use outpost_config::QueryKey;

    use super::*;

    fn admin(token: Option<&str>) -> (Admin, Arc<Cache>) {
        let cache = Arc::new(Cache::new(
            1 << 20,
            PolicyOptions::default(),
            Arc::new(SystemClock),
        ));
        let key_for_url: Arc<KeyForUrl> = Arc::new(|url: &str| {
            CacheKey::from_url(url, &QueryKey::All).map_err(|e| e.to_string())
        });
        let origins: Arc<OriginsSource> = Arc::new(|| {
            vec![PoolStatus {
                name: "app".into(),
                servers: vec![ServerStatus {
                    url: "http://127.0.0.1:9000".into(),
                    address: "127.0.0.1:9000".into(),
                    healthy: false,
                    passes_checks: true,
                    ejected_for_ms: 4000,
                    in_flight: 0,
                    label: "http://127.0.0.1:9000".into(),
                }],
            }]
        });
        let parts = AdminParts {
            cache: cache.clone(),
            metrics: Arc::new(Metrics::new().unwrap()),
            tokens: Tokens {
                full: token.map(str::to_owned),
                scoped: vec![("team-a".into(), vec!["a.test".into(), "*.a.test".into()])],
            },
            key_for_url,
            origins,
            // Accepts a config unless it is told to refuse the next one.
            reload: Some(Arc::new(|| {
                Box::pin(async {
                    if REFUSE_NEXT_RELOAD.swap(false, Ordering::SeqCst) {
                        Err(vec!["outpost.yaml:3:5: listen: bad".to_owned()])
                    } else {
                        Ok(json!({"generation": 2}))
                    }
                })
            })),
        };
        (Admin::new(parts), cache)
    }

    static REFUSE_NEXT_RELOAD: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    fn reload_request(token: Option<&str>) -> Request<Full<Bytes>> {
        let mut req = Request::post("/reload");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        req.body(Full::new(Bytes::new())).unwrap()
    }

    #[tokio::test]
    async fn reload_needs_a_full_token_and_reports_a_refusal() {
        let (admin, _) = admin(Some("secret"));
        let (status, _) = call(&admin, reload_request(None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&admin, reload_request(Some("wrong"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&admin, reload_request(Some("team-a"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, body) = call(&admin, reload_request(Some("secret"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "reloaded");
        assert_eq!(body["config"]["generation"], 2);

        REFUSE_NEXT_RELOAD.store(true, Ordering::SeqCst);
        let (status, body) = call(&admin, reload_request(Some("secret"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["errors"][0], "outpost.yaml:3:5: listen: bad");
        assert!(body["request_id"].is_string());
    }

    #[tokio::test]
    async fn replaced_tokens_take_effect_at_once() {
        let (admin, _) = admin(Some("secret"));
        admin.set_tokens(&Tokens {
            full: Some("rotated".into()),
            scoped: Vec::new(),
        });
        let body = r#"{"everything": true}"#;
        let (status, _) = call(&admin, purge_request(Some("secret"), body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&admin, purge_request(Some("team-a"), body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&admin, purge_request(Some("rotated"), body)).await;
        assert_eq!(status, StatusCode::OK);
    }

    fn store(cache: &Cache, url: &str) {
        let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
        let req = Request::get("/").body(()).unwrap().into_parts().0;
        let res = Response::builder()
            .header("cache-control", "max-age=60")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let fetched = Fetched {
            key: &key,
            request: &req,
            response: &res,
            request_time: cache.now(),
            response_time: cache.now(),
        };
        let storing = cache
            .admit(
                &fetched,
                StoreRules::default(),
                &KeyFields::default(),
                Some(1),
                u64::MAX,
            )
            .unwrap();
        cache.insert(storing, Bytes::from_static(b"x"));
    }

    fn purge_request(token: Option<&str>, body: &str) -> Request<Full<Bytes>> {
        let mut b = Request::post("/purge");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
    }

    async fn call(admin: &Admin, req: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
        let res = admin.handle(req).await;
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn purge_needs_the_right_token() {
        let (admin, cache) = admin(Some("secret"));
        store(&cache, "http://example.com/a");
        let body = r#"{"urls": ["http://example.com/a"]}"#;
        assert_eq!(
            call(&admin, purge_request(None, body)).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&admin, purge_request(Some("wrong"), body)).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(cache.usage().memory_objects, 1);
        store(&cache, "https://example.com/a");
        let mut lower_case = purge_request(None, body);
        lower_case.headers_mut().insert(
            "authorization",
            http::HeaderValue::from_static("bearer secret"),
        );
        let (status, json) = call(&admin, lower_case).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["purged"], 2, "both schemes of the URL");
        assert!(json["request_id"].is_string());
        assert_eq!(cache.usage().memory_objects, 0);
    }

    /// The routing table is what the handler serves: each listed method
    /// answers, others get 405 with Allow, other paths 404.
    #[tokio::test]
    async fn every_listed_route_is_served() {
        let (admin, _) = admin(Some("secret"));
        for (path, methods) in ROUTES {
            for method in *methods {
                let req = Request::builder()
                    .method(*method)
                    .uri(*path)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let status = admin.handle(req).await.status();
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {status}"
                );
            }
            let req = Request::builder()
                .method("DELETE")
                .uri(*path)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = admin.handle(req).await;
            assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert!(res.headers().contains_key("allow"));
        }
        let req = Request::get("/reload-nope")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(admin.handle(req).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn scoped_tokens_purge_only_their_hosts() {
        let (admin, cache) = admin(Some("secret"));
        store(&cache, "http://www.a.test/x");
        let allowed = r#"{"urls": ["http://www.a.test/x"]}"#;
        let (status, json) = call(&admin, purge_request(Some("team-a"), allowed)).await;
        assert_eq!(
            (status, json["matched"].as_u64()),
            (StatusCode::OK, Some(1))
        );
        for body in [
            r#"{"urls": ["http://b.test/x"]}"#,
            r#"{"hosts": ["evila.test"]}"#,
            r#"{"tags": ["t"]}"#,
            r#"{"everything": true}"#,
        ] {
            assert_eq!(
                call(&admin, purge_request(Some("team-a"), body)).await.0,
                StatusCode::FORBIDDEN,
                "{body}"
            );
        }
        assert_eq!(
            call(&admin, purge_request(Some("secret"), r#"{"tags": ["t"]}"#))
                .await
                .0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn bulk_purges_are_rate_limited() {
        let (admin, _) = admin(Some("secret"));
        let statuses: Vec<StatusCode> = everything_purges(&admin, 12).await;
        assert!(
            statuses[..10].iter().all(|s| *s == StatusCode::OK),
            "{statuses:?}"
        );
        assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
    }

    async fn everything_purges(admin: &Admin, n: usize) -> Vec<StatusCode> {
        let mut statuses = Vec::new();
        for _ in 0..n {
            statuses.push(
                call(
                    admin,
                    purge_request(Some("secret"), r#"{"everything": true}"#),
                )
                .await
                .0,
            );
        }
        statuses
    }

    #[tokio::test]
    async fn without_a_configured_token_purge_is_refused() {
        let (admin, _) = admin(None);
        let body = r#"{"urls": ["http://example.com/a"]}"#;
        assert_eq!(
            call(&admin, purge_request(Some(""), body)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn bad_purge_bodies_are_400_or_413() {
        let (admin, _) = admin(Some("t"));
        for body in [
            "not json",
            r#"{"urls": []}"#,
            r#"{}"#,
            r#"{"everything": false}"#,
            r#"{"prefixes": ["https://a.test/x"]}"#,
            r#"{"hosts": ["a.test/path"]}"#,
            r#"{"urls": ["/relative"]}"#,
            r#"{"urls": ["http://a/"], "extra": 1}"#,
        ] {
            assert_eq!(
                call(&admin, purge_request(Some("t"), body)).await.0,
                StatusCode::BAD_REQUEST,
                "{body}"
            );
        }
        let huge = format!(r#"{{"urls": ["{}"]}}"#, "a".repeat(MAX_BODY));
        assert_eq!(
            call(&admin, purge_request(Some("t"), &huge)).await.0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let get = Request::get("/purge")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = admin.handle(get).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(res.headers()["allow"], "POST");
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let (admin, _) = admin(None);
        admin.metrics.requests.with_label_values(&["hit"]).inc();
        let res = admin
            .handle(
                Request::get("/metrics")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("outpost_requests_total{cache_status=\"hit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("outpost_cache_objects{tier=\"memory\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("outpost_origin_up{pool=\"app\",server=\"http://127.0.0.1:9000\"} 0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn stats_report_the_cache_and_the_origins() {
        let (admin, cache) = admin(None);
        store(&cache, "http://example.com/a");
        admin.metrics.requests.with_label_values(&["hit"]).inc_by(3);
        admin.metrics.requests.with_label_values(&["miss"]).inc();
        let (status, json) = call(
            &admin,
            Request::get("/stats")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["cache"]["memory"]["objects"], 1);
        assert_eq!(json["hit_ratio"], 0.75);
        assert_eq!(json["origins"][0]["name"], "app");
        assert_eq!(json["origins"][0]["servers"][0]["healthy"], false);
        assert_eq!(json["origins"][0]["servers"][0]["ejected_for_ms"], 4000);
    }
}
