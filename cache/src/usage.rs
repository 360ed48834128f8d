//! Sizes and counts of the cache, for `/stats` and metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Cache;
use crate::disk;

/// Sizes of the cache, for `/stats` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    /// Objects evicted from the memory tier for room, since the start.
    pub memory_evictions: u64,
    /// Lookups the memory tier answered, and those it did not, since the start.
    pub memory_hits: u64,
    pub memory_misses: u64,
    /// The disk tier, once open.
    pub disk: Option<DiskUsage>,
    /// Whether a disk tier is configured but not open yet (a successor
    /// waiting for its predecessor to close it, or a disk without room).
    pub disk_pending: bool,
    /// Disk faults since the start: reads and writes that failed, and
    /// failures to open the tier.
    pub disk_faults: u64,
}

/// The disk tier's counts since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub capacity: u64,
    /// Objects held (the tier's own count; see `disk/catalog.rs`).
    pub objects: u64,
    /// Bytes of blocks holding records.
    pub bytes: u64,
    /// Records (heads and chunks) evicted to make room.
    pub evictions: u64,
    pub hits: u64,
    pub misses: u64,
    /// Records found damaged or incomplete (and dropped).
    pub damaged: u64,
    /// Reads that failed.
    pub errors: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
}

impl Cache {
    /// Objects in the memory tier, as last counted: cheap enough to poll,
    /// where [`Cache::usage`] first runs the tier's pending bookkeeping.
    pub fn objects_estimate(&self) -> u64 {
        self.memory.objects_estimate()
    }

    pub fn usage(&self) -> Usage {
        let (memory_objects, memory_bytes) = self.memory.usage();
        let disk = self.disk.get().map(|disk| {
            let stats = disk.stats();
            let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let (bytes_written, bytes_read) = disk.io_bytes();
            let (bytes, evictions) = disk.occupancy();
            DiskUsage {
                capacity: disk.capacity(),
                objects: disk.objects(),
                bytes,
                evictions,
                hits: count(&stats.hits),
                misses: count(&stats.misses),
                damaged: count(&stats.damaged),
                errors: count(&stats.errors) + disk::store_errors(),
                bytes_written,
                bytes_read,
            }
        });
        Usage {
            memory_objects,
            memory_bytes,
            memory_evictions: self.memory.evictions(),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            memory_misses: self.memory_misses.load(Ordering::Relaxed),
            disk_pending: self.disk_pending(),
            disk_faults: disk.map_or(disk::store_errors(), |d| d.errors),
            disk,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testing::*;
    use crate::{PolicyOptions, SystemClock};

    /// Objects pushed out for room are counted; purged ones are not.
    #[test]
    fn evictions_for_room_are_counted() {
        let cache = Cache::new(64 * 1024, PolicyOptions::default(), Arc::new(SystemClock));
        for i in 0..200 {
            store_tagged(&cache, &format!("http://a.test/{i}"), "t");
        }
        let usage = cache.usage();
        assert!(usage.memory_evictions > 0, "{usage:?}");
        assert_eq!(
            usage.memory_evictions + usage.memory_objects,
            200,
            "every object is either held or evicted"
        );
        let before = usage.memory_evictions;
        cache.purge_tags(&["t".into()], false);
        assert_eq!(cache.usage().memory_evictions, before);
    }
}
