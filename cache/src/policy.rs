//! Whether a response may be stored, and for how long: RFC 9111 for a shared
//! cache through `http-cache-semantics`, then the rule's overrides.

use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, CACHE_CONTROL, EXPIRES, HeaderName, PRAGMA, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Method, Uri, request, response};
use http_cache_semantics::{CacheOptions, CachePolicy};

/// What the matching rule says about storing.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreRules {
    /// Replaces the origin's freshness lifetime.
    pub ttl: Option<Duration>,
    /// Store responses that set cookies.
    pub share_set_cookie: bool,
}

/// Why a response was not stored; the words go into `Cache-Status: detail=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    SetCookie,
    Headers,
}

impl NotStored {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::SetCookie => "set-cookie",
            NotStored::Headers => "not-storable",
        }
    }
}

/// Options shared by every policy this cache builds.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub heuristic_fraction: f32,
    /// Targeted cache-control fields Outpost obeys, first match wins
    /// (RFC 9213 §2.1); lower-case names.
    pub targeted: Vec<HeaderName>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            heuristic_fraction: 0.1,
            targeted: vec![
                HeaderName::from_static("cdn-cache-control"),
                HeaderName::from_static("surrogate-control"),
            ],
        }
    }
}

impl PolicyOptions {
    fn cache_options(&self) -> CacheOptions {
        CacheOptions {
            shared: true,
            cache_heuristic: self.heuristic_fraction,
            // `immutable` alone gives no freshness (RFC 8246 only extends max-age).
            immutable_min_time_to_live: Duration::ZERO,
            ignore_cargo_cult: false,
        }
    }
}

/// Builds the storage policy for a response to `req`, or says why it must
/// not be stored.
pub fn storage_policy(
    req: &request::Parts,
    res: &response::Parts,
    response_time: SystemTime,
    options: &PolicyOptions,
    rules: StoreRules,
) -> Result<CachePolicy, NotStored> {
    if req.method != Method::GET {
        return Err(NotStored::Method);
    }
    if res.headers.contains_key(SET_COOKIE) && !rules.share_set_cookie {
        return Err(NotStored::SetCookie);
    }
    // RFC 9111 §3.5, decided on the origin's own words: a rule's TTL must
    // never be what lets a shared cache keep an authenticated response.
    if req.headers.contains_key(AUTHORIZATION)
        && !allows_authorized(&targeted_view(&res.headers, &options.targeted))
    {
        return Err(NotStored::Headers);
    }
    let policy = build(req, res.status, &res.headers, response_time, options, rules);
    if policy.is_storable() {
        Ok(policy)
    } else {
        Err(NotStored::Headers)
    }
}

/// Rebuilds a policy after a revalidation merged new headers into a stored response.
pub(crate) fn build(
    req: &request::Parts,
    status: http::StatusCode,
    headers: &HeaderMap,
    response_time: SystemTime,
    options: &PolicyOptions,
    rules: StoreRules,
) -> CachePolicy {
    let req_view = stored_request_view(req, headers);
    let mut res_view = response::Builder::new()
        .status(status)
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| response::Response::new(()).into_parts().0);
    let headers = targeted_view(headers, &options.targeted);
    res_view.headers = match rules.ttl {
        Some(ttl) => with_ttl(&headers, ttl),
        None => headers,
    };
    if rules.share_set_cookie {
        // The operator chose to share these; the library would otherwise
        // give them no freshness.
        res_view.headers.remove(SET_COOKIE);
    }
    CachePolicy::new_options(&req_view, &res_view, response_time, options.cache_options())
}

/// The response as this cache reads its caching policy: when one of the
/// targeted fields is present with a non-empty value (the first in list
/// order), it replaces `Cache-Control`, and `Expires` is ignored
/// (RFC 9213 §2.1).
fn targeted_view(headers: &HeaderMap, targeted: &[HeaderName]) -> HeaderMap {
    let mut view = headers.clone();
    let chosen = targeted.iter().find(|name| {
        headers
            .get_all(*name)
            .iter()
            .any(|v| v.to_str().is_ok_and(|t| !t.trim().is_empty()))
    });
    if let Some(name) = chosen {
        view.remove(CACHE_CONTROL);
        view.remove(EXPIRES);
        for value in headers.get_all(name) {
            view.append(CACHE_CONTROL, value.clone());
        }
    }
    view
}

/// Whether a response lets a shared cache answer requests that carry
/// `Authorization` (RFC 9111 §3.5): `public`, `s-maxage` or `must-revalidate`.
pub fn allows_authorized(headers: &HeaderMap) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            d.split('=')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .any(|d| matches!(d.as_str(), "public" | "s-maxage" | "must-revalidate"))
}

/// The request as the policy sees it on a lookup: a GET (HEAD is answered
/// from GET entries) for a fixed URI, since the cache key already fixes
/// identity, and without `Host`: the key holds it normalized, and the
/// library would compare the raw field (`Example.com:80` against `example.com`).
pub(crate) fn request_view(req: &request::Parts, stored: &HeaderMap) -> request::Parts {
    let mut view = request::Request::new(()).into_parts().0;
    view.method = Method::GET;
    view.uri = Uri::from_static("/");
    view.headers = req.headers.clone();
    view.headers.remove(http::header::HOST);
    if let Some(names) = crate::vary::names(stored) {
        crate::vary::normalize_fields(&mut view.headers, &names);
    }
    view
}

/// The request as a stored policy keeps it: only the fields it needs later
/// (its directives, whether it was authenticated, and the fields the
/// response varies on), so no cookie or credential stays in memory beyond them.
fn stored_request_view(req: &request::Parts, res_headers: &HeaderMap) -> request::Parts {
    let mut view = request::Request::new(()).into_parts().0;
    view.method = Method::GET;
    view.uri = Uri::from_static("/");
    let varied = res_headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| {
            HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).ok()
        });
    let kept = [CACHE_CONTROL, PRAGMA].into_iter().chain(varied);
    for name in kept {
        for value in req.headers.get_all(&name) {
            view.headers.append(name.clone(), value.clone());
        }
    }
    if let Some(names) = crate::vary::names(res_headers) {
        crate::vary::normalize_fields(&mut view.headers, &names);
    }
    if req.headers.contains_key(AUTHORIZATION) {
        // Its presence matters to the policy, its value never.
        view.headers
            .insert(AUTHORIZATION, HeaderValue::from_static("present"));
    }
    view
}

/// Response headers with the freshness lifetime replaced by `ttl`, keeping
/// every other directive (no-store, private and no-cache still apply).
fn with_ttl(headers: &HeaderMap, ttl: Duration) -> HeaderMap {
    let mut out = headers.clone();
    out.remove(EXPIRES);
    let mut directives: Vec<String> = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| {
            let name = d
                .split('=')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            !d.is_empty() && name != "max-age" && name != "s-maxage"
        })
        .map(str::to_owned)
        .collect();
    directives.push(format!("max-age={}", ttl.as_secs()));
    out.remove(CACHE_CONTROL);
    if let Ok(value) = HeaderValue::from_str(&directives.join(", ")) {
        out.insert(CACHE_CONTROL, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> PolicyOptions {
        PolicyOptions::default()
    }

    fn req(headers: &[(&str, &str)]) -> request::Parts {
        let mut b = request::Request::get("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn res(status: u16, headers: &[(&str, &str)]) -> response::Parts {
        let mut b = response::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ttl_of(
        req: &request::Parts,
        res: &response::Parts,
        rules: StoreRules,
    ) -> Result<u64, NotStored> {
        let now = SystemTime::now();
        storage_policy(req, res, now, &options(), rules).map(|p| p.time_to_live(now).as_secs())
    }

    #[test]
    fn s_maxage_wins_over_max_age_in_a_shared_cache() {
        let r = res(200, &[("cache-control", "max-age=10, s-maxage=100")]);
        assert_eq!(ttl_of(&req(&[]), &r, StoreRules::default()), Ok(100));
    }

    #[test]
    fn no_store_and_private_are_not_stored() {
        for cc in ["no-store", "private", "max-age=60, private"] {
            let r = res(200, &[("cache-control", cc)]);
            assert_eq!(
                ttl_of(&req(&[]), &r, StoreRules::default()),
                Err(NotStored::Headers),
                "{cc}"
            );
        }
    }

    #[test]
    fn a_rule_ttl_replaces_max_age_but_not_no_store() {
        let rules = StoreRules {
            ttl: Some(Duration::from_secs(3600)),
            share_set_cookie: false,
        };
        assert_eq!(
            ttl_of(
                &req(&[]),
                &res(200, &[("cache-control", "max-age=5")]),
                rules
            ),
            Ok(3600)
        );
        assert_eq!(ttl_of(&req(&[]), &res(200, &[]), rules), Ok(3600));
        assert_eq!(
            ttl_of(
                &req(&[]),
                &res(200, &[("cache-control", "no-store")]),
                rules
            ),
            Err(NotStored::Headers)
        );
    }

    #[test]
    fn set_cookie_is_shared_only_when_the_rule_says_so() {
        let r = res(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "a=b")],
        );
        assert_eq!(
            ttl_of(&req(&[]), &r, StoreRules::default()),
            Err(NotStored::SetCookie)
        );
        let rules = StoreRules {
            share_set_cookie: true,
            ..StoreRules::default()
        };
        assert_eq!(ttl_of(&req(&[]), &r, rules), Ok(60));
    }

    /// RFC 9111 §3.5: a shared cache stores a response to a request with
    /// Authorization only when the response allows it explicitly.
    #[test]
    fn authorization_needs_explicit_permission() {
        let auth = req(&[("authorization", "Bearer x")]);
        assert_eq!(
            ttl_of(
                &auth,
                &res(200, &[("cache-control", "max-age=60")]),
                StoreRules::default()
            ),
            Err(NotStored::Headers)
        );
        assert_eq!(
            ttl_of(
                &auth,
                &res(200, &[("cache-control", "public, max-age=60")]),
                StoreRules::default()
            ),
            Ok(60)
        );
        assert_eq!(
            ttl_of(
                &auth,
                &res(200, &[("cache-control", "s-maxage=60")]),
                StoreRules::default()
            ),
            Ok(60)
        );
        assert!(
            ttl_of(
                &auth,
                &res(200, &[("cache-control", "must-revalidate, max-age=60")]),
                StoreRules::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn only_get_is_stored() {
        let mut post = req(&[]);
        post.method = Method::POST;
        assert_eq!(
            ttl_of(
                &post,
                &res(200, &[("cache-control", "max-age=60")]),
                StoreRules::default()
            ),
            Err(NotStored::Method)
        );
    }
}
