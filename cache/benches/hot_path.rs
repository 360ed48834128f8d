//! The cache's share of every request: building a key from a request
//! target, looking it up in the memory tier (hit and miss), and cloning a
//! stored entry's header fields into a response head.
//!
//!     cargo bench -p outpost-cache --bench hot_path

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use outpost_cache::{
    Cache, CacheKey, Fetched, KeyFields, Lookup, PolicyOptions, StoreRules, SystemClock,
};
use outpost_config::QueryKey;

fn filled(objects: usize) -> (Cache, Vec<CacheKey>) {
    let cache = Cache::new(1 << 30, PolicyOptions::default(), Arc::new(SystemClock));
    let req = http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let keys: Vec<CacheKey> = (0..objects)
        .map(|i| {
            CacheKey::new(
                "https",
                "example.com",
                &format!("/static/{i}.css?v=3"),
                &QueryKey::All,
            )
        })
        .collect();
    for key in &keys {
        let res = http::Response::builder()
            .header("cache-control", "public, max-age=3600")
            .header("content-type", "text/css")
            .header("etag", "\"abc123\"")
            .header("last-modified", "Tue, 24 Nov 2026 10:00:00 GMT")
            .body(())
            .expect("response")
            .into_parts()
            .0;
        cache
            .store_whole(
                &Fetched::at(key, &req, &res, cache.now()),
                StoreRules::default(),
                &KeyFields::default(),
                Bytes::from_static(&[b'x'; 1024]),
            )
            .expect("storable");
    }
    (cache, keys)
}

fn hot_path(c: &mut Criterion) {
    c.bench_function("key/build", |b| {
        b.iter(|| {
            black_box(CacheKey::new(
                black_box("https"),
                black_box("Example.COM:443"),
                black_box("/a/b/c.js?z=1&a=%7e2&m=x"),
                &QueryKey::All,
            ))
        })
    });

    let (cache, keys) = filled(100_000);
    let req = http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let mut i = 0;
    c.bench_function("memory/lookup-hit (100k objects)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            let found = cache.lookup(black_box(&keys[i]), &req);
            assert!(matches!(found, Lookup::Fresh(_)));
            black_box(found)
        })
    });
    let missing = CacheKey::new("https", "example.com", "/nowhere", &QueryKey::All);
    c.bench_function("memory/lookup-miss", |b| {
        b.iter(|| black_box(cache.lookup(black_box(&missing), &req)))
    });

    let Lookup::Fresh(entry) = cache.lookup(&keys[0], &req) else {
        panic!("stored");
    };
    c.bench_function("headers/response-head-from-entry", |b| {
        b.iter(|| {
            let mut headers = black_box(entry.headers()).to_map(3);
            headers.insert(
                http::header::AGE,
                http::HeaderValue::from(entry.age(cache.now()).as_secs()),
            );
            headers.insert(
                "cache-status",
                http::HeaderValue::from_static("Outpost; hit"),
            );
            black_box(headers)
        })
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
