//! What the cache holds for one URL, as the side API's `/explain` shows
//! it: every stored response (each Vary variant), its tier, size and tags,
//! its freshness and where that came from, the stale windows it has left
//! and whether a soft purge marked it. Reading never changes what is
//! stored: nothing is promoted, counted as a hit or removed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::request;

use crate::Cache;
use crate::disk::Found;
use crate::entry::Entry;
use crate::key::CacheKey;
use crate::memory::Stored;
use crate::policy::FreshnessSource;
use crate::purge::Verdict;
use crate::vary;

/// Where a stored response was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Memory,
    /// In memory, and written to the disk tier too.
    MemoryAndDisk,
    Disk,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Memory => "memory",
            Tier::MemoryAndDisk => "memory+disk",
            Tier::Disk => "disk",
        }
    }
}

/// One stored response of a URL.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// The varied fields and the values this variant was stored for
    /// (a cookie as `cookie:NAME`; None where the request had none);
    /// empty when the URL's responses do not vary.
    pub vary: Vec<(String, Option<String>)>,
    pub tier: Tier,
    pub status: u16,
    /// Body bytes.
    pub size: u64,
    pub tags: Vec<String>,
    /// When the response arrived.
    pub stored_at: SystemTime,
    /// Its current age (RFC 9111 §4.2.3).
    pub age: Duration,
    /// Its freshness lifetime (RFC 9111 §4.2.1).
    pub lifetime: Duration,
    pub freshness_from: FreshnessSource,
    /// Freshness left; zero once stale.
    pub fresh_for: Duration,
    /// How long past its lifetime it is; zero while fresh.
    pub stale_for: Duration,
    /// What is left of its stale-while-revalidate window (RFC 5861 §3);
    /// None without one, or when it may never be used stale.
    pub stale_while_revalidate_left: Option<Duration>,
    /// What is left of its stale-if-error window (RFC 5861 §4).
    pub stale_if_error_left: Option<Duration>,
    /// must-revalidate, proxy-revalidate, s-maxage or no-cache: never
    /// used stale.
    pub never_stale: bool,
    /// A soft purge marked it: it is revalidated before its next use.
    pub soft_purged: bool,
}

impl Cache {
    /// Every response stored for `key`: the URL's one object, or each of
    /// its variants (the marker lists them, on disk too, and the one `req`
    /// selects is looked for as well). Purged ones are left out.
    pub async fn stored_responses(
        &self,
        key: &CacheKey,
        req: &request::Parts,
    ) -> Vec<StoredResponse> {
        let now = self.now();
        let mut found: Vec<(Arc<Entry>, Tier)> = Vec::new();
        let marker = match self.memory.get(key.hash()) {
            Some(Stored::Object(_)) => {
                found.extend(self.held(key.hash()).await);
                None
            }
            Some(Stored::Variants(marker)) if marker.key == key.text() => Some((
                marker.id,
                marker.names.clone(),
                marker.cookies.clone(),
                marker.variants(),
            )),
            Some(Stored::Variants(_)) => None,
            None => match self.disk.get() {
                Some(disk) => match disk.load(key.hash()).await {
                    Ok(Some(Found::Object(entry))) if !self.purges.past_retention(&entry) => {
                        found.push((Arc::new(*entry), Tier::Disk));
                        None
                    }
                    Ok(Some(Found::Marker(stored))) if stored.key == key.text() => {
                        let marker = stored.into_vary_marker();
                        let variants = marker.variants();
                        Some((marker.id, marker.names, marker.cookies, variants))
                    }
                    _ => None,
                },
                None => None,
            },
        };
        if let Some((id, names, cookies, mut variants)) = marker {
            // The variant this request selects, known to the marker or not.
            let own =
                vary::secondary_hash(key.text(), &vary::secondary(&names, &cookies, &req.headers));
            if !variants.contains(&own) {
                variants.push(own);
            }
            for hash in variants {
                if let Some((entry, tier)) = self.held(&hash).await
                    && entry.variant().is_some_and(|v| v.marker == id)
                {
                    found.push((entry, tier));
                }
            }
        }
        let targeted = self.options.load().targeted.clone();
        found
            .into_iter()
            .filter(|(entry, _)| entry.key() == key.text())
            .filter_map(|(entry, tier)| {
                let verdict = self.purges.judge(&entry);
                if verdict == Verdict::Gone {
                    return None;
                }
                Some(describe(
                    &entry,
                    tier,
                    verdict == Verdict::Stale,
                    &targeted,
                    now,
                ))
            })
            .collect()
    }
}

impl Cache {
    /// The object stored under `hash`, and where: memory first, then disk,
    /// read as it is (not promoted to memory); None when neither holds
    /// one, or what disk holds is past the purges' retention.
    pub(crate) async fn held(&self, hash: &[u8; 32]) -> Option<(Arc<Entry>, Tier)> {
        let disk = self.disk.get();
        if let Some(Stored::Object(entry)) = self.memory.get(hash) {
            let tier = match disk {
                Some(disk) if disk.may_contain(hash) => Tier::MemoryAndDisk,
                _ => Tier::Memory,
            };
            return Some((entry, tier));
        }
        match disk?.load(hash).await {
            Ok(Some(Found::Object(entry))) if !self.purges.past_retention(&entry) => {
                Some((Arc::new(*entry), Tier::Disk))
            }
            _ => None,
        }
    }
}

fn describe(
    entry: &Entry,
    tier: Tier,
    soft_purged: bool,
    targeted: &[http::HeaderName],
    now: SystemTime,
) -> StoredResponse {
    let headers = entry.headers().to_map(0);
    let stale = entry.stale();
    let stale_for = entry.staleness(now);
    let left = |window: Option<Duration>| {
        window
            .filter(|_| !stale.never)
            .map(|w| w.saturating_sub(stale_for))
    };
    StoredResponse {
        vary: entry
            .variant()
            .map(|v| vary::fields_of(&v.text))
            .unwrap_or_default(),
        tier,
        status: entry.status().as_u16(),
        size: entry.body_len(),
        tags: entry.tags().to_vec(),
        stored_at: entry.freshness().response_time,
        age: entry.age(now),
        lifetime: entry.freshness().lifetime,
        freshness_from: FreshnessSource::of(entry.status(), &headers, entry.rules(), targeted),
        fresh_for: entry.time_to_live(now),
        stale_for,
        stale_while_revalidate_left: left(stale.while_revalidate),
        stale_if_error_left: left(stale.if_error),
        never_stale: stale.never,
        soft_purged,
    }
}
