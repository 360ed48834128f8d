//! A stored response: status, headers, body, and what says how long it
//! stays fresh and when it may be used stale.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::freshness::{Directives, Freshness};
use crate::policy::{StaleUse, StoreRules};

/// Bookkeeping counted for every entry beyond its bytes: the entry itself,
/// the memory tier's node for it, and its places in the purge indexes.
/// Measured: a tier of 1 KiB objects held about 3.4 KiB resident per object
/// (docs/benchmarks.md), so that `cache.memory` bounds what the process
/// holds, not only the payload.
const ENTRY_OVERHEAD: usize = 1280;
/// What one header field costs beyond its name and value bytes: its slot
/// in the map and its value's own allocation.
const FIELD_OVERHEAD: usize = 96;

#[derive(Debug, Clone)]
pub struct Entry {
    /// Full key text, compared on every lookup.
    pub key: String,
    pub status: StatusCode,
    /// Response headers as stored (hop-by-hop fields already removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Lifetime and age (RFC 9111 §4.2).
    pub freshness: Freshness,
    /// The response's Cache-Control as this cache reads it (targeted
    /// field and rule overrides applied).
    pub directives: Directives,
    /// When it may be used stale.
    pub stale: StaleUse,
    /// The rule's overrides it was stored with, kept for revalidation updates.
    pub rules: StoreRules,
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
    pub chunks: Option<crate::disk::Chunks>,
}

impl Entry {
    /// Host and path without the scheme, as prefix purges name them.
    pub fn location(&self) -> &str {
        self.key
            .split_once("://")
            .map_or(self.key.as_str(), |(_, rest)| rest)
    }

    /// The normalized host (with a non-default port).
    pub fn host(&self) -> &str {
        let location = self.location();
        location.split(['/', '?']).next().unwrap_or(location)
    }

    /// Length of the body, wherever it is.
    pub fn body_len(&self) -> u64 {
        self.chunks.map_or(self.body.len() as u64, |c| c.len)
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
        // The key is held twice: in the entry and in the purge index.
        let total =
            self.body.len() + headers + 2 * self.key.len() + self.variant.len() + ENTRY_OVERHEAD;
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
