//! The memory tier: a moka cache weighed in bytes, with TinyLFU admission.

use std::sync::Arc;

use crate::entry::Entry;

pub struct MemoryTier {
    entries: moka::sync::Cache<[u8; 32], Arc<Entry>>,
}

impl MemoryTier {
    /// A tier that holds at most `capacity` bytes of entries.
    pub fn new(capacity: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_key, entry: &Arc<Entry>| entry.weight())
            .build();
        Self { entries }
    }

    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<Entry>> {
        self.entries.get(hash)
    }

    pub fn insert(&self, hash: [u8; 32], entry: Arc<Entry>) {
        self.entries.insert(hash, entry);
    }

    pub fn remove(&self, hash: &[u8; 32]) -> bool {
        self.entries.remove(hash).is_some()
    }

    /// Objects and bytes held, after pending evictions have run.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}
