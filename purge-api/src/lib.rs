//! Outpost's side API: purge, health and Prometheus metrics, on its own
//! port, with bearer-token auth for everything that changes state.
//!
//! The edge owns the sockets and calls [`Admin::handle`] for each request;
//! this file routes it. The rest, one concern a file:
//! - `auth.rs`: bearer tokens (full, or scoped to hosts) and their scope;
//! - `purge.rs`: `POST /purge` and the [`Purger`] that applies purges;
//! - `budget.rs`: the purge work each token may do, by the items it names;
//! - `fleet.rs`: what the side API asks of a fleet ([`Fleet`]), `GET
//!   /purge/{id}` and `GET /cluster`;
//! - `stats.rs`: `GET /stats`, and the origins' status the edge reports;
//! - `explain.rs`: `GET /explain`, read and checked here, answered by the edge's hook;
//! - `status.rs` and `status.html`: the live status page `GET /` and the
//!   JSON it polls, `GET /status`, with the purges applied last;
//! - `reload.rs`: `POST /reload`, through the edge's hook;
//! - `metrics.rs`: the purge counter, and `/metrics` from the registry handed in;
//! - `error.rs`: why a purge URL, prefix or scope is refused;
//! - `fuzzing.rs`: the purge body's parts as the fuzz targets in `fuzz/`
//!   reach them (hidden from the docs).

mod auth;
mod budget;
mod error;
mod explain;
mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod purge;
mod reload;
mod stats;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use outpost_cache::{Cache, CacheKey};
use serde_json::json;

pub use auth::{ClientAddr, Tokens};
use auth::{Scope, TokenTable, token_table, unauthorized};
use budget::Budgets;
pub use budget::PurgeBudget;
pub use error::{PrefixError, PurgeError, UrlError};
use error::{ScopeError, chain};
pub use explain::{ExplainHook, ExplainQuery};
pub use fleet::{Announced, BoxFuture, Fleet, FleetError};
use metrics::PurgeMetrics;
pub use purge::{Applied, PurgeRequest, Purger};
pub use reload::ReloadHook;
pub use stats::{OriginsSource, PoolStatus, ServerStatus};
pub use status::StatusHook;

/// Every route the side API serves and its methods (HEAD goes with GET);
/// `docs/openapi.yaml` documents exactly these, which a test checks.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET"]),
    ("/status", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/metrics", &["GET"]),
    ("/stats", &["GET"]),
    ("/explain", &["GET"]),
    ("/purge", &["POST"]),
    ("/purge/{id}", &["GET"]),
    ("/cluster", &["GET"]),
    ("/reload", &["POST"]),
];

/// Largest purge request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Turns a purge URL into the cache key the edge would build for it, using
/// the matching site's rules.
pub type KeyForUrl = dyn Fn(&str) -> Result<CacheKey, UrlError> + Send + Sync;

/// What the side API works on.
pub struct AdminParts {
    pub cache: Arc<Cache>,
    /// Every series of the process: the side API registers its own there
    /// and serves them all on `/metrics`.
    pub registry: prometheus::Registry,
    pub tokens: Tokens,
    /// Applies purges to `cache`.
    pub purger: Arc<Purger>,
    /// The fleet this node belongs to, if any.
    pub fleet: Option<Arc<dyn Fleet>>,
    pub origins: Arc<OriginsSource>,
    /// `POST /reload`; None where the edge cannot reload (it answers 501).
    pub reload: Option<Arc<ReloadHook>>,
    /// `GET /explain`; None where the edge cannot explain (it answers 501).
    pub explain: Option<Arc<ExplainHook>>,
    /// What the edge adds to `GET /status` (None: nothing).
    pub status: Option<Arc<StatusHook>>,
}

pub struct Admin {
    cache: Arc<Cache>,
    registry: prometheus::Registry,
    metrics: PurgeMetrics,
    /// Swapped whole when a reload changes the scoped tokens.
    tokens: std::sync::RwLock<Arc<TokenTable>>,
    /// Who may reach and read the side API; swapped on reloads too.
    access: std::sync::RwLock<Arc<auth::Access>>,
    /// Each token's purge budget.
    budgets: Budgets,
    purger: Arc<Purger>,
    fleet: Option<Arc<dyn Fleet>>,
    origins: Arc<OriginsSource>,
    reload: Option<Arc<ReloadHook>>,
    explain: Option<Arc<ExplainHook>>,
    status_hook: Option<Arc<StatusHook>>,
    /// The last purges applied here, for the status page.
    recent_purges: status::RecentPurges,
    request_ids: AtomicU64,
    /// Set once the process has begun to shut down: `/readyz` says so.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Admin {
    /// The side API, with its purge counter registered in `parts.registry`.
    pub fn new(parts: AdminParts) -> Result<Self, prometheus::Error> {
        Ok(Self {
            cache: parts.cache,
            metrics: PurgeMetrics::register(&parts.registry)?,
            registry: parts.registry,
            tokens: std::sync::RwLock::new(Arc::new(token_table(&parts.tokens))),
            access: std::sync::RwLock::new(Arc::new(auth::Access::new(&parts.tokens))),
            budgets: Budgets::new(parts.tokens.budget),
            purger: parts.purger,
            fleet: parts.fleet,
            origins: parts.origins,
            reload: parts.reload,
            explain: parts.explain,
            status_hook: parts.status,
            recent_purges: Default::default(),
            request_ids: AtomicU64::new(0),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// From now on `/readyz` answers 503: the process is shutting down.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Replaces the bearer tokens and their purge budget (a reload may
    /// change them).
    pub fn set_tokens(&self, tokens: &Tokens) {
        self.budgets.set(tokens.budget);
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(token_table(tokens));
        *self.access.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(auth::Access::new(tokens));
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = self.next_request_id();
        let path = req.uri().path();
        let probe = matches!(path, "/healthz" | "/readyz");
        // The page itself holds no figures (it asks `/status` for them, with
        // the token): a browser opens it without one.
        let reading = matches!(*req.method(), Method::GET | Method::HEAD) && path != "/";
        if !probe {
            match self.admitted(&req, reading) {
                Ok(()) => {}
                Err(auth::Denied::Network) => {
                    return error(
                        StatusCode::FORBIDDEN,
                        "this client's network may not use the side API",
                        &request_id,
                    );
                }
                Err(auth::Denied::Token) => return unauthorized(&request_id),
            }
        }
        match (req.uri().path(), req.method()) {
            // Serving starts only once the config is loaded and every
            // listener is bound, so an answering side API means ready.
            ("/readyz", &Method::GET | &Method::HEAD) => {
                if self.shutting_down.load(Ordering::SeqCst) {
                    return json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "shutting down"}),
                    );
                }
                let waiting_for = if self.cache.disk_pending() {
                    Some("disk tier".to_owned())
                } else {
                    self.fleet.as_ref().and_then(|fleet| fleet.waiting_for())
                };
                match waiting_for {
                    Some(waiting_for) => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "starting", "waiting_for": waiting_for}),
                    ),
                    None => json_response(StatusCode::OK, json!({"status": "ready"})),
                }
            }
            ("/healthz", &Method::GET | &Method::HEAD) => {
                json_response(StatusCode::OK, json!({"status": "ok"}))
            }
            ("/stats", &Method::GET | &Method::HEAD) => json_response(StatusCode::OK, self.stats()),
            ("/", &Method::GET | &Method::HEAD) => self.page(),
            ("/status", &Method::GET | &Method::HEAD) => {
                json_response(StatusCode::OK, self.status())
            }
            ("/explain", &Method::GET | &Method::HEAD) => self.explain(&req, &request_id).await,
            ("/metrics", &Method::GET | &Method::HEAD) => {
                let mut res =
                    Response::new(Full::new(Bytes::from(metrics::render(&self.registry))));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                res
            }
            ("/purge", &Method::POST) => self.purge(req, &request_id).await,
            ("/cluster", &Method::GET | &Method::HEAD) => self.cluster(&request_id).await,
            (path, &Method::GET | &Method::HEAD) if path.starts_with("/purge/") => {
                self.purge_status(&path["/purge/".len()..], &request_id)
                    .await
            }
            ("/reload", &Method::POST) => self.reload(&req, &request_id).await,
            (path, _) => match ROUTES.iter().find(|(route, _)| {
                *route == path || (route.ends_with("{id}") && path.starts_with("/purge/"))
            }) {
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

    fn next_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("{started:x}-{n:06x}")
    }
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
mod tests;
