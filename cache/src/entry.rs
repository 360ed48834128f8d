//! A stored response: status, headers, body, and what says how long it
//! stays fresh and when it may be used stale.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::freshness::{Directives, Freshness};
use crate::policy::{StaleUse, StoreRules};

/// Bookkeeping counted for every entry beyond its bytes: the entry itself,
/// the memory tier's node for it, and its place in the purge index. Fitted
/// to measurement (docs/benchmarks.md, "Memory per stored object"): 1 KiB
/// objects with 8 header fields cost about 2,340 bytes each in the
/// process's memory, so that `cache.memory` bounds what the process holds,
/// not only the payload.
const ENTRY_OVERHEAD: usize = 760;
/// What one header field costs beyond its name and value bytes: its name
/// and where its value ends, in the entry's slice.
const FIELD_OVERHEAD: usize = 40;
/// What one tag costs beyond its bytes: its string, and its place in the
/// purge index's tag map.
const TAG_OVERHEAD: usize = 96;

#[derive(Debug, Clone)]
pub struct Entry {
    /// Full key text, compared on every lookup.
    pub key: Box<str>,
    pub status: StatusCode,
    /// Response headers as stored (hop-by-hop fields already removed).
    pub headers: StoredHeaders,
    pub body: Bytes,
    /// Lifetime and age (RFC 9111 §4.2).
    pub freshness: Freshness,
    /// The response's Cache-Control as this cache reads it (targeted
    /// field and rule overrides applied).
    pub directives: Directives,
    /// When it may be used stale.
    pub stale: StaleUse,
    /// The rule's overrides it was stored with, kept for revalidation updates.
    pub rules: std::sync::Arc<StoreRules>,
    /// For a Vary variant: the varied fields and the request's values.
    pub variant: String,
    /// For a Vary variant: the id of the marker it was stored under; 0 otherwise.
    pub marker: u64,
    /// Sequence number given when the response arrived; purges made later
    /// apply to it.
    pub seq: u64,
    /// Tags from the response's tag headers (Surrogate-Key, Cache-Tag).
    pub tags: Vec<String>,
    /// Hash of the URL's primary key (the same for every variant).
    pub primary: [u8; 32],
    /// Where the body lies on disk, when it is larger than one chunk. The
    /// body is in `body` as well when the entry is held in memory.
    pub chunks: Option<Box<crate::disk::Chunks>>,
}

/// Response header fields as an entry keeps them: in the order of the map
/// they came from (a name's values together), names in one slice of
/// exactly their number, every value a range of one buffer (a `HeaderMap`
/// would hold a hash table with room to spare and a handle per value, 40
/// bytes each). A response is built from them with
/// [`StoredHeaders::to_map`].
#[derive(Debug, Clone, Default)]
pub struct StoredHeaders {
    /// Every value's bytes, one after another.
    values: Bytes,
    /// Each field's name and where its value ends in `values` (it starts
    /// where the last one ended); the top bit marks a sensitive value.
    fields: Box<[(HeaderName, u32)]>,
}

const SENSITIVE: u32 = 1 << 31;

impl StoredHeaders {
    /// A copy of `headers` that owns its values. Values parsed off the wire
    /// are slices of the connection's read buffer; kept in an entry they
    /// would hold that whole buffer (kilobytes) in memory for the entry's
    /// life.
    pub fn from_map(headers: &HeaderMap) -> Self {
        Self::from_fields(headers.iter().map(|(n, v)| (n.clone(), v.clone())))
    }

    /// The same from fields in order. Values past 2 GiB in all (not
    /// something a response head can carry) are left out.
    pub fn from_fields(fields: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        let fields: Vec<(HeaderName, HeaderValue)> = fields.into_iter().collect();
        // Sized exactly: the buffer is kept for the entry's life.
        let total = fields.iter().map(|(_, v)| v.len()).sum();
        let mut values = BytesMut::with_capacity(total);
        let mut kept = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let end = values.len() + value.len();
            let Ok(end) = u32::try_from(end) else {
                continue;
            };
            if end >= SENSITIVE {
                continue;
            }
            values.extend_from_slice(value.as_bytes());
            let flag = if value.is_sensitive() { SENSITIVE } else { 0 };
            kept.push((name, end | flag));
        }
        Self {
            values: values.freeze(),
            fields: kept.into_boxed_slice(),
        }
    }

    /// Each field's name, where its value lies, and whether it is sensitive.
    fn ranges(&self) -> impl Iterator<Item = (&HeaderName, std::ops::Range<usize>, bool)> {
        let mut start = 0;
        self.fields.iter().map(move |(name, end)| {
            let stop = (end & !SENSITIVE) as usize;
            let range = start..stop;
            start = stop;
            (name, range, end & SENSITIVE != 0)
        })
    }

    /// The value in `range` as a header value: a range of the shared buffer.
    fn value(&self, range: std::ops::Range<usize>, sensitive: bool) -> Option<HeaderValue> {
        let bytes = self.values.get(range.clone())?;
        let mut value = if bytes.is_empty() {
            HeaderValue::from_static("")
        } else {
            HeaderValue::from_maybe_shared(self.values.slice(range)).ok()?
        };
        value.set_sensitive(sensitive);
        Some(value)
    }

    /// A header map of the fields, with room for `extra` more.
    pub fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields.len() + extra);
        for (name, range, sensitive) in self.ranges() {
            if let Some(value) = self.value(range, sensitive) {
                map.append(name.clone(), value);
            }
        }
        map
    }

    /// Each field's name and value bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        self.ranges()
            .map(|(name, range, _)| (name, self.values.get(range).unwrap_or_default()))
    }

    /// The first value of the field `name`.
    pub fn get(&self, name: &str) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of the field `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = HeaderValue> + 'a {
        self.ranges()
            .filter(move |(n, _, _)| n.as_str().eq_ignore_ascii_case(name))
            .filter_map(|(_, range, sensitive)| self.value(range, sensitive))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl Entry {
    /// Host and path without the scheme, as prefix purges name them.
    pub fn location(&self) -> &str {
        self.key
            .split_once("://")
            .map_or(&self.key, |(_, rest)| rest)
    }

    /// The normalized host (with a non-default port).
    pub fn host(&self) -> &str {
        let location = self.location();
        location.split(['/', '?']).next().unwrap_or(location)
    }

    /// Length of the body, wherever it is.
    pub fn body_len(&self) -> u64 {
        self.chunks
            .as_ref()
            .map_or(self.body.len() as u64, |c| c.len)
    }

    /// Whether the whole body is in `body` (otherwise it streams from disk).
    pub fn resident(&self) -> bool {
        self.body.len() as u64 == self.body_len()
    }

    /// A copy that must be revalidated before use (a soft purge).
    pub fn soft_purged(&self) -> Entry {
        let mut copy = self.clone();
        copy.freshness.lifetime = Duration::ZERO;
        copy
    }

    /// Bytes this entry costs the memory tier: body, headers, key and bookkeeping.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + TAG_OVERHEAD).sum();
        // The key is held twice: in the entry and in the purge index.
        let total = self.body.len()
            + headers
            + tags
            + 2 * self.key.len()
            + self.variant.len()
            + ENTRY_OVERHEAD;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// Current age (RFC 9111 §4.2.3).
    pub fn age(&self, now: SystemTime) -> Duration {
        self.freshness.age(now)
    }

    /// How long past its freshness the entry is now; zero while fresh.
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.freshness.staleness(now)
    }

    /// Time left before the entry goes stale.
    pub fn time_to_live(&self, now: SystemTime) -> Duration {
        self.freshness.time_to_live(now)
    }

    /// Whether the entry may answer when the origin fails (RFC 5861 §4):
    /// fresh, or stale within its stale-if-error window, and never past
    /// must-revalidate, proxy-revalidate, s-maxage or no-cache.
    pub fn stale_if_error(&self, now: SystemTime) -> bool {
        let staleness = self.staleness(now);
        staleness.is_zero()
            || (!self.stale.never && self.stale.if_error.is_some_and(|w| staleness <= w))
    }

    /// Whether the entry may answer when the origin cannot be reached at
    /// all (RFC 9111 §4.2.4, a disconnected cache): fresh, or stale by at
    /// most `window`, and never past must-revalidate, proxy-revalidate,
    /// s-maxage or no-cache (§4.2.4: "SHOULD NOT ... if it is prohibited").
    pub fn stale_if_unreachable(&self, now: SystemTime, window: Duration) -> bool {
        let staleness = self.staleness(now);
        staleness.is_zero() || (!self.stale.never && staleness <= window)
    }

    /// Whether the stale entry may answer at once while it is revalidated
    /// in the background (RFC 5861 §3).
    pub fn stale_while_revalidate(&self, now: SystemTime) -> bool {
        let staleness = self.staleness(now);
        !staleness.is_zero()
            && !self.stale.never
            && self.stale.while_revalidate.is_some_and(|w| staleness <= w)
    }

    /// The fields a qualified `no-cache="..."` names (RFC 9111 §5.2.2.4):
    /// they may not be sent from cache without revalidation.
    pub fn unvalidated_fields(&self) -> Vec<String> {
        self.directives.fields("no-cache").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    /// An entry and its `Arc` counts fit mimalloc's 384-byte size class: a
    /// field more would cost 64 bytes on every stored object.
    use super::StoredHeaders;

    /// Fields keep their map's order and repeats; values no longer point into
    /// the buffer they were parsed from, but into one block of their own.
    #[test]
    fn stored_headers_keep_order_and_own_their_values() {
        let wire = bytes::Bytes::from(vec![b'v'; 16 * 1024]);
        let mut map = http::HeaderMap::new();
        map.append("set-cookie", "a=1".parse().unwrap());
        map.append(
            "x-big",
            http::HeaderValue::from_maybe_shared(wire.slice(..10)).unwrap(),
        );
        map.append("set-cookie", "b=2".parse().unwrap());
        let mut secret: http::HeaderValue = "token".parse().unwrap();
        secret.set_sensitive(true);
        map.append("x-secret", secret);
        map.append("etag", "\"v1\"".parse().unwrap());
        map.append("x-empty", "".parse().unwrap());
        let stored = StoredHeaders::from_map(&map);
        drop(map);
        // The 16 KiB buffer is no longer shared with the stored value.
        assert!(wire.is_unique());
        assert_eq!(stored.len(), 6);
        assert_eq!(stored.get("ETag").unwrap(), "\"v1\"");
        assert_eq!(stored.get("x-big").unwrap(), "vvvvvvvvvv");
        assert_eq!(stored.get("x-empty").unwrap(), "");
        let cookies: Vec<_> = stored.get_all("set-cookie").collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(!stored.contains_key("vary"));
        assert!(stored.contains_key("Set-Cookie"));
        let order: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            order,
            [
                "set-cookie",
                "set-cookie",
                "x-big",
                "x-secret",
                "etag",
                "x-empty"
            ]
        );
        let back = stored.to_map(2);
        assert_eq!(back.get_all("set-cookie").iter().count(), 2);
        assert_eq!(back.len(), 6);
        assert!(back["x-secret"].is_sensitive());
        assert!(!back["etag"].is_sensitive());
    }

    #[test]
    fn an_entry_fits_its_size_class() {
        assert!(std::mem::size_of::<super::Entry>() + 16 <= 384);
    }
}
