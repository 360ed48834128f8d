//! Outpost's cache: keys, freshness policy and the tiered store.
//!
//! The cache knows nothing of sockets. It offers operations, not pieces:
//! the edge asks it for a [`Lookup`], fetches from the origin when told
//! to, and asks again what the origin's answer means: [`Cache::admit`]
//! begins storing it (policy, variants, size limit in one call),
//! [`Leader::share`] and [`Fill::head_for`] decide who shares a fill, and
//! [`Entry::conditional`], [`Entry::stale_on_failure`] and
//! [`Cache::revalidated`] carry a revalidation through.
//!
//! The layout of the crate:
//!
//! - `lib.rs`: [`Cache`], its construction, its tiers and options;
//! - `key.rs`: [`CacheKey`], the normalized URL (and fields) and its hash;
//! - `policy.rs`: whether a response may be stored, and the rule overrides;
//! - `freshness.rs`: lifetimes, ages and the directives that say when an entry may be used;
//! - `date.rs`: HTTP-date parsing, all three formats;
//! - `clock.rs`: time as the cache sees it (tests move it by hand);
//! - `id.rs`: random ids, and sequence numbers that never go back;
//! - `vary.rs`: Vary markers, variants' secondary keys, and what a variant is made of;
//! - `entry/`: [`Entry`], a stored response; its headers, and where its body lives;
//! - `memory.rs`: the memory tier (moka, weighed in bytes);
//! - `disk/`: the disk tier (foyer): record format, the store, chunked bodies;
//! - `lookup.rs`: [`Cache::lookup`] and [`Cache::lookup_tiered`]: memory, then disk, then promotion;
//! - `inspect.rs`: [`Cache::stored_responses`], what is stored for a URL, as `/explain` shows it;
//! - `stream.rs`: [`Cache::body`], a stored body as a stream, from memory or disk;
//! - `partial.rs`: [`ContentRange`], the one range a stored 206 holds;
//! - `fetched.rs`: [`Fetched`], an origin's answer with its request and times;
//! - `store.rs`: [`Cache::admit`], then [`Storing`] and [`Cache::finish`], or [`Cache::insert`];
//! - `revalidate.rs`: [`Entry::conditional`], [`Cache::revalidated`] and
//!   [`Entry::stale_on_failure`]: revalidation, RFC 9111 §4.3 and RFC 5861 §4;
//! - `refresh.rs`: a stored response freshened by a 304 or a HEAD (RFC 9111 §4.3.4, §4.3.5);
//! - `variants.rs`: a Vary miss validated against the stored variants' entity tags (§4.3.1, §4.3.4);
//! - `purge/`: the purge index and its journal, and [`Cache::purge_urls`] and the other purges;
//! - `usage.rs`: [`Usage`], the sizes and counts for `/stats` and metrics;
//! - `metrics.rs`: [`CacheMetrics`], those counts as Prometheus series, read at each scrape;
//! - `coalesce.rs`: [`Coalescer`], one origin fetch for concurrent misses, and who may share it;
//! - `etag.rs`: [`EntityTag`] and [`TagList`], entity tags and their lists compared as bytes;
//! - `fuzzing.rs`: the parsers as the fuzz targets in `fuzz/` reach them (hidden from the docs).

mod clock;
mod coalesce;
mod date;
mod disk;
mod entry;
mod etag;
mod fetched;
mod freshness;
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod inspect;
mod key;
mod lookup;
mod memory;
mod metrics;
mod partial;
mod policy;
mod purge;
mod refresh;
mod revalidate;
mod store;
#[cfg(test)]
mod strategies;
mod stream;
#[cfg(test)]
mod testing;
mod usage;
mod variants;
mod vary;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

pub use clock::{Clock, ManualClock, SystemClock};
pub use coalesce::{
    Coalescer, Fill, FillFailed, FillWriter, Leader, Role, SharedBody, SharedHead, Sharing,
};
pub use date::parse_http_date;
pub use disk::{DiskError, DiskTier, note_store_error};
pub use entry::{CHUNK, Chunks, Entry, StoredHeaders};
pub use etag::{EntityTag, TagList};
pub use fetched::Fetched;
pub use freshness::{Directives, Freshness, Heuristic, LifetimeFrom};
pub use inspect::{StoredResponse, Tier};
pub use key::{CacheKey, KeyError, PathError, normalize_host, normalize_path};
pub use lookup::Lookup;
pub use metrics::CacheMetrics;
pub use partial::ContentRange;
pub use policy::{FreshnessSource, NotStored, PolicyOptions, StoreRules, has_explicit_freshness};
pub use revalidate::{CLIENT_CONDITIONS, Revalidated, StaleReason};
pub use store::Storing;
pub use usage::{DiskUsage, Usage};
pub use variants::candidates_conditional;
pub use vary::KeyFields;

use memory::MemoryTier;
use purge::PurgeIndex;

/// With a disk tier, larger objects live on disk only and stream from there:
/// memory holds many small objects rather than a few large ones, and a
/// large fill never holds its whole body in memory.
const MEMORY_OBJECT_MAX_WITH_DISK: usize = 16 << 20;

pub struct Cache {
    memory: MemoryTier,
    memory_hits: AtomicU64,
    memory_misses: AtomicU64,
    /// Set for a cache built to have a disk tier.
    tiered: bool,
    /// The largest body the memory tier keeps.
    memory_limit: usize,
    /// The disk tier, once it is open (a successor in a binary upgrade
    /// opens it only when its predecessor has closed it).
    disk: std::sync::OnceLock<DiskTier>,
    purges: Arc<PurgeIndex>,
    clock: Arc<dyn Clock>,
    /// Swapped whole by a config reload.
    options: arc_swap::ArcSwap<PolicyOptions>,
    /// The URLs (primary hashes) that had parts stored lately, so that a
    /// whole request asks for a piece only where one may be held.
    parted: moka::sync::Cache<[u8; 32], ()>,
}

/// How many URLs with stored parts [`Cache::may_hold_parts`] remembers.
const PARTED_URLS: u64 = 100_000;

impl Cache {
    pub fn new(memory_bytes: u64, options: PolicyOptions, clock: Arc<dyn Clock>) -> Self {
        Self::build(memory_bytes, PurgeIndex::default(), options, clock, false)
    }

    /// A cache that will have a disk tier below memory: purges are kept
    /// for it from the start, and journaled once it is attached.
    pub fn tiered(memory_bytes: u64, options: PolicyOptions, clock: Arc<dyn Clock>) -> Self {
        Self::build(memory_bytes, PurgeIndex::durable(), options, clock, true)
    }

    /// A cache with a disk tier below memory.
    pub fn with_disk(
        memory_bytes: u64,
        disk: DiskTier,
        options: PolicyOptions,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let cache = Self::tiered(memory_bytes, options, clock);
        cache.attach_disk(disk)?;
        Ok(cache)
    }

    /// Puts the disk tier below memory. The purges journaled beside its
    /// files apply from now on, and the purges made before are journaled.
    pub fn attach_disk(&self, disk: DiskTier) -> std::io::Result<()> {
        self.purges.attach_journal(&disk.path().join("purges"))?;
        self.disk
            .set(disk)
            .map_err(|_| std::io::Error::other("a disk tier is already attached"))
    }

    fn build(
        memory_bytes: u64,
        purges: PurgeIndex,
        options: PolicyOptions,
        clock: Arc<dyn Clock>,
        tiered: bool,
    ) -> Self {
        let purges = Arc::new(purges);
        // Objects that leave memory leave the purge index too.
        let index = purges.clone();
        Self {
            memory: MemoryTier::new(memory_bytes, move |hash, entry| index.remove(hash, entry)),
            memory_hits: AtomicU64::new(0),
            memory_misses: AtomicU64::new(0),
            tiered,
            memory_limit: usize::try_from(memory_bytes.min(u64::from(u32::MAX / 2)))
                .unwrap_or(usize::MAX),
            disk: std::sync::OnceLock::new(),
            purges,
            clock,
            options: arc_swap::ArcSwap::from_pointee(options),
            parted: moka::sync::Cache::new(PARTED_URLS),
        }
    }

    /// Whether parts of `key`'s URL (a piece, slices) may be stored: false
    /// for a URL none were stored for since the start (or lately, of very
    /// many), so that looking for them costs a request nothing.
    pub fn may_hold_parts(&self, key: &CacheKey) -> bool {
        self.parted.contains_key(key.primary())
    }

    /// The largest body the memory tier keeps.
    fn memory_object_max(&self) -> usize {
        if self.disk.get().is_some() {
            self.memory_limit.min(MEMORY_OBJECT_MAX_WITH_DISK)
        } else {
            self.memory_limit
        }
    }

    /// Whether a disk tier is configured but not open yet.
    pub fn disk_pending(&self) -> bool {
        self.tiered && self.disk.get().is_none()
    }

    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.get()
    }

    /// Writes what the disk tier has queued and closes it.
    pub async fn close(&self) {
        if let Some(disk) = self.disk.get()
            && let Err(e) = disk.close().await
        {
            tracing::warn!(error = %e, "closing the disk tier");
        }
    }

    /// The storage options of a reloaded config; they apply from the next
    /// response stored. Entries already stored keep what they were stored with.
    pub fn set_options(&self, options: PolicyOptions) {
        self.options.store(Arc::new(options));
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}
