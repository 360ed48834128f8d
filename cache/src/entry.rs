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
/// objects with 8 header fields cost about 2,780 bytes each in the
/// process's memory, so that `cache.memory` bounds what the process holds,
/// not only the payload.
const ENTRY_OVERHEAD: usize = 950;
/// What one header field costs beyond its name and value bytes: its name
/// and value handles in the entry's slice.
const FIELD_OVERHEAD: usize = 72;
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

/// Response header fields as an entry keeps them: in the order received,
/// in one slice of exactly their number, every value a slice of one buffer
/// (a `HeaderMap` would hold a hash table with room to spare and an
/// allocation per value). A response is built from them with
/// [`StoredHeaders::to_map`].
#[derive(Debug, Clone, Default)]
pub struct StoredHeaders(Box<[(HeaderName, HeaderValue)]>);

impl StoredHeaders {
    /// A copy of `headers` that owns its values. Values parsed off the wire
    /// are slices of the connection's read buffer; kept in an entry they
    /// would hold that whole buffer (kilobytes) in memory for the entry's
    /// life.
    pub fn from_map(headers: &HeaderMap) -> Self {
        Self::from_fields(headers.iter().map(|(n, v)| (n.clone(), v.clone())))
    }

    /// The same from fields in order.
    pub fn from_fields(fields: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        let fields: Vec<(HeaderName, HeaderValue)> = fields.into_iter().collect();
        let total: usize = fields.iter().map(|(_, v)| v.len()).sum();
        let mut block = BytesMut::with_capacity(total);
        for (_, value) in &fields {
            block.extend_from_slice(value.as_bytes());
        }
        let block = block.freeze();
        let mut at = 0;
        let owned = fields
            .into_iter()
            .map(|(name, value)| {
                let piece = block.slice(at..at + value.len());
                at += value.len();
                let mut owned = HeaderValue::from_maybe_shared(piece).unwrap_or(value.clone());
                owned.set_sensitive(value.is_sensitive());
                (name, owned)
            })
            .collect();
        Self(owned)
    }

    /// A header map of the fields, with room for `extra` more.
    pub fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.0.len() + extra);
        for (name, value) in self.iter() {
            map.append(name.clone(), value.clone());
        }
        map
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// The first value of the field `name`.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of the field `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&str> for StoredHeaders {
    type Output = HeaderValue;

    /// The first value of `name`; panics when there is none (as
    /// `HeaderMap` does).
    fn index(&self, name: &str) -> &HeaderValue {
        match self.get(name) {
            Some(value) => value,
            None => panic!("no field {name}"),
        }
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
            .map(|(k, v)| k.as_str().len() + v.len() + FIELD_OVERHEAD)
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

    /// Fields keep their order and repeats; values no longer point into
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
        map.append("etag", "\"v1\"".parse().unwrap());
        let stored = StoredHeaders::from_map(&map);
        drop(map);
        // The 16 KiB buffer is no longer shared with the stored value.
        assert!(wire.is_unique());
        assert_eq!(stored.len(), 4);
        assert_eq!(stored.get("ETag").unwrap(), "\"v1\"");
        assert_eq!(stored["x-big"], "vvvvvvvvvv");
        let cookies: Vec<_> = stored.get_all("set-cookie").collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(!stored.contains_key("vary"));
        let back = stored.to_map(2);
        assert_eq!(back.get_all("set-cookie").iter().count(), 2);
        assert_eq!(back.len(), 4);
    }

    #[test]
    fn an_entry_fits_its_size_class() {
        assert!(std::mem::size_of::<super::Entry>() + 16 <= 384);
    }
}
