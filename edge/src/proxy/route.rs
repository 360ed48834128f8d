//! Routing: the checks a request target and Host must pass, the site and
//! rule they pick, the cache key, and the path each request then takes
//! (tunnel, pass, or the cache).

use std::sync::Arc;

use super::client::ClientBody;
use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use outpost_cache::{CLIENT_CONDITIONS, CacheKey, Entry, Lookup, normalize_path};

use super::router::host_name;

use super::actions::Vars;
use super::exchange::{Exchange, Shielding};
use super::hit::{answer, source_of, unvalidated};
use super::respond::{plain, protocol_error, redirect};
use super::status::{CacheStatus, Detail, Fwd, Ttl};
use super::tunnel::is_websocket_upgrade;
use super::{ConnInfo, Outward, Proxy, Reply};
use crate::fleet::gate::{Access, Gate};
use crate::hooks::KEY_FIELD;

impl Proxy {
    /// Answers one request; `outward` learns the site and rule that
    /// apply, for what `Proxy::handle` does to the answer on its way out.
    pub(super) async fn route(
        self: &Arc<Self>,
        conn: ConnInfo,
        req: Request<ClientBody>,
        outward: &mut Outward,
    ) -> Reply {
        let (parts, body) = req.into_parts();
        let request = match self.prepare(conn, parts, outward).await {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        match passing(&request) {
            Some(Passing::Tunnel { over_h2 }) => {
                drop(body);
                return Box::pin(self.tunnel(request, over_h2)).await;
            }
            Some(Passing::Pass(why)) => {
                if why == Fwd::Bypass {
                    self.recent.bypassed(request.key.text());
                }
                return Box::pin(self.pass(request, body, CacheStatus::fwd(why))).await;
            }
            None => {}
        }
        // A GET or HEAD carries no meaningful body; drop whatever came.
        drop(body);
        let now = self.cache.now();
        let decision = self.decide(&request, Counted::Yes).await;
        let status = decision.status();
        match decision {
            Decision::OnlyIfCached => {
                let res = plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "only-if-cached: nothing usable is stored\n",
                );
                (Some(status), res)
            }
            // The tier goes to `outward`, not into the answer's extensions
            // (a map made for one value, on every hit).
            Decision::Hit(entry, _) => {
                outward.source = Some(source_of(&entry));
                (
                    Some(status),
                    unvalidated(&entry, answer(&self.cache, &entry, &request.parts, now)),
                )
            }
            Decision::StaleWhileRevalidate(entry, _) => {
                self.revalidate_in_background(&request, entry.clone());
                outward.source = Some(source_of(&entry));
                (
                    Some(status),
                    unvalidated(&entry, answer(&self.cache, &entry, &request.parts, now)),
                )
            }
            Decision::Revalidate(entry, why) => {
                Box::pin(self.revalidate(request, entry, why)).await
            }
            Decision::VaryMiss => Box::pin(self.vary_miss(request, status)).await,
            Decision::Miss => {
                self.recent.missed(request.key.text());
                if let Some(size) = sliced(&request) {
                    return Box::pin(self.sliced(request, size)).await;
                }
                Box::pin(self.fetch(request, status)).await
            }
            Decision::PurgeLag => Box::pin(self.fetch(request, status)).await,
        }
    }

    /// A Vary miss: a decoded copy of a stored coding, or the stored
    /// variants' validation, or a fetch. Its own future, boxed where it is
    /// awaited, so that a hit's future stays small (an HTTP/2 stream's
    /// task is copied whole when it is spawned).
    async fn vary_miss(&self, mut request: Exchange, status: CacheStatus) -> Reply {
        if let Some(reply) = self.decoded_copy(&mut request).await {
            return reply;
        }
        self.recent.missed(request.key.text());
        // RFC 9111 §4.3.1: the stored variants' tags go with the
        // request, so that a 304 can select one of them.
        if !has_preconditions(&request.parts.headers) {
            let candidates = self
                .cache
                .vary_candidates(&request.key, &request.parts)
                .await;
            if !candidates.is_empty() {
                return self.validate_variants(request, candidates).await;
            }
        }
        self.fetch(request, status).await
    }

    /// Everything before the cache is asked: the checks a request must
    /// pass, its site and rule, the rule's redirect, header edits and
    /// rewrite, and its key. An answer given on the way (a refusal, a
    /// redirect) is the error. `/explain` routes through here too.
    pub(super) async fn prepare(
        self: &Arc<Self>,
        conn: ConnInfo,
        mut parts: http::request::Parts,
        outward: &mut Outward,
    ) -> Result<Exchange, Reply> {
        // RFC 9110 §15.5.15.
        let target_length = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if target_length > self.max_uri_length {
            return Err((
                None,
                plain(
                    StatusCode::URI_TOO_LONG,
                    &format!("the request target is over {} bytes\n", self.max_uri_length),
                ),
            ));
        }
        // RFC 9112 §3.2: more than one Host is a bad request.
        if parts.headers.get_all(HOST).iter().count() > 1 {
            return Err((None, protocol_error("more than one Host\n")));
        }
        // RFC 9112 §3.2.2 has an absolute-form target's authority win over
        // Host, and RFC 9113 §8.3.1 calls a request whose Host differs from
        // its :authority malformed. A target and a Host naming two places is
        // how caches get poisoned: refuse it rather than pick one.
        if let (Some(target), Some(host)) = (parts.uri.authority(), parts.headers.get(HOST))
            && !same_authority(target, host, conn.tls)
        {
            return Err((
                None,
                protocol_error("the request target and Host name different hosts\n"),
            ));
        }
        // HTTP/2 without :path and :authority reaches here with no target.
        if parts.uri.path().is_empty() {
            return Err((None, protocol_error("no request target\n")));
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
            return Err((
                None,
                plain(StatusCode::BAD_REQUEST, "missing or invalid Host\n"),
            ));
        };
        let Some(site) = self.router.site(&host) else {
            return Err((
                None,
                plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!("no site is served for host {host}\n"),
                ),
            ));
        };
        outward.site = Some(site.clone());
        // RFC 9110 §15.5.20, RFC 9113 §9.1.1: a connection is for the
        // hosts its certificate serves; a request for another host (whose
        // certificate the client never checked) goes elsewhere.
        if let Some(chosen) = conn.certificate
            && let Some(Some(names)) = self.certificates.get(conn.listener)
            && names.choose(Some(&host)) != chosen
        {
            return Err((
                None,
                plain(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!("this connection's certificate does not serve {host}\n"),
                ),
            ));
        }
        if let (Some(hooks), Some(info)) = (&self.hooks, &mut outward.info) {
            info.host.clone_from(&host);
            parts.headers.remove(KEY_FIELD);
            if let Some(answer) = hooks.request(info, &mut parts).await {
                return Err((None, answer.map(super::respond::full)));
            }
        }
        let websocket_over_h2 = is_websocket_over_h2(&parts);
        if parts.method == Method::CONNECT && !websocket_over_h2 {
            return Err((
                None,
                plain(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported\n"),
            ));
        }
        // RFC 9110 §9.3.8: TRACE echoes the request, credentials and
        // cookies included, back to whoever can read the answer (cross-site
        // tracing); it is not forwarded.
        if parts.method == Method::TRACE {
            return Err((
                None,
                plain(StatusCode::METHOD_NOT_ALLOWED, "TRACE is not served\n"),
            ));
        }
        // Purges go through the side API only: the public listener neither
        // acts on these methods nor passes them to an origin.
        if matches!(parts.method.as_str(), "PURGE" | "BAN" | "REFRESH") {
            return Err((
                None,
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "purges go through the admin API\n",
                ),
            ));
        }
        let Some(upstream) = self.upstreams.get(&site.origin).cloned() else {
            return Err((
                None,
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "site has no origin pool\n",
                ),
            ));
        };
        // One normalized path for matching, keying and forwarding.
        let path = match normalize_path(parts.uri.path()) {
            Ok(path) => path,
            Err(e) => {
                return Err((None, plain(StatusCode::BAD_REQUEST, &format!("{e}\n"))));
            }
        };
        let target = if path == parts.uri.path()
            && parts.uri.scheme().is_none()
            && parts.uri.authority().is_none()
        {
            // Already a normalized origin-form target: kept as it came
            // rather than written out and parsed again.
            Ok(parts.uri.clone())
        } else {
            match parts.uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path,
            }
            .parse::<http::Uri>()
        };
        let Ok(target) = target else {
            return Err((
                None,
                plain(StatusCode::BAD_REQUEST, "invalid request target\n"),
            ));
        };
        let rule = site.rule_for(target.path(), conn.tls);
        site.strip_unkeyed(&mut parts.headers);
        if rule.ignore_client_no_cache {
            strip_client_no_cache(&mut parts.headers);
        }
        // The rule's own actions: a redirect answers here; header changes
        // come before the key is built; a rewrite changes what the origin
        // is asked for (and the key, when the rule says so).
        let mut forwarded = None;
        // For the access log, and for the rule's response edits (which
        // apply to its redirect too).
        outward.rule = rule.index();
        if let Some(actions) = rule.actions() {
            let vars = (actions.request_vars() || actions.response_vars()).then(|| Vars {
                tls: conn.tls,
                host: &host,
                path: target.path(),
                query: target.query(),
                rest_from: actions.rest_from(target.path()),
                client: conn.remote.ip(),
                request_id: outward.id,
            });
            if actions.response_vars() {
                outward.vars = vars.map(Vars::kept);
            }
            if let Some((status, to)) = vars.as_ref().and_then(|v| actions.redirect(v)) {
                return Err((
                    Some(CacheStatus::neither(Detail::Redirect)),
                    redirect(status, &to),
                ));
            }
            actions.edit_request(&mut parts.headers, vars.as_ref());
            if let Some(changed) = actions.rewritten(target.path()) {
                let uri = changed.map_err(|e| e.to_string()).and_then(|path| {
                    let changed = match target.query() {
                        Some(query) => format!("{path}?{query}"),
                        None => path,
                    };
                    changed.parse::<http::Uri>().map_err(|e| e.to_string())
                });
                match uri {
                    Ok(uri) => forwarded = Some(uri),
                    Err(error) => {
                        tracing::warn!(%error, path = target.path(), "rewrite failed");
                        return Err((
                            None,
                            plain(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "the site's rewrite rule made an invalid request target\n",
                            ),
                        ));
                    }
                }
            }
        }
        let bypass = rule.bypass;
        let keyed = match &forwarded {
            Some(uri) if rule.actions().is_some_and(|a| a.keys_rewritten()) => uri,
            _ => &target,
        };
        let path_and_query = keyed.path_and_query().map_or("/", |p| p.as_str());
        let mut rule = rule;
        if let (Some(hooks), Some(info)) = (&self.hooks, &outward.info)
            && matches!(parts.method, Method::GET | Method::HEAD)
            && let Some(value) = hooks.cache_key(info, &parts)
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            // A variant of the URL, as a `key.headers` value makes one.
            parts.headers.insert(KEY_FIELD, value);
            rule.key_by_field(KEY_FIELD);
        }
        let key = CacheKey::new(
            if conn.tls { "https" } else { "http" },
            &authority,
            path_and_query,
            &rule.query,
        );
        // The client's target, kept for a member of the fleet when the
        // origin is asked for another.
        let (target, client_target) = match forwarded {
            Some(uri) => (uri, Some(target)),
            None => (target, None),
        };
        // A shielded site's key that another member owns goes there first,
        // unless the request has passed a member already (RFC 8586).
        // Only what the cache handles; checked only for a shielded site.
        let cached = || {
            matches!(parts.method, Method::GET | Method::HEAD)
                && !bypass
                && !websocket_over_h2
                && !is_websocket_upgrade(&parts)
        };
        let shield = match &self.fleet_shield {
            Some(shield) if site.shield && cached() && !shield.has_passed(&parts.headers) => {
                shield.route(key.hash()).map(|members| Shielding {
                    members,
                    loop_value: shield.loop_value().clone(),
                })
            }
            _ => None,
        };
        // One coding per request before the variant is looked up (and
        // the origin asked): clients share a few variants.
        if rule.compress
            && let Some(compression) = &self.compression
            && cached()
        {
            compression.negotiate(&mut parts.headers);
        }
        Ok(Exchange {
            shield,
            conn,
            parts,
            target,
            client_target,
            hooks: self.hooks.clone(),
            authority,
            key,
            rule,
            upstream,
            interim: outward.interim.take(),
        })
    }

    /// What the cache does with a GET or HEAD it takes part in, from what
    /// it holds: the one decision `route` acts on and `/explain` reports.
    pub(super) async fn decide(&self, request: &Exchange, counted: Counted) -> Decision {
        let now = self.cache.now();
        let access = self
            .fleet_gate
            .as_deref()
            .map_or(Access::Open, Gate::access);
        // While purges this node has not applied may name what it holds,
        // nothing it holds is used.
        let lookup = match (access, counted) {
            (Access::Closed, _) => Lookup::Miss,
            (_, Counted::Yes) => self.cache.lookup_tiered(&request.key, &request.parts).await,
            (_, Counted::No) => {
                self.cache
                    .lookup_uncounted(&request.key, &request.parts)
                    .await
            }
        };
        // RFC 9111 §5.2.1.7: only a stored response that may be used as is, or a 504.
        if request_directive(&request.parts.headers, "only-if-cached")
            && !matches!(lookup, Lookup::Fresh(_))
        {
            return Decision::OnlyIfCached;
        }
        if access == Access::Closed {
            return Decision::PurgeLag;
        }
        match lookup {
            Lookup::Fresh(entry) => {
                let ttl = Ttl::Fresh(entry.time_to_live(now).as_secs());
                let mut status = CacheStatus::hit(ttl);
                if access == Access::Lagging {
                    status = status.detail(Detail::PurgeLag);
                }
                Decision::Hit(entry, status)
            }
            // RFC 5861 §3: within stale-while-revalidate, answer at once and
            // revalidate in the background; a client's no-cache still waits.
            Lookup::Stale(entry)
                if entry.stale_while_revalidate(now)
                    && !request_directive(&request.parts.headers, "no-cache") =>
            {
                let stale_for = Ttl::Stale(entry.staleness(now).as_secs());
                let status = CacheStatus::hit(stale_for).detail(Detail::StaleWhileRevalidate);
                Decision::StaleWhileRevalidate(entry, status)
            }
            Lookup::Stale(entry) => Decision::Revalidate(entry, Fwd::Stale),
            // RFC 9211 §2.2: a fresh response the request's directives refused.
            Lookup::Refused(entry) => Decision::Revalidate(entry, Fwd::Request),
            Lookup::VaryMiss => Decision::VaryMiss,
            Lookup::Miss => Decision::Miss,
        }
    }
}

/// How a routed request goes by the cache, when it does.
pub(super) enum Passing {
    /// A WebSocket upgrade (or, over HTTP/2, an extended CONNECT): a tunnel.
    Tunnel { over_h2: bool },
    /// Straight to the origin: the rule's `cache: bypass`, or a method
    /// the cache does not answer.
    Pass(Fwd),
}

/// Whether the cache takes part in `request`; None when it does.
pub(super) fn passing(request: &Exchange) -> Option<Passing> {
    let over_h2 = is_websocket_over_h2(&request.parts);
    if over_h2 || is_websocket_upgrade(&request.parts) {
        return Some(Passing::Tunnel { over_h2 });
    }
    if request.rule.bypass {
        return Some(Passing::Pass(Fwd::Bypass));
    }
    if !matches!(request.parts.method, Method::GET | Method::HEAD) {
        return Some(Passing::Pass(Fwd::Method));
    }
    None
}

/// An extended CONNECT for a WebSocket over HTTP/2 (RFC 8441).
fn is_websocket_over_h2(parts: &http::request::Parts) -> bool {
    parts.method == Method::CONNECT
        && parts
            .extensions
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Whether a lookup counts in the memory tier's hits and misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    Yes,
    /// `/explain` asks what a request would get without making one.
    No,
}

/// What the cache does with a request it takes part in.
pub(super) enum Decision {
    /// `only-if-cached` and nothing stored may be used as is: a 504.
    OnlyIfCached,
    /// The node has not applied the fleet's latest purges: the origin answers.
    PurgeLag,
    /// A fresh stored response answers.
    Hit(Arc<Entry>, CacheStatus),
    /// A stale one answers at once and is revalidated in the background.
    StaleWhileRevalidate(Arc<Entry>, CacheStatus),
    /// A stored response is validated with the origin first: stale, or
    /// refused by the request's directives.
    Revalidate(Arc<Entry>, Fwd),
    /// The URL has stored responses, none for this request's Vary values.
    VaryMiss,
    Miss,
}

impl Decision {
    /// The `Cache-Status` the answer starts from.
    pub(super) fn status(&self) -> CacheStatus {
        match self {
            Decision::OnlyIfCached => CacheStatus::neither(Detail::OnlyIfCached),
            Decision::PurgeLag => CacheStatus::fwd(Fwd::Bypass).detail(Detail::PurgeLag),
            Decision::Hit(_, status) | Decision::StaleWhileRevalidate(_, status) => *status,
            Decision::Revalidate(_, why) => CacheStatus::fwd(*why),
            Decision::VaryMiss => CacheStatus::fwd(Fwd::VaryMiss),
            Decision::Miss => CacheStatus::fwd(Fwd::Miss),
        }
    }
}

/// Removes the client's `no-cache` and `no-store` (and `Pragma: no-cache`)
/// for a rule that sets them aside.
pub(super) fn strip_client_no_cache(headers: &mut HeaderMap) {
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

/// The slice size, when the request is a GET the rule answers from
/// slices: not an authenticated one, whose answers are its own.
fn sliced(request: &Exchange) -> Option<u64> {
    let size = request.rule.slice?;
    (request.parts.method == http::Method::GET
        && !request
            .parts
            .headers
            .contains_key(http::header::AUTHORIZATION))
    .then_some(size)
}

/// Whether the client sent preconditions or a range of its own: then its
/// request goes as it is, and a 304 to it is the client's.
fn has_preconditions(headers: &HeaderMap) -> bool {
    CLIENT_CONDITIONS
        .iter()
        .any(|name| headers.contains_key(name))
}

/// Whether the request's Cache-Control carries `directive`.
pub(super) fn request_directive(headers: &HeaderMap, directive: &str) -> bool {
    outpost_cache::Directives::from_headers(headers).has(directive)
}

/// Whether a target's authority and a Host value name the same host and
/// port (names compared without case or a trailing dot, a missing port
/// being the scheme's default).
pub(super) fn same_authority(target: &http::uri::Authority, host: &HeaderValue, tls: bool) -> bool {
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
