//! Partial content (RFC 9111 §3.3, §3.4): a single-range request that
//! misses is asked of the origin as it is, and the 206 that answers is
//! kept as the URL's piece. Later ranges inside the piece are hits; a
//! piece that adjoins the next one fetched grows by it; and a whole
//! request completes the piece with one range request for what is missing.
//! Pieces are combined only when they carry the same strong entity tag.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, StatusCode, response};
use http_body::{Body, Frame, SizeHint};
use outpost_cache::{CacheKey, ContentRange, EntityTag, Entry, Lookup};

use super::exchange::Exchange;
use super::hit::stored_body;
use super::range::{self, Ranges};
use super::respond::set_header;
use super::status::CacheStatus;
use super::{BoxError, Proxy, ProxyBody, Reply};

/// The label of the key a URL's piece is stored under.
const PIECE: &str = "range";

/// A held piece: the stored 206, its fields and the range it holds.
pub(super) struct Piece {
    entry: Arc<Entry>,
    headers: HeaderMap,
    range: ContentRange,
}

/// Where a 206 from the origin is stored, and as what.
pub(super) struct PieceStore {
    pub(super) key: CacheKey,
    /// The head stored: the origin's, or that of the piece it grew.
    pub(super) head: response::Parts,
    /// The held bytes that come before the origin's, in the grown piece.
    pub(super) prefix: Bytes,
}

/// Whether a request's `Range` names exactly one byte range (it is then
/// asked of the origin as it is; several ranges fetch the whole object).
pub(super) fn single_range(headers: &HeaderMap) -> bool {
    let Some(spec) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    spec.split_once('=').is_some_and(|(unit, list)| {
        unit.trim().eq_ignore_ascii_case("bytes")
            && list.split(',').filter(|p| !p.trim().is_empty()).count() == 1
    })
}

/// The strong entity tag of a response, if it has one.
fn strong_tag(headers: &HeaderMap) -> Option<&HeaderValue> {
    let value = headers.get(ETAG)?;
    EntityTag::of(value).filter(|tag| !tag.weak)?;
    Some(value)
}

/// RFC 9111 §3.4: responses combine only when both carry the same strong
/// entity tag.
fn same_representation(held: &HeaderMap, new: &HeaderMap) -> bool {
    match (strong_tag(held), strong_tag(new)) {
        (Some(a), Some(b)) => EntityTag::of(a)
            .zip(EntityTag::of(b))
            .is_some_and(|(a, b)| a.strong_eq(&b)),
        _ => false,
    }
}

/// A 206's head made the head of the whole representation it completes:
/// 200, its full length, no `Content-Range`.
fn whole_head(mut head: response::Parts, complete: u64) -> response::Parts {
    head.status = StatusCode::OK;
    head.headers.remove(CONTENT_RANGE);
    set_header(&mut head.headers, CONTENT_LENGTH, &complete.to_string());
    head
}

impl Proxy {
    /// The URL's piece, when one is stored and fresh.
    async fn held_piece(&self, request: &Exchange) -> Option<Piece> {
        if !self.cache.may_hold_parts(&request.key) {
            return None;
        }
        let key = request.key.part(PIECE);
        let Lookup::Fresh(entry) = self.cache.lookup_tiered(&key, &request.parts).await else {
            return None;
        };
        let headers = entry.headers().to_map(0);
        let range = ContentRange::of(&headers)?;
        Some(Piece {
            entry,
            headers,
            range,
        })
    }

    /// A single-range request answered from the URL's piece, when the
    /// piece holds every byte it asks for (and its If-Range holds).
    pub(super) async fn answer_from_piece(&self, request: &Exchange) -> Option<Reply> {
        let piece = self.held_piece(request).await?;
        match range::evaluate(&request.parts.headers, piece.range.complete, &piece.headers) {
            Ranges::Partial(ranges) if ranges.len() == 1 && piece.range.covers(ranges[0]) => {
                Some(self.fresh_hit(&piece.entry, &request.parts))
            }
            _ => None,
        }
    }

    /// Where and as what a 206 the origin sent for `request` is stored:
    /// as the URL's piece, grown by it when the held piece ends where it
    /// begins (or overlaps it) and is the same representation; and as the
    /// whole object when the result holds every byte.
    pub(super) async fn piece_store(
        &self,
        request: &Exchange,
        head: &response::Parts,
    ) -> PieceStore {
        let own = PieceStore {
            key: request.key.part(PIECE),
            head: head.clone(),
            prefix: Bytes::new(),
        };
        let Some(new) = ContentRange::of(&head.headers) else {
            return own;
        };
        let grown = match self.held_piece(request).await {
            Some(held)
                if held.range.complete == new.complete
                    && held.range.first < new.first
                    && new.first <= held.range.last + 1
                    && held.range.last < new.last
                    && same_representation(&held.headers, &head.headers) =>
            {
                held.entry.resident_body().map(|body| {
                    let kept = (new.first - held.range.first) as usize;
                    let span = ContentRange {
                        first: held.range.first,
                        ..new
                    };
                    (body.slice(..kept.min(body.len())), span)
                })
            }
            _ => None,
        };
        let (prefix, span) = grown.unwrap_or((Bytes::new(), new));
        if span.is_whole() {
            return PieceStore {
                key: request.key.clone(),
                head: whole_head(head.clone(), span.complete),
                prefix,
            };
        }
        let mut head = head.clone();
        range::mark_one_range(&mut head.headers, (span.first, span.last), span.complete);
        PieceStore {
            key: request.key.part(PIECE),
            head,
            prefix,
        }
    }

    /// A whole GET for a URL whose piece starts at its first byte: asks
    /// the origin for the rest only (`If-Range` with the piece's strong
    /// tag, when it has one), and answers and stores the piece and the
    /// rest as one response. `None` when there is no such piece, or the
    /// origin's answer cannot be combined with it (it is then fetched
    /// whole by the caller).
    pub(super) async fn complete_piece(
        &self,
        request: &Exchange,
        status: CacheStatus,
        leader: &mut Option<outpost_cache::Leader>,
    ) -> Option<Reply> {
        let piece = self.held_piece(request).await?;
        let held = piece.range;
        if held.first != 0 || held.is_whole() {
            return None;
        }
        let stored = &piece.headers;
        let mut headers = request.parts.headers.clone();
        set_header(&mut headers, RANGE, &format!("bytes={}-", held.last + 1));
        match strong_tag(stored) {
            Some(tag) => {
                headers.insert(IF_RANGE, tag.clone());
            }
            None => {
                headers.remove(IF_RANGE);
            }
        }
        let outgoing = request.origin_parts(&headers);
        let request_time = self.cache.now();
        let answer = match request.send_bodiless(outgoing).await {
            Ok(answer) => answer,
            Err(e) => return Some(super::respond::upstream_error(&e)),
        };
        if answer.response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // The object shrank below the piece: the client asked for no
            // range, so the whole object is fetched as it is now.
            return None;
        }
        if answer.response.status() != StatusCode::PARTIAL_CONTENT {
            // The whole representation, changed or not: stored as it came.
            let reply = self
                .store_and_relay(
                    request.detached(),
                    answer,
                    request_time,
                    status,
                    leader.take(),
                )
                .await;
            return Some(reply);
        }
        let rest = ContentRange::of(answer.response.headers());
        let fits = rest.is_some_and(|rest| {
            rest.first == held.last + 1
                && rest.last + 1 == held.complete
                && rest.complete == held.complete
        });
        if !fits || !same_representation(stored, answer.response.headers()) {
            tracing::debug!(key = %request.key, "the rest of a piece could not be combined with it");
            return None;
        }
        let (mut head, body) = answer.response.into_parts();
        super::headers::strip_hop_by_hop(&mut head.headers);
        let body = crate::origin::response::OriginBody::new(body, answer.lease);
        // RFC 9111 §3.4: the new response's fields replace the stored ones.
        head = whole_head(head, held.complete);
        let first = stored_body(
            &self.cache,
            &piece.entry,
            vec![range::Piece::Range(0, held.last)],
        );
        let body = Chained {
            first: Some(first),
            second: http_body_util::BodyExt::boxed_unsync(body),
            len: held.complete,
        };
        let times = (request_time, self.cache.now());
        Some(
            self.store_and_answer(
                request.detached(),
                head,
                http_body_util::BodyExt::boxed_unsync(body),
                times,
                None,
                status,
                leader.take(),
            )
            .await,
        )
    }
}

/// Two bodies one after the other, `len` bytes in all.
struct Chained {
    first: Option<ProxyBody>,
    second: ProxyBody,
    len: u64,
}

impl Body for Chained {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(first) = &mut this.first {
            match std::task::ready!(Pin::new(first).poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => this.first = None,
            }
        }
        Pin::new(&mut this.second).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.second.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_one_byte_range_is_forwarded_as_it_is() {
        assert!(single_range(&headers(&[("range", "bytes=-5")])));
        assert!(single_range(&headers(&[("range", "bytes=5-")])));
        assert!(!single_range(&headers(&[("range", "bytes=0-1,4-5")])));
        assert!(!single_range(&headers(&[("range", "items=0-1")])));
        assert!(!single_range(&HeaderMap::new()));
    }

    /// RFC 9111 §3.4: combining needs the same strong validator on both.
    #[test]
    fn pieces_combine_only_with_the_same_strong_tag() {
        let a = headers(&[("etag", "\"v1\"")]);
        assert!(same_representation(&a, &headers(&[("etag", "\"v1\"")])));
        assert!(!same_representation(&a, &headers(&[("etag", "\"v2\"")])));
        assert!(!same_representation(&a, &headers(&[("etag", "W/\"v1\"")])));
        assert!(!same_representation(&HeaderMap::new(), &HeaderMap::new()));
    }
}
