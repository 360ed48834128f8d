//! A stored response: status, headers, body and the policy that says how
//! long it stays fresh.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_cache_semantics::CachePolicy;

use crate::policy::{StaleUse, StoreRules};

/// Fixed bookkeeping cost counted for every entry, beyond its bytes.
const ENTRY_OVERHEAD: usize = 512;

#[derive(Debug, Clone)]
pub struct Entry {
    /// Full key text, compared on every lookup.
    pub key: String,
    pub status: StatusCode,
    /// Response headers as stored (hop-by-hop fields already removed).
    pub headers: HeaderMap,
    pub body: Bytes,
    pub policy: CachePolicy,
    /// The rule's overrides the policy was built with, kept for revalidation updates.
    pub rules: StoreRules,
    /// When the response (or its last 304) arrived.
    pub stored_at: SystemTime,
    /// When it may be used stale.
    pub stale: StaleUse,
    /// For a Vary variant: the varied fields and the request's values.
    pub variant: String,
    /// For a Vary variant: the id of the marker it was stored under; 0 otherwise.
    pub marker: u64,
}

impl Entry {
    /// Bytes this entry costs the memory tier: body, headers (held twice:
    /// once to serve, once inside the policy), key and bookkeeping.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let total =
            self.body.len() + 2 * headers + self.key.len() + self.variant.len() + ENTRY_OVERHEAD;
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// Current age (RFC 9111 §4.2.3) as the policy computes it.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.policy.age(now)
    }

    /// How long the entry stays fresh, counted from its generation.
    pub fn freshness_lifetime(&self) -> Duration {
        self.policy.age(self.stored_at) + self.policy.time_to_live(self.stored_at)
    }

    /// How long past its freshness the entry is now; zero while fresh.
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.freshness_lifetime())
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

    /// Time left before the entry goes stale.
    pub fn time_to_live(&self, now: SystemTime) -> Duration {
        self.policy.time_to_live(now)
    }
}
