//! The live status page: `GET /` serves the page (one HTML file built into
//! the binary, its script and styles inline, nothing fetched from
//! elsewhere), and `GET /status` the JSON it polls: `/stats`, what the
//! edge reports through its hook (the last minute by site, the top missed
//! and bypassed keys, the config generation and reloads), and the purges
//! this node applied last.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use http::{HeaderValue, Response};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::Admin;
use crate::purge::PurgeRequest;

/// The page, as built into the binary.
const PAGE: &str = include_str!("status.html");

/// Purges the page lists.
const RECENT_PURGES: usize = 20;
/// Items of one purge the page names (the rest are counted).
const NAMED_ITEMS: usize = 3;

/// What the edge reports for the page: the last minute, the config
/// generation and its reloads, as JSON.
pub type StatusHook = dyn Fn() -> Value + Send + Sync;

/// The last purges applied here, newest last.
#[derive(Default)]
pub(crate) struct RecentPurges(std::sync::Mutex<VecDeque<Value>>);

impl RecentPurges {
    /// Remembers a purge applied here that matched `matched` objects.
    pub(crate) fn record(&self, purge: &PurgeRequest, matched: usize, request_id: &str) {
        let mut what = Vec::new();
        for (kind, items) in [
            ("urls", &purge.urls),
            ("prefixes", &purge.prefixes),
            ("hosts", &purge.hosts),
            ("tags", &purge.tags),
        ] {
            if let Some(items) = items {
                let mut named: Vec<&str> =
                    items.iter().take(NAMED_ITEMS).map(String::as_str).collect();
                let more = items.len().saturating_sub(NAMED_ITEMS);
                let more = (more > 0).then(|| format!("(+{more} more)"));
                named.extend(more.as_deref());
                what.push(format!("{kind}: {}", named.join(", ")));
            }
        }
        if purge.everything == Some(true) {
            what.push("everything".to_owned());
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut purges = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if purges.len() == RECENT_PURGES {
            purges.pop_front();
        }
        purges.push_back(json!({
            "at_ms": at_ms,
            "what": what.join("; "),
            "soft": purge.soft,
            "matched": matched,
            "request_id": request_id,
        }));
    }

    /// Newest first.
    fn list(&self) -> Vec<Value> {
        let purges = self.0.lock().unwrap_or_else(|p| p.into_inner());
        purges.iter().rev().cloned().collect()
    }
}

impl Admin {
    /// `GET /`: the page.
    pub(crate) fn page(&self) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        let headers = res.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // Its own script and styles only, and requests to this API only.
        headers.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        );
        res
    }

    /// `GET /status`: what the page shows, as JSON.
    pub(crate) fn status(&self) -> Value {
        let mut status = self.stats();
        status["edge"] = self.status_hook.as_ref().map_or(Value::Null, |hook| hook());
        status["purges"] = self.recent_purges.list().into();
        status["now_ms"] = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .into();
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_is_remembered_with_its_first_items_and_the_count_of_the_rest() {
        let recent = RecentPurges::default();
        let purge = PurgeRequest {
            tags: Some((0..5).map(|i| format!("t{i}")).collect()),
            soft: true,
            ..PurgeRequest::default()
        };
        recent.record(&purge, 7, "r1");
        recent.record(&PurgeRequest::everything(), 0, "r2");
        let list = recent.list();
        assert_eq!(list[0]["what"], "everything");
        assert_eq!(list[1]["what"], "tags: t0, t1, t2, (+2 more)");
        assert_eq!(list[1]["soft"], true);
        assert_eq!(list[1]["matched"], 7);
        for i in 0..RECENT_PURGES + 5 {
            recent.record(&PurgeRequest::everything(), i, "r");
        }
        assert_eq!(recent.list().len(), RECENT_PURGES);
    }
}
