//! Whether a response may be stored, and for how long: RFC 9111 for a shared
//! cache through `http-cache-semantics`, then the rule's overrides.

use std::time::{Duration, SystemTime};

use http::header::{
    AUTHORIZATION, CACHE_CONTROL, COOKIE, EXPIRES, HeaderName, PRAGMA, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Uri, request, response};
use http_cache_semantics::{CacheOptions, CachePolicy};

use crate::freshness::{Directives, LifetimeFrom, quoted};

/// What the matching rule says about storing one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreRules {
    /// Replaces the origin's freshness lifetime.
    pub ttl: Option<Duration>,
    /// Freshness for responses without any of their own.
    pub default_ttl: Option<Duration>,
    /// Store responses that set cookies.
    pub share_set_cookie: bool,
    /// `false`: the origin's Cache-Control and Expires are ignored.
    pub respect_origin: bool,
    /// Defaults for responses that do not say (RFC 5861).
    pub stale_while_revalidate: Option<Duration>,
    pub stale_if_error: Option<Duration>,
    /// Store responses to requests that carry a cookie even when the
    /// response does not say it may be shared. Decided when a response
    /// arrives, so not kept with the stored entry.
    #[serde(skip)]
    pub store_with_cookie: bool,
}

/// Distinct rules shared by the entries stored under them, so that an entry
/// holds a pointer rather than a copy; a config has a few, and past this
/// many (a config reloaded many times) new ones are not kept here.
const SHARED_RULES_MAX: usize = 256;

impl StoreRules {
    /// These rules, shared with every entry stored under the same ones.
    pub fn shared(self) -> std::sync::Arc<StoreRules> {
        static SHARED: std::sync::Mutex<Vec<std::sync::Arc<StoreRules>>> =
            std::sync::Mutex::new(Vec::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = shared.iter().find(|r| ***r == self) {
            return found.clone();
        }
        let rules = std::sync::Arc::new(self);
        if shared.len() < SHARED_RULES_MAX {
            shared.push(rules.clone());
        }
        rules
    }
}

impl Default for StoreRules {
    fn default() -> Self {
        Self {
            ttl: None,
            default_ttl: None,
            share_set_cookie: false,
            respect_origin: true,
            stale_while_revalidate: None,
            stale_if_error: None,
            store_with_cookie: false,
        }
    }
}

/// When a stored response may be used stale (RFC 9111 §4.2.4, RFC 5861).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StaleUse {
    /// must-revalidate, proxy-revalidate, s-maxage (which implies
    /// proxy-revalidate in a shared cache) or no-cache: never stale.
    pub never: bool,
    pub while_revalidate: Option<Duration>,
    pub if_error: Option<Duration>,
}

/// Why a response was not stored; the words go into `Cache-Status: detail=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotStored {
    #[error("only answers to GET are stored")]
    Method,
    #[error("the response sets a cookie")]
    SetCookie,
    #[error("the response's header fields forbid storing it")]
    Headers,
    /// The request carried a cookie and the response does not say that
    /// it may be shared.
    #[error("the request carried a cookie and the response is not marked shareable")]
    Cookie,
    /// The request carried credentials and the response does not allow a
    /// shared cache to answer others with it (RFC 9111 §3.5).
    #[error("the request carried Authorization and the response does not allow sharing it")]
    Authorization,
    /// The body's declared length is over the size limit.
    #[error("the body is larger than the cache keeps")]
    TooLarge,
    /// 425 Too Early answers when the request came (in early data), not
    /// what the resource is (RFC 8470 §5.2): stored, it would refuse
    /// later requests that were never early.
    #[error("a 425 Too Early is about the request, not the resource")]
    TooEarly,
}

impl NotStored {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::SetCookie => "set-cookie",
            NotStored::Headers => "not-storable",
            NotStored::Cookie => "request-cookie",
            NotStored::Authorization => "authorization",
            NotStored::TooLarge => "too-large",
            NotStored::TooEarly => "too-early",
        }
    }
}

/// Options shared by every policy this cache builds.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub heuristic_fraction: f32,
    /// Longest heuristic freshness lifetime.
    pub heuristic_max: Duration,
    /// Targeted cache-control fields Outpost obeys, first match wins
    /// (RFC 9213 §2.1); lower-case names.
    pub targeted: Vec<HeaderName>,
    /// Response headers whose values tag an object for purges.
    pub tag_headers: Vec<HeaderName>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            heuristic_fraction: 0.1,
            heuristic_max: Duration::from_secs(86_400),
            targeted: vec![
                HeaderName::from_static("cdn-cache-control"),
                HeaderName::from_static("surrogate-control"),
            ],
            tag_headers: vec![
                HeaderName::from_static("surrogate-key"),
                HeaderName::from_static("cache-tag"),
            ],
        }
    }
}

impl PolicyOptions {
    pub fn heuristic(&self) -> crate::freshness::Heuristic {
        crate::freshness::Heuristic {
            fraction: self.heuristic_fraction,
            max: self.heuristic_max,
        }
    }

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
) -> Result<Built, NotStored> {
    if req.method != Method::GET {
        return Err(NotStored::Method);
    }
    if res.status == http::StatusCode::TOO_EARLY {
        return Err(NotStored::TooEarly);
    }
    if res.headers.contains_key(SET_COOKIE)
        && !rules.share_set_cookie
        && !private_fields(&targeted_view(&res.headers, &options.targeted))
            .iter()
            .any(|f| f == "set-cookie")
    {
        return Err(NotStored::SetCookie);
    }
    // RFC 9111 §3.5, decided on the origin's own words: a rule's TTL must
    // never be what lets a shared cache keep an authenticated response.
    if req.headers.contains_key(AUTHORIZATION)
        && !allows_authorized(targeted_view(&res.headers, &options.targeted).get_all(CACHE_CONTROL))
    {
        return Err(NotStored::Authorization);
    }
    // A cookie is a credential too: what answers it may be one user's page.
    // Unless a rule opts in, the origin must say that the response may be
    // shared, so that no stale copy of a personal page (a response with no
    // freshness of its own, kept to serve when the origin is unreachable)
    // reaches someone else.
    if req.headers.contains_key(COOKIE)
        && !rules.store_with_cookie
        && !says_shared(&res.headers, &options.targeted)
    {
        return Err(NotStored::Cookie);
    }
    let built = build(req, res.status, &res.headers, response_time, options, rules);
    if built.storable {
        Ok(built)
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
) -> Built {
    let req_view = stored_request_view(req, headers);
    let mut res_view = response::Builder::new()
        .status(status)
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| response::Response::new(()).into_parts().0);
    let headers = targeted_view(headers, &options.targeted);
    res_view.headers = match RuleLifetime::of(&rules, &headers) {
        Some(rule) if rule.origin_ignored => origin_ignored(&headers, rule.ttl),
        Some(rule) => with_ttl(&headers, rule.ttl),
        None => headers,
    };
    // RFC 9111 §5.2.2.3: with must-understand, a cache that understands
    // the status code ignores no-store (the directive is for caches that
    // would not).
    let directives = Directives::from_headers(&res_view.headers);
    if directives.has("must-understand")
        && directives.has("no-store")
        && understood(status)
        && let Ok(value) = HeaderValue::from_str(&directives.without("no-store"))
    {
        res_view.headers.insert(CACHE_CONTROL, value);
    }
    // RFC 9111 §5.2.2.7: a qualified `private` keeps only the fields it
    // names out of a shared cache (the caller drops them); the rest may be
    // stored, so the library must not read it as an unqualified one.
    let private = private_fields(&res_view.headers);
    if !private.is_empty()
        && let Ok(value) =
            HeaderValue::from_str(&Directives::from_headers(&res_view.headers).without("private"))
    {
        res_view.headers.insert(CACHE_CONTROL, value);
    }
    if rules.share_set_cookie || private.iter().any(|f| f == "set-cookie") {
        // Shared by the operator's choice, or kept out of the stored copy:
        // the library would otherwise give the response no freshness.
        res_view.headers.remove(SET_COOKIE);
    }
    let stale = stale_use(&res_view.headers, rules);
    let storable_as = |status| {
        let mut view = res_view.clone();
        view.status = status;
        CachePolicy::new_options(&req_view, &view, response_time, options.cache_options())
            .is_storable()
    };
    // RFC 9111 §3: any final status may be stored with explicit freshness
    // or `public` (which also allows a heuristic, §4.2.2); the library
    // knows only a list of codes. Without `must-understand` (§5.2.2.3),
    // judge such a response as if its code were on the list.
    let directives = Directives::from_headers(&res_view.headers);
    let unlisted_but_explicit = !matches!(status.as_u16(), 100..=199 | 206 | 304)
        && (has_explicit_freshness(&res_view.headers) || directives.has("public"))
        && (understood(status) || !directives.has("must-understand"));
    let storable =
        storable_as(status) || (unlisted_but_explicit && storable_as(http::StatusCode::OK));
    Built {
        storable,
        stale,
        view: res_view.headers,
        private,
    }
}

/// A lifetime a rule gives a response in place of the origin's.
struct RuleLifetime {
    ttl: Duration,
    /// `respect_origin: false`: the origin's Cache-Control and Expires are
    /// dropped, not only its lifetime.
    origin_ignored: bool,
    source: FreshnessSource,
}

impl RuleLifetime {
    /// What `rules` say of a response whose (targeted) view is `headers`:
    /// `ttl` always wins, `default_ttl` only where the origin gave no
    /// freshness; None when the origin's own lifetime stands.
    fn of(rules: &StoreRules, headers: &HeaderMap) -> Option<Self> {
        let source = |ttl: Option<Duration>| match ttl {
            Some(_) => FreshnessSource::RuleTtl,
            None => FreshnessSource::RuleDefaultTtl,
        };
        if !rules.respect_origin {
            return Some(Self {
                ttl: rules.ttl.or(rules.default_ttl).unwrap_or_default(),
                origin_ignored: true,
                source: source(rules.ttl),
            });
        }
        let ttl = rules.ttl.or_else(|| {
            rules
                .default_ttl
                .filter(|_| !has_explicit_freshness(headers))
        })?;
        Some(Self {
            ttl,
            origin_ignored: false,
            source: source(rules.ttl),
        })
    }
}

/// Where a stored response's freshness lifetime came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FreshnessSource {
    /// The rule's `ttl`.
    RuleTtl,
    /// The rule's `default_ttl`, for a response without freshness of its own.
    RuleDefaultTtl,
    /// A targeted field (RFC 9213) took Cache-Control's place, and this
    /// directive of it (or the heuristic) gave the lifetime.
    Targeted(HeaderName, LifetimeFrom),
    /// The origin's Cache-Control or Expires, or the heuristic.
    Origin(LifetimeFrom),
}

impl FreshnessSource {
    /// Where a response with `status` and stored `headers`, stored under
    /// `rules`, got its lifetime: the same choices [`build`] makes.
    pub fn of(
        status: http::StatusCode,
        headers: &HeaderMap,
        rules: &StoreRules,
        targeted: &[HeaderName],
    ) -> Self {
        let (view, field) = targeted_view_and_field(headers, targeted);
        if let Some(rule) = RuleLifetime::of(rules, &view) {
            return rule.source;
        }
        let from = LifetimeFrom::of(status, &view, &Directives::from_headers(&view));
        match field {
            Some(name) => FreshnessSource::Targeted(name.clone(), from),
            None => FreshnessSource::Origin(from),
        }
    }

    /// In words for `/explain`: `rule ttl`, `cdn-cache-control max-age`, `expires`, ….
    pub fn text(&self) -> String {
        match self {
            FreshnessSource::RuleTtl => "rule ttl".to_owned(),
            FreshnessSource::RuleDefaultTtl => "rule default_ttl".to_owned(),
            FreshnessSource::Targeted(name, from) => format!("{name} {}", from.as_str()),
            FreshnessSource::Origin(from) => from.as_str().to_owned(),
        }
    }
}

/// A response as this cache reads it.
#[derive(Debug, Clone)]
pub struct Built {
    /// RFC 9111 §3, decided by http-cache-semantics on the view.
    pub storable: bool,
    pub stale: StaleUse,
    /// The headers that decide freshness: targeted field, rule TTL and
    /// `respect_origin` applied.
    pub view: HeaderMap,
    /// The fields a qualified `private` names (lower-case), which a shared
    /// cache does not store (RFC 9111 §5.2.2.7).
    pub private: Vec<String>,
}

/// Final status codes whose caching requirements this cache implements:
/// those RFC 9110 §15 defines, except 206 (this cache stores only whole
/// representations) and 304 (an update, never stored on its own).
fn understood(status: http::StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=303 | 305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// The field names of a qualified `private` (lower-case); empty when there
/// is none, or when an unqualified one makes the whole response private.
fn private_fields(headers: &HeaderMap) -> Vec<String> {
    Directives::from_headers(headers)
        .fields("private")
        .unwrap_or_default()
}

/// Whether a response carries its own freshness lifetime: Expires, max-age
/// or s-maxage (RFC 9111 §4.2.1).
pub fn has_explicit_freshness(headers: &HeaderMap) -> bool {
    let directives = Directives::from_headers(headers);
    headers.contains_key(EXPIRES) || directives.has("max-age") || directives.has("s-maxage")
}

/// The origin's words set aside: only the rule's TTL decides.
fn origin_ignored(headers: &HeaderMap, ttl: Duration) -> HeaderMap {
    let mut out = headers.clone();
    out.remove(CACHE_CONTROL);
    out.remove(EXPIRES);
    out.remove(PRAGMA);
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={}", ttl.as_secs())) {
        out.insert(CACHE_CONTROL, value);
    }
    out
}

fn stale_use(headers: &HeaderMap, rules: StoreRules) -> StaleUse {
    let cc = Directives::from_headers(headers);
    let seconds = |name| {
        cc.seconds(name)
            .and_then(Result::ok)
            .map(Duration::from_secs)
    };
    StaleUse {
        never: [
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage",
            "no-cache",
        ]
        .iter()
        .any(|d| cc.has(d)),
        while_revalidate: seconds("stale-while-revalidate").or(rules.stale_while_revalidate),
        if_error: seconds("stale-if-error").or(rules.stale_if_error),
    }
}

/// The response as this cache reads its caching policy: when one of the
/// targeted fields is present with a non-empty value (the first in list
/// order), it replaces `Cache-Control`, and `Expires` is ignored
/// (RFC 9213 §2.1).
fn targeted_view(headers: &HeaderMap, targeted: &[HeaderName]) -> HeaderMap {
    targeted_view_and_field(headers, targeted).0
}

/// [`targeted_view`], and the targeted field it took, if any.
fn targeted_view_and_field<'a>(
    headers: &HeaderMap,
    targeted: &'a [HeaderName],
) -> (HeaderMap, Option<&'a HeaderName>) {
    let mut view = headers.clone();
    let chosen = targeted
        .iter()
        .find_map(|name| targeted_directives(headers, name).map(|values| (name, values)));
    let field = chosen.as_ref().map(|(name, _)| *name);
    if let Some((_, values)) = chosen {
        view.remove(CACHE_CONTROL);
        view.remove(EXPIRES);
        for value in values {
            view.append(CACHE_CONTROL, value);
        }
    }
    (view, field)
}

/// The directives of one targeted field, written as Cache-Control values;
/// None when the field is absent, empty or invalid, so that the next one
/// (or Cache-Control) decides.
///
/// RFC 9213 §2.1: a targeted field is a Structured Field Dictionary
/// (RFC 9651); one that fails to parse is ignored as if it were absent,
/// and a directive whose value has the wrong type (`max-age="60"`) is
/// ignored. `Surrogate-Control` predates that and keeps Cache-Control's
/// syntax.
fn targeted_directives(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<HeaderValue>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    if name == "surrogate-control" {
        let values: Vec<HeaderValue> = lines
            .filter(|v| v.to_str().is_ok_and(|t| !t.trim().is_empty()))
            .cloned()
            .collect();
        return (!values.is_empty()).then_some(values);
    }
    // RFC 9651 §4.2: the field's lines are joined with commas, then parsed whole.
    let mut joined = Vec::new();
    for line in lines {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(line.as_bytes());
    }
    if joined
        .iter()
        .all(|b| *b == b' ' || *b == b'\t' || *b == b',')
    {
        return None;
    }
    let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
    let mut text = String::new();
    for (key, entry) in &dictionary {
        let key = key.as_str();
        let value = match entry {
            sfv::ListEntry::Item(item) => directive_value(key, &item.bare_item),
            // A list of field names (`no-cache=("set-cookie")`).
            sfv::ListEntry::InnerList(list) => {
                let names: Option<Vec<&str>> = list
                    .items
                    .iter()
                    .map(|item| match &item.bare_item {
                        sfv::BareItem::String(s) => Some(s.as_str()),
                        sfv::BareItem::Token(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect();
                names.map(|names| Some(quoted(&names.join(", "))))
            }
        };
        let Some(value) = value else { continue };
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(key);
        if let Some(value) = value {
            text.push('=');
            text.push_str(&value);
        }
    }
    HeaderValue::from_str(&text).ok().map(|value| vec![value])
}

/// How one Dictionary member reads as a Cache-Control directive: None to
/// ignore it, Some(None) for a bare directive, Some(Some(v)) for `key=v`.
fn directive_value(key: &str, value: &sfv::BareItem) -> Option<Option<String>> {
    // Directives whose value is delta-seconds take an Integer only.
    let seconds = matches!(
        key,
        "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
    );
    match value {
        sfv::BareItem::Boolean(true) if !seconds => Some(None),
        sfv::BareItem::Boolean(_) => None,
        sfv::BareItem::Integer(n) => Some(Some(n.to_string())),
        _ if seconds => None,
        sfv::BareItem::String(s) => Some(Some(quoted(s.as_str()))),
        sfv::BareItem::Token(t) => Some(Some(t.as_str().to_owned())),
        sfv::BareItem::Decimal(d) => Some(Some(d.to_string())),
        _ => None,
    }
}

/// Whether a response says a shared cache may keep it: `public` or
/// `s-maxage` in the Cache-Control a shared cache reads, or a lifetime in a
/// targeted field (CDN-Cache-Control, or one the config names), which
/// speaks to caches like this one only.
fn says_shared(headers: &HeaderMap, targeted: &[HeaderName]) -> bool {
    let targeted_lifetime = targeted.iter().any(|name| {
        targeted_directives(headers, name).is_some_and(|values| {
            let cc = Directives::parse(values.iter());
            cc.has("max-age") || cc.has("s-maxage") || cc.has("public")
        })
    });
    if targeted_lifetime {
        return true;
    }
    let cc = Directives::parse(targeted_view(headers, targeted).get_all(CACHE_CONTROL));
    cc.has("public") || cc.has("s-maxage")
}

/// Whether a response lets a shared cache answer requests that carry
/// `Authorization` (RFC 9111 §3.5): `public`, `s-maxage` or `must-revalidate`.
pub fn allows_authorized<'a>(cache_control: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let cc = Directives::parse(cache_control);
    ["public", "s-maxage", "must-revalidate"]
        .iter()
        .any(|d| cc.has(d))
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
/// The directives are read and written whole, so that a quoted value, even
/// one left open, cannot take in the new max-age.
fn with_ttl(headers: &HeaderMap, ttl: Duration) -> HeaderMap {
    let mut out = headers.clone();
    out.remove(EXPIRES);
    let kept = Directives::from_headers(headers).without_all(&["max-age", "s-maxage"]);
    let max_age = format!("max-age={}", ttl.as_secs());
    let value = if kept.is_empty() {
        max_age
    } else {
        format!("{kept}, {max_age}")
    };
    out.remove(CACHE_CONTROL);
    if let Ok(value) = HeaderValue::from_str(&value) {
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

    /// `/explain` names where a lifetime came from, by the same choices
    /// the policy makes: a rule's ttl first, a targeted field over
    /// Cache-Control (RFC 9213 §2.1), then RFC 9111 §4.2.1's order.
    #[test]
    fn the_source_of_a_lifetime_follows_the_policy() {
        let ttl = Some(Duration::from_secs(60));
        type Case<'a> = (&'a [(&'a str, &'a str)], StoreRules, &'a str);
        let cases: [Case; 9] = [
            (
                &[("cache-control", "max-age=5")],
                StoreRules::default(),
                "max-age",
            ),
            (
                &[("cache-control", "max-age=5, s-maxage=9")],
                StoreRules::default(),
                "s-maxage",
            ),
            (
                &[("expires", "Thu, 01 Jan 2099 00:00:00 GMT")],
                StoreRules::default(),
                "expires",
            ),
            (
                &[("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT")],
                StoreRules::default(),
                "heuristic",
            ),
            (
                &[
                    ("cache-control", "max-age=5"),
                    ("cdn-cache-control", "max-age=50"),
                ],
                StoreRules::default(),
                "cdn-cache-control max-age",
            ),
            (
                &[("cache-control", "max-age=5")],
                StoreRules {
                    ttl,
                    ..StoreRules::default()
                },
                "rule ttl",
            ),
            (
                &[],
                StoreRules {
                    default_ttl: ttl,
                    ..StoreRules::default()
                },
                "rule default_ttl",
            ),
            // The origin's own lifetime stands over a default.
            (
                &[("cache-control", "max-age=5")],
                StoreRules {
                    default_ttl: ttl,
                    ..StoreRules::default()
                },
                "max-age",
            ),
            (
                &[("cache-control", "no-store")],
                StoreRules {
                    default_ttl: ttl,
                    respect_origin: false,
                    ..StoreRules::default()
                },
                "rule default_ttl",
            ),
        ];
        for (headers, rules, source) in cases {
            let res = res(200, headers);
            let found = FreshnessSource::of(res.status, &res.headers, &rules, &options().targeted);
            assert_eq!(found.text(), source, "{headers:?}");
        }
        let none = res(500, &[]);
        let found = FreshnessSource::of(none.status, &none.headers, &StoreRules::default(), &[]);
        assert_eq!(found, FreshnessSource::Origin(LifetimeFrom::Nothing));
    }

    fn ttl_of(
        req: &request::Parts,
        res: &response::Parts,
        rules: StoreRules,
    ) -> Result<u64, NotStored> {
        let now = SystemTime::now();
        storage_policy(req, res, now, &options(), rules).map(|built| {
            crate::freshness::Freshness::compute(
                res.status,
                &built.view,
                now,
                now,
                options().heuristic(),
            )
            .lifetime
            .as_secs()
        })
    }

    #[test]
    fn s_maxage_wins_over_max_age_in_a_shared_cache() {
        let r = res(200, &[("cache-control", "max-age=10, s-maxage=100")]);
        assert_eq!(ttl_of(&req(&[]), &r, StoreRules::default()), Ok(100));
    }

    /// RFC 8470 §5.2: a 425 is never stored, whatever freshness it
    /// carries or a rule gives it, so neither a later request nor one
    /// that collapsed onto an early request's fetch is refused with it.
    #[test]
    fn too_early_is_never_stored() {
        let rules = StoreRules {
            ttl: Some(Duration::from_secs(3600)),
            ..StoreRules::default()
        };
        for rules in [StoreRules::default(), rules] {
            let r = res(425, &[("cache-control", "public, max-age=60")]);
            assert_eq!(ttl_of(&req(&[]), &r, rules), Err(NotStored::TooEarly));
        }
        let r = res(422, &[("cache-control", "max-age=60")]);
        assert_eq!(ttl_of(&req(&[]), &r, StoreRules::default()), Ok(60));
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
            ..StoreRules::default()
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

    /// A rule's TTL is the lifetime even when the origin's Cache-Control
    /// leaves a quoted string open (found by `fuzz/cache_control`: with
    /// `s-cache=";...` the rule's `max-age=120` ended up inside the quotes,
    /// and the response was stored stale).
    #[test]
    fn a_rule_ttl_survives_an_open_quote() {
        let rules = StoreRules {
            ttl: Some(Duration::from_secs(120)),
            ..StoreRules::default()
        };
        for cc in [
            "max-age=\"30\", s-cache=\";;;cache-control: max-stale=30, mi-nfresh=5",
            "no-cache=\"a, max-age=5\", s-maxage=7",
            "x=\"",
        ] {
            let r = res(200, &[("cache-control", cc)]);
            assert_eq!(ttl_of(&req(&[]), &r, rules), Ok(120), "{cc}");
        }
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
            Err(NotStored::Authorization)
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

    /// Issue 19: a cookie makes a request personal, as Authorization does;
    /// what answers it is stored only when the origin says it may be
    /// shared, or the rule opts in. Otherwise a response with no freshness
    /// of its own would be kept, and served stale to anyone when the
    /// origin is unreachable (RFC 9111 §4.2.4).
    #[test]
    fn a_cookie_needs_the_response_to_say_it_may_be_shared() {
        let cookie = req(&[("cookie", "session=alice")]);
        for headers in [
            &[][..],
            &[("cache-control", "max-age=60")][..],
            &[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")][..],
            &[
                ("cdn-cache-control", "no-store"),
                ("cache-control", "public"),
            ][..],
        ] {
            assert_eq!(
                ttl_of(&cookie, &res(200, headers), StoreRules::default()),
                Err(NotStored::Cookie),
                "{headers:?}"
            );
        }
        for (headers, ttl) in [
            (&[("cache-control", "public, max-age=60")][..], 60),
            (&[("cache-control", "s-maxage=30")][..], 30),
            (&[("cdn-cache-control", "max-age=90")][..], 90),
            (
                &[
                    ("cache-control", "private"),
                    ("cdn-cache-control", "max-age=90"),
                ][..],
                90,
            ),
        ] {
            assert_eq!(
                ttl_of(&cookie, &res(200, headers), StoreRules::default()),
                Ok(ttl),
                "{headers:?}"
            );
        }
        let opted_in = StoreRules {
            store_with_cookie: true,
            ..StoreRules::default()
        };
        assert_eq!(
            ttl_of(
                &cookie,
                &res(200, &[("cache-control", "max-age=60")]),
                opted_in
            ),
            Ok(60)
        );
        // The rule's opt-in is for cookies only: RFC 9111 §3.5 still
        // decides for Authorization.
        let both = req(&[("cookie", "a=b"), ("authorization", "Bearer x")]);
        assert_eq!(
            ttl_of(
                &both,
                &res(200, &[("cache-control", "max-age=60")]),
                opted_in
            ),
            Err(NotStored::Authorization)
        );
        // A private response stays private whatever the rule says.
        assert_eq!(
            ttl_of(
                &cookie,
                &res(200, &[("cache-control", "private, max-age=60")]),
                opted_in
            ),
            Err(NotStored::Headers)
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

    /// Property tests: any Cache-Control and targeted field lines.
    mod properties {
        use super::*;
        use crate::strategies::cache_control;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn response(status: u16, fields: &[(&'static str, HeaderValue)]) -> response::Parts {
            let mut parts = response::Response::new(()).into_parts().0;
            parts.status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            for (name, value) in fields {
                parts
                    .headers
                    .append(HeaderName::from_static(name), value.clone());
            }
            parts
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// A rule's TTL replaces the origin's max-age and s-maxage:
            /// whatever else the origin's Cache-Control or CDN-Cache-Control
            /// says, what is stored is fresh for exactly the TTL.
            #[test]
            fn a_rule_ttl_is_the_lifetime(
                cc in vec(cache_control(), 0..3),
                cdn in vec(cache_control(), 0..2),
                ttl in 0u64..100_000,
                status in prop_oneof![Just(200u16), Just(404), Just(299), Just(302)],
                respect_origin in any::<bool>(),
            ) {
                let mut fields: Vec<(&'static str, HeaderValue)> =
                    cc.into_iter().map(|v| ("cache-control", v)).collect();
                fields.extend(cdn.into_iter().map(|v| ("cdn-cache-control", v)));
                let res = response(status, &fields);
                let rules = StoreRules {
                    ttl: Some(Duration::from_secs(ttl)),
                    respect_origin,
                    ..StoreRules::default()
                };
                let now = SystemTime::now();
                if let Ok(built) = storage_policy(&req(&[]), &res, now, &options(), rules) {
                    let lifetime = crate::freshness::Freshness::compute(
                        res.status, &built.view, now, now, options().heuristic(),
                    ).lifetime;
                    prop_assert_eq!(lifetime.as_secs(), ttl, "view {:?}", built.view);
                }
            }
        }
    }
}
