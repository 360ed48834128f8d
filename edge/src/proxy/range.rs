//! Byte ranges (RFC 9110 §14): which ranges a request asks of a
//! representation of known length, and the bodies that answer them — a
//! slice of a stored body, `multipart/byteranges`, or a slice of a body
//! still streaming from the origin while the whole of it fills the cache.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};
use http_body::{Body, Frame, SizeHint};
use outpost_cache::EntityTag;

use super::ProxyBody;
use super::respond::set_header;

/// More ranges than this in one request are answered with the whole object.
const MAX_RANGES: usize = 32;
/// Bytes of part headers counted per part of a multipart answer.
const PART_OVERHEAD: u64 = 96;

/// How to answer a request's `Range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No usable Range (none, another unit, invalid syntax, a failed
    /// If-Range, or ranges that would not save anything): the whole object.
    Whole,
    /// Inclusive byte ranges, sorted and coalesced.
    Partial(Vec<(u64, u64)>),
    /// Syntactically valid but none overlaps the object: 416.
    Unsatisfiable,
}

/// Evaluates `Range` and `If-Range` against a representation of `len`
/// bytes whose validators are in `stored`.
pub fn evaluate(req: &HeaderMap, len: u64, stored: &HeaderMap) -> Ranges {
    let Some(spec) = req.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranges::Whole;
    };
    if let Some(condition) = req.get(IF_RANGE)
        && !if_range_holds(condition.as_bytes(), stored)
    {
        return Ranges::Whole;
    }
    let Some((unit, list)) = spec.split_once('=') else {
        return Ranges::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Whole;
    }
    let mut ranges = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((first, last)) = part.split_once('-') else {
            return Ranges::Whole;
        };
        let (first, last) = (first.trim(), last.trim());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let range = if first.is_empty() {
            // A suffix: the last N bytes.
            if !digits(last) {
                return Ranges::Whole;
            }
            let n = last.parse::<u64>().unwrap_or(u64::MAX);
            (n > 0 && len > 0).then(|| (len - n.min(len), len - 1))
        } else {
            if !digits(first) || !(last.is_empty() || digits(last)) {
                return Ranges::Whole;
            }
            let Ok(start) = first.parse::<u64>() else {
                return Ranges::Whole;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                last.parse::<u64>().unwrap_or(u64::MAX)
            };
            if end < start {
                return Ranges::Whole;
            }
            (start < len).then(|| (start, end.min(len - 1)))
        };
        ranges.extend(range);
        if ranges.len() > MAX_RANGES {
            return Ranges::Whole;
        }
    }
    if ranges.is_empty() {
        return if list.split(',').any(|p| !p.trim().is_empty()) {
            Ranges::Unsatisfiable
        } else {
            Ranges::Whole
        };
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    // Never answer with more than the object itself.
    let bytes: u64 = merged.iter().map(|(s, e)| e - s + 1).sum();
    let overhead = if merged.len() > 1 {
        PART_OVERHEAD * merged.len() as u64
    } else {
        0
    };
    // A length near 2^64 (a damaged or hostile stored length) must not
    // overflow the sum: past u64::MAX it is more than any object.
    if merged.len() > 1 && bytes.saturating_add(overhead) >= len {
        return Ranges::Whole;
    }
    Ranges::Partial(merged)
}

/// RFC 9110 §13.1.5: If-Range holds when its entity tag matches the stored
/// one strongly, or its date equals a Last-Modified that is strong enough.
fn if_range_holds(condition: &[u8], stored: &HeaderMap) -> bool {
    let condition = condition.trim_ascii();
    if condition.starts_with(b"\"") || condition.starts_with(b"W/") {
        let etag = stored.get(ETAG).and_then(EntityTag::of);
        return EntityTag::parse(condition)
            .zip(etag)
            .is_some_and(|(asked, held)| asked.strong_eq(&held));
    }
    let Ok(condition) = std::str::from_utf8(condition) else {
        return false;
    };
    let date = outpost_cache::parse_http_date(condition);
    let modified = stored
        .get(LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(outpost_cache::parse_http_date);
    date.is_some() && date == modified
}

/// `Content-Range` for one range of an object of `len` bytes.
pub fn content_range((start, end): (u64, u64), len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// The fields of an answer holding one range of an object of `len`
/// bytes: its `Content-Range` and `Content-Length`.
pub fn mark_one_range(headers: &mut HeaderMap, range: (u64, u64), len: u64) {
    set_header(headers, CONTENT_RANGE, &content_range(range, len));
    set_header(
        headers,
        CONTENT_LENGTH,
        &(range.1 - range.0 + 1).to_string(),
    );
}

/// A 206 of one range of an object of `len` bytes whose whole `body` is
/// still streaming: the head marked, and the range cut from the stream.
pub fn cut_one_range(
    head: &mut http::response::Parts,
    body: ProxyBody,
    range: (u64, u64),
    len: u64,
) -> ProxyBody {
    use http_body_util::BodyExt;
    head.status = http::StatusCode::PARTIAL_CONTENT;
    mark_one_range(&mut head.headers, range, len);
    SliceBody::new(body, range).boxed_unsync()
}

/// One piece of a `multipart/byteranges` body: delimiter and part header
/// text, or a range of the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Bytes),
    Range(u64, u64),
}

/// How many bytes `pieces` make.
pub fn length_of(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => text.len() as u64,
            Piece::Range(start, end) => end - start + 1,
        })
        .sum()
}

/// The pieces of a `multipart/byteranges` body (RFC 9110 §14.6) over an
/// object of `len` bytes, for a body that streams them in order.
pub fn multipart_pieces(
    len: u64,
    ranges: &[(u64, u64)],
    content_type: Option<&str>,
    boundary: &str,
) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(2 * ranges.len() + 1);
    for &(start, end) in ranges {
        let mut head = format!("\r\n--{boundary}\r\n");
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str(&format!(
            "Content-Range: {}\r\n\r\n",
            content_range((start, end), len)
        ));
        pieces.push(Piece::Text(Bytes::from(head)));
        pieces.push(Piece::Range(start, end));
    }
    pieces.push(Piece::Text(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
    pieces
}

/// The bytes `start..=end` of a body that is still streaming. Once they
/// are out the client's response ends, and the rest of the body is read in
/// the background so that a copy being stored can complete.
pub struct SliceBody<B: Body + Send + Unpin + 'static> {
    inner: Option<B>,
    skip: u64,
    remaining: u64,
}

impl<B: Body + Send + Unpin + 'static> SliceBody<B> {
    pub fn new(inner: B, (start, end): (u64, u64)) -> Self {
        Self {
            inner: Some(inner),
            skip: start,
            remaining: end - start + 1,
        }
    }
}

impl<B> Body for SliceBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        loop {
            if this.remaining == 0 {
                if let Some(mut rest) = this.inner.take() {
                    tokio::spawn(async move {
                        while let Some(Ok(_)) =
                            std::future::poll_fn(|cx| Pin::new(&mut rest).poll_frame(cx)).await
                        {
                        }
                    });
                }
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match ready!(Pin::new(inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let len = data.len() as u64;
            if this.skip >= len {
                this.skip -= len;
                continue;
            }
            data = data.slice(this.skip as usize..);
            this.skip = 0;
            if data.len() as u64 > this.remaining {
                data.truncate(this.remaining as usize);
            }
            this.remaining -= data.len() as u64;
            if !data.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn req(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_str(range).unwrap());
        h
    }

    fn stored() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"v1\""));
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Tue, 01 Sep 2026 00:00:00 GMT"),
        );
        h
    }

    #[test]
    fn single_ranges_of_every_form() {
        assert_eq!(
            evaluate(&req("bytes=0-9"), 100, &stored()),
            Ranges::Partial(vec![(0, 9)])
        );
        assert_eq!(
            evaluate(&req("bytes=90-"), 100, &stored()),
            Ranges::Partial(vec![(90, 99)])
        );
        assert_eq!(
            evaluate(&req("bytes=-10"), 100, &stored()),
            Ranges::Partial(vec![(90, 99)])
        );
        assert_eq!(
            evaluate(&req("bytes=-500"), 100, &stored()),
            Ranges::Partial(vec![(0, 99)])
        );
        assert_eq!(
            evaluate(&req("bytes=50-500"), 100, &stored()),
            Ranges::Partial(vec![(50, 99)])
        );
        assert_eq!(
            evaluate(&req("BYTES = 0-0"), 100, &stored()),
            Ranges::Partial(vec![(0, 0)])
        );
    }

    /// RFC 9110 §14.1.1 and §15.5.17.
    #[test]
    fn unsatisfiable_and_invalid_ranges() {
        assert_eq!(
            evaluate(&req("bytes=100-"), 100, &stored()),
            Ranges::Unsatisfiable
        );
        assert_eq!(
            evaluate(&req("bytes=-0"), 100, &stored()),
            Ranges::Unsatisfiable
        );
        assert_eq!(evaluate(&req("bytes=5-1"), 100, &stored()), Ranges::Whole);
        assert_eq!(evaluate(&req("bytes=a-b"), 100, &stored()), Ranges::Whole);
        assert_eq!(evaluate(&req("items=0-1"), 100, &stored()), Ranges::Whole);
        assert_eq!(evaluate(&HeaderMap::new(), 100, &stored()), Ranges::Whole);
    }

    #[test]
    fn many_or_overlapping_ranges_never_outgrow_the_object() {
        assert_eq!(
            evaluate(&req("bytes=0-9,20-29"), 1000, &stored()),
            Ranges::Partial(vec![(0, 9), (20, 29)])
        );
        assert_eq!(
            evaluate(&req("bytes=0-50,10-60,61-70"), 1000, &stored()),
            Ranges::Partial(vec![(0, 70)])
        );
        assert_eq!(
            evaluate(&req("bytes=0-0,2-2,4-4"), 10, &stored()),
            Ranges::Whole
        );
        let many: Vec<String> = (0..40).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        assert_eq!(
            evaluate(
                &req(&format!("bytes={}", many.join(","))),
                100_000,
                &stored()
            ),
            Ranges::Whole
        );
    }

    /// RFC 9110 §14.1.2: several ranges of an object near 2^64 bytes are
    /// answered whole, without overflowing their sum (found by
    /// `fuzz/range`: `bytes=0-0,2-18446744073709551613` of
    /// 18446744073709551615 bytes panicked in a debug build).
    #[test]
    fn ranges_of_the_largest_objects_overflow_nothing() {
        assert_eq!(
            evaluate(
                &req("bytes=0-0,2-18446744073709551613"),
                u64::MAX,
                &stored()
            ),
            Ranges::Whole
        );
        assert_eq!(
            evaluate(&req("bytes=0-0,1000-"), u64::MAX, &stored()),
            Ranges::Partial(vec![(0, 0), (1000, u64::MAX - 1)])
        );
    }

    /// RFC 9110 §13.1.5: If-Range needs a strong match.
    #[test]
    fn if_range_decides_between_part_and_whole() {
        let with = |cond: &str| {
            let mut h = req("bytes=0-9");
            h.insert(IF_RANGE, HeaderValue::from_str(cond).unwrap());
            evaluate(&h, 100, &stored())
        };
        assert_eq!(with("\"v1\""), Ranges::Partial(vec![(0, 9)]));
        assert_eq!(with("\"v2\""), Ranges::Whole);
        assert_eq!(with("W/\"v1\""), Ranges::Whole);
        assert_eq!(
            with("Tue, 01 Sep 2026 00:00:00 GMT"),
            Ranges::Partial(vec![(0, 9)])
        );
        assert_eq!(with("Wed, 02 Sep 2026 00:00:00 GMT"), Ranges::Whole);
    }

    /// A whole `multipart/byteranges` body (RFC 9110 §14.6), from its pieces.
    use bytes::{BufMut, BytesMut};

    fn multipart(
        body: &Bytes,
        ranges: &[(u64, u64)],
        content_type: Option<&str>,
        boundary: &str,
    ) -> Bytes {
        let mut out = BytesMut::new();
        for piece in multipart_pieces(body.len() as u64, ranges, content_type, boundary) {
            match piece {
                Piece::Text(text) => out.put_slice(&text),
                Piece::Range(start, end) => out.put_slice(&body[start as usize..=end as usize]),
            }
        }
        out.freeze()
    }

    #[test]
    fn multipart_bodies_carry_each_part() {
        let body = Bytes::from_static(b"0123456789");
        let out = multipart(&body, &[(0, 1), (8, 9)], Some("text/plain"), "B");
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text,
            "\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--B--\r\n"
        );
    }

    #[tokio::test]
    async fn a_streaming_slice_takes_only_its_bytes() {
        use http_body_util::{BodyExt, StreamBody};
        let chunks = ["0123", "4567", "89ab"].map(|c| {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(c.as_bytes())))
        });
        let body = StreamBody::new(futures_util::stream::iter(chunks));
        let slice = SliceBody::new(body, (3, 8));
        let got = slice.collect().await.unwrap().to_bytes();
        assert_eq!(got, "345678");
    }

    /// Property tests: any Range value against objects of any length.
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn spec() -> impl Strategy<Value = String> {
            let bound = prop_oneof![
                Just(String::new()),
                (0u64..2000).prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                Just("18446744073709551616".to_owned()),
                "[ a-z+-]{0,2}",
            ];
            let part =
                (bound.clone(), bound, "[ ]{0,1}").prop_map(|(a, b, ws)| format!("{ws}{a}-{b}"));
            let unit = prop_oneof![Just("bytes"), Just("BYTES "), Just("items")];
            (unit, vec(part, 0..40)).prop_map(|(unit, parts)| format!("{unit}={}", parts.join(",")))
        }

        proptest! {
            /// RFC 9110 §14.1.2: a partial answer's ranges are sorted,
            /// within the object, apart from each other, and together
            /// smaller than the whole; lengths near 2^64 overflow nothing.
            #[test]
            fn partial_answers_are_sound(
                spec in spec(),
                len in prop_oneof![0u64..3000, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()],
            ) {
                let Ok(value) = HeaderValue::from_str(&spec) else {
                    return Ok(());
                };
                let mut request = HeaderMap::new();
                request.insert(RANGE, value);
                if let Ranges::Partial(ranges) = evaluate(&request, len, &HeaderMap::new()) {
                    prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
                    prop_assert!(ranges.iter().all(|&(s, e)| s <= e && e < len));
                    prop_assert!(ranges.windows(2).all(|p| p[1].0 > p[0].1.saturating_add(1)));
                    if ranges.len() > 1 {
                        let bytes: u128 = ranges.iter().map(|(s, e)| u128::from(e - s) + 1).sum();
                        prop_assert!(bytes < u128::from(len));
                    }
                }
            }

            /// One `first-last` range of a long enough object is exactly
            /// that range, clipped to the object.
            #[test]
            fn one_range_is_that_range(first in 0u64..1000, length in 1u64..1000, len in 1u64..3000) {
                let last = first + length - 1;
                let mut request = HeaderMap::new();
                request.insert(RANGE, HeaderValue::from_str(&format!("bytes={first}-{last}")).unwrap());
                let expected = if first < len {
                    Ranges::Partial(vec![(first, last.min(len - 1))])
                } else {
                    Ranges::Unsatisfiable
                };
                prop_assert_eq!(evaluate(&request, len, &HeaderMap::new()), expected);
            }
        }
    }
}
