//! Revalidation of stored responses with the origin (RFC 9111 §4.3): in
//! the request's path, or in the background for stale-while-revalidate
//! (RFC 5861 §3), with stale answers when the origin fails (RFC 5861 §4,
//! RFC 9111 §4.2.4).

use std::sync::Arc;

use http::header::{
    CONTENT_LENGTH, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use http_body_util::BodyExt;
use outpost_cache::Entry;

use super::headers;
use crate::origin::body::OutgoingBody;

use super::exchange::Exchange;
use super::hit::{from_cache, unvalidated};
use super::respond::upstream_error;
use super::status::{CacheStatus, Detail, Fwd};
use super::{Proxy, Reply};

impl Proxy {
    /// Sends a conditional request for a stale entry with the cache's own
    /// validators (RFC 9111 §4.3.1); a 304 that names the stored
    /// representation refreshes it, anything else replaces it.
    pub(super) async fn revalidate(
        &self,
        request: Exchange,
        entry: Arc<Entry>,
        reason: Fwd,
    ) -> Reply {
        let mut headers = request.parts.headers.clone();
        for name in [
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_MATCH,
            IF_UNMODIFIED_SINCE,
            IF_RANGE,
            RANGE,
        ] {
            headers.remove(name);
        }
        if let Some(etag) = entry.headers().get(ETAG.as_str()) {
            headers.insert(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = entry.headers().get(LAST_MODIFIED.as_str()) {
            headers.insert(IF_MODIFIED_SINCE, modified);
        }
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request
            .upstream
            .send(request.key.hash(), outgoing, OutgoingBody::Empty)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                let now = self.cache.now();
                let detail = if entry.stale_if_error(now) {
                    Detail::StaleIfError
                } else if entry.stale_if_unreachable(now, request.rule.stale_if_unreachable) {
                    Detail::OriginUnreachable
                } else {
                    return upstream_error(&e);
                };
                tracing::warn!(error = %e, key = %request.key, ?detail, "origin failed; serving stale");
                let response = from_cache(&self.cache, &entry, &request.parts, now);
                let status = CacheStatus::fwd(Fwd::Stale).detail(detail);
                return (Some(status), unvalidated(&entry, response));
            }
        };
        // RFC 5861 §4: these answers count as errors too.
        let status = answer.response.status();
        if matches!(status.as_u16(), 500 | 502 | 503 | 504) {
            let now = self.cache.now();
            if entry.stale_if_error(now) {
                let label = CacheStatus::fwd(Fwd::Stale)
                    .fwd_status(status.as_u16())
                    .detail(Detail::StaleIfError);
                return (
                    Some(label),
                    unvalidated(&entry, from_cache(&self.cache, &entry, &request.parts, now)),
                );
            }
        }
        if answer.response.status() == StatusCode::NOT_MODIFIED {
            let now = self.cache.now();
            let (mut parts, _) = answer.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            return match self.cache.refresh(
                &request.key,
                &entry,
                &request.parts,
                &parts,
                request_time,
                now,
            ) {
                Some(refreshed) => (
                    Some(CacheStatus::fwd(reason).fwd_status(304)),
                    from_cache(&self.cache, &refreshed, &request.parts, now),
                ),
                // The 304 was about another representation: fetch it whole.
                None => self.fetch(request, CacheStatus::fwd(reason)).await,
            };
        }
        // RFC 9111 §4.3.5: a 200 to a HEAD freshens the stored GET response
        // when the validators it carries (and its Content-Length) agree with
        // the stored ones; otherwise the stored response stays stale.
        if request.parts.method == Method::HEAD
            && status == StatusCode::OK
            && head_agrees(&entry, answer.response.headers())
        {
            let now = self.cache.now();
            let (mut parts, _) = answer.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            let refreshed = self.cache.refresh(
                &request.key,
                &entry,
                &request.parts,
                &parts,
                request_time,
                now,
            );
            let answered = refreshed.as_ref().unwrap_or(&entry);
            return (
                Some(CacheStatus::fwd(reason).fwd_status(200)),
                from_cache(&self.cache, answered, &request.parts, now),
            );
        }
        self.store_and_relay(
            request,
            answer,
            request_time,
            CacheStatus::fwd(reason),
            None,
        )
        .await
    }

    /// Revalidates `entry` off the client's path, at most once at a time per key.
    pub(super) fn revalidate_in_background(
        self: &Arc<Self>,
        request: &Exchange,
        entry: Arc<Entry>,
    ) {
        let key = *request.key.hash();
        if !self
            .revalidating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
        {
            return;
        }
        let proxy = self.clone();
        let exchange = request.detached();
        tokio::spawn(async move {
            let (_, response) = proxy.revalidate(exchange, entry, Fwd::Stale).await;
            // Reading the body to its end is what stores a new copy.
            let _ = response.into_body().collect().await;
            proxy
                .revalidating
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }
}

/// Whether a 200 to a HEAD describes the stored response (RFC 9111 §4.3.5):
/// each validator it carries (ETag, Last-Modified) and its Content-Length,
/// if it has one, equal the stored ones.
pub(super) fn head_agrees(entry: &Entry, head: &HeaderMap) -> bool {
    let same = |name: HeaderName| {
        head.get(&name)
            .is_none_or(|value| entry.headers().get(name.as_str()).as_ref() == Some(value))
    };
    let length = head
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim().parse::<u64>().ok() == Some(entry.body_len()));
    same(ETAG) && same(LAST_MODIFIED) && length
}
