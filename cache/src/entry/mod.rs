//! A stored response: status, headers, where its body lives, and what says
//! how long it stays fresh and when it may be used stale.
//!
//! Its parts are read through accessors: an entry changes only by being
//! replaced (refreshed, soft-purged, promoted with its body in memory).

mod body;
mod headers;
mod made;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;

pub(crate) use body::Body;
pub use body::{CHUNK, Chunks};
pub use headers::StoredHeaders;

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

/// A stored response. Its states are types: where its body lives is a
/// `Body`, and whether it is a Vary variant an `Option<Variant>`. Other
/// crates read it through its accessors; this crate builds it in place.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Full key text, compared on every lookup.
    pub(crate) key: Box<str>,
    pub(crate) status: StatusCode,
    /// Response headers as stored (hop-by-hop fields already removed).
    pub(crate) headers: StoredHeaders,
    /// Where the body lives.
    pub(crate) body: Body,
    /// Lifetime and age (RFC 9111 §4.2).
    pub(crate) freshness: Freshness,
    /// The response's Cache-Control as this cache reads it (targeted
    /// field and rule overrides applied).
    pub(crate) directives: Directives,
    /// When it may be used stale.
    pub(crate) stale: StaleUse,
    /// The rule's overrides it was stored with, kept for revalidation updates.
    pub(crate) rules: Arc<StoreRules>,
    /// Set when the entry is one Vary variant of its URL.
    pub(crate) variant: Option<Variant>,
    /// Sequence number given when the response arrived; purges made later
    /// apply to it.
    pub(crate) seq: u64,
    /// Tags from the response's tag headers (Surrogate-Key, Cache-Tag).
    pub(crate) tags: Vec<String>,
    /// Hash of the URL's primary key (the same for every variant).
    pub(crate) primary: [u8; 32],
}

/// What makes an entry one Vary variant of its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Variant {
    /// The id of the URL's Vary marker it was stored under: variants stored
    /// under an earlier marker (before a purge, or before the Vary names
    /// changed) never match.
    pub marker: u64,
    /// The varied fields and the request's values of them.
    pub text: Box<str>,
}

impl Entry {
    /// The same entry stored as a variant of its URL.
    pub(crate) fn into_variant(self, variant: Variant) -> Self {
        Self {
            variant: Some(variant),
            ..self
        }
    }

    /// The same response freshened by a revalidation (RFC 9111 §4.3.4):
    /// new header fields, freshness and sequence number; the body, the
    /// rules, the variant and the tags stay.
    pub(crate) fn refreshed(
        &self,
        headers: StoredHeaders,
        freshness: Freshness,
        directives: Directives,
        stale: StaleUse,
        seq: u64,
    ) -> Self {
        Self {
            key: self.key.clone(),
            status: self.status,
            headers,
            body: self.body.clone(),
            freshness,
            directives,
            stale,
            rules: self.rules.clone(),
            variant: self.variant.clone(),
            seq,
            tags: self.tags.clone(),
            primary: self.primary,
        }
    }

    /// The same entry with its body, read from its chunks, in memory too.
    pub(crate) fn with_body_in_memory(self, bytes: Bytes) -> Self {
        let body = match self.body {
            Body::Disk(chunks) | Body::Both(_, chunks) => Body::Both(bytes, chunks),
            Body::Memory(_) => Body::Memory(bytes),
        };
        Self { body, ..self }
    }

    /// Full key text.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Response headers as stored (hop-by-hop fields already removed).
    pub fn headers(&self) -> &StoredHeaders {
        &self.headers
    }

    /// Lifetime and age (RFC 9111 §4.2).
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    /// The response's Cache-Control as this cache reads it.
    pub(crate) fn directives(&self) -> &Directives {
        &self.directives
    }

    /// When it may be used stale.
    pub(crate) fn stale(&self) -> StaleUse {
        self.stale
    }

    /// The rule's overrides it was stored with.
    pub(crate) fn rules(&self) -> &StoreRules {
        &self.rules
    }

    /// The Vary variant it is, if it is one.
    pub(crate) fn variant(&self) -> Option<&Variant> {
        self.variant.as_ref()
    }

    /// Whether it is the variant `text` stored under the Vary marker `marker`.
    pub(crate) fn is_variant(&self, marker: u64, text: &str) -> bool {
        self.variant
            .as_ref()
            .is_some_and(|v| v.marker == marker && *v.text == *text)
    }

    /// Sequence number given when the response arrived.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Tags from the response's tag headers.
    pub(crate) fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Hash of the URL's primary key (the same for every variant).
    pub(crate) fn primary(&self) -> &[u8; 32] {
        &self.primary
    }

    /// Where the body lives.
    pub(crate) fn body(&self) -> &Body {
        &self.body
    }

    /// The whole body, when it is in memory (otherwise it streams from disk).
    pub fn resident_body(&self) -> Option<&Bytes> {
        self.body.bytes()
    }

    /// Where the body lies on disk, when it is stored in chunks.
    pub fn chunks(&self) -> Option<&Chunks> {
        self.body.chunks()
    }

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
        self.body.len()
    }

    /// Whether the whole body is in memory (otherwise it streams from disk).
    pub fn resident(&self) -> bool {
        match self.body {
            Body::Memory(_) | Body::Both(..) => true,
            Body::Disk(_) => false,
        }
    }

    /// A copy that must be revalidated before use (a soft purge).
    pub(crate) fn soft_purged(&self) -> Entry {
        let mut copy = self.clone();
        copy.freshness.lifetime = Duration::ZERO;
        copy
    }

    /// Bytes this entry costs the memory tier: body, headers, key and bookkeeping.
    pub(crate) fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + FIELD_OVERHEAD)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + TAG_OVERHEAD).sum();
        // The key is held twice: in the entry and in the purge index.
        let body = self.body.bytes().map_or(0, Bytes::len);
        let variant = self.variant.as_ref().map_or(0, |v| v.text.len());
        let total = body + headers + tags + 2 * self.key.len() + variant + ENTRY_OVERHEAD;
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
    pub(crate) fn stale_if_error(&self, now: SystemTime) -> bool {
        let staleness = self.staleness(now);
        staleness.is_zero()
            || (!self.stale.never && self.stale.if_error.is_some_and(|w| staleness <= w))
    }

    /// Whether the entry may answer when the origin cannot be reached at
    /// all (RFC 9111 §4.2.4, a disconnected cache): fresh, or stale by at
    /// most `window`, and never past must-revalidate, proxy-revalidate,
    /// s-maxage or no-cache (§4.2.4: "SHOULD NOT ... if it is prohibited").
    pub(crate) fn stale_if_unreachable(&self, now: SystemTime, window: Duration) -> bool {
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
    #[test]
    fn an_entry_fits_its_size_class() {
        assert!(std::mem::size_of::<super::Entry>() + 16 <= 384);
    }
}
