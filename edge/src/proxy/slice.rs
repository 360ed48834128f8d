//! Slices (a rule's `slice: SIZE`): a GET for a large object is answered
//! from aligned slices of it, each asked of the origin with a range of its
//! own, stored under a key of its own (a part of the URL's key, so purges
//! of the URL reach it) and coalesced on its own. A seek in a 4 GiB video
//! costs the one or two slices it lands in, not the file; a whole GET
//! streams the slices one after the other as they arrive.
//!
//! Every slice must be of the same representation as the first one the
//! answer was built on: a slice whose entity tag, Last-Modified or length
//! differs invalidates the URL's slices and ends the answer, which the
//! client sees cut off (its next request starts over on the new object).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use outpost_cache::{CLIENT_CONDITIONS, ContentRange, Lookup};

use super::exchange::Exchange;
use super::hit::unsatisfiable;
use super::range::{self, Ranges, SliceBody};
use super::respond::{set_header, to_client_empty};
use super::status::{CacheStatus, Fwd};
use super::{BoxError, Proxy, ProxyBody, Reply};

/// What every slice of one answer must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    complete: u64,
    etag: Option<Bytes>,
    last_modified: Option<Bytes>,
}

impl Identity {
    fn of(headers: &HeaderMap, range: &ContentRange) -> Identity {
        let field = |name| {
            headers
                .get(name)
                .map(|v: &http::HeaderValue| Bytes::copy_from_slice(v.as_bytes()))
        };
        Identity {
            complete: range.complete,
            etag: field(ETAG),
            last_modified: field(LAST_MODIFIED),
        }
    }
}

/// The first byte a request's single range asks for, when it names one
/// (a suffix needs the length first, so it starts at the first slice).
fn first_byte(headers: &HeaderMap) -> Option<u64> {
    let spec = headers.get(RANGE)?.to_str().ok()?;
    let (unit, list) = spec.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || list.contains(',') {
        return None;
    }
    list.split_once('-')?.0.trim().parse().ok()
}

/// The whole object from an origin that ignores ranges: the client's one
/// range cut from it as it streams (several, or none, get it whole).
fn whole_cut(request: &Exchange, response: Response<ProxyBody>) -> Response<ProxyBody> {
    use http_body::Body as _;
    let Some(len) = response.body().size_hint().exact() else {
        return response;
    };
    let (mut head, body) = response.into_parts();
    match range::evaluate(&request.parts.headers, len, &head.headers) {
        Ranges::Partial(ranges) if ranges.len() == 1 => {
            let body = range::cut_one_range(&mut head, body, ranges[0], len);
            Response::from_parts(head, body)
        }
        // RFC 9110 §14.2: a server may ignore a Range; the whole object.
        Ranges::Whole | Ranges::Partial(_) | Ranges::Unsatisfiable => {
            Response::from_parts(head, body)
        }
    }
}

impl Proxy {
    /// Answers a GET on a sliced rule from slices of `size` bytes.
    pub(super) async fn sliced(self: &Arc<Self>, request: Exchange, size: u64) -> Reply {
        let first = first_byte(&request.parts.headers).map_or(0, |byte| byte / size);
        let (status, response) = self.slice(&request, size, first).await;
        if response.status() == StatusCode::OK {
            return (status, whole_cut(&request, response));
        }
        let Some(range) = (response.status() == StatusCode::PARTIAL_CONTENT)
            .then(|| ContentRange::of(response.headers()))
            .flatten()
            .filter(|range| range.first == first * size)
        else {
            // Not a slice (an error, a 416 past the end, a redirect): the
            // origin's answer stands for the object's.
            return (status, response);
        };
        let identity = Identity::of(response.headers(), &range);
        let complete = range.complete;
        let (mut head, first_body) = response.into_parts();
        // The client's Range and If-Range, against the object's length
        // and validators (RFC 9110 §13.1.5, §14.2).
        let (answer, (start, end)) =
            match range::evaluate(&request.parts.headers, complete, &head.headers) {
                Ranges::Partial(ranges) if ranges.len() == 1 => {
                    (StatusCode::PARTIAL_CONTENT, ranges[0])
                }
                // Several ranges: the whole object is an answer the RFC
                // allows (§14.2).
                Ranges::Whole | Ranges::Partial(_) if complete > 0 => {
                    (StatusCode::OK, (0, complete - 1))
                }
                Ranges::Whole | Ranges::Partial(_) => (StatusCode::OK, (0, 0)),
                Ranges::Unsatisfiable => {
                    return (status, to_client_empty(head, unsatisfiable(complete)));
                }
            };
        head.status = answer;
        let length = if complete == 0 { 0 } else { end - start + 1 };
        if answer == StatusCode::PARTIAL_CONTENT {
            range::mark_one_range(&mut head.headers, (start, end), complete);
        } else {
            head.headers.remove(CONTENT_RANGE);
            set_header(&mut head.headers, CONTENT_LENGTH, &length.to_string());
        }
        if length == 0 {
            return (status, Response::from_parts(head, super::respond::empty()));
        }
        let (from, to) = (start / size, end / size);
        // The first slice fetched is of use when the answer starts in it.
        let mut held = (from == first).then_some(first_body);
        let proxy = self.clone();
        let request = Arc::new(request.detached());
        let slices = futures_util::stream::iter(from..=to)
            .then(move |index| {
                let (proxy, request, identity) = (proxy.clone(), request.clone(), identity.clone());
                let held = held.take();
                async move {
                    let base = index * size;
                    let slice_end = base.saturating_add(size).min(complete) - 1;
                    let want = (start.max(base) - base, end.min(slice_end) - base);
                    let body = match held {
                        Some(body) => body,
                        None => proxy.slice_of(&request, size, index, &identity).await?,
                    };
                    let part = SliceBody::new(body, want).into_data_stream();
                    Ok::<_, BoxError>(part)
                }
            })
            .map(|slice| match slice {
                Ok(part) => part.boxed(),
                Err(e) => futures_util::stream::once(async move { Err(e) }).boxed(),
            })
            .flatten()
            .map(|piece| piece.map(http_body::Frame::data));
        let body = http_body_util::StreamBody::new(slices).boxed_unsync();
        (status, Response::from_parts(head, body))
    }

    /// Slice `index` of the object as a later slice of an answer: its
    /// body, when it is the same representation as the first.
    async fn slice_of(
        &self,
        request: &Exchange,
        size: u64,
        index: u64,
        identity: &Identity,
    ) -> Result<ProxyBody, BoxError> {
        let (_, response) = self.slice(request, size, index).await;
        let agrees = response.status() == StatusCode::PARTIAL_CONTENT
            && ContentRange::of(response.headers()).is_some_and(|range| {
                range.first == index * size && Identity::of(response.headers(), &range) == *identity
            });
        if !agrees {
            // The object changed under its slices: none of them may be
            // combined with the others any more.
            tracing::warn!(
                key = %request.key,
                slice = index,
                status = %response.status(),
                "a slice is not of the object its first slice was; the URL's slices are invalidated"
            );
            self.cache.purge(&request.key);
            return Err("a slice differs from the object's first slice".into());
        }
        Ok(response.into_body())
    }

    /// Slice `index`: from the cache when stored and fresh, else fetched
    /// with its range (coalesced with other fetches of it) and stored.
    async fn slice(&self, request: &Exchange, size: u64, index: u64) -> Reply {
        let mut part = request.detached();
        part.key = request.key.part(&format!("slice={size}:{index}"));
        let headers = &mut part.parts.headers;
        for name in CLIENT_CONDITIONS.iter().chain([&IF_RANGE]) {
            headers.remove(name);
        }
        let base = index * size;
        set_header(
            headers,
            RANGE,
            &format!("bytes={base}-{}", base.saturating_add(size - 1)),
        );
        if let Lookup::Fresh(entry) = self.cache.lookup_tiered(&part.key, &part.parts).await {
            return self.fresh_hit(&entry, &part.parts);
        }
        self.fetch(part, CacheStatus::fwd(Fwd::Miss)).await
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_single_range_starts_at_its_first_byte_and_a_suffix_at_zero() {
        let mut headers = HeaderMap::new();
        assert_eq!(first_byte(&headers), None);
        for (spec, byte) in [
            ("bytes=5000-", Some(5000)),
            ("bytes=7-9", Some(7)),
            ("bytes=-100", None),
            ("bytes=0-1,5-6", None),
            ("items=3-4", None),
        ] {
            headers.insert(RANGE, HeaderValue::from_static(spec));
            assert_eq!(first_byte(&headers), byte, "{spec}");
        }
    }
}
