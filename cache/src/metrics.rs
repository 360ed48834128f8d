//! The cache's metrics: objects, bytes, evictions, lookups and faults by
//! tier. The cache counts them itself ([`Cache::usage`]); this collector,
//! registered in the process's registry, reads them when `/metrics` is
//! scraped, so the request path pays nothing for them.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::Cache;

/// The cache's series, brought up to date on every scrape.
pub struct CacheMetrics {
    cache: Arc<Cache>,
    objects: IntGaugeVec,
    bytes: IntGaugeVec,
    evictions: IntCounterVec,
    hits: IntCounterVec,
    misses: IntCounterVec,
    capacity: IntGaugeVec,
    disk_errors: IntCounterVec,
    disk_io_bytes: IntCounterVec,
    disk_open: IntGauge,
}

impl CacheMetrics {
    /// Registers the cache's series in `registry`.
    pub fn register(registry: &Registry, cache: Arc<Cache>) -> Result<(), prometheus::Error> {
        let by =
            |name: &str, help: &str, label: &str| IntGaugeVec::new(Opts::new(name, help), &[label]);
        let counted = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let metrics = CacheMetrics {
            cache,
            objects: by("outpost_cache_objects", "Objects stored, by tier.", "tier")?,
            bytes: by("outpost_cache_bytes", "Bytes stored, by tier.", "tier")?,
            evictions: counted(
                "outpost_cache_evictions_total",
                "Objects evicted to make room, by tier.",
                "tier",
            )?,
            hits: counted(
                "outpost_cache_hits_total",
                "Lookups a tier answered with a stored object, by tier.",
                "tier",
            )?,
            misses: counted(
                "outpost_cache_misses_total",
                "Lookups a tier held nothing for, by tier.",
                "tier",
            )?,
            capacity: by(
                "outpost_cache_capacity_bytes",
                "Bytes each tier may hold, by tier.",
                "tier",
            )?,
            disk_errors: counted(
                "outpost_disk_errors_total",
                "Disk tier faults: reads that failed (io) and records that did not check (damaged).",
                "kind",
            )?,
            disk_io_bytes: counted(
                "outpost_disk_io_bytes_total",
                "Bytes the disk tier wrote and read, by direction.",
                "direction",
            )?,
            disk_open: IntGauge::new(
                "outpost_disk_open",
                "1 once the disk tier is open, 0 while it is configured but not open yet.",
            )?,
        };
        registry.register(Box::new(metrics))
    }

    /// Brings every series up to date with the cache's own counts.
    fn refresh(&self) {
        let usage = self.cache.usage();
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        // Counters only go up: each takes the difference to the total.
        let catch_up = |counter: &IntCounterVec, label: &str, total: u64| {
            let counter = counter.with_label_values(&[label]);
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        self.objects
            .with_label_values(&["memory"])
            .set(clamp(usage.memory_objects));
        self.bytes
            .with_label_values(&["memory"])
            .set(clamp(usage.memory_bytes));
        catch_up(&self.evictions, "memory", usage.memory_evictions);
        catch_up(&self.hits, "memory", usage.memory_hits);
        catch_up(&self.misses, "memory", usage.memory_misses);
        self.disk_open.set(i64::from(usage.disk.is_some()));
        catch_up(&self.disk_errors, "io", usage.disk_faults);
        if let Some(disk) = usage.disk {
            catch_up(&self.hits, "disk", disk.hits);
            catch_up(&self.misses, "disk", disk.misses);
            catch_up(&self.disk_errors, "damaged", disk.damaged);
            catch_up(&self.disk_io_bytes, "write", disk.bytes_written);
            catch_up(&self.disk_io_bytes, "read", disk.bytes_read);
            catch_up(&self.evictions, "disk", disk.evictions);
            self.capacity
                .with_label_values(&["disk"])
                .set(clamp(disk.capacity));
            self.bytes
                .with_label_values(&["disk"])
                .set(clamp(disk.bytes));
            self.objects
                .with_label_values(&["disk"])
                .set(clamp(disk.objects));
        }
    }

    fn parts(&self) -> [&dyn Collector; 9] {
        [
            &self.objects,
            &self.bytes,
            &self.evictions,
            &self.hits,
            &self.misses,
            &self.capacity,
            &self.disk_errors,
            &self.disk_io_bytes,
            &self.disk_open,
        ]
    }
}

impl Collector for CacheMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.parts()
            .into_iter()
            .flat_map(|part| part.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        self.parts()
            .into_iter()
            .flat_map(|part| part.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use outpost_config::QueryKey;
    use prometheus::{Encoder, TextEncoder};

    use super::*;
    use crate::testing::{get, store_tagged};
    use crate::{CacheKey, PolicyOptions, SystemClock};

    fn render(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The series follow the cache between scrapes, counters never going down.
    #[test]
    fn a_scrape_reads_the_cache_as_it_is() {
        let cache = Arc::new(Cache::new(
            1 << 20,
            PolicyOptions::default(),
            Arc::new(SystemClock),
        ));
        let registry = Registry::new();
        CacheMetrics::register(&registry, cache.clone()).unwrap();
        let text = render(&registry);
        assert!(
            text.contains("outpost_cache_objects{tier=\"memory\"} 0"),
            "{text}"
        );
        assert!(text.contains("outpost_disk_open 0"), "{text}");
        store_tagged(&cache, "http://a.test/x", "");
        let key = CacheKey::from_url("http://a.test/x", &QueryKey::All).unwrap();
        cache.lookup(&key, &get(&[]));
        let text = render(&registry);
        assert!(
            text.contains("outpost_cache_objects{tier=\"memory\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("outpost_cache_hits_total{tier=\"memory\"} 1"),
            "{text}"
        );
    }
}
