//! Hit latency while a large purge runs: lookups of 10k hot objects, timed
//! one by one into HDR histograms, first with nothing else running, then
//! while another thread purges 100k objects by tag, from the purge call
//! until their memory is reclaimed (the cache is refilled between rounds,
//! and lookups made during a refill are not counted). Prints p50, p99 and
//! p99.9 of both and their ratio.
//!
//!     cargo bench -p outpost-cache --bench purge_hits

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use outpost_cache::{Cache, CacheKey, Lookup, PolicyOptions, SystemClock};
use outpost_config::QueryKey;

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOT: usize = 10_000;
const PURGED: usize = 100_000;
const LOOKUPS: usize = 2_000_000;

fn key(name: &str, i: usize) -> CacheKey {
    CacheKey::from_url(&format!("http://example.com/{name}/{i}"), &QueryKey::All).expect("key")
}

fn store(cache: &Cache, key: &CacheKey, tag: &str) {
    support::store(
        cache,
        key,
        &[("cache-control", "max-age=3600"), ("surrogate-key", tag)],
        Bytes::from_static(b"0123456789abcdef"),
    );
}

const REFILLING: u8 = 0;
const PURGING: u8 = 1;

/// Times `LOOKUPS` lookups of the hot keys, in nanoseconds; with `phase`,
/// only those made while it says PURGING.
fn lookups(cache: &Cache, hot: &[CacheKey], phase: Option<&AtomicU8>) -> Histogram<u64> {
    let req = http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let mut histogram = Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("histogram");
    for i in 0..LOOKUPS {
        let key = &hot[i % hot.len()];
        let started = Instant::now();
        let found = cache.lookup(key, &req);
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        assert!(
            matches!(found, Lookup::Fresh(_)),
            "a hot object went missing"
        );
        if phase.is_none_or(|p| p.load(Ordering::Relaxed) == PURGING) {
            histogram.saturating_record(spent.max(1));
        }
    }
    histogram
}

fn main() {
    let cache = Arc::new(Cache::new(
        8 << 30,
        PolicyOptions::default(),
        Arc::new(SystemClock),
    ));
    let hot: Vec<CacheKey> = (0..HOT).map(|i| key("hot", i)).collect();
    for key in &hot {
        store(&cache, key, "hot");
    }
    let cold: Vec<CacheKey> = (0..PURGED).map(|i| key("cold", i)).collect();
    for key in &cold {
        store(&cache, key, "cold");
    }

    let idle = lookups(&cache, &hot, None);

    let done = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(REFILLING));
    let purger = {
        let (cache, done, phase) = (cache.clone(), done.clone(), phase.clone());
        std::thread::spawn(move || {
            let mut purges = 0;
            let mut slowest = std::time::Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                phase.store(PURGING, Ordering::Relaxed);
                let started = Instant::now();
                let matched = cache.purge_tags(&["cold".into()], false);
                assert_eq!(matched, PURGED);
                // Until the background removal has freed them all (polled
                // cheaply: `usage` would run the tier's bookkeeping here and
                // stand in the lookups' way itself).
                while cache.objects_estimate() > HOT as u64 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                slowest = slowest.max(started.elapsed());
                purges += 1;
                phase.store(REFILLING, Ordering::Relaxed);
                for key in &cold {
                    store(&cache, key, "cold");
                }
            }
            (purges, slowest)
        })
    };
    let busy = lookups(&cache, &hot, Some(&phase));
    done.store(true, Ordering::Relaxed);
    let (purges, slowest) = purger.join().expect("purger");

    let show = |name: &str, h: &Histogram<u64>| {
        println!(
            "{name:<22} p50 {:>6} ns  p99 {:>6} ns  p99.9 {:>7} ns  max {:>9} ns",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    };
    show("hits, idle", &idle);
    show("hits, during purges", &busy);
    println!(
        "p99 ratio {:.2}  ({purges} tag purges of {PURGED} objects, each reclaimed within {slowest:?})",
        busy.value_at_quantile(0.99) as f64 / idle.value_at_quantile(0.99) as f64
    );
}
