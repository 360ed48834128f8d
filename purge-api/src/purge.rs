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
        if let Err(denied) = self.check_scope(&caller.scope, &purge) {
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
            matched += self.cache.purge_tags(tags, soft);
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
        })
    }
}

/// A prefix as purges match it: host (lower-case, no trailing dot, no
/// default port, which is unknown without a scheme) and path, no scheme.
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
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(PrefixError::NoHost(text.to_owned()));
    }
    let path = outpost_cache::normalize_path(path).map_err(|source| PrefixError::Path {
        text: text.to_owned(),
        source,
    })?;
    Ok(format!("{host}{path}"))
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
