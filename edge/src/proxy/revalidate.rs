//! Revalidation of stored responses with the origin (RFC 9111 §4.3): in
//! the request's path, or in the background for stale-while-revalidate
//! (RFC 5861 §3), with stale answers when the origin fails (RFC 5861 §4,
//! RFC 9111 §4.2.4).

use std::sync::Arc;

use http::Response;
use http_body_util::BodyExt;
use outpost_cache::{Entry, Fetched, Revalidated, StaleReason, candidates_conditional};

use super::headers;
use crate::origin::pool::Answer;

use super::exchange::Exchange;
use super::hit::{from_cache, unvalidated};
use super::respond::upstream_error;
use super::status::{CacheStatus, Detail, Fwd};
use super::{Proxy, Reply};
use crate::origin::error::Chain;

impl Proxy {
    /// Sends a conditional request for a stale entry with the cache's own
    /// validators (RFC 9111 §4.3.1), and does what the cache says the
    /// origin's answer means: serve the entry refreshed, or stale, fetch
    /// it whole, or relay (and store) the answer in its place.
    pub(super) async fn revalidate(
        &self,
        request: Exchange,
        entry: Arc<Entry>,
        reason: Fwd,
    ) -> Reply {
        let headers = entry.conditional(&request.parts.headers);
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request.send_bodiless(outgoing).await {
            Ok(answer) => answer,
            Err(e) => {
                let now = self.cache.now();
                let detail = match entry.stale_on_failure(now, request.rule.stale_if_unreachable) {
                    Some(StaleReason::IfError) => Detail::StaleIfError,
                    Some(StaleReason::Unreachable) => Detail::OriginUnreachable,
                    None => return upstream_error(&e),
                };
                tracing::warn!(error = %Chain(&e), key = %request.key, ?detail, "origin failed; serving stale");
                let response = from_cache(&self.cache, &entry, &request.parts, now);
                let status = CacheStatus::fwd(Fwd::Stale).detail(detail);
                return (Some(status), unvalidated(&entry, response));
            }
        };
        let now = self.cache.now();
        let Answer { response, lease } = answer;
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        if parts.status == http::StatusCode::NOT_MODIFIED {
            super::compress::keep_weak_tag(entry.headers().get("etag"), &mut parts.headers);
        }
        let fetched = Fetched {
            key: &request.key,
            request: &request.parts,
            response: &parts,
            request_time,
            response_time: now,
        };
        let status = parts.status.as_u16();
        match self.cache.revalidated(&entry, &fetched) {
            Revalidated::StaleIfError => {
                let label = CacheStatus::fwd(Fwd::Stale)
                    .fwd_status(status)
                    .detail(Detail::StaleIfError);
                (
                    Some(label),
                    unvalidated(&entry, from_cache(&self.cache, &entry, &request.parts, now)),
                )
            }
            Revalidated::Refreshed(refreshed) => (
                Some(CacheStatus::fwd(reason).fwd_status(status)),
                from_cache(&self.cache, &refreshed, &request.parts, now),
            ),
            // The 304 was about another representation: fetch it whole.
            Revalidated::OtherRepresentation => {
                drop(body);
                let fetched = self.fetch(request, CacheStatus::fwd(reason)).await;
                // The 304's slot at the origin is held until then, as it
                // always was.
                drop(lease);
                fetched
            }
            Revalidated::Replaced => {
                let answer = Answer {
                    response: Response::from_parts(parts, body),
                    lease,
                };
                self.store_and_relay(
                    request,
                    answer,
                    request_time,
                    CacheStatus::fwd(reason),
                    None,
                )
                .await
            }
        }
    }

    /// A Vary miss sent with the entity tags of the URL's stored variants
    /// (RFC 9111 §4.3.1): a 304 selects the one that answers (§4.3.4),
    /// freshened and stored for this request's values too; a 304 that
    /// names none of them is followed by a plain fetch; any other answer
    /// is relayed and stored as a miss's would be.
    pub(super) async fn validate_variants(
        &self,
        request: Exchange,
        candidates: Vec<Arc<Entry>>,
    ) -> Reply {
        let headers = candidates_conditional(&candidates, &request.parts.headers);
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request.send_bodiless(outgoing).await {
            Ok(answer) => answer,
            Err(e) => return upstream_error(&e),
        };
        if answer.response.status() != http::StatusCode::NOT_MODIFIED {
            let status = CacheStatus::fwd(Fwd::VaryMiss);
            return self
                .store_and_relay(request, answer, request_time, status, None)
                .await;
        }
        let now = self.cache.now();
        let Answer { response, lease } = answer;
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        // A tag that names none of them as it is may name a copy Outpost
        // compressed (W/"x" for the origin's "x"), whose weak tag stays.
        let etag = http::header::ETAG;
        if !candidates
            .iter()
            .any(|c| c.headers().get(etag.as_str()).as_ref() == parts.headers.get(&etag))
        {
            for candidate in &candidates {
                super::compress::keep_weak_tag(
                    candidate.headers().get(etag.as_str()),
                    &mut parts.headers,
                );
            }
        }
        let fetched = Fetched {
            key: &request.key,
            request: &request.parts,
            response: &parts,
            request_time,
            response_time: now,
        };
        match self.cache.select_variant(&candidates, &fetched) {
            Some(selected) => (
                Some(CacheStatus::fwd(Fwd::VaryMiss).fwd_status(304)),
                from_cache(&self.cache, &selected, &request.parts, now),
            ),
            None => {
                drop(body);
                let fetched = self.fetch(request, CacheStatus::fwd(Fwd::VaryMiss)).await;
                drop(lease);
                fetched
            }
        }
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
