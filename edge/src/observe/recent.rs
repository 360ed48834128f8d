//! The last minute as the status page shows it: once a second the
//! request and byte counters are read into a ring of samples, so that
//! figures over the last minute, by site, are differences of the same
//! counters `/metrics` serves (nothing more is counted on the request
//! path); and the keys that miss and are bypassed most often, in bounded
//! top-k sketches (HeavyKeeper, whose counts decay as keys go cold).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heavykeeper::TopK;
use prometheus::IntCounter;
use prometheus::core::Collector;
use serde_json::{Value, json};

use crate::proxy::metrics::ProxyMetrics;

/// Samples kept: a minute of them, and the one before it.
const SAMPLES: usize = 61;
/// Keys each sketch reports.
const TOP_KEYS: usize = 10;

/// Requests by outcome label, per site, since the process started.
type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// One reading of the counters.
struct Sample {
    at: Instant,
    requests: Counts,
    bytes_out: u64,
    origin_bytes_in: u64,
}

/// The ring of samples and the top-k sketches.
pub(crate) struct Recent {
    samples: Mutex<VecDeque<Sample>>,
    missed: Mutex<TopK<String>>,
    bypassed: Mutex<TopK<String>>,
}

impl Default for Recent {
    fn default() -> Self {
        let sketch = || Mutex::new(TopK::new(TOP_KEYS, 1024, 4, 0.9));
        Self {
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            missed: sketch(),
            bypassed: sketch(),
        }
    }
}

impl Recent {
    /// A request for `key` (its text) went to the origin with nothing usable stored.
    pub(crate) fn missed(&self, key: &str) {
        self.missed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(key, 1);
    }

    /// A request for `key` passed the cache by (a rule's bypass).
    pub(crate) fn bypassed(&self, key: &str) {
        self.bypassed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(key, 1);
    }

    /// Reads the counters once a second for as long as the process runs.
    pub(crate) fn spawn_sampler(
        self: &Arc<Self>,
        metrics: Arc<ProxyMetrics>,
        origin_bytes: IntCounter,
    ) {
        let recent = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(recent) = recent.upgrade() else {
                    return;
                };
                recent.sample(&metrics, &origin_bytes);
            }
        });
    }

    fn sample(&self, metrics: &ProxyMetrics, origin_bytes: &IntCounter) {
        let sample = Sample {
            at: Instant::now(),
            requests: requests_by_site(metrics),
            bytes_out: metrics.client_bytes_out.get(),
            origin_bytes_in: origin_bytes.get(),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// The last minute (or as much of it as has been sampled): requests,
    /// hit ratio and requests per second by site, bandwidth, and the top
    /// missed and bypassed keys.
    pub(crate) fn summary(&self) -> Value {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
            return json!({"seconds": 0, "sites": [], "bytes_out_per_second": 0.0,
                          "origin_bytes_per_second": 0.0, "per_second": [],
                          "top_missed": top(&self.missed), "top_bypassed": top(&self.bypassed)});
        };
        let seconds = last.at.duration_since(first.at).as_secs_f64();
        let rate = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        let mut sites = Vec::new();
        for (site, now) in &last.requests {
            let before = first.requests.get(site);
            let delta = |outcome: &str| {
                let then = before.and_then(|b| b.get(outcome)).copied().unwrap_or(0);
                now.get(outcome).copied().unwrap_or(0).saturating_sub(then)
            };
            let total: u64 = now.keys().map(|outcome| delta(outcome)).sum();
            let (hits, stale, misses) = (delta("hit"), delta("stale"), delta("miss"));
            let lookups = hits + stale + misses + delta("collapsed");
            let per_second: Vec<u64> = samples
                .iter()
                .zip(samples.iter().skip(1))
                .map(|(a, b)| site_total(b, site).saturating_sub(site_total(a, site)))
                .collect();
            sites.push(json!({
                "site": site,
                "requests": total,
                "requests_per_second": rate(total),
                "hits": hits + stale,
                "misses": misses,
                "collapsed": delta("collapsed"),
                "bypassed": delta("bypass"),
                "errors": delta("error"),
                "hit_ratio": (lookups > 0).then(|| (hits + stale + delta("collapsed")) as f64 / lookups as f64),
                "per_second": per_second,
            }));
        }
        let all: Vec<u64> = samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| total(b).saturating_sub(total(a)))
            .collect();
        json!({
            "seconds": seconds.round(),
            "sites": sites,
            "requests": total(last).saturating_sub(total(first)),
            "per_second": all,
            "bytes_out_per_second": rate(last.bytes_out.saturating_sub(first.bytes_out)),
            "origin_bytes_per_second": rate(last.origin_bytes_in.saturating_sub(first.origin_bytes_in)),
            "top_missed": top(&self.missed),
            "top_bypassed": top(&self.bypassed),
        })
    }
}

/// `outpost_requests_total` summed over status classes: by site, then outcome.
fn requests_by_site(metrics: &ProxyMetrics) -> Counts {
    let mut counts = Counts::new();
    for family in metrics.requests.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            // Requests no site serves are Outpost's own refusals.
            let site = label("site");
            let value = metric.get_counter().value() as u64;
            *counts
                .entry(site)
                .or_default()
                .entry(label("cache_status"))
                .or_default() += value;
        }
    }
    counts
}

fn site_total(sample: &Sample, site: &str) -> u64 {
    sample.requests.get(site).map_or(0, |o| o.values().sum())
}

fn total(sample: &Sample) -> u64 {
    sample.requests.values().flat_map(|o| o.values()).sum()
}

/// A sketch's keys, most frequent first, with their (decayed) counts.
fn top(sketch: &Mutex<TopK<String>>) -> Value {
    let nodes = sketch.lock().unwrap_or_else(|p| p.into_inner()).list();
    nodes
        .into_iter()
        .map(|node| json!({"key": node.item, "count": node.count}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> ProxyMetrics {
        ProxyMetrics::register(&prometheus::Registry::new()).unwrap()
    }

    /// Figures over the window are differences of the counters, by site.
    #[test]
    fn the_minute_is_the_difference_of_the_counters() {
        let metrics = metrics();
        let origin = IntCounter::new("origin_bytes", "test").unwrap();
        let recent = Recent::default();
        metrics
            .requests
            .with_label_values(&["hit", "a.test", "2xx"])
            .inc_by(5);
        recent.sample(&metrics, &origin);
        for (outcome, n) in [("hit", 6), ("miss", 2)] {
            metrics
                .requests
                .with_label_values(&[outcome, "a.test", "2xx"])
                .inc_by(n);
        }
        metrics
            .requests
            .with_label_values(&["bypass", "b.test", "2xx"])
            .inc();
        metrics.client_bytes_out.inc_by(4000);
        recent.sample(&metrics, &origin);
        let summary = recent.summary();
        assert_eq!(summary["requests"], 9, "{summary}");
        let a = &summary["sites"][0];
        assert_eq!(a["site"], "a.test");
        assert_eq!(a["requests"], 8);
        assert_eq!(a["hits"], 6);
        assert_eq!(a["misses"], 2);
        assert_eq!(a["hit_ratio"], 0.75);
        assert_eq!(a["per_second"], json!([8]));
        assert_eq!(summary["sites"][1]["bypassed"], 1);
        assert!(summary["sites"][1]["hit_ratio"].is_null());
    }

    #[test]
    fn the_top_keys_come_most_frequent_first_and_stay_bounded() {
        let recent = Recent::default();
        for i in 0..500 {
            recent.missed(&format!("http://a.test/{}", i % 50));
            recent.missed("http://a.test/hot");
        }
        let summary = recent.summary();
        let top = summary["top_missed"].as_array().unwrap();
        assert_eq!(top.len(), TOP_KEYS);
        assert_eq!(top[0]["key"], "http://a.test/hot");
        assert!(summary["top_bypassed"].as_array().unwrap().is_empty());
    }
}
