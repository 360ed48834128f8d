//! `GET /stats`: the cache's sizes and hit ratio, and the origins' health.

use serde_json::json;

use crate::{Admin, metrics};

impl Admin {
    /// `GET /stats`: the cache's size and hit ratio, and the origins' health.
    pub(crate) fn stats(&self) -> serde_json::Value {
        let usage = self.cache.usage();
        let requests = metrics::counts_by(&self.registry, "outpost_requests_total", "cache_status");
        let count = |status: &str| requests.get(status).copied().unwrap_or(0);
        let (hits, stale, misses) = (count("hit"), count("stale"), count("miss"));
        let lookups = hits + stale + misses;
        let hit_ratio = if lookups == 0 {
            0.0
        } else {
            (hits + stale) as f64 / lookups as f64
        };
        json!({
            "cache": {
                "memory": {
                    "objects": usage.memory_objects,
                    "bytes": usage.memory_bytes,
                    "evictions": usage.memory_evictions,
                    "hits": usage.memory_hits,
                    "misses": usage.memory_misses,
                },
                "disk": usage.disk.map(|disk| json!({
                    "capacity": disk.capacity,
                    "objects": disk.objects,
                    "bytes": disk.bytes,
                    "evictions": disk.evictions,
                    "hits": disk.hits,
                    "misses": disk.misses,
                    "damaged": disk.damaged,
                    "errors": disk.errors,
                    "bytes_written": disk.bytes_written,
                    "bytes_read": disk.bytes_read,
                })),
                "disk_pending": usage.disk_pending,
            },
            "requests": {
                "hit": hits,
                "stale": stale,
                "miss": misses,
                "bypass": count("bypass"),
                "redirect": count("redirect"),
                "error": count("error"),
            },
            "hit_ratio": hit_ratio,
            "origins": (self.origins)(),
        })
    }
}

/// The state of the origin pools, as the edge reports it.
pub type OriginsSource = dyn Fn() -> Vec<PoolStatus> + Send + Sync;

/// One origin pool in `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    pub name: String,
    pub servers: Vec<ServerStatus>,
}

/// One origin server (one address) in `/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServerStatus {
    /// The URL as configured.
    pub url: String,
    /// The address it resolved to.
    pub address: String,
    /// Takes traffic: passes its checks and is not ejected.
    pub healthy: bool,
    pub passes_checks: bool,
    /// Milliseconds left in a passive ejection; 0 when not ejected.
    pub ejected_for_ms: u64,
    pub in_flight: usize,
    /// Passive ejections since the process started.
    pub ejections: u64,
    /// Moving average of the time to a response head; None before the first.
    pub latency_ms: Option<f64>,
    /// Label used for this server in metrics.
    #[serde(skip)]
    pub label: String,
}
