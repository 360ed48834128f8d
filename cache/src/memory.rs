//! The memory tier: a moka cache weighed in bytes, with TinyLFU admission.

use std::sync::Arc;

use crate::entry::Entry;
use crate::vary::VaryMarker;

/// What a key holds: a response, or the marker of a URL whose responses vary.
#[derive(Debug, Clone)]
pub enum Stored {
    Object(Arc<Entry>),
    Variants(Arc<VaryMarker>),
}

impl Stored {
    fn weight(&self) -> u32 {
        match self {
            Stored::Object(entry) => entry.weight(),
            Stored::Variants(marker) => {
                256 + u32::try_from(marker.key.len()).unwrap_or(u32::MAX / 2)
            }
        }
    }
}

#[derive(Clone)]
pub struct MemoryTier {
    /// Keyed by the request key's BLAKE3 hash: hashed again by foldhash
    /// with a per-process seed, not SipHash, which took a tenth of a
    /// lookup.
    entries: moka::sync::Cache<[u8; 32], Stored, foldhash::quality::RandomState>,
    /// Objects pushed out to make room.
    evictions: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryTier {
    /// A tier that holds at most `capacity` bytes of entries; `left` hears
    /// of every object that leaves it, for any reason but being replaced
    /// (the cache takes it out of the purge index).
    pub fn new(capacity: u64, left: impl Fn(&[u8; 32], &Entry) + Send + Sync + 'static) -> Self {
        let evictions = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let evicted = evictions.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_key, stored: &Stored| stored.weight())
            .eviction_listener(move |hash: Arc<[u8; 32]>, stored: Stored, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evicted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                // A replaced object's successor is already indexed under the hash.
                if let (Stored::Object(entry), false) =
                    (stored, cause == moka::notification::RemovalCause::Replaced)
                {
                    left(&hash, &entry);
                }
            })
            .build_with_hasher(foldhash::quality::RandomState::default());
        Self { entries, evictions }
    }

    /// Objects evicted for room since the start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops everything (lazily, in constant time).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<Stored> {
        self.entries.get(hash)
    }

    pub fn insert(&self, hash: [u8; 32], stored: Stored) {
        self.entries.insert(hash, stored);
    }

    /// Inserts `stored` unless something is there already; returns what is
    /// there afterwards.
    pub fn insert_if_absent(&self, hash: [u8; 32], stored: Stored) -> Stored {
        self.entries.entry(hash).or_insert(stored).into_value()
    }

    /// Inserts an object unless a newer one (by sequence number) is there;
    /// returns whether it was inserted.
    pub fn insert_unless_newer(&self, hash: [u8; 32], entry: Arc<Entry>) -> bool {
        use moka::ops::compute::{CompResult, Op};
        let result = self.entries.entry(hash).and_compute_with(|current| match current {
            Some(current)
                if matches!(current.value(), Stored::Object(o) if o.seq() > entry.seq()) =>
            {
                Op::Nop
            }
            _ => Op::Put(Stored::Object(entry.clone())),
        });
        matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        )
    }

    pub fn remove(&self, hash: &[u8; 32]) -> Option<Stored> {
        self.entries.remove(hash)
    }

    /// Removes the object under `hash` only if `doomed` says so of it, in
    /// one step: a newer object stored under the hash in the meantime stays.
    pub fn remove_if(&self, hash: &[u8; 32], doomed: impl FnOnce(&Stored) -> bool) {
        use moka::ops::compute::Op;
        self.entries
            .entry(*hash)
            .and_compute_with(|current| match current {
                Some(entry) if doomed(entry.value()) => Op::Remove,
                _ => Op::Nop,
            });
    }

    /// Runs the tier's pending bookkeeping now, on this thread, rather than
    /// leaving it to whichever lookup trips over it next.
    pub fn maintain(&self) {
        self.entries.run_pending_tasks();
    }

    /// Objects held, as last counted (cheap: no bookkeeping is run).
    pub fn objects_estimate(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Objects and bytes held, after pending evictions have run.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}
