//! Freshness and age as RFC 9111 §4.2 defines them for a shared cache:
//! the freshness lifetime from s-maxage, max-age, Expires or a heuristic,
//! the age from §4.2.3's corrected initial age and resident time, and the
//! request directives of §5.2.1 that decide whether a stored response may
//! be used. Cache-Control is parsed here too, robustly (§5.2).

use std::time::{Duration, SystemTime};

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED, PRAGMA};
use http::{HeaderMap, HeaderValue, StatusCode};

/// The greatest delta-seconds value a cache needs to represent (§1.2.2).
const MAX_DELTA: u64 = 1 << 31;

/// Cache-Control directives from every field line: names lower-cased,
/// values trimmed and unquoted, commas inside quotes respected.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Directives(Vec<(String, Option<String>)>);

/// A directive present with a value that cannot be used (§4.2.1: "consider
/// the response stale"): not a number, or conflicting duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl Directives {
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut list = Vec::new();
        for value in values {
            let text = String::from_utf8_lossy(value.as_bytes());
            for item in split_outside_quotes(&text) {
                let (name, value) = match item.split_once('=') {
                    // RFC 9111 §5.2: `token [ "=" ( token / quoted-string ) ]`,
                    // with no white space around "=": `max-age= 60` and
                    // `max-age =60` carry a value no one may use (a space
                    // kept in front makes it one), so the response is stale
                    // (§4.2.1) rather than fresh for a guess.
                    Some((name, value))
                        if name.ends_with([' ', '\t']) || value.starts_with([' ', '\t']) =>
                    {
                        (name, Some(format!(" {}", value.trim())))
                    }
                    Some((name, value)) => (name, Some(unquote(value.trim()))),
                    None => (item, None),
                };
                // RFC 9111 §5.2: a directive's name is a token; anything
                // else is not a directive, and could not be written back.
                let name = name.trim().to_ascii_lowercase();
                if !name.is_empty() && name.bytes().all(is_tchar) {
                    list.push((name, value));
                }
            }
        }
        Self(list)
    }

    /// Only what a stored entry reads back: `no-cache` (RFC 9111 §5.2.2.4).
    pub fn for_entry(mut self) -> Self {
        self.0.retain(|(n, _)| n == "no-cache");
        self.0.shrink_to_fit();
        self
    }

    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::parse(headers.get_all(CACHE_CONTROL))
    }

    /// These directives without `name`, as one Cache-Control value.
    pub fn without(&self, name: &str) -> String {
        self.without_all(&[name])
    }

    /// These directives without any of `names`, as one Cache-Control
    /// value: names as read, values as tokens or quoted strings.
    pub fn without_all(&self, names: &[&str]) -> String {
        let mut text = String::new();
        for (directive, value) in self.0.iter().filter(|(n, _)| !names.contains(&n.as_str())) {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(directive);
            if let Some(value) = value {
                text.push('=');
                let token = !value.is_empty() && value.bytes().all(is_tchar);
                if token {
                    text.push_str(value);
                } else {
                    text.push_str(&quoted(value));
                }
            }
        }
        text
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// A delta-seconds directive: None when absent; Invalid when its value
    /// is not a number or duplicates disagree; values past 2^31 are 2^31.
    pub fn seconds(&self, name: &str) -> Option<Result<u64, Invalid>> {
        let mut found: Option<Result<u64, Invalid>> = None;
        for (_, value) in self.0.iter().filter(|(n, _)| n == name) {
            let parsed = match value.as_deref() {
                Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(v.parse::<u64>().unwrap_or(MAX_DELTA).min(MAX_DELTA))
                }
                _ => Err(Invalid),
            };
            found = Some(match (found, parsed) {
                (None, parsed) => parsed,
                (Some(Ok(a)), Ok(b)) if a == b => Ok(a),
                _ => Err(Invalid),
            });
        }
        found
    }

    /// The field names of a qualified directive (`no-cache="Set-Cookie"`):
    /// None when absent, an empty list when unqualified.
    pub fn fields(&self, name: &str) -> Option<Vec<String>> {
        let mut out: Option<Vec<String>> = None;
        for (_, value) in self.0.iter().filter(|(n, _)| n == name) {
            let list = out.get_or_insert_with(Vec::new);
            match value {
                None => return Some(Vec::new()),
                Some(v) => list.extend(
                    v.split(',')
                        .map(|f| f.trim().to_ascii_lowercase())
                        .filter(|f| !f.is_empty()),
                ),
            }
        }
        out
    }
}

/// Splits a Cache-Control line on the commas that are not inside a quoted
/// string. A quoted string is a value (RFC 9111 §5.2): only a `"` that
/// starts one, right after a directive's `=` and white space, opens it; a
/// `"` anywhere else is a character like another, so that a stray one in
/// a name cannot hide the directives after it.
fn split_outside_quotes(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    // After this item's first `=`, until something other than white space.
    let (mut seen_equals, mut value_start) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if quoted => quoted = false,
            '"' if value_start => {
                quoted = true;
                value_start = false;
            }
            _ if quoted => {}
            ',' => {
                parts.push(text[start..i].trim());
                start = i + 1;
                (seen_equals, value_start) = (false, false);
            }
            '=' if !seen_equals => (seen_equals, value_start) = (true, true),
            ' ' | '\t' => {}
            _ => value_start = false,
        }
    }
    parts.push(text[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or('\\')
                } else {
                    c
                });
            }
            out
        }
        None => value.to_owned(),
    }
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Settings of the heuristic (§4.2.2).
#[derive(Debug, Clone, Copy)]
pub struct Heuristic {
    /// Fraction of (Date - Last-Modified).
    pub fraction: f32,
    /// Longest heuristic lifetime.
    pub max: Duration,
}

/// What a stored response's freshness is made of.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Freshness {
    /// §4.2.1 freshness lifetime.
    pub lifetime: Duration,
    /// §4.2.3 corrected initial age.
    pub initial_age: Duration,
    pub response_time: SystemTime,
    /// Whether the lifetime came from the heuristic.
    pub heuristic: bool,
}

/// What gives a response its freshness lifetime, in the order §4.2.1
/// takes them: `s-maxage` (in a shared cache), `max-age`, `Expires`, then
/// the heuristic of §4.2.2 where it is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifetimeFrom {
    SMaxage,
    MaxAge,
    Expires,
    Heuristic,
    /// No freshness at all: each use is validated first.
    Nothing,
}

impl LifetimeFrom {
    /// Which one decides for a response with `status` and (policy-view)
    /// `headers`, whose Cache-Control is `cc`.
    pub fn of(status: StatusCode, headers: &HeaderMap, cc: &Directives) -> Self {
        if cc.seconds("s-maxage").is_some() {
            LifetimeFrom::SMaxage
        } else if cc.seconds("max-age").is_some() {
            LifetimeFrom::MaxAge
        } else if headers.contains_key(EXPIRES) {
            LifetimeFrom::Expires
        } else if heuristically_cacheable(status) || cc.has("public") {
            // §4.2.2: only without explicit freshness.
            LifetimeFrom::Heuristic
        } else {
            LifetimeFrom::Nothing
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LifetimeFrom::SMaxage => "s-maxage",
            LifetimeFrom::MaxAge => "max-age",
            LifetimeFrom::Expires => "expires",
            LifetimeFrom::Heuristic => "heuristic",
            LifetimeFrom::Nothing => "none",
        }
    }
}

impl Freshness {
    /// Computes freshness for a response whose (policy-view) headers are
    /// `headers`, received at `response_time` for a request sent at `request_time`.
    pub fn compute(
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        heuristic: Heuristic,
    ) -> Freshness {
        let cc = Directives::from_headers(headers);
        let date = single_date(headers, DATE).and_then(Result::ok);
        let date_value = date.unwrap_or(response_time);
        let from = LifetimeFrom::of(status, headers, &cc);
        let lifetime = match from {
            LifetimeFrom::SMaxage => {
                Duration::from_secs(cc.seconds("s-maxage").and_then(Result::ok).unwrap_or(0))
            }
            LifetimeFrom::MaxAge => {
                Duration::from_secs(cc.seconds("max-age").and_then(Result::ok).unwrap_or(0))
            }
            // §5.3: an invalid date, "0" among them, is in the past.
            LifetimeFrom::Expires => match single_date(headers, EXPIRES) {
                Some(Ok(expires)) => expires.duration_since(date_value).unwrap_or_default(),
                _ => Duration::ZERO,
            },
            LifetimeFrom::Heuristic => {
                match single_date(headers, LAST_MODIFIED).and_then(Result::ok) {
                    Some(modified) => {
                        let since = date_value.duration_since(modified).unwrap_or_default();
                        since
                            .mul_f64(f64::from(heuristic.fraction.clamp(0.0, 1.0)))
                            .min(heuristic.max)
                    }
                    None => Duration::ZERO,
                }
            }
            LifetimeFrom::Nothing => Duration::ZERO,
        };
        // §4.2.3.
        let age_value = age_value(headers).map_or(Duration::ZERO, Duration::from_secs);
        let apparent_age = response_time.duration_since(date_value).unwrap_or_default();
        let response_delay = response_time
            .duration_since(request_time)
            .unwrap_or_default();
        let corrected_age_value = age_value + response_delay;
        let initial_age = apparent_age.max(corrected_age_value);
        Freshness {
            lifetime,
            initial_age,
            response_time,
            heuristic: from == LifetimeFrom::Heuristic && lifetime > Duration::ZERO,
        }
    }

    /// §4.2.3 current age; at most `Duration::MAX` (a head read from disk
    /// may carry any initial age).
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age
            .saturating_add(now.duration_since(self.response_time).unwrap_or_default())
    }

    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.age(now) < self.lifetime
    }

    pub fn time_to_live(&self, now: SystemTime) -> Duration {
        self.lifetime.saturating_sub(self.age(now))
    }

    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }
}

/// The origin's `Age` in seconds, at most 2^31 (§1.2.2); None when absent
/// or not a number. §5.1: of a list (`7200, 0`, or several lines), the
/// first member counts.
pub fn age_value(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(AGE)?.to_str().ok()?;
    let first = text.split(',').next()?.trim_matches([' ', '\t']);
    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(first.parse::<u64>().unwrap_or(MAX_DELTA).min(MAX_DELTA))
}

/// A date header with exactly one value (§4.2.1: several values that
/// disagree are treated as invalid); None when absent.
fn single_date(headers: &HeaderMap, name: http::HeaderName) -> Option<Result<SystemTime, Invalid>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.any(|v| v != first) {
        return Some(Err(Invalid));
    }
    Some(
        first
            .to_str()
            .ok()
            .and_then(crate::date::parse_http_date)
            .ok_or(Invalid),
    )
}

/// Why a stored response may not be used as is for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Stale, or the response demands validation (no-cache).
    Stale,
    /// Fresh, but the request's directives (no-cache, max-age, min-fresh) refuse it.
    Request,
}

/// §4 and §5.2.1: whether a stored response with `freshness` and response
/// directives `response` may answer a request with headers `request` now.
/// `never_stale` covers must-revalidate, proxy-revalidate and s-maxage.
pub fn usable(
    freshness: &Freshness,
    response: &Directives,
    never_stale: bool,
    request: &HeaderMap,
    now: SystemTime,
) -> Result<(), Unusable> {
    let req = Directives::from_headers(request);
    let age = freshness.age(now);
    let fresh = freshness.is_fresh(now);
    // §5.2.2.4: an unqualified no-cache means validate before every use.
    if response.fields("no-cache").is_some_and(|f| f.is_empty()) {
        return Err(Unusable::Stale);
    }
    // §5.2.1.4 and §5.4: the request's no-cache (Pragma without Cache-Control too).
    let pragma = !request.contains_key(CACHE_CONTROL)
        && request.get_all(PRAGMA).iter().any(|v| {
            v.to_str()
                .is_ok_and(|p| p.to_ascii_lowercase().contains("no-cache"))
        });
    let refused = if req.has("no-cache") || pragma {
        true
    } else if let Some(max_age) = req.seconds("max-age") {
        max_age.map_or(true, |m| age > Duration::from_secs(m))
    } else {
        false
    };
    let too_close = req.seconds("min-fresh").is_some_and(|m| {
        m.map_or(true, |m| {
            freshness.time_to_live(now) < Duration::from_secs(m)
        })
    });
    if refused || too_close {
        return Err(if fresh {
            Unusable::Request
        } else {
            Unusable::Stale
        });
    }
    if fresh {
        return Ok(());
    }
    // §5.2.1.2: max-stale lets the client take a stale response, but never
    // one the origin forbade to serve stale.
    if !never_stale {
        match req.seconds("max-stale") {
            Some(Ok(limit)) if freshness.staleness(now) <= Duration::from_secs(limit) => {
                return Ok(());
            }
            Some(Err(Invalid)) if req.fields("max-stale").is_some_and(|f| f.is_empty()) => {
                return Ok(());
            }
            _ => {}
        }
    }
    Err(Unusable::Stale)
}

/// `text` as a quoted-string (RFC 9110 §5.6.4).
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const HEURISTIC: Heuristic = Heuristic {
        fraction: 0.1,
        max: Duration::from_secs(86_400),
    };

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    fn lifetime(status: u16, pairs: &[(&str, &str)]) -> u64 {
        Freshness::compute(
            StatusCode::from_u16(status).unwrap(),
            &headers(pairs),
            t(1000),
            t(1000),
            HEURISTIC,
        )
        .lifetime
        .as_secs()
    }

    /// §5.2: case, whitespace, quoted values, several lines, unknown directives.
    #[test]
    fn cache_control_parsing_is_robust() {
        let d = Directives::parse(
            headers(&[
                ("cache-control", " Max-Age=60 ,FOO=\"a,b\""),
                ("cache-control", "no-cache=\"Set-Cookie, X-A\", x-unknown"),
            ])
            .get_all(CACHE_CONTROL),
        );
        assert_eq!(d.seconds("max-age"), Some(Ok(60)));
        assert_eq!(
            d.fields("no-cache"),
            Some(vec!["set-cookie".into(), "x-a".into()])
        );
        assert!(d.has("foo") && d.has("x-unknown"));
        let d = Directives::parse(
            headers(&[("cache-control", "max-age=\"30\"")]).get_all(CACHE_CONTROL),
        );
        assert_eq!(d.seconds("max-age"), Some(Ok(30)));
        // White space around "=" is not the syntax (§5.2): present, unusable.
        let d =
            Directives::parse(headers(&[("cache-control", "Max-Age = 60")]).get_all(CACHE_CONTROL));
        assert_eq!(d.seconds("max-age"), Some(Err(Invalid)));
    }

    /// §5.2: a quoted string is a directive's value and a name is a token.
    /// A `"` elsewhere (found by `fuzz/cache_control`: a date pasted into a
    /// Cache-Control line) neither hides the directives after it nor makes
    /// a name that could not be written back.
    #[test]
    fn a_quote_outside_a_value_hides_nothing() {
        let parse = |value: &'static str| {
            Directives::parse(headers(&[("cache-control", value)]).get_all(CACHE_CONTROL))
        };
        let d = parse("01\"Sep 2026 01:00:00 Gale=30, min-fresh=5");
        assert_eq!(d.seconds("min-fresh"), Some(Ok(5)));
        assert_eq!(d.without(""), "min-fresh=5");
        let d = parse("x\"y, max-age=60, private=\"a, b\"");
        assert_eq!(d.seconds("max-age"), Some(Ok(60)));
        assert_eq!(d.fields("private"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(d.without(""), "max-age=60, private=\"a, b\"");
        let d = parse("a=b\"c, d=\"e,f\"");
        assert_eq!(d.without(""), "a=\"b\\\"c\", d=\"e,f\"");
        assert_eq!(
            Directives::parse([&HeaderValue::from_str(&d.without("")).unwrap()]),
            d
        );
    }

    /// §4.2.1 and §1.2.2: invalid numbers and conflicting duplicates mean stale;
    /// agreeing duplicates are fine; huge values are 2^31.
    #[test]
    fn bad_numbers_mean_stale() {
        assert_eq!(lifetime(200, &[("cache-control", "max-age=abc")]), 0);
        assert_eq!(lifetime(200, &[("cache-control", "max-age=-5")]), 0);
        // RFC 9111 §5.2: no white space around "=".
        for spaced in ["max-age= 60", "max-age =60", "max-age = 60", "s-maxage= 60"] {
            assert_eq!(lifetime(200, &[("cache-control", spaced)]), 0, "{spaced}");
        }
        assert_eq!(lifetime(200, &[("cache-control", " max-age=60 ")]), 60);
        assert_eq!(
            lifetime(200, &[("cache-control", "max-age=60, max-age=120")]),
            0
        );
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("cache-control", "max-age=60")
                ]
            ),
            60
        );
        assert_eq!(
            lifetime(200, &[("cache-control", "max-age=99999999999999999999")]),
            MAX_DELTA
        );
    }

    /// §4.2.1: s-maxage over max-age over Expires.
    #[test]
    fn lifetime_precedence() {
        assert_eq!(
            lifetime(
                200,
                &[
                    ("cache-control", "max-age=10, s-maxage=100"),
                    ("expires", &date(5000))
                ]
            ),
            100
        );
        assert_eq!(
            lifetime(
                200,
                &[("cache-control", "max-age=10"), ("expires", &date(5000))]
            ),
            10
        );
        assert_eq!(
            lifetime(200, &[("date", &date(1000)), ("expires", &date(1600))]),
            600
        );
    }

    /// §5.3: an invalid Expires, "0" included, or one in the past, is stale;
    /// several Expires that disagree are invalid.
    #[test]
    fn expires_edge_cases() {
        assert_eq!(lifetime(200, &[("expires", "0")]), 0);
        assert_eq!(lifetime(200, &[("expires", "not a date")]), 0);
        assert_eq!(
            lifetime(200, &[("date", &date(1000)), ("expires", &date(500))]),
            0
        );
        assert_eq!(
            lifetime(
                200,
                &[
                    ("date", &date(1000)),
                    ("expires", &date(1600)),
                    ("expires", &date(1700))
                ]
            ),
            0
        );
        assert_eq!(
            lifetime(
                200,
                &[
                    ("date", &date(1000)),
                    ("expires", &date(1600)),
                    ("expires", &date(1600))
                ]
            ),
            600
        );
    }

    /// §4.2.2: heuristics only without explicit freshness and only for
    /// heuristically cacheable codes (or public), capped.
    #[test]
    fn heuristic_freshness() {
        let lm = [("date", date(1000)), ("last-modified", date(0))];
        let lm: Vec<(&str, &str)> = lm.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(lifetime(200, &lm), 100);
        assert_eq!(lifetime(404, &lm), 100);
        assert_eq!(lifetime(302, &lm), 0, "302 is not heuristically cacheable");
        let mut public = lm.clone();
        public.push(("cache-control", "public"));
        assert_eq!(lifetime(302, &public), 100);
        assert_eq!(
            lifetime(
                200,
                &[("date", &date(1_000_000)), ("last-modified", &date(0))]
            ),
            86_400,
            "capped"
        );
        assert_eq!(lifetime(200, &[]), 0, "nothing to go on");
    }

    /// §4.2.3: apparent age, the origin's Age, response delay and resident time.
    #[test]
    fn age_calculation() {
        // Date 100 s before arrival: apparent age 100.
        let f = Freshness::compute(
            StatusCode::OK,
            &headers(&[("date", &date(900)), ("cache-control", "max-age=600")]),
            t(1000),
            t(1000),
            HEURISTIC,
        );
        assert_eq!(f.age(t(1000)).as_secs(), 100);
        assert_eq!(f.age(t(1030)).as_secs(), 130);
        // Age 50 plus a 5 s response delay beats an apparent age of 0.
        let f = Freshness::compute(
            StatusCode::OK,
            &headers(&[("date", &date(1005)), ("age", "50")]),
            t(1000),
            t(1005),
            HEURISTIC,
        );
        assert_eq!(f.age(t(1005)).as_secs(), 55);
        assert!(
            f.age(t(1005)).as_secs() >= 50,
            "never lower than the origin's Age"
        );
    }

    /// §5.2.1: request directives and the response's no-cache.
    #[test]
    fn request_directives_decide_use() {
        let f = Freshness::compute(
            StatusCode::OK,
            &headers(&[("cache-control", "max-age=100")]),
            t(0),
            t(0),
            HEURISTIC,
        );
        let none = Directives::default();
        let req = |cc: &str| headers(&[("cache-control", cc)]);
        assert_eq!(usable(&f, &none, false, &HeaderMap::new(), t(50)), Ok(()));
        assert_eq!(
            usable(&f, &none, false, &req("no-cache"), t(50)),
            Err(Unusable::Request)
        );
        assert_eq!(
            usable(&f, &none, false, &headers(&[("pragma", "no-cache")]), t(50)),
            Err(Unusable::Request)
        );
        assert_eq!(
            usable(&f, &none, false, &req("max-age=30"), t(50)),
            Err(Unusable::Request)
        );
        assert_eq!(
            usable(&f, &none, false, &req("min-fresh=60"), t(50)),
            Err(Unusable::Request)
        );
        assert_eq!(
            usable(&f, &none, false, &req("max-stale=30"), t(120)),
            Ok(())
        );
        assert_eq!(
            usable(&f, &none, false, &req("max-stale=10"), t(120)),
            Err(Unusable::Stale)
        );
        assert_eq!(usable(&f, &none, false, &req("max-stale"), t(9999)), Ok(()));
        assert_eq!(
            usable(&f, &none, true, &req("max-stale"), t(120)),
            Err(Unusable::Stale),
            "must-revalidate"
        );
        let no_cache =
            Directives::parse(headers(&[("cache-control", "no-cache")]).get_all(CACHE_CONTROL));
        assert_eq!(
            usable(&f, &no_cache, false, &HeaderMap::new(), t(1)),
            Err(Unusable::Stale)
        );
    }

    /// Property tests: any Cache-Control lines, including ones no origin
    /// should send (`fuzz/` checks the same for longer).
    mod properties {
        use super::*;
        use crate::strategies::cache_control;
        use proptest::collection::vec;
        use proptest::prelude::*;

        proptest! {
            /// RFC 9111 §5.2: the directives, written back as one value
            /// (as the policy does when it drops one), read the same.
            #[test]
            fn directives_read_back_as_written(lines in vec(cache_control(), 0..3)) {
                let directives = Directives::parse(lines.iter());
                let text = directives.without("");
                let value = HeaderValue::from_str(&text);
                prop_assert!(value.is_ok(), "{text:?} is not a field value");
                let again = Directives::parse(value.iter());
                prop_assert_eq!(&again, &directives, "written as {:?}", text);
                for name in ["max-age", "s-maxage", "no-cache"] {
                    let without = directives.without(name);
                    let rest = HeaderValue::from_str(&without).map(|v| Directives::parse([&v]));
                    prop_assert!(rest.is_ok_and(|rest| !rest.has(name)));
                }
            }

            /// §1.2.2: delta-seconds are at most 2^31; the fields a
            /// qualified directive names come out lower-case.
            #[test]
            fn numbers_are_bounded_and_names_lower_case(lines in vec(cache_control(), 0..3)) {
                let directives = Directives::parse(lines.iter());
                for name in ["max-age", "s-maxage", "stale-if-error", "min-fresh"] {
                    if let Some(Ok(seconds)) = directives.seconds(name) {
                        prop_assert!(seconds <= MAX_DELTA);
                    }
                }
                for fields in [directives.fields("no-cache"), directives.fields("private")]
                    .into_iter()
                    .flatten()
                {
                    prop_assert!(fields.iter().all(|f| !f.is_empty() && *f == f.to_ascii_lowercase()));
                }
            }
        }
    }
}
