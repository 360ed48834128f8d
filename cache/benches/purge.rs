//! Purge speed: a tag purge of 100k objects, purge everything with 1k and
//! with 1M objects, and a prefix purge over 1M objects. Each figure is the
//! median of 5 runs on a freshly filled cache.
//!
//!     cargo bench -p outpost-cache --bench purge

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use outpost_cache::{Cache, CacheKey, Fetched, KeyFields, PolicyOptions, StoreRules, SystemClock};
use outpost_config::QueryKey;

fn filled(objects: usize, tagged: usize) -> Cache {
    let cache = Cache::new(8 << 30, PolicyOptions::default(), Arc::new(SystemClock));
    let req = http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    for i in 0..objects {
        let tag = if i < tagged { "hot" } else { "cold" };
        let res = http::Response::builder()
            .header("cache-control", "max-age=3600")
            .header("surrogate-key", tag)
            .body(())
            .expect("response")
            .into_parts()
            .0;
        let dir = if i % 10 == 0 { "static" } else { "page" };
        let key = CacheKey::from_url(&format!("http://example.com/{dir}/{i}"), &QueryKey::All)
            .expect("key");
        cache
            .store_whole(
                &Fetched::at(&key, &req, &res, cache.now()),
                StoreRules::default(),
                &KeyFields::default(),
                Bytes::from_static(b"x"),
            )
            .expect("storable");
    }
    cache
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn measure(name: &str, objects: usize, tagged: usize, purge: impl Fn(&Cache) -> usize) {
    let mut runs = Vec::new();
    let mut matched = 0;
    for _ in 0..5 {
        let cache = filled(objects, tagged);
        let started = Instant::now();
        matched = purge(&cache);
        runs.push(started.elapsed());
    }
    println!(
        "{name:<44} {objects:>9} objects  matched {matched:>9}  median {:?}",
        median(runs)
    );
}

fn main() {
    measure("tags: [hot] (100k of 200k tagged)", 200_000, 100_000, |c| {
        c.purge_tags(&["hot".into()], false)
    });
    measure("everything", 1_000, 0, |c| c.purge_everything(false));
    measure("everything", 1_000_000, 0, |c| c.purge_everything(false));
    measure("prefixes: [example.com/static/]", 1_000_000, 0, |c| {
        c.purge_prefixes(&["example.com/static/".into()], false)
    });
}
