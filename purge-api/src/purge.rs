//! `POST /purge`: URLs, prefixes, hosts, tags or everything, hard or soft,
//! within the token's scope, bulk purges rate-limited.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::json;

use crate::{Admin, MAX_BODY, PrefixError, chain, error, json_response, unauthorized};

impl Admin {
    pub(crate) async fn purge<B>(&self, req: Request<B>, request_id: &str) -> Response<Full<Bytes>>
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
            return error(StatusCode::FORBIDDEN, &denied.to_string(), request_id);
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
                        Err(e) => return error(StatusCode::BAD_REQUEST, &chain(&e), request_id),
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
                    Err(e) => return error(StatusCode::BAD_REQUEST, &chain(&e), request_id),
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

    /// Takes one prefix-or-everything purge from the bucket; false when empty.
    pub(crate) fn take_bulk_purge(&self) -> bool {
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
}

/// Prefix and everything purges allowed in a burst, refilled one a second.
pub(crate) const PURGE_BURST: f64 = 10.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeRequest {
    pub(crate) urls: Option<Vec<String>>,
    pub(crate) prefixes: Option<Vec<String>>,
    pub(crate) hosts: Option<Vec<String>>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) everything: Option<bool>,
    /// Mark stale instead of deleting.
    #[serde(default)]
    pub(crate) soft: bool,
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
