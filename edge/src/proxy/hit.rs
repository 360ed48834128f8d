//! Answers from a stored entry: `Age`, conditional requests (RFC 9110
//! §13.1), ranges (§14), HEAD, and bodies read from memory or disk.

use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, request};
use http_body_util::BodyExt;
use outpost_cache::{Cache, Entry};
use outpost_cache::{EntityTag, TagList};

use super::headers;
use super::metrics::Source;
use super::range::{self, Ranges};

use super::respond::{empty, full, set_header};
use super::status::{CacheStatus, Ttl};
use super::{BoxError, Proxy, ProxyBody, Reply};

impl Proxy {
    /// A fresh stored entry's answer to `req`, as a hit with its time to
    /// live in `Cache-Status`.
    pub(super) fn fresh_hit(&self, entry: &Arc<Entry>, req: &request::Parts) -> Reply {
        let now = self.cache.now();
        let ttl = Ttl::Fresh(entry.time_to_live(now).as_secs());
        let response = unvalidated(entry, from_cache(&self.cache, entry, req, now));
        (Some(CacheStatus::hit(ttl)), response)
    }
}

/// Answers from a stored entry: `Age`, `Cache-Status`, and a 304 when the
/// client's own validators match (RFC 9110 §13.1). The answer says which
/// tier its body comes from, for the metrics.
pub(super) fn from_cache(
    cache: &Cache,
    entry: &Arc<Entry>,
    req: &request::Parts,
    now: SystemTime,
) -> Response<ProxyBody> {
    let mut res = answer(cache, entry, req, now);
    res.extensions_mut().insert(source_of(entry));
    res
}

/// The tier a stored entry's body is sent from.
pub(super) fn source_of(entry: &Entry) -> Source {
    if entry.resident() {
        Source::Memory
    } else {
        Source::Disk
    }
}

/// [`from_cache`] without the tier, for a caller that reports it itself.
pub(super) fn answer(
    cache: &Cache,
    entry: &Arc<Entry>,
    req: &request::Parts,
    now: SystemTime,
) -> Response<ProxyBody> {
    // The stored validators are read from `headers` below: what is added
    // here (Age, Via, Cache-Status) is none of them.
    // Room for what is added on the way out (Age, Cache-Status, Via, a
    // rule's response fields) without the map growing.
    let mut headers = Entry::header_map(entry, 8);
    headers.insert(
        http::header::AGE,
        HeaderValue::from(entry.age(now).as_secs()),
    );
    headers::append_via(&mut headers, http::Version::HTTP_11);
    // RFC 9110 §13.2.1: conditions apply only to a 2xx representation.
    if entry.status().is_success()
        && not_modified(&headers, entry.freshness().response_time, &req.headers)
    {
        for name in [
            CONTENT_LENGTH,
            CONTENT_TYPE,
            http::header::CONTENT_ENCODING,
            http::header::CONTENT_LANGUAGE,
        ] {
            headers.remove(name);
        }
        let mut res = Response::new(empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        *res.headers_mut() = headers;
        return res;
    }
    let len = entry.body_len();
    // A stored piece (RFC 9111 §3.3) answers the one range of it asked for.
    if entry.status() == StatusCode::PARTIAL_CONTENT
        && let Some(held) = outpost_cache::ContentRange::of(&headers)
        && let Ranges::Partial(ranges) = range::evaluate(&req.headers, held.complete, &headers)
        && let [(start, end)] = ranges[..]
        && held.covers((start, end))
        && held.len() == len
    {
        range::mark_one_range(&mut headers, (start, end), held.complete);
        let body = if req.method == Method::HEAD {
            empty()
        } else {
            let (from, to) = (start - held.first, end - held.first);
            stored_body(cache, entry, vec![range::Piece::Range(from, to)])
        };
        let mut res = Response::new(body);
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        *res.headers_mut() = headers;
        return res;
    }
    if req.method == Method::GET && entry.status() == StatusCode::OK {
        match range::evaluate(&req.headers, len, &headers) {
            Ranges::Whole => {}
            Ranges::Unsatisfiable => {
                let (code, extra) = unsatisfiable(len);
                for name in [CONTENT_LENGTH, CONTENT_TYPE, http::header::CONTENT_ENCODING] {
                    headers.remove(name);
                }
                headers.extend(extra);
                let mut res = Response::new(empty());
                *res.status_mut() = code;
                *res.headers_mut() = headers;
                return res;
            }
            Ranges::Partial(ranges) => {
                let pieces = if let [(start, end)] = ranges[..] {
                    set_header(
                        &mut headers,
                        CONTENT_RANGE,
                        &range::content_range((start, end), len),
                    );
                    vec![range::Piece::Range(start, end)]
                } else {
                    let boundary = boundary(entry, now);
                    let content_type = headers
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    set_header(
                        &mut headers,
                        CONTENT_TYPE,
                        &format!("multipart/byteranges; boundary={boundary}"),
                    );
                    range::multipart_pieces(len, &ranges, content_type.as_deref(), &boundary)
                };
                let length = range::length_of(&pieces);
                set_header(&mut headers, CONTENT_LENGTH, &length.to_string());
                let mut res = Response::new(stored_body(cache, entry, pieces));
                *res.status_mut() = StatusCode::PARTIAL_CONTENT;
                *res.headers_mut() = headers;
                return res;
            }
        }
    }
    let body = if req.method == Method::HEAD {
        empty()
    } else if let Some(body) = entry.resident_body() {
        full(body.clone())
    } else if len == 0 {
        empty()
    } else {
        stored_body(cache, entry, vec![range::Piece::Range(0, len - 1)])
    };
    let mut res = Response::new(body);
    *res.status_mut() = entry.status();
    *res.headers_mut() = headers;
    res
}

/// A body made of text and ranges of a stored entry, read from memory or
/// disk as it is sent.
pub(super) fn stored_body(cache: &Cache, entry: &Entry, pieces: Vec<range::Piece>) -> ProxyBody {
    if let Some(body) = entry.resident_body() {
        // One range of a body in memory is a view of it, never a copy.
        if let [range::Piece::Range(start, end)] = pieces[..] {
            let len = body.len();
            let to = usize::try_from(end.saturating_add(1)).map_or(len, |e| e.min(len));
            let from = usize::try_from(start).map_or(to, |s| s.min(to));
            return full(body.slice(from..to));
        }
        let length = range::length_of(&pieces);
        let mut out = bytes::BytesMut::with_capacity(usize::try_from(length).unwrap_or(0));
        for piece in pieces {
            match piece {
                range::Piece::Text(text) => out.extend_from_slice(&text),
                range::Piece::Range(start, end) => {
                    out.extend_from_slice(&body[start as usize..=end as usize]);
                }
            }
        }
        return full(out.freeze());
    }
    let streams: Vec<_> = pieces
        .into_iter()
        .map(|piece| match piece {
            range::Piece::Text(text) => futures_util::stream::once(async move { Ok(text) }).boxed(),
            range::Piece::Range(start, end) => cache.body(entry, start, end),
        })
        .collect();
    let frames = futures_util::stream::iter(streams)
        .flatten()
        .map(|piece| piece.map(http_body::Frame::data).map_err(BoxError::from));
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

/// A response from cache sent without revalidation loses the fields a
/// qualified `no-cache` names (RFC 9111 §5.2.2.4).
pub(super) fn unvalidated(entry: &Entry, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    for field in entry.unvalidated_fields() {
        response.headers_mut().remove(field.as_str());
    }
    response
}

/// A multipart boundary that the body is vanishingly unlikely to contain.
pub(super) fn boundary(entry: &Entry, now: SystemTime) -> String {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = blake3::hash(format!("{}#{nanos}#{}", entry.key(), entry.body_len()).as_bytes());
    format!("outpost-{}", &digest.to_hex()[..24])
}

/// Whether the request's `If-None-Match` (weak comparison) or, without it,
/// `If-Modified-Since` says the client's copy is current. RFC 9111 §4.3.2:
/// a stored response without Last-Modified is dated by its Date, or else
/// by when it was `received`.
pub(super) fn not_modified(stored: &HeaderMap, received: SystemTime, req: &HeaderMap) -> bool {
    if !req.contains_key(IF_NONE_MATCH) && !req.contains_key(IF_MODIFIED_SINCE) {
        return false;
    }
    // RFC 9110 §13.1.2: the weak comparison, of tags as bytes (obs-text
    // included), in a list split outside the quotes.
    if let Some(inm) = TagList::parse(req.get_all(IF_NONE_MATCH)) {
        let current = stored.get(ETAG).and_then(EntityTag::of);
        return inm.matches_weak(current.as_ref());
    }
    let since = req
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(outpost_cache::parse_http_date);
    let date = |name| {
        stored
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(outpost_cache::parse_http_date)
    };
    let modified = date(LAST_MODIFIED)
        .or_else(|| date(http::header::DATE))
        .unwrap_or(received);
    since.is_some_and(|since| modified <= since)
}

/// A 416 head for an object of `len` bytes (RFC 9110 §15.5.17).
pub(super) fn unsatisfiable(len: u64) -> (StatusCode, HeaderMap) {
    let mut headers = HeaderMap::new();
    set_header(&mut headers, CONTENT_RANGE, &format!("bytes */{len}"));
    (StatusCode::RANGE_NOT_SATISFIABLE, headers)
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// When a stored response was received, for the tests of `not_modified`.
    const RECEIVED: SystemTime = SystemTime::UNIX_EPOCH;

    /// RFC 9111 §4.3.2: without Last-Modified, If-Modified-Since is judged
    /// against the stored Date, or else the time the response was received.
    #[test]
    fn if_modified_since_falls_back_to_date_then_receipt() {
        let dated = map(&[("date", "Tue, 01 Sep 2026 00:00:00 GMT")]);
        let after = map(&[("if-modified-since", "Wed, 02 Sep 2026 00:00:00 GMT")]);
        let before = map(&[("if-modified-since", "Mon, 31 Aug 2026 00:00:00 GMT")]);
        assert!(not_modified(&dated, RECEIVED, &after));
        assert!(!not_modified(&dated, RECEIVED, &before));
        let received = outpost_cache::parse_http_date("Tue, 01 Sep 2026 00:00:00 GMT").unwrap();
        assert!(not_modified(&HeaderMap::new(), received, &after));
        assert!(!not_modified(&HeaderMap::new(), received, &before));
        let invalid = map(&[("if-modified-since", "yesterday")]);
        assert!(!not_modified(&dated, RECEIVED, &invalid));
    }

    /// RFC 9110 §13.1.2: If-None-Match uses the weak comparison.
    #[test]
    fn if_none_match_compares_weakly() {
        let stored = map(&[("etag", "W/\"v1\"")]);
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "\"v1\"")])
        ));
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "\"x\", W/\"v1\"")])
        ));
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "*")])
        ));
        assert!(!not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-none-match", "\"v2\"")])
        ));
    }

    /// RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    #[test]
    fn if_modified_since_applies_only_without_if_none_match() {
        let stored = map(&[
            ("last-modified", "Tue, 01 Sep 2026 00:00:00 GMT"),
            ("etag", "\"a\""),
        ]);
        assert!(not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-modified-since", "Wed, 02 Sep 2026 00:00:00 GMT")])
        ));
        assert!(!not_modified(
            &stored,
            RECEIVED,
            &map(&[("if-modified-since", "Mon, 31 Aug 2026 00:00:00 GMT")])
        ));
        assert!(!not_modified(
            &stored,
            RECEIVED,
            &map(&[
                ("if-modified-since", "Wed, 02 Sep 2026 00:00:00 GMT"),
                ("if-none-match", "\"b\"")
            ])
        ));
    }
}
