//! Compression at the edge. A request's Accept-Encoding is reduced to the
//! one coding Outpost would answer it with (`gzip, deflate, br` and
//! `br, gzip` both become `br`), before the variant is looked up and the
//! origin asked, so that clients share a few variants instead of one per
//! spelling. A response the origin sent uncompressed, of a type worth
//! compressing, is encoded once on its way into the cache, where the
//! encoded form is a variant of its own (`Vary: Accept-Encoding`, a weak
//! ETag). A client that accepts none of Outpost's codings gets the identity
//! form, decoded from a stored encoded copy when no identity copy is held.

use std::io;
use std::pin::Pin;

use async_compression::Level;
use async_compression::tokio::bufread::{
    BrotliDecoder, BrotliEncoder, GzipDecoder, GzipEncoder, ZstdDecoder, ZstdEncoder,
};
use futures_util::StreamExt;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG, VARY};
use http::{HeaderMap, HeaderValue, StatusCode, response};
use http_body::Frame;
use http_body_util::BodyExt;
use outpost_cache::Lookup;
use outpost_config::{Encoding, Levels};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

use super::exchange::Exchange;
use super::hit::{from_cache, unvalidated};
use super::status::{CacheStatus, Ttl};
use super::{BoxError, Proxy, ProxyBody, Reply};

/// What the file's `compression` section asks for.
#[derive(Debug)]
pub(crate) struct Compression {
    /// The codings served, most preferred first.
    order: Vec<Encoding>,
    /// Media types, lower case; `text/` for `text/*`.
    types: Vec<String>,
    min_size: u64,
    levels: Levels,
}

/// The value a request's Accept-Encoding is reduced to when it accepts
/// none of Outpost's codings.
const IDENTITY: HeaderValue = HeaderValue::from_static("identity");

impl Compression {
    /// None when compression is off.
    pub(crate) fn new(config: &outpost_config::Compression) -> Option<Self> {
        if !config.enabled || config.encodings.is_empty() {
            return None;
        }
        Some(Self {
            order: config.encodings.clone(),
            types: config
                .types
                .iter()
                .map(|t| t.trim_end_matches('*').to_ascii_lowercase())
                .collect(),
            min_size: config.min_size.bytes(),
            levels: config.levels,
        })
    }

    /// Reduces the request's Accept-Encoding to the coding Outpost answers
    /// it with, or `identity`. A range request gets `identity`: ranges are
    /// of the identity form, never of a body Outpost made.
    pub(crate) fn negotiate(&self, headers: &mut HeaderMap) {
        let chosen = if headers.contains_key(http::header::RANGE) {
            None
        } else {
            self.choose(headers)
        };
        let value = chosen.map_or(IDENTITY, |e| HeaderValue::from_static(e.token()));
        headers.insert(ACCEPT_ENCODING, value);
    }

    /// RFC 9110 §12.5.3: the coding with the highest weight among those
    /// Outpost serves (a `*` weighs for those not named; `q=0` refuses);
    /// ties go to the configured order.
    fn choose(&self, headers: &HeaderMap) -> Option<Encoding> {
        // The weight each coding Outpost serves is given by name (by the
        // first member naming it) and by `*` (the last such member), read
        // in place: a browser's field names four codings, and each was a
        // string of its own.
        let mut named = [None::<u16>; 3];
        let slot = |e: Encoding| match e {
            Encoding::Br => 0,
            Encoding::Zstd => 1,
            Encoding::Gzip => 2,
        };
        let mut any = None;
        for value in headers.get_all(ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for member in value.split(',') {
                let mut params = member.split(';');
                let coding = params.next().unwrap_or_default().trim();
                if coding.is_empty() {
                    continue;
                }
                let weight = params
                    .find_map(|p| {
                        let (name, value) = p.split_once('=')?;
                        name.trim()
                            .eq_ignore_ascii_case("q")
                            .then(|| qvalue(value.trim()))
                    })
                    .unwrap_or(Some(1000));
                // A weight that does not parse makes the member mean nothing.
                let Some(weight) = weight else { continue };
                if coding == "*" {
                    any = Some(weight);
                    continue;
                }
                for encoding in [Encoding::Br, Encoding::Zstd, Encoding::Gzip] {
                    let names = coding.eq_ignore_ascii_case(encoding.token())
                        || (encoding == Encoding::Gzip && coding.eq_ignore_ascii_case("x-gzip"));
                    if names {
                        named[slot(encoding)].get_or_insert(weight);
                    }
                }
            }
        }
        let mut best: Option<(Encoding, u16)> = None;
        for &encoding in &self.order {
            let weight = named[slot(encoding)].or(any).unwrap_or(0);
            if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
                best = Some((encoding, weight));
            }
        }
        best.map(|(e, _)| e)
    }

    /// The coding a negotiated request asked for (None for identity).
    pub(crate) fn asked(&self, headers: &HeaderMap) -> Option<Encoding> {
        let value = headers.get(ACCEPT_ENCODING)?.as_bytes();
        self.order
            .iter()
            .copied()
            .find(|e| e.token().as_bytes() == value)
    }

    /// Prepares the head of a response to a negotiated GET: when it is one
    /// to compress for this request, it gets its Content-Encoding, a weak
    /// ETag and no Content-Length, and the coding is returned. Any response
    /// Outpost would compress for some client varies on Accept-Encoding.
    pub(crate) fn prepare(
        &self,
        request: &HeaderMap,
        parts: &mut response::Parts,
        length: Option<u64>,
    ) -> Option<Encoding> {
        if parts.status != StatusCode::OK
            || length.is_some_and(|n| n < self.min_size)
            || !self.worth_compressing(&parts.headers)
        {
            return None;
        }
        add_vary(&mut parts.headers);
        let encoding = self.asked(request)?;
        let headers = &mut parts.headers;
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()));
        headers.remove(CONTENT_LENGTH);
        // RFC 9110 §8.8.3.3: another body is another representation; a
        // weak tag still lets conditional requests match it.
        if let Some(tag) = headers.get(ETAG)
            && !tag.as_bytes().starts_with(b"W/")
        {
            let mut weak = b"W/".to_vec();
            weak.extend_from_slice(tag.as_bytes());
            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                headers.insert(ETAG, weak);
            }
        }
        Some(encoding)
    }

    /// Not encoded yet, no `no-transform` (RFC 9111 §5.2.2.6), and of a
    /// configured type.
    fn worth_compressing(&self, headers: &HeaderMap) -> bool {
        let encoded = headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded || outpost_cache::Directives::from_headers(headers).has("no-transform") {
            return false;
        }
        let Some(kind) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let essence = kind
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.types.iter().any(|t| {
            if t.ends_with('/') {
                essence.starts_with(t.as_str())
            } else {
                essence == *t
            }
        })
    }

    /// `body` encoded with `encoding`, as it streams.
    pub(crate) fn encode(&self, body: ProxyBody, encoding: Encoding) -> ProxyBody {
        let reader = reader(body);
        let level = |n: u32| Level::Precise(i32::try_from(n).unwrap_or(i32::MAX));
        let encoded: Pin<Box<dyn AsyncRead + Send>> = match encoding {
            Encoding::Br => Box::pin(BrotliEncoder::with_quality(reader, level(self.levels.br))),
            Encoding::Zstd => Box::pin(ZstdEncoder::with_quality(reader, level(self.levels.zstd))),
            Encoding::Gzip => Box::pin(GzipEncoder::with_quality(reader, level(self.levels.gzip))),
        };
        body_of(encoded)
    }
}

impl Proxy {
    /// For a request that accepts none of Outpost's codings and found no
    /// identity copy: a fresh stored copy in one of them, decoded.
    pub(super) async fn decoded_copy(&self, request: &mut Exchange) -> Option<Reply> {
        let compression = self.compression.as_ref()?;
        let headers = &request.parts.headers;
        if !request.rule.compress
            || headers.get(ACCEPT_ENCODING) != Some(&IDENTITY)
            || headers.contains_key(http::header::RANGE)
        {
            return None;
        }
        let mut found = None;
        for &encoding in &compression.order {
            request
                .parts
                .headers
                .insert(ACCEPT_ENCODING, HeaderValue::from_static(encoding.token()));
            if let Lookup::Fresh(entry) =
                self.cache.lookup_tiered(&request.key, &request.parts).await
            {
                found = Some((encoding, entry));
                break;
            }
        }
        request.parts.headers.insert(ACCEPT_ENCODING, IDENTITY);
        let (encoding, entry) = found?;
        let now = self.cache.now();
        let response = unvalidated(&entry, from_cache(&self.cache, &entry, &request.parts, now));
        let (mut parts, body) = response.into_parts();
        if parts
            .headers
            .get(CONTENT_ENCODING)
            .map(HeaderValue::as_bytes)
            != Some(encoding.token().as_bytes())
        {
            return None;
        }
        parts.headers.remove(CONTENT_ENCODING);
        parts.headers.remove(CONTENT_LENGTH);
        // A 304 or a HEAD has no body to decode.
        let body = if parts.status == StatusCode::OK && request.parts.method == http::Method::GET {
            self.metrics
                .decompressed
                .with_label_values(&[encoding.token()])
                .inc();
            decode(body, encoding)
        } else {
            body
        };
        let ttl = Ttl::Fresh(entry.time_to_live(now).as_secs());
        Some((
            Some(CacheStatus::hit(ttl)),
            http::Response::from_parts(parts, body),
        ))
    }
}

/// A 304 for a copy Outpost compressed carries the origin's strong tag,
/// which would replace the stored weak one (RFC 9111 §4.3.4) and claim the
/// compressed body is the origin's: `stored` (the stored ETag) `W/"x"`
/// against the 304's `"x"` keeps the weak form.
pub(crate) fn keep_weak_tag(stored: Option<HeaderValue>, answer: &mut HeaderMap) {
    let (Some(stored), Some(fresh)) = (stored, answer.get(ETAG)) else {
        return;
    };
    if stored.as_bytes().strip_prefix(b"W/") == Some(fresh.as_bytes()) {
        answer.insert(ETAG, stored);
    }
}

/// The most bytes a body of `length` bytes takes once compressed: each of
/// the three codings adds a few bytes per block to what does not shrink,
/// and a header.
pub(crate) fn compressed_at_most(length: u64) -> u64 {
    length.saturating_add(length / 100).saturating_add(1024)
}

/// `body` (encoded with `encoding`) decoded, as it streams.
pub(crate) fn decode(body: ProxyBody, encoding: Encoding) -> ProxyBody {
    let reader = reader(body);
    let decoded: Pin<Box<dyn AsyncRead + Send>> = match encoding {
        Encoding::Br => Box::pin(BrotliDecoder::new(reader)),
        Encoding::Zstd => Box::pin(ZstdDecoder::new(reader)),
        Encoding::Gzip => Box::pin(GzipDecoder::new(reader)),
    };
    body_of(decoded)
}

/// Appends `Accept-Encoding` to Vary unless it is there already (or `*`).
fn add_vary(headers: &mut HeaderMap) {
    let listed = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|name| name == "*" || name.eq_ignore_ascii_case("accept-encoding"));
    if !listed {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A body read as bytes, its failures as I/O errors.
fn reader(
    body: ProxyBody,
) -> StreamReader<impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send, bytes::Bytes> {
    StreamReader::new(body.into_data_stream().map(|r| r.map_err(io::Error::other)))
}

/// What a coder writes, as a body.
fn body_of(reader: Pin<Box<dyn AsyncRead + Send>>) -> ProxyBody {
    let stream = ReaderStream::with_capacity(reader, 16 * 1024)
        .map(|r| r.map(Frame::data).map_err(BoxError::from));
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

/// A weight (`q`) in thousandths; None when it is not a qvalue.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coding choice as it was first written (a string per member,
    /// then a search), kept to check the in-place reading against.
    fn chosen_by_reference(order: &[Encoding], fields: &[String]) -> Option<Encoding> {
        let mut named: Vec<(String, u16)> = Vec::new();
        let mut any = None;
        for value in fields {
            for member in value.split(',') {
                let mut params = member.split(';');
                let coding = params
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if coding.is_empty() {
                    continue;
                }
                let weight = params
                    .find_map(|p| {
                        let (name, value) = p.split_once('=')?;
                        name.trim()
                            .eq_ignore_ascii_case("q")
                            .then(|| qvalue(value.trim()))
                    })
                    .unwrap_or(Some(1000));
                let Some(weight) = weight else { continue };
                if coding == "*" {
                    any = Some(weight);
                } else {
                    named.push((coding, weight));
                }
            }
        }
        let mut best: Option<(Encoding, u16)> = None;
        for &encoding in order {
            let weight = named
                .iter()
                .find(|(c, _)| {
                    c == encoding.token() || (encoding == Encoding::Gzip && c == "x-gzip")
                })
                .map(|(_, w)| *w)
                .or(any)
                .unwrap_or(0);
            if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
                best = Some((encoding, weight));
            }
        }
        best.map(|(e, _)| e)
    }

    proptest::proptest! {
        /// RFC 9110 §12.5.3: reading the members in place chooses what the
        /// first reading chose, for any mix of names, cases, repeats,
        /// weights (good and bad) and field lines.
        #[test]
        fn in_place_choice_matches_the_reference(
            fields in proptest::collection::vec(
                "((gzip|GZip|br|BR|zstd|x-gzip|X-Gzip|\\*|deflate|identity| )( ?; ?[qQ] ?= ?(0|1|1\\.000|0\\.[0-9]{1,4}|2|x))?(, ?)?){0,5}",
                0..3,
            )
        ) {
            let compression = compression();
            let mut headers = HeaderMap::new();
            for value in &fields {
                headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
            }
            proptest::prop_assert_eq!(
                compression.choose(&headers),
                chosen_by_reference(&compression.order, &fields)
            );
        }
    }

    fn compression() -> Compression {
        Compression::new(&outpost_config::Compression::default()).unwrap()
    }

    fn negotiated(accept: &[&str], range: bool) -> String {
        let mut headers = HeaderMap::new();
        for value in accept {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        if range {
            headers.insert(http::header::RANGE, HeaderValue::from_static("bytes=0-1"));
        }
        compression().negotiate(&mut headers);
        let all: Vec<_> = headers.get_all(ACCEPT_ENCODING).iter().collect();
        assert_eq!(all.len(), 1);
        all[0].to_str().unwrap().to_owned()
    }

    /// RFC 9110 §12.5.3.
    #[test]
    fn accept_encoding_is_reduced_to_one_coding() {
        for (accept, want) in [
            (&["gzip, deflate, br"][..], "br"),
            (&["br, gzip"], "br"),
            (&["gzip", " br "], "br"),
            (&["gzip;q=1.0, br;q=0.9"], "gzip"),
            (&["gzip; Q=0.5, zstd;q=0.5"], "zstd"),
            (&["x-gzip"], "gzip"),
            (&["*"], "br"),
            (&["*;q=0.1, br;q=0"], "zstd"),
            (&["deflate, identity"], "identity"),
            (&["br;q=0"], "identity"),
            (&["br;q=2"], "identity"),
            (&["br;q=0.0001"], "identity"),
            (&[""], "identity"),
            (&[], "identity"),
        ] {
            assert_eq!(negotiated(accept, false), want, "{accept:?}");
        }
        assert_eq!(negotiated(&["br"], true), "identity");
    }

    #[test]
    fn only_a_plain_ok_of_a_listed_type_is_compressed() {
        let c = compression();
        let mut request = HeaderMap::new();
        request.insert(ACCEPT_ENCODING, HeaderValue::from_static("zstd"));
        let head = |status: u16, fields: &[(&'static str, &'static str)]| {
            let mut parts = http::Response::new(()).into_parts().0;
            parts.status = StatusCode::from_u16(status).unwrap();
            for (name, value) in fields {
                parts.headers.append(*name, HeaderValue::from_static(value));
            }
            parts
        };
        let mut ok = head(
            200,
            &[
                ("content-type", "Text/HTML; charset=utf-8"),
                ("etag", "\"a\""),
                ("vary", "Cookie"),
            ],
        );
        assert_eq!(
            c.prepare(&request, &mut ok, Some(5000)),
            Some(Encoding::Zstd)
        );
        assert_eq!(ok.headers[CONTENT_ENCODING], "zstd");
        assert_eq!(ok.headers[ETAG], "W/\"a\"");
        let vary: Vec<_> = ok.headers.get_all(VARY).iter().collect();
        assert_eq!(vary, ["Cookie", "Accept-Encoding"]);
        for (status, fields, length) in [
            (206, &[("content-type", "text/html")][..], Some(5000)),
            (200, &[("content-type", "text/html")], Some(100)),
            (200, &[("content-type", "image/png")], None),
            (
                200,
                &[("content-type", "text/html"), ("content-encoding", "gzip")],
                None,
            ),
            (
                200,
                &[
                    ("content-type", "text/html"),
                    ("cache-control", "public, no-transform"),
                ],
                None,
            ),
            (200, &[], None),
        ] {
            let mut parts = head(status, fields);
            assert_eq!(
                c.prepare(&request, &mut parts, length),
                None,
                "{status} {fields:?}"
            );
            assert!(
                parts
                    .headers
                    .get(CONTENT_ENCODING)
                    .is_none_or(|v| v == "gzip")
            );
        }
        // An identity request is not compressed, but the answer varies.
        let mut identity = head(200, &[("content-type", "application/json")]);
        let mut plain = HeaderMap::new();
        plain.insert(ACCEPT_ENCODING, IDENTITY);
        assert_eq!(c.prepare(&plain, &mut identity, None), None);
        assert_eq!(identity.headers[VARY], "Accept-Encoding");
    }

    #[test]
    fn qvalues_parse_to_thousandths() {
        assert_eq!(qvalue("1"), Some(1000));
        assert_eq!(qvalue("1.000"), Some(1000));
        assert_eq!(qvalue("0.5"), Some(500));
        assert_eq!(qvalue("0.125"), Some(125));
        assert_eq!(qvalue("0"), Some(0));
        for bad in ["1.5", "2", "0.1234", "-1", "", "0.x", "1.001"] {
            assert_eq!(qvalue(bad), None, "{bad}");
        }
    }
}
