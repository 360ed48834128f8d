//! Prefix purges as their number grows: the time one purge of n prefixes
//! takes (n from 1k to 100k, each over a cache of 100k objects under those
//! prefixes), the hit latency on another host while a 100k-prefix purge
//! runs, and the hit latency on the purged host once its 100k prefix marks
//! are held (every lookup there is judged against them).
//!
//!     cargo bench -p outpost-cache --bench purge_prefixes

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use outpost_cache::{Cache, CacheKey, Lookup, PolicyOptions, SystemClock};
use outpost_config::QueryKey;

mod support;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const OBJECTS: usize = 100_000;
const HOT: usize = 10_000;

fn key(url: &str) -> CacheKey {
    CacheKey::from_url(url, &QueryKey::All).expect("key")
}

fn store(cache: &Cache, key: &CacheKey) {
    support::store(
        cache,
        key,
        &[("cache-control", "max-age=3600")],
        Bytes::from_static(b"x"),
    );
}

fn filled() -> (Arc<Cache>, Vec<CacheKey>) {
    let cache = Arc::new(Cache::new(
        8 << 30,
        PolicyOptions::default(),
        Arc::new(SystemClock),
    ));
    for i in 0..OBJECTS {
        store(&cache, &key(&format!("http://example.com/p/{i}/x")));
    }
    let hot: Vec<CacheKey> = (0..HOT)
        .map(|i| key(&format!("http://other.example/hot/{i}")))
        .collect();
    for key in &hot {
        store(&cache, key);
    }
    (cache, hot)
}

fn prefixes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("example.com/p/{i}/")).collect()
}

fn lookups(cache: &Cache, keys: &[CacheKey], until: &AtomicBool, at_most: usize) -> Histogram<u64> {
    let req = http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let mut histogram = Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram");
    for i in 0..at_most {
        if until.load(Ordering::Relaxed) {
            break;
        }
        let key = &keys[i % keys.len()];
        let started = Instant::now();
        let found = cache.lookup(key, &req);
        histogram.saturating_record(
            u64::try_from(started.elapsed().as_nanos())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        assert!(
            matches!(found, Lookup::Fresh(_)),
            "a hot object went missing"
        );
    }
    histogram
}

fn show(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<40} n {:>8}  p50 {:>6} ns  p99.9 {:>8} ns  max {:>10} ns",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn main() {
    println!("one purge of n prefixes (median of 3, fresh cache of {OBJECTS} objects each)");
    for n in [1_000, 10_000, 20_000, 100_000] {
        let mut runs: Vec<Duration> = (0..3)
            .map(|_| {
                let (cache, _) = filled();
                let list = prefixes(n);
                let started = Instant::now();
                let matched = cache.purge_prefixes(&list, false);
                let spent = started.elapsed();
                assert_eq!(matched, n);
                spent
            })
            .collect();
        runs.sort();
        let median = runs[1];
        println!(
            "  {n:>7} prefixes  {median:>12.3?}  {:>7.0} ns a prefix",
            median.as_nanos() as f64 / n as f64
        );
    }

    let (cache, hot) = filled();
    let never = AtomicBool::new(false);
    let idle = lookups(&cache, &hot, &never, 1_000_000);
    let done = Arc::new(AtomicBool::new(false));
    let purger = {
        let (cache, done) = (cache.clone(), done.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            cache.purge_prefixes(&prefixes(OBJECTS), false);
            let spent = started.elapsed();
            done.store(true, Ordering::Relaxed);
            spent
        })
    };
    let busy = lookups(&cache, &hot, &done, usize::MAX);
    let spent = purger.join().expect("purger");
    show("hits on another host, idle", &idle);
    show("hits on another host, during the purge", &busy);
    println!("  (the purge of {OBJECTS} prefixes took {spent:.3?})");

    // Hits on the purged host itself, refilled, judged against 100k marks.
    let refilled: Vec<CacheKey> = (0..HOT)
        .map(|i| key(&format!("http://example.com/p/{i}/x")))
        .collect();
    for key in &refilled {
        store(&cache, key);
    }
    let unmarked: Vec<CacheKey> = (0..HOT)
        .map(|i| key(&format!("http://example.com/q/{i}/x")))
        .collect();
    for key in &unmarked {
        store(&cache, key);
    }
    show(
        "hits under 100k prefix marks",
        &lookups(&cache, &refilled, &never, 1_000_000),
    );
    show(
        "hits beside 100k prefix marks",
        &lookups(&cache, &unmarked, &never, 1_000_000),
    );
}
