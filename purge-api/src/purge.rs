//! `POST /purge`: URLs, prefixes, hosts, tags or everything, hard or soft,
//! within the token's scope and purge budget.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use std::sync::Arc;

use outpost_cache::{Cache, CacheKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::budget::Refused;
use crate::{
    Admin, KeyForUrl, MAX_BODY, PrefixError, PurgeError, chain, error, json_response, unauthorized,
};

impl Admin {
    pub(crate) async fn purge<B>(&self, req: Request<B>, request_id: &str) -> Response<Full<Bytes>>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(caller) = self.caller(&req) else {
            self.metrics
                .purges
                .with_label_values(&["urls", "unauthorized"])
                .inc();
            return unauthorized(request_id);
        };
        // A declared length over the limit is refused before a byte of the
        // body is read (RFC 9110 §15.5.14).
        if hyper::body::Body::size_hint(req.body()).lower() > MAX_BODY as u64 {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body over {MAX_BODY} bytes"),
                request_id,
            );
        }
        let reading = Limited::new(req.into_body(), MAX_BODY).collect();
        let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, reading).await else {
            // RFC 9110 §15.5.9: a body that stalls holds nothing up for long.
            return error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the body did not arrive within {BODY_TIMEOUT:?}"),
                request_id,
            );
        };
        let body = match read {
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
        let mut purge: PurgeRequest = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid purge request: {e}"),
                    request_id,
                );
            }
        };
        if let Err(denied) = self.check_scope(&caller.scope, &mut purge) {
            self.metrics
                .purges
                .with_label_values(&["any", "forbidden"])
                .inc();
            return error(StatusCode::FORBIDDEN, &denied.to_string(), request_id);
        }
        let items = purge.items();
        if let Err(refused) = self
            .budgets
            .take(caller.token, items, std::time::Instant::now())
        {
            self.metrics
                .purges
                .with_label_values(&["any", "rate_limited"])
                .inc();
            return match refused {
                Refused::TooLarge { items, burst } => error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "this purge names {items} items, more than the {burst} a token may purge at once; split it"
                    ),
                    request_id,
                ),
                Refused::Wait(wait) => {
                    let mut res = error(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!(
                            "this token's purge budget is spent: {items} items need {} s more; try again then",
                            wait.as_secs_f64().ceil()
                        ),
                        request_id,
                    );
                    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                    res.headers_mut()
                        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
                    res
                }
            };
        }
        let applied = match self.purger.apply(&purge) {
            Ok(applied) => applied,
            Err(e) => return error(StatusCode::BAD_REQUEST, &chain(&e), request_id),
        };
        let matched = applied.matched;
        self.recent_purges.record(&purge, matched, request_id);
        let mut answer = json!({
            "matched": matched,
            "purged": matched,
            "soft": purge.soft,
            "request_id": request_id,
        });
        if let Some(fleet) = &self.fleet {
            // Applied here; now the rest of the fleet hears of it, at once
            // or, while the stream is out of reach, from the durable queue.
            match fleet.announce(&purge).await {
                Ok(announced) => {
                    answer["id"] = json!(announced.id);
                    answer["sequence"] = json!(announced.sequence);
                    answer["queued"] = json!(announced.sequence.is_none());
                }
                Err(e) => {
                    tracing::error!(request_id, error = %chain(&*e), "a purge applied here could not be queued for the fleet");
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!(
                            "the purge applies here, but could not be queued for the fleet: {}",
                            chain(&*e)
                        ),
                        request_id,
                    );
                }
            }
        }
        // The fleet hears of it even when this node's disk journal failed.
        if !applied.durable {
            for kind in &applied.kinds {
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
        for kind in &applied.kinds {
            self.metrics.purges.with_label_values(&[kind, "ok"]).inc();
        }
        tracing::info!(request_id, kinds = ?applied.kinds, soft = purge.soft, matched, "purge");
        json_response(StatusCode::OK, answer)
    }
}

/// How long a purge request's body may take to arrive.
pub(crate) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A purge as a client sends it, and as it travels to the rest of a fleet.
/// A field is either left out or given; `null` is refused like any other
/// value of the wrong type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub urls: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub prefixes: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub hosts: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub tags: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub everything: Option<bool>,
    /// Limits a tag purge to the objects of these hosts (names, or `*.` and
    /// a parent name). A token scoped to hosts purges tags within them.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub within_hosts: Option<Vec<String>>,
    /// Mark stale instead of deleting.
    #[serde(default)]
    pub soft: bool,
}

/// An optional field that is present: its value must read as `T`, so a
/// `null` is an error rather than the field left out (`default` covers that).
fn given<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl PurgeRequest {
    /// A purge of everything stored, hard.
    pub fn everything() -> Self {
        Self {
            everything: Some(true),
            ..Self::default()
        }
    }
}

/// Applies purges to the cache: those the side API accepts and those that
/// arrive from the rest of a fleet alike.
pub struct Purger {
    cache: Arc<Cache>,
    key_for_url: Arc<KeyForUrl>,
}

/// What a purge did.
#[derive(Debug)]
pub struct Applied {
    pub matched: usize,
    /// The kinds it named, as metric labels.
    pub kinds: Vec<&'static str>,
    /// False when the purge journal could not be written.
    pub durable: bool,
}

/// What a purge names, every part normalized: nothing is applied until all
/// of it reads.
struct Targets {
    keys: Option<Vec<CacheKey>>,
    prefixes: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    /// The host patterns a tag purge is limited to.
    within: Option<Vec<String>>,
}

impl Purger {
    pub fn new(cache: Arc<Cache>, key_for_url: Arc<KeyForUrl>) -> Self {
        Self { cache, key_for_url }
    }

    /// Applies `purge`, or changes nothing when any part of it is invalid.
    pub fn apply(&self, purge: &PurgeRequest) -> Result<Applied, PurgeError> {
        let targets = self.targets(purge)?;
        let soft = purge.soft;
        let mut matched = 0;
        let mut kinds = Vec::new();
        let failures = self.cache.journal_failures();
        if let Some(keys) = &targets.keys {
            matched += self.cache.purge_urls(keys, soft);
            kinds.push("urls");
        }
        if let Some(prefixes) = &targets.prefixes {
            matched += self.cache.purge_prefixes(prefixes, soft);
            kinds.push("prefixes");
        }
        if let Some(hosts) = &targets.hosts {
            matched += self.cache.purge_hosts(hosts, soft);
            kinds.push("hosts");
        }
        if let Some(tags) = &purge.tags {
            matched += match &targets.within {
                Some(patterns) => self.cache.purge_tags_within(tags, patterns, soft),
                None => self.cache.purge_tags(tags, soft),
            };
            kinds.push("tags");
        }
        if purge.everything == Some(true) {
            matched += self.cache.purge_everything(soft);
            kinds.push("everything");
        }
        Ok(Applied {
            matched,
            kinds,
            durable: self.cache.journal_failures() == failures,
        })
    }

    /// Whether the cache holds nothing at all (a disk tier not open yet
    /// may hold anything).
    pub fn cache_is_empty(&self) -> bool {
        if self.cache.disk_pending() {
            return false;
        }
        let usage = self.cache.usage();
        usage.memory_objects == 0 && usage.disk.is_none_or(|d| d.objects == 0)
    }

    fn targets(&self, purge: &PurgeRequest) -> Result<Targets, PurgeError> {
        let lists = [
            ("urls", &purge.urls),
            ("prefixes", &purge.prefixes),
            ("hosts", &purge.hosts),
            ("tags", &purge.tags),
            ("within_hosts", &purge.within_hosts),
        ];
        if let Some((name, _)) = lists
            .iter()
            .find(|(_, list)| list.as_ref().is_some_and(|l| l.is_empty()))
        {
            return Err(PurgeError::Empty(name));
        }
        if purge.everything == Some(false) {
            return Err(PurgeError::EverythingFalse);
        }
        if lists.iter().all(|(_, list)| list.is_none()) && purge.everything.is_none() {
            return Err(PurgeError::Nothing);
        }
        if purge.within_hosts.is_some() && purge.tags.is_none() {
            return Err(PurgeError::WithinWithoutTags);
        }
        let within = match &purge.within_hosts {
            None => None,
            Some(patterns) => Some(
                patterns
                    .iter()
                    .map(|p| host_pattern(p).ok_or_else(|| PurgeError::NotAHost(p.clone())))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let keys = match &purge.urls {
            None => None,
            Some(urls) => {
                let mut keys = Vec::with_capacity(urls.len() * 2);
                for url in urls {
                    // A URL names its object over both schemes.
                    for variant in scheme_variants(url) {
                        keys.push((self.key_for_url)(&variant)?);
                    }
                }
                Some(keys)
            }
        };
        let prefixes = match &purge.prefixes {
            None => None,
            Some(prefixes) => Some(
                prefixes
                    .iter()
                    .map(|p| normalize_prefix(p))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let hosts = match &purge.hosts {
            None => None,
            Some(hosts) => {
                let mut normalized = Vec::with_capacity(hosts.len());
                for host in hosts {
                    match normalize_prefix(host) {
                        Ok(p) if p.ends_with('/') && p.matches('/').count() == 1 => {
                            normalized.push(p.trim_end_matches('/').to_owned())
                        }
                        _ => return Err(PurgeError::NotAHost(host.clone())),
                    }
                }
                Some(normalized)
            }
        };
        Ok(Targets {
            keys,
            prefixes,
            hosts,
            within,
        })
    }
}

/// A prefix as purges match it: host (lower-case, no trailing dots nor
/// empty port, but a default port kept: it is unknown without a scheme)
/// and path, no scheme.
/// A bare host becomes `host/`.
pub(crate) fn normalize_prefix(text: &str) -> Result<String, PrefixError> {
    let text = text.trim();
    if text.contains("://") {
        return Err(PrefixError::Scheme(text.to_owned()));
    }
    let (host, path) = match text.find('/') {
        Some(i) => text.split_at(i),
        None => (text, "/"),
    };
    // Its trailing dots and an empty port go, as they go from the keys'
    // hosts (a `:` left at its end would read as a scheme's next time).
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches(['.', ':']);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(PrefixError::NoHost(text.to_owned()));
    }
    let path = outpost_cache::normalize_path(path).map_err(|source| PrefixError::Path {
        text: text.to_owned(),
        source,
    })?;
    Ok(format!("{host}{path}"))
}

/// A host pattern as tag purges within hosts match it: a name, or `*.`
/// and a parent name; lower case, no trailing dot, no port.
pub(crate) fn host_pattern(text: &str) -> Option<String> {
    let text = text.trim().to_ascii_lowercase();
    let (wild, name) = match text.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, text.as_str()),
    };
    let name = name.trim_end_matches('.');
    let literal = name.starts_with('[') && name.ends_with(']') && !wild;
    let valid = !name.is_empty()
        && (literal
            || name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    valid.then(|| {
        if wild {
            format!("*.{name}")
        } else {
            name.to_owned()
        }
    })
}

/// The URL as given and with the other of http and https.
pub(crate) fn scheme_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") {
        variants.push(format!("http://{}", &url[8..]));
    } else if lower.starts_with("http://") {
        variants.push(format!("https://{}", &url[7..]));
    }
    variants
}

#[cfg(test)]
mod tests {
    //! Property tests of the purge body's parts (`fuzz/` checks the same
    //! from bytes); the side API's behaviour is tested in `tests.rs`.

    use super::*;
    use outpost_config::QueryKey;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a.test".to_owned()),
            Just("A.Test.".to_owned()),
            Just("x.b.test".to_owned()),
            Just("b.test".to_owned()),
            Just("evil.test".to_owned()),
            Just("a.test:8080".to_owned()),
            Just("a.test:x@evil.test".to_owned()),
            "[a-z.:@#?-]{0,10}",
            "[ -~]{0,10}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("/".to_owned()),
            "/[a-z%0-9.~/]{0,12}",
            "[/?#][ -~]{0,12}",
        ]
    }

    fn target() -> impl Strategy<Value = String> {
        (host(), path()).prop_map(|(h, p)| format!("{h}{p}"))
    }

    fn url() -> impl Strategy<Value = String> {
        let scheme = prop_oneof![Just("http://"), Just("HTTPS://"), Just("ftp://"), Just("")];
        (scheme, target()).prop_map(|(s, t)| format!("{s}{t}"))
    }

    fn request() -> impl Strategy<Value = PurgeRequest> {
        let list = |s: BoxedStrategy<String>| proptest::option::of(vec(s, 0..3));
        (
            list(url().boxed()),
            list(target().boxed()),
            list(host().boxed()),
            list("[ -~]{0,6}".boxed()),
            proptest::option::of(any::<bool>()),
            list(host().boxed()),
            any::<bool>(),
        )
            .prop_map(
                |(urls, prefixes, hosts, tags, everything, within_hosts, soft)| PurgeRequest {
                    urls,
                    prefixes,
                    hosts,
                    tags,
                    everything,
                    within_hosts,
                    soft,
                },
            )
    }

    fn in_scope(host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let name = host
            .split(':')
            .next()
            .unwrap_or_default()
            .trim_end_matches('.');
        name == "a.test" || (name.len() > ".b.test".len() && name.ends_with(".b.test"))
    }

    /// A prefix's host loses every trailing dot and an empty port, as a
    /// key's host does, so that a normalized prefix normalizes to itself (found by
    /// `fuzz/purge_body`: `www.b.test%w..` became `www.b.test%w./`, then
    /// `www.b.test%w/`).
    #[test]
    fn prefixes_lose_every_trailing_dot() {
        assert_eq!(normalize_prefix("www.b.test%w..").unwrap(), "www.b.test%w/");
        assert_eq!(normalize_prefix("A.Test../x").unwrap(), "a.test/x");
        assert_eq!(normalize_prefix("a.test/x").unwrap(), "a.test/x");
        assert!(normalize_prefix("../x").is_err());
        // Found by `fuzz/purge_body`: the host `ae:.` lost its dot and kept
        // its colon, and `ae://a.tatest/` then read as a scheme.
        assert_eq!(
            normalize_prefix("ae:.//a.tatest/`2/").unwrap(),
            "ae//a.tatest/`2/"
        );
        assert_eq!(normalize_prefix("a.test:/x").unwrap(), "a.test/x");
    }

    proptest! {
        /// A purge travels to the rest of a fleet as JSON: written and
        /// read back, it is the same purge.
        #[test]
        fn requests_read_back_as_written(purge in request()) {
            let text = serde_json::to_string(&purge).unwrap();
            let again: PurgeRequest = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(again, purge);
        }

        /// A normalized prefix normalizes to itself.
        #[test]
        fn prefixes_normalize_in_one_pass(text in target()) {
            if let Ok(prefix) = normalize_prefix(&text) {
                prop_assert_eq!(normalize_prefix(&prefix).ok(), Some(prefix));
            }
        }

        /// A URL's scheme variants are the same pair from either one.
        #[test]
        fn scheme_variants_pair_up(url in url()) {
            let pair = scheme_variants(&url);
            prop_assert_eq!(pair.first(), Some(&url));
            // Schemes are case-insensitive (RFC 3986 §3.1).
            let lower = |list: &[String]| {
                let mut list: Vec<String> = list.iter().map(|v| v.to_ascii_lowercase()).collect();
                list.sort();
                list
            };
            for variant in &pair {
                prop_assert_eq!(lower(&scheme_variants(variant)), lower(&pair));
            }
        }

        /// A token scoped to `a.test` and `*.b.test` purges keys,
        /// prefixes and hosts of those hosts only.
        #[test]
        fn a_scoped_token_stays_in_its_hosts(purge in request()) {
            let allowed = ["a.test".to_owned(), "*.b.test".to_owned()];
            if crate::auth::check_hosts(&allowed, &purge).is_ok() {
                for url in purge.urls.iter().flatten() {
                    for variant in scheme_variants(url) {
                        if let Ok(key) = CacheKey::from_url(&variant, &QueryKey::All) {
                            let rest = key.text().split_once("://").map_or("", |(_, r)| r);
                            let host = rest.split(['/', '?']).next().unwrap_or_default();
                            prop_assert!(in_scope(host), "{:?} purges {:?}", url, key.text());
                        }
                    }
                }
                for text in purge.prefixes.iter().flatten() {
                    if let Ok(prefix) = normalize_prefix(text) {
                        let host = prefix.split('/').next().unwrap_or_default();
                        prop_assert!(in_scope(host), "{:?} purges {:?}", text, prefix);
                    }
                }
                // A tag purge is limited to hosts in scope, or refused.
                if purge.tags.is_some() {
                    prop_assert!(purge.within_hosts.is_some());
                    for pattern in purge.within_hosts.iter().flatten().filter_map(|p| host_pattern(p)) {
                        let reached = match pattern.strip_prefix("*.") {
                            Some(name) => format!("x.{name}"),
                            None => pattern.clone(),
                        };
                        prop_assert!(in_scope(&reached), "{:?} reaches {:?}", pattern, reached);
                    }
                }
                // A host purge applies only to what normalizes to `host/`.
                for text in purge.hosts.iter().flatten() {
                    if let Some(host) = normalize_prefix(text)
                        .ok()
                        .and_then(|p| p.strip_suffix('/').map(str::to_owned))
                        .filter(|h| !h.contains('/'))
                    {
                        prop_assert!(in_scope(&host), "{:?} purges host {:?}", text, host);
                    }
                }
            }
        }
    }
}
