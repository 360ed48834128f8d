//! Origin pools: server choice (consistent hash, round robin, least
//! connections, random), pooled connections over HTTP/1.1, h2 or TLS,
//! active health checks, and failover for failures that are safe to retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, request};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_boring::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outpost_config::{Balance, HealthCheck, OriginPool, ServerUrl};

use crate::ring::Ring;

pub type UpstreamBody = UnsyncBoxBody<Bytes, hyper::Error>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no healthy server could be reached ({0})")]
    Connect(String),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin failed: {0}")]
    Failed(String),
}

pub struct Server {
    pub url: ServerUrl,
    /// `scheme://host:port`, the front of every request URI.
    base: String,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
}

impl Server {
    pub fn label(&self) -> &str {
        &self.base
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

pub struct Upstream {
    pub name: String,
    servers: Vec<Arc<Server>>,
    ring: Ring,
    balance: Balance,
    next: AtomicUsize,
    retries: u32,
    response_header_timeout: Duration,
    host: Option<String>,
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
}

/// The origin's answer and the server that gave it.
pub struct Answer {
    pub response: Response<Incoming>,
    pub server: Arc<Server>,
}

impl Upstream {
    pub fn new(name: &str, pool: &OriginPool) -> Result<Self, String> {
        let mut servers = Vec::with_capacity(pool.servers.len());
        for server in &pool.servers {
            let url = ServerUrl::parse(&server.url.value)?;
            let host = if url.host.contains(':') {
                format!("[{}]", url.host)
            } else {
                url.host.clone()
            };
            let base = format!(
                "{}://{}:{}",
                if url.tls { "https" } else { "http" },
                host,
                url.port
            );
            servers.push(Arc::new(Server {
                url,
                base,
                healthy: AtomicBool::new(true),
                in_flight: AtomicUsize::new(0),
            }));
        }
        let ring = Ring::new(
            servers
                .iter()
                .zip(&pool.servers)
                .map(|(s, c)| (s.base.as_str(), c.weight)),
        );
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(pool.timeouts.connect.get()));
        http.set_nodelay(true);
        let connector = HttpsConnector::with_connector(http, {
            let mut ssl = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls())
                .map_err(|e| e.to_string())?;
            ssl.set_alpn_protos(b"\x02h2\x08http/1.1")
                .map_err(|e| e.to_string())?;
            ssl
        })
        .map_err(|e| e.to_string())?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(pool.timeouts.keepalive.get())
            .pool_max_idle_per_host(pool.max_idle_per_server)
            .build(connector);
        Ok(Self {
            name: name.to_owned(),
            servers,
            ring,
            balance: pool.balance,
            next: AtomicUsize::new(0),
            retries: pool.retries,
            response_header_timeout: pool.timeouts.response_header.get(),
            host: pool.host.clone(),
            client,
        })
    }

    pub fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    /// The Host header to send: the pool's override or the client's.
    pub fn host_header<'a>(&'a self, client_host: &'a str) -> &'a str {
        self.host.as_deref().unwrap_or(client_host)
    }

    /// Servers to try, best first: healthy ones in the balance policy's order,
    /// then the unhealthy ones as a last resort.
    fn candidates(&self, key_hash: &[u8; 32]) -> Vec<usize> {
        let n = self.servers.len();
        let mut order: Vec<usize> = match self.balance {
            Balance::ConsistentHash => self.ring.order(key_hash),
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| (start + i) % n).collect()
            }
            Balance::Random => {
                let start = random_index(n);
                (0..n).map(|i| (start + i) % n).collect()
            }
            Balance::LeastConnections => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                let mut order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
                order.sort_by_key(|&i| self.servers[i].in_flight.load(Ordering::Relaxed));
                order
            }
        };
        order.sort_by_key(|&i| !self.servers[i].is_healthy());
        order
    }

    /// Sends a request to the pool. `parts.uri` holds the path and query.
    ///
    /// A request without a body is retried on the next server after a
    /// connect failure, up to the pool's retry budget: nothing reached the
    /// origin, so even an unsafe method may be sent again. A request with a
    /// body is sent once.
    pub async fn send(
        &self,
        key_hash: &[u8; 32],
        parts: request::Parts,
        body: Option<UpstreamBody>,
    ) -> Result<Answer, UpstreamError> {
        let candidates = self.candidates(key_hash);
        let attempts = if body.is_some() {
            1
        } else {
            (self.retries as usize + 1).min(candidates.len())
        };
        let mut body = body;
        let mut last_error = UpstreamError::Connect("the pool has no servers".into());
        for &index in candidates.iter().take(attempts) {
            let server = self.servers[index].clone();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let uri = match format!("{}{}", server.base, path).parse::<http::Uri>() {
                Ok(uri) => uri,
                Err(e) => return Err(UpstreamError::Failed(format!("bad request target: {e}"))),
            };
            let mut req =
                Request::new(body.take().unwrap_or_else(|| {
                    Empty::new().map_err(|never| match never {}).boxed_unsync()
                }));
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri;
            *req.headers_mut() = parts.headers.clone();
            server.in_flight.fetch_add(1, Ordering::Relaxed);
            let result =
                tokio::time::timeout(self.response_header_timeout, self.client.request(req)).await;
            server.in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(Ok(response)) => return Ok(Answer { response, server }),
                Ok(Err(e)) if e.is_connect() => {
                    tracing::warn!(pool = %self.name, server = %server.base, error = %e, "connect failed");
                    last_error =
                        UpstreamError::Connect(format!("{}: {}", server.base, error_chain(&e)));
                }
                Ok(Err(e)) => return Err(UpstreamError::Failed(error_chain(&e))),
                Err(_) => return Err(UpstreamError::Timeout(self.response_header_timeout)),
            }
        }
        Err(last_error)
    }

    /// Starts the active health checks of this pool, if it has any.
    pub fn spawn_health_checks(self: &Arc<Self>, check: &HealthCheck) {
        for server in &self.servers {
            let upstream = Arc::downgrade(self);
            let server = Arc::clone(server);
            let check = check.clone();
            tokio::spawn(health_loop(upstream, server, check));
        }
    }

    async fn probe(&self, server: &Server, check: &HealthCheck) -> bool {
        let Ok(uri) = format!("{}{}", server.base, check.path).parse::<http::Uri>() else {
            return false;
        };
        let mut req = Request::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *req.uri_mut() = uri;
        if let Some(host) = &self.host
            && let Ok(value) = http::HeaderValue::from_str(host)
        {
            req.headers_mut().insert(http::header::HOST, value);
        }
        match tokio::time::timeout(check.timeout.get(), self.client.request(req)).await {
            Ok(Ok(res)) => {
                let ok = res.status().as_u16() == check.expect_status;
                // Drain so the connection goes back to the pool.
                let _ = tokio::time::timeout(check.timeout.get(), res.into_body().collect()).await;
                ok
            }
            _ => false,
        }
    }
}

/// Probes one server at the check's interval until its pool is dropped.
async fn health_loop(upstream: std::sync::Weak<Upstream>, server: Arc<Server>, check: HealthCheck) {
    let successes = AtomicU32::new(0);
    let failures = AtomicU32::new(0);
    let mut interval = tokio::time::interval(check.interval.get());
    loop {
        interval.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let ok = upstream.probe(&server, &check).await;
        let (mine, other) = if ok {
            (&successes, &failures)
        } else {
            (&failures, &successes)
        };
        other.store(0, Ordering::Relaxed);
        let run = mine.fetch_add(1, Ordering::Relaxed) + 1;
        let was_healthy = server.is_healthy();
        if ok && !was_healthy && run >= check.rise {
            server.healthy.store(true, Ordering::Relaxed);
            tracing::info!(pool = %upstream.name, server = %server.base, "server is healthy again");
        } else if !ok && was_healthy && run >= check.fall {
            server.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(pool = %upstream.name, server = %server.base, "server failed its health check");
        }
    }
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A cheap random index from the clock and a counter; good enough to spread load.
fn random_index(n: usize) -> usize {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    let mixed = blake3::hash(
        &(nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(17)).to_le_bytes(),
    );
    let bytes = mixed.as_bytes();
    usize::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ]) % n.max(1)
}
