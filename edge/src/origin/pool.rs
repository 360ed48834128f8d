//! Origin pools: server choice (consistent hash, round robin, least
//! connections, random), pooled connections over HTTP/1.1, h2c or TLS
//! (BoringSSL, h2 by ALPN), DNS names re-resolved into one server per
//! address, active and passive health, and failover that never replays a
//! request that is not safe to replay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, request};
use http_body_util::{BodyExt, Empty};
use outpost_config::{Balance, Eject, HealthCheck, OriginPool, OriginProtocol, ServerUrl};
use outpost_purge_api::{PoolStatus, ServerStatus};

use crate::origin::metrics::OriginMetrics;

use crate::origin::body::{ClientFault, OutgoingBody};
use crate::origin::error::{Attempt, Chain, Failure, PoolError, UpstreamError};
use crate::origin::resolve::resolve;
use crate::origin::response::{Lease, OriginStream};
use crate::origin::ring::Ring;
use crate::origin::server::{Blueprint, Server};

/// The servers of a pool and the ring over them; replaced whole when DNS changes.
struct Members {
    servers: Vec<Arc<Server>>,
    ring: Ring,
}

pub struct Upstream {
    pub name: String,
    members: RwLock<Arc<Members>>,
    configured: Vec<(ServerUrl, String, u32)>,
    blueprint: Blueprint,
    balance: Balance,
    next: AtomicUsize,
    retries: u32,
    response_header_timeout: Duration,
    idle_timeout: Duration,
    total_timeout: Option<Duration>,
    eject: Eject,
    host: Option<String>,
    metrics: Arc<OriginMetrics>,
}

/// Checks an origin response's framing fields (RFC 9112 §6.1, §6.3; RFC
/// 9110 §8.6). Content-Length together with Transfer-Encoding is refused:
/// such a response is how responses are split, and the length it was
/// meant to have cannot be known. A Content-Length repeated with one value
/// (`5, 5`) becomes that value; anything else is refused.
pub fn normalize_framing(headers: &mut http::HeaderMap) -> Result<(), &'static str> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    let lengths: Vec<&http::HeaderValue> = headers.get_all(CONTENT_LENGTH).iter().collect();
    if lengths.is_empty() {
        return Ok(());
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err("both Content-Length and Transfer-Encoding");
    }
    let mut value: Option<u64> = None;
    for field in lengths {
        let text = field
            .to_str()
            .map_err(|_| "a Content-Length that is not text")?;
        for item in text.split(',') {
            let item = item.trim_matches([' ', '\t']);
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err("a malformed Content-Length");
            }
            let n: u64 = item.parse().map_err(|_| "a Content-Length out of range")?;
            if value.is_some_and(|v| v != n) {
                return Err("Content-Length values that differ");
            }
            value = Some(n);
        }
    }
    if let Some(n) = value {
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    Ok(())
}

/// Which server answered and how long its headers took, for the access log;
/// carried in the response's extensions.
#[derive(Debug, Clone)]
pub struct OriginInfo {
    pub server: String,
    pub duration: Duration,
}

/// The origin's answer, the server that gave it, and the lease that keeps
/// the server's connection slot until the body is done.
pub struct Answer {
    pub response: Response<OriginStream>,
    pub lease: Lease,
}

impl Upstream {
    /// Builds a pool, resolving every server's host name.
    pub async fn new(
        name: &str,
        pool: &OriginPool,
        metrics: Arc<OriginMetrics>,
        base_dir: &std::path::Path,
    ) -> Result<Self, PoolError> {
        let mut configured = Vec::with_capacity(pool.servers.len());
        for server in &pool.servers {
            configured.push((
                ServerUrl::parse(&server.url.value).map_err(PoolError::Url)?,
                server.url.value.clone(),
                server.weight,
            ));
        }
        let blueprint = Blueprint {
            pool: name.to_owned(),
            tls: pool.tls.clone(),
            base_dir: base_dir.to_path_buf(),
            protocol: pool.protocol,
            connect_timeout: pool.timeouts.connect.get(),
            keepalive: pool.timeouts.keepalive.get(),
            max_idle: pool.max_idle_per_server,
            max_connections: pool.max_connections_per_server,
            metrics: metrics.clone(),
        };
        let upstream = Self {
            name: name.to_owned(),
            members: RwLock::new(Arc::new(Members {
                servers: Vec::new(),
                ring: Ring::new([]),
            })),
            configured,
            blueprint,
            balance: pool.balance,
            next: AtomicUsize::new(0),
            retries: pool.retries,
            response_header_timeout: pool.timeouts.response_header.get(),
            idle_timeout: pool.timeouts.idle.get(),
            total_timeout: pool.timeouts.total.map(|t| t.get()),
            eject: pool.eject.clone(),
            host: pool.host.clone(),
            metrics,
        };
        upstream.refresh_members(true).await?;
        Ok(upstream)
    }

    fn members(&self) -> Arc<Members> {
        self.members
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves every server again and swaps in the new member list when
    /// addresses changed; servers whose address stayed keep their
    /// connections and health. At start (`strict`) a failure is an error;
    /// later the last known addresses stay.
    async fn refresh_members(&self, strict: bool) -> Result<(), PoolError> {
        let current = self.members();
        let existing: HashMap<(String, std::net::SocketAddr), Arc<Server>> = current
            .servers
            .iter()
            .map(|s| ((s.url.clone(), s.addr), s.clone()))
            .collect();
        let mut servers = Vec::new();
        for (index, (url, text, weight)) in self.configured.iter().enumerate() {
            let addrs = match resolve(&url.host, url.port).await {
                Ok(addrs) => addrs,
                Err(source) if strict => {
                    return Err(PoolError::Resolve {
                        server: text.clone(),
                        index,
                        host: url.host.clone(),
                        source,
                    });
                }
                Err(e) => {
                    tracing::warn!(pool = %self.name, server = %text, error = %e, "re-resolving failed; keeping the last addresses");
                    servers.extend(current.servers.iter().filter(|s| &s.url == text).cloned());
                    continue;
                }
            };
            let literal = url.host.parse::<std::net::IpAddr>().is_ok();
            for addr in addrs {
                let server = match existing.get(&(text.clone(), addr)) {
                    Some(server) => server.clone(),
                    None => Arc::new(self.blueprint.server(url, text, *weight, addr, literal)?),
                };
                servers.push(server);
            }
        }
        let unchanged = servers.len() == current.servers.len()
            && servers
                .iter()
                .zip(&current.servers)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return Ok(());
        }
        if !strict {
            tracing::info!(pool = %self.name, servers = servers.len(), "origin addresses changed");
        }
        let ring = Ring::new(servers.iter().map(|s| (s.label.as_str(), s.weight)));
        *self.members.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(Members { servers, ring });
        Ok(())
    }

    /// Carries the health of `old`'s servers over to this pool's servers
    /// with the same label (URL and address); `checked`: whether this pool
    /// has active health checks.
    pub fn inherit_health(&self, old: &Upstream, checked: bool) {
        let old = old.members();
        for server in &self.members().servers {
            if let Some(previous) = old.servers.iter().find(|s| s.label == server.label) {
                server.health.inherit(&previous.health, checked);
            }
        }
    }

    /// Starts the pool's background work: active health checks, if
    /// configured, and re-resolution of host names.
    pub fn spawn_background(
        self: &Arc<Self>,
        check: Option<&HealthCheck>,
        resolve_every: Duration,
    ) {
        if let Some(check) = check {
            tokio::spawn(health_loop(Arc::downgrade(self), check.clone()));
        }
        if self
            .configured
            .iter()
            .any(|(url, _, _)| url.host.parse::<std::net::IpAddr>().is_err())
        {
            tokio::spawn(resolve_loop(Arc::downgrade(self), resolve_every));
        }
    }

    /// Whether this pool may speak HTTP/1.1, which a WebSocket upgrade
    /// needs (`protocol: http2` pools never do).
    pub fn speaks_http1(&self) -> bool {
        self.blueprint.protocol != OriginProtocol::Http2
    }

    /// The Host header to send: the pool's override or the client's.
    pub fn host_header<'a>(&'a self, client_host: &'a str) -> &'a str {
        self.host.as_deref().unwrap_or(client_host)
    }

    /// Servers to try, best first: those taking traffic in the balance
    /// policy's order, then the others as a last resort.
    fn candidates(&self, members: &Members, key_hash: &[u8; 32]) -> Vec<Arc<Server>> {
        let n = members.servers.len();
        let order: Vec<usize> = match self.balance {
            Balance::ConsistentHash => members.ring.order(key_hash),
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
                order.sort_by_key(|&i| members.servers[i].in_flight.load(Ordering::Relaxed));
                order
            }
        };
        let mut servers: Vec<Arc<Server>> = order
            .into_iter()
            .map(|i| members.servers[i].clone())
            .collect();
        servers.sort_by_key(|s| !s.health.is_available());
        servers
    }

    /// Sends a request to the pool. `parts.uri` holds the path and query.
    ///
    /// Failover, within `retries` further attempts, walks the candidate
    /// list (and wraps around to retry a lone server):
    /// - a connect failure is retried for any request with a replayable
    ///   body: nothing reached the origin;
    /// - a failure after the request was sent but before the response
    ///   headers (a reset, or a pooled connection the origin had just
    ///   closed) is retried only for idempotent methods;
    /// - a response-header timeout is not retried;
    /// - a streaming body is sent at most once.
    pub async fn send(
        &self,
        key_hash: &[u8; 32],
        parts: request::Parts,
        mut body: OutgoingBody,
    ) -> Result<Answer, UpstreamError> {
        let members = self.members();
        let candidates = self.candidates(&members, key_hash);
        if candidates.is_empty() {
            return Err(UpstreamError::NoServers);
        }
        let idempotent = matches!(
            parts.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        );
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut last_error = None;
        for attempt in 0..=self.retries as usize {
            let server = candidates[attempt % candidates.len()].clone();
            let Some(attempt_body) = body.take() else {
                break;
            };
            let headers = parts.headers.clone();
            // The URI carries the Host the origin should see, so that over
            // HTTP/2 `:authority` and `Host` agree (RFC 9113 §8.3.1); the
            // connector dials this server whatever the URI names.
            let authority = headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.parse::<http::uri::Authority>()
                        .is_ok_and(|a| !a.as_str().contains('@'))
                })
                .map_or_else(|| server.authority.clone(), str::to_owned);
            let uri: http::Uri = format!("{}://{authority}{path}", server.scheme)
                .parse()
                .map_err(UpstreamError::Target)?;
            let mut req = Request::new(attempt_body);
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri;
            *req.headers_mut() = headers;
            let connection = hyper_util::client::legacy::connect::capture_connection(&mut req);
            let interim = parts
                .extensions
                .get::<crate::origin::interim::InterimSink>()
                .cloned();

            let Ok(permit) = tokio::time::timeout(
                self.blueprint.connect_timeout,
                server.permits.clone().acquire_owned(),
            )
            .await
            else {
                self.count(&server, "connect_error");
                last_error = Some(UpstreamError::Unreachable(Attempt {
                    server: server.label.clone(),
                    failure: Failure::Busy(self.blueprint.max_connections),
                }));
                continue;
            };
            let Ok(permit) = permit else { break };
            server.in_flight.fetch_add(1, Ordering::Relaxed);
            let lease = Lease {
                _permit: permit,
                in_flight: server.in_flight.clone(),
                idle_timeout: self.idle_timeout,
                bytes: self.metrics.bytes.clone(),
                // Saturating: the config may say a span past what the clock counts.
                deadline: self
                    .total_timeout
                    .map(|t| crate::front::later(tokio::time::Instant::now(), t).into_std()),
            };
            let started = Instant::now();
            let limit = match lease.deadline {
                Some(deadline) => self
                    .response_header_timeout
                    .min(deadline.saturating_duration_since(started)),
                None => self.response_header_timeout,
            };
            let result = tokio::time::timeout(limit, server.request(req, interim)).await;
            self.metrics
                .response
                .with_label_values(&[self.name.as_str()])
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(Ok(mut response)) => {
                    if let Err(why) = normalize_framing(response.headers_mut()) {
                        // The connection goes: bytes that may belong to
                        // this response are never read as the next one's.
                        if let Some(connected) = connection.connection_metadata().as_ref() {
                            connected.poison();
                        }
                        drop(response);
                        self.count(&server, "malformed");
                        self.failed(&server);
                        tracing::warn!(pool = %self.name, server = %server.label, why, "malformed response");
                        return Err(UpstreamError::Malformed {
                            server: server.label.clone(),
                            why,
                        });
                    }
                    server.health.record_latency(started.elapsed());
                    response.extensions_mut().insert(OriginInfo {
                        server: server.label.clone(),
                        duration: started.elapsed(),
                    });
                    if response.status().is_server_error() {
                        self.count(&server, "5xx");
                        self.failed(&server);
                    } else {
                        self.count(&server, "ok");
                        server.health.record_success();
                    }
                    return Ok(Answer { response, lease });
                }
                Ok(Err(failure))
                    if parts
                        .extensions
                        .get::<ClientFault>()
                        .is_some_and(ClientFault::happened) =>
                {
                    // The client's body broke the exchange: the server did
                    // nothing wrong, and another server would fare the same.
                    self.count(&server, "client_body");
                    return Err(UpstreamError::ClientBody(Attempt {
                        server: server.label.clone(),
                        failure,
                    }));
                }
                Ok(Err(failure)) if failure.before_sending() => {
                    self.count(&server, "connect_error");
                    self.failed(&server);
                    tracing::warn!(pool = %self.name, server = %server.label, error = %Chain(&failure), "connect failed");
                    last_error = Some(UpstreamError::Unreachable(Attempt {
                        server: server.label.clone(),
                        failure,
                    }));
                    if !body.replayable() {
                        break;
                    }
                }
                Ok(Err(failure @ Failure::Refused(_))) => {
                    self.count(&server, "refused");
                    tracing::warn!(pool = %self.name, server = %server.label, error = %Chain(&failure), "the server refused the request unprocessed");
                    last_error = Some(UpstreamError::Failed(Attempt {
                        server: server.label.clone(),
                        failure,
                    }));
                    if !body.replayable() {
                        break;
                    }
                }
                Ok(Err(failure)) => {
                    self.count(&server, "reset");
                    // A server that resets requests is failing as surely as
                    // one that answers 5xx.
                    self.failed(&server);
                    tracing::warn!(pool = %self.name, server = %server.label, error = %Chain(&failure), "failed before the response headers");
                    last_error = Some(UpstreamError::Failed(Attempt {
                        server: server.label.clone(),
                        failure,
                    }));
                    if !(idempotent && body.replayable()) {
                        break;
                    }
                }
                Err(_) => {
                    self.count(&server, "timeout");
                    self.failed(&server);
                    return Err(UpstreamError::Timeout(limit));
                }
            }
        }
        Err(last_error.unwrap_or(UpstreamError::NoServers))
    }

    fn count(&self, server: &Server, outcome: &str) {
        self.metrics
            .requests
            .with_label_values(&[self.name.as_str(), server.label.as_str(), outcome])
            .inc();
    }

    fn failed(&self, server: &Server) {
        if server.health.record_failure(&self.eject) {
            tracing::warn!(pool = %self.name, server = %server.label, cooldown = ?server.health.ejected_for(), "server ejected after repeated failures");
        }
    }

    /// The pool's servers and their health, for `/stats` and `/metrics`.
    pub fn status(&self) -> PoolStatus {
        let members = self.members();
        PoolStatus {
            name: self.name.clone(),
            servers: members
                .servers
                .iter()
                .map(|s| ServerStatus {
                    url: s.url.clone(),
                    address: s.addr.to_string(),
                    healthy: s.health.is_available(),
                    passes_checks: s.health.passes_checks(),
                    ejected_for_ms: u64::try_from(s.health.ejected_for().as_millis())
                        .unwrap_or(u64::MAX),
                    in_flight: s.in_flight.load(Ordering::Relaxed),
                    ejections: s.health.ejections(),
                    latency_ms: s.health.latency().map(|d| d.as_secs_f64() * 1000.0),
                    label: s.label.clone(),
                })
                .collect(),
        }
    }

    async fn probe(&self, server: &Server, check: &HealthCheck) -> bool {
        let Ok(uri) =
            format!("{}://{}{}", server.scheme, server.authority, check.path).parse::<http::Uri>()
        else {
            return false;
        };
        let mut req = Request::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *req.uri_mut() = uri;
        if let Some(host) = &self.host
            && let Ok(value) = http::HeaderValue::from_str(host)
        {
            req.headers_mut().insert(http::header::HOST, value);
        }
        match tokio::time::timeout(check.timeout.get(), server.request(req, None)).await {
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

/// Probes every server of a pool at the check's interval until the pool is dropped.
async fn health_loop(upstream: Weak<Upstream>, check: HealthCheck) {
    let mut interval = tokio::time::interval(check.interval.get());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let members = upstream.members();
        let probes = members.servers.iter().map(|server| {
            let upstream = &upstream;
            let check = &check;
            async move { (server.clone(), upstream.probe(server, check).await) }
        });
        for (server, ok) in futures_util::future::join_all(probes).await {
            match server.health.record_check(ok, check.rise, check.fall) {
                Some(true) => {
                    tracing::info!(pool = %upstream.name, server = %server.label, "server passes its health checks again")
                }
                Some(false) => {
                    tracing::warn!(pool = %upstream.name, server = %server.label, "server failed its health checks")
                }
                None => {}
            }
        }
    }
}

/// Resolves the pool's host names again every `every`, until the pool is dropped.
async fn resolve_loop(upstream: Weak<Upstream>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let _ = upstream.refresh_members(false).await;
    }
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

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::normalize_framing;

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    /// RFC 9110 §8.6 and RFC 9112 §6.3 on what an origin's framing fields
    /// may be.
    #[test]
    fn framing_fields_are_checked_and_made_single() {
        let mut one = headers(&[("content-length", "5, 5"), ("content-length", "5")]);
        assert_eq!(normalize_framing(&mut one), Ok(()));
        assert_eq!(one.get_all("content-length").iter().count(), 1);
        assert_eq!(one["content-length"], "5");
        for bad in [
            vec![("content-length", "5"), ("transfer-encoding", "chunked")],
            vec![("content-length", "5, 6")],
            vec![("content-length", "5"), ("content-length", "6")],
            vec![("content-length", "+5")],
            vec![("content-length", "")],
            vec![("content-length", "99999999999999999999999")],
        ] {
            assert!(normalize_framing(&mut headers(&bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            normalize_framing(&mut headers(&[("transfer-encoding", "chunked")])),
            Ok(())
        );
        assert_eq!(normalize_framing(&mut HeaderMap::new()), Ok(()));
    }
}
