//! `/explain`: what the cache holds for a URL and what it would do with a
//! request for it. The request goes through the same routing, keying and
//! decision as a real one (`Proxy::prepare`, `passing`, `Proxy::decide`),
//! stopping before anything is fetched, stored or counted; what is stored
//! comes from `Cache::stored_responses`. An embedder's hooks are not run.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::header::HOST;
use http::{Request, Uri};
use http_body_util::BodyExt;
use outpost_cache::StoredResponse;
use outpost_purge_api::ExplainQuery;
use serde_json::{Value, json};

use super::actions::RequestId;
use super::route::{Counted, Decision, Passing, passing};
use super::status::{Answer, CacheStatus, Detail, Fwd};
use super::{ConnInfo, Outward, Proxy};
use crate::observe::access_log::rfc3339;

impl Proxy {
    /// The explanation of `query` as JSON; Err for a URL that is not an
    /// absolute http or https URL, or a request that cannot be built.
    pub(crate) async fn explain(self: &Arc<Self>, query: ExplainQuery) -> Result<Value, String> {
        let uri: Uri = query
            .url
            .parse()
            .map_err(|e| format!("{:?} is not a URL: {e}", query.url))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "{:?} is not an absolute http or https URL",
                    query.url
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{:?} names no host", query.url))?
            .as_str()
            .to_owned();
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder()
            .method(query.method.clone())
            .uri(target)
            .header(HOST, &authority);
        for (name, value) in &query.headers {
            if name != HOST {
                builder = builder.header(name, value);
            }
        }
        let (parts, ()) = builder
            .body(())
            .map_err(|e| format!("the request cannot be built: {e}"))?
            .into_parts();
        let conn = ConnInfo {
            alt_svc: None,
            remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls,
            tls_version: None,
            listener: 0,
            certificate: None,
        };
        let mut outward = Outward {
            id: RequestId(self.request_ids.fetch_add(1, Ordering::Relaxed)),
            site: None,
            rule: None,
            vars: None,
            info: None,
            source: None,
            interim: None,
        };
        let prepared = self.prepare(conn, parts, &mut outward).await;
        let mut explained = json!({
            "url": query.url,
            "method": query.method.as_str(),
            "site": outward.site.as_ref().map(|s| s.name.clone()),
            "rule": outward.rule,
        });
        let request = match prepared {
            Ok(request) => request,
            Err((status, response)) => {
                // Answered on the way: a refusal or the rule's redirect.
                let code = response.status().as_u16();
                let location = response
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
                    .unwrap_or_default();
                let redirect = status.is_some_and(|s| s.detail == Some(Detail::Redirect));
                explained["decision"] = if redirect {
                    json!({
                        "outcome": "redirect",
                        "code": "redirect",
                        "status": code,
                        "location": location,
                        "reason": format!("the rule answers with a {code} redirect"),
                        "cache_status": status.map(|s| s.text()),
                    })
                } else {
                    json!({
                        "outcome": "refused",
                        "code": "refused",
                        "status": code,
                        "reason": body,
                    })
                };
                return Ok(explained);
            }
        };
        let now = self.cache.now();
        explained["key"] = json!({
            "text": request.key.text(),
            "hash": hex(request.key.hash()),
        });
        let stored = self
            .cache
            .stored_responses(&request.key, &request.parts)
            .await;
        explained["stored"] = stored.iter().map(|s| stored_json(s, now)).collect();
        explained["decision"] = match passing(&request) {
            Some(Passing::Tunnel { .. }) => json!({
                "outcome": "bypass",
                "code": "websocket",
                "reason": "a WebSocket upgrade is tunnelled to the origin",
            }),
            Some(Passing::Pass(why)) => {
                let reason = match why {
                    Fwd::Bypass => "the rule says cache: bypass".to_owned(),
                    _ => format!("{} requests are not answered from the cache", query.method),
                };
                let status = CacheStatus::fwd(why);
                json!({
                    "outcome": "bypass",
                    "code": code(&status),
                    "reason": reason,
                    "cache_status": status.text(),
                })
            }
            None => {
                let decision = self.decide(&request, Counted::No).await;
                let status = decision.status();
                json!({
                    "outcome": outcome(&decision),
                    "code": code(&status),
                    "reason": reason(&decision, now),
                    "cache_status": status.text(),
                })
            }
        };
        Ok(explained)
    }
}

/// One stored response as `/explain` lists it; durations in whole seconds.
fn stored_json(stored: &StoredResponse, now: SystemTime) -> Value {
    let vary: serde_json::Map<String, Value> = stored
        .vary
        .iter()
        .map(|(name, value)| (name.clone(), json!(value)))
        .collect();
    let seconds = |d: Duration| d.as_secs();
    json!({
        "vary": vary,
        "tier": stored.tier.as_str(),
        "status": stored.status,
        "size": stored.size,
        "tags": stored.tags,
        "stored_at": rfc3339(stored.stored_at),
        "age": seconds(stored.age),
        "lifetime": seconds(stored.lifetime),
        "freshness_from": stored.freshness_from.text(),
        "fresh": !stored.fresh_for.is_zero() && !stored.soft_purged,
        "fresh_for": seconds(stored.fresh_for),
        "stale_for": seconds(stored.stale_for),
        "stale_while_revalidate_left": stored.stale_while_revalidate_left.map(seconds),
        "stale_if_error_left": stored.stale_if_error_left.map(seconds),
        "never_stale": stored.never_stale,
        "soft_purged": stored.soft_purged,
        "expires_at": now
            .checked_add(stored.fresh_for)
            .filter(|_| !stored.fresh_for.is_zero())
            .map(rfc3339),
    })
}

/// hit, stale, miss or bypass: what the request would get.
fn outcome(decision: &Decision) -> &'static str {
    match decision {
        Decision::Hit(..) => "hit",
        Decision::StaleWhileRevalidate(..) | Decision::Revalidate(..) => "stale",
        Decision::OnlyIfCached | Decision::VaryMiss | Decision::Miss => "miss",
        Decision::PurgeLag => "bypass",
    }
}

/// One token for the decision, the one its `Cache-Status` carries: the
/// detail when there is one, else `hit` or the `fwd` reason.
fn code(status: &CacheStatus) -> &'static str {
    match (status.detail, status.answer) {
        (Some(detail), _) => detail.as_str(),
        (None, Answer::Hit) => "hit",
        (None, Answer::Fwd(why)) => why.as_str(),
        (None, Answer::Neither) => "none",
    }
}

/// The decision in words.
fn reason(decision: &Decision, now: SystemTime) -> String {
    match decision {
        Decision::Hit(entry, _) => format!(
            "a fresh stored response answers; it stays fresh for {}s more",
            entry.time_to_live(now).as_secs()
        ),
        Decision::StaleWhileRevalidate(entry, _) => format!(
            "the stored response is {}s stale, within its stale-while-revalidate window: \
             it answers at once and is revalidated in the background",
            entry.staleness(now).as_secs()
        ),
        Decision::Revalidate(entry, Fwd::Request) => format!(
            "a fresh response is stored ({}s left), but the request's Cache-Control \
             refuses it as is: the origin validates it first",
            entry.time_to_live(now).as_secs()
        ),
        Decision::Revalidate(entry, _) if entry.time_to_live(now).is_zero() => format!(
            "the stored response is {}s stale (or soft-purged): the origin validates it \
             before it answers",
            entry.staleness(now).as_secs()
        ),
        Decision::Revalidate(..) => {
            "the stored response was soft-purged: the origin validates it before it answers"
                .to_owned()
        }
        Decision::VaryMiss => "responses are stored for this URL, none for this request's \
                               values of the fields they vary on: the origin answers"
            .to_owned(),
        Decision::Miss => "nothing usable is stored under this key: the origin answers".to_owned(),
        Decision::OnlyIfCached => {
            "the request says only-if-cached and nothing stored answers it as is: a 504".to_owned()
        }
        Decision::PurgeLag => "this node has not applied the fleet's latest purges: the cache \
                               is passed by until it has"
            .to_owned(),
    }
}

/// A hash in lower-case hex.
fn hex(bytes: &[u8; 32]) -> String {
    let mut text = String::with_capacity(64);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}
