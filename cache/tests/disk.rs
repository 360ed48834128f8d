//! The disk tier below memory: objects survive a restart (a new `Cache` on
//! the same directory), large bodies are chunked and read by range, damage
//! reads as a miss, and purges stay in force after a restart.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{request, response};
use outpost_cache::{
    CHUNK, Cache, CacheKey, DiskTier, Fetched, KeyFields, Lookup, ManualClock, PolicyOptions,
    StoreRules, Storing,
};
use outpost_config::QueryKey;

const MEMORY: u64 = 64 << 20;
const DISK: u64 = 64 << 20;

async fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Cache {
    let disk = DiskTier::open(dir, DISK).await.expect("test setup");
    Cache::with_disk(MEMORY, disk, PolicyOptions::default(), clock).expect("test setup")
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemTime::now()))
}

fn get(headers: &[(&str, &str)]) -> request::Parts {
    let mut b = request::Request::get("/x");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("test setup").into_parts().0
}

fn ok(headers: &[(&str, &str)]) -> response::Parts {
    let mut b = response::Response::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).expect("test setup").into_parts().0
}

fn key(url: &str) -> CacheKey {
    CacheKey::from_url(url, &QueryKey::All).expect("test setup")
}

/// Admits a GET of `url` (with `request` fields) answered with `headers`
/// and a body of `length` bytes, now.
fn admit(
    cache: &Cache,
    url: &str,
    request: &[(&str, &str)],
    headers: &[(&str, &str)],
    length: usize,
) -> Storing {
    let (key, request, response) = (key(url), get(request), ok(headers));
    let fetched = Fetched::at(&key, &request, &response, cache.now());
    cache
        .admit(
            &fetched,
            StoreRules::default(),
            &KeyFields::default(),
            Some(length as u64),
            1 << 30,
        )
        .expect("storable")
}

/// Stores `body` for `url` through the streaming path, in pieces.
fn store(cache: &Cache, url: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut storing = admit(cache, url, &[], headers, body.len());
    for piece in body.chunks(10_000) {
        assert!(storing.push(piece));
    }
    cache.finish(storing).expect("stored");
}

/// [`store`], waiting for the disk whenever the fill runs ahead of it.
async fn store_paced(cache: &Cache, url: &str, body: &[u8]) {
    let headers = [("cache-control", "max-age=600")];
    let mut storing = admit(cache, url, &[], &headers, body.len());
    for piece in body.chunks(16 << 10) {
        assert!(storing.push(piece));
        if let Some(backlog) = storing.backlog() {
            backlog.await;
        }
    }
    cache.finish(storing).expect("stored");
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

async fn read_all(cache: &Cache, entry: &outpost_cache::Entry) -> Vec<u8> {
    if let Some(body) = entry.resident_body() {
        return body.to_vec();
    }
    let chunks = *entry.chunks().expect("test setup");
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(cache.disk().expect("test setup").stream(
        chunks,
        0,
        chunks.len() - 1
    ));
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.expect("test setup"));
    }
    out
}

async fn fresh(cache: &Cache, url: &str) -> Option<Arc<outpost_cache::Entry>> {
    match cache.lookup_tiered(&key(url), &get(&[])).await {
        Lookup::Fresh(entry) => Some(entry),
        _ => None,
    }
}

#[tokio::test]
async fn objects_small_and_chunked_survive_a_restart_with_their_age() {
    let dir = tempfile::tempdir().expect("test setup");
    let clock = clock();
    let small = body(1000);
    let large = body(3 * CHUNK + 123);
    {
        let cache = open(dir.path(), clock.clone()).await;
        store(
            &cache,
            "http://a.test/small",
            &[("cache-control", "max-age=600")],
            &small,
        );
        store(
            &cache,
            "http://a.test/large",
            &[("cache-control", "max-age=600")],
            &large,
        );
        cache.close().await;
    }
    clock.advance(Duration::from_secs(30));
    let cache = open(dir.path(), clock.clone()).await;
    let entry = fresh(&cache, "http://a.test/small")
        .await
        .expect("test setup");
    assert_eq!(read_all(&cache, &entry).await, small);
    // RFC 9111 §4.2.3: resident time counts across the restart.
    assert_eq!(entry.age(cache.now()), Duration::from_secs(30));
    let entry = fresh(&cache, "http://a.test/large")
        .await
        .expect("test setup");
    assert_eq!(entry.body_len(), large.len() as u64);
    assert_eq!(read_all(&cache, &entry).await, large);
    assert!(fresh(&cache, "http://a.test/other").await.is_none());
}

#[tokio::test]
async fn a_range_reads_only_the_chunks_it_covers() {
    let dir = tempfile::tempdir().expect("test setup");
    let cache = open(dir.path(), clock()).await;
    let large = body(40 * CHUNK);
    store(
        &cache,
        "http://a.test/big",
        &[("cache-control", "max-age=600")],
        &large,
    );
    cache.close().await;
    let cache = open(dir.path(), clock()).await;
    let entry = fresh(&cache, "http://a.test/big")
        .await
        .expect("test setup");
    let chunks = *entry.chunks().expect("test setup");
    let disk = cache.disk().expect("test setup");
    let (_, read_before) = disk.io_bytes();
    let start = 20 * CHUNK as u64 + 5;
    let end = start + 99;
    let mut got = Vec::new();
    let mut stream = std::pin::pin!(disk.stream(chunks, start, end));
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.expect("test setup"));
    }
    assert_eq!(got, large[start as usize..=end as usize]);
    let (_, read_after) = disk.io_bytes();
    assert!(
        read_after - read_before < 3 * CHUNK as u64,
        "read {} bytes for a 100-byte range",
        read_after - read_before
    );
}

#[tokio::test]
async fn damaged_files_read_as_misses_never_as_wrong_bytes() {
    let dir = tempfile::tempdir().expect("test setup");
    let clock = clock();
    let small = body(5000);
    {
        let cache = open(dir.path(), clock.clone()).await;
        for i in 0..50 {
            store(
                &cache,
                &format!("http://a.test/{i}"),
                &[("cache-control", "max-age=600")],
                &small,
            );
        }
        cache.close().await;
    }
    // Flip bytes all over the tier's files (not the purge journal).
    for file in std::fs::read_dir(dir.path()).expect("test setup") {
        let path = file.expect("test setup").path();
        if path.file_name().expect("test setup") == "purges" {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("test setup");
        for at in (0..bytes.len()).step_by(997) {
            bytes[at] ^= 0x5a;
        }
        std::fs::write(&path, bytes).expect("test setup");
    }
    let cache = open(dir.path(), clock.clone()).await;
    let mut misses = 0;
    for i in 0..50 {
        match fresh(&cache, &format!("http://a.test/{i}")).await {
            Some(entry) => assert_eq!(read_all(&cache, &entry).await, small),
            None => misses += 1,
        }
    }
    assert!(misses > 0, "the damage went unnoticed");
}

#[tokio::test]
async fn purges_stay_in_force_after_a_restart() {
    let dir = tempfile::tempdir().expect("test setup");
    let clock = clock();
    let tagged = [("cache-control", "max-age=600"), ("surrogate-key", "red")];
    {
        let cache = open(dir.path(), clock.clone()).await;
        store(
            &cache,
            "http://a.test/url",
            &[("cache-control", "max-age=600")],
            b"u",
        );
        store(&cache, "http://a.test/tag", &tagged, b"t");
        store(
            &cache,
            "http://b.test/p/x",
            &[("cache-control", "max-age=600")],
            b"p",
        );
        store(
            &cache,
            "http://c.test/host",
            &[("cache-control", "max-age=600")],
            b"h",
        );
        store(
            &cache,
            "http://a.test/soft",
            &[("cache-control", "max-age=600")],
            b"s",
        );
        store(
            &cache,
            "http://a.test/kept",
            &[("cache-control", "max-age=600")],
            b"k",
        );
        // After the restart only the disk copies are left: the purges must
        // still reach them.
        cache.purge_urls(&[key("http://a.test/url")], false);
        cache.purge_tags(&["red".into()], false);
        cache.purge_prefixes(&["b.test/p/".into()], false);
        cache.purge_hosts(&["c.test".into()], false);
        cache.purge_urls(&[key("http://a.test/soft")], true);
        cache.close().await;
    }
    let cache = open(dir.path(), clock.clone()).await;
    for gone in [
        "http://a.test/url",
        "http://a.test/tag",
        "http://b.test/p/x",
        "http://c.test/host",
    ] {
        assert!(
            matches!(
                cache.lookup_tiered(&key(gone), &get(&[])).await,
                Lookup::Miss
            ),
            "{gone} came back after a restart"
        );
    }
    assert!(matches!(
        cache
            .lookup_tiered(&key("http://a.test/soft"), &get(&[]))
            .await,
        Lookup::Stale(_)
    ));
    assert!(fresh(&cache, "http://a.test/kept").await.is_some());
    // And a purge of everything, after another restart.
    cache.purge_everything(false);
    cache.close().await;
    let cache = open(dir.path(), clock.clone()).await;
    assert!(fresh(&cache, "http://a.test/kept").await.is_none());
}

#[tokio::test]
async fn vary_variants_come_back_from_disk() {
    let dir = tempfile::tempdir().expect("test setup");
    let clock = clock();
    {
        let cache = open(dir.path(), clock.clone()).await;
        for lang in ["en", "fr"] {
            let storing = admit(
                &cache,
                "http://a.test/v",
                &[("accept-language", lang)],
                &[
                    ("cache-control", "max-age=600"),
                    ("vary", "accept-language"),
                ],
                lang.len(),
            );
            cache.insert(storing, Bytes::from(lang));
        }
        cache.close().await;
    }
    let cache = open(dir.path(), clock.clone()).await;
    for lang in ["fr", "en"] {
        match cache
            .lookup_tiered(&key("http://a.test/v"), &get(&[("accept-language", lang)]))
            .await
        {
            Lookup::Fresh(entry) => assert_eq!(entry.resident_body(), Some(&Bytes::from(lang))),
            other => panic!("{lang}: {other:?}"),
        }
    }
    assert!(matches!(
        cache
            .lookup_tiered(&key("http://a.test/v"), &get(&[("accept-language", "de")]))
            .await,
        Lookup::VaryMiss
    ));
}

#[tokio::test]
async fn one_process_at_a_time_and_a_successor_waits_for_the_close() {
    let dir = tempfile::tempdir().expect("test setup");
    let first = DiskTier::open(dir.path(), DISK).await.expect("test setup");
    assert!(matches!(
        DiskTier::open(dir.path(), DISK).await,
        Err(outpost_cache::DiskError::Busy(_))
    ));
    let path = dir.path().to_owned();
    let waiting = tokio::spawn(async move { DiskTier::open_when_free(&path, DISK).await });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    first.close().await.expect("test setup");
    waiting.await.expect("test setup").expect("test setup");
}

#[tokio::test]
async fn purges_made_before_the_disk_is_attached_are_journaled() {
    let dir = tempfile::tempdir().expect("test setup");
    let clock = clock();
    {
        let cache = open(dir.path(), clock.clone()).await;
        store(
            &cache,
            "http://a.test/x",
            &[("cache-control", "max-age=600")],
            b"x",
        );
        cache.close().await;
    }
    {
        // A successor: serving, and purging, before its disk tier is open.
        let cache = Cache::tiered(MEMORY, PolicyOptions::default(), clock.clone());
        cache.purge_hosts(&["a.test".into()], false);
        let disk = DiskTier::open(dir.path(), DISK).await.expect("test setup");
        cache.attach_disk(disk).expect("test setup");
        assert!(fresh(&cache, "http://a.test/x").await.is_none());
        cache.close().await;
    }
    let cache = open(dir.path(), clock.clone()).await;
    assert!(fresh(&cache, "http://a.test/x").await.is_none());
}

#[tokio::test]
async fn a_full_tier_evicts_its_oldest_records_and_counts_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = open(dir.path(), clock()).await;
    let body = body(200_000);
    // Twice the tier's size.
    for i in 0..(2 * DISK as usize / body.len()) {
        store_paced(&cache, &format!("http://a.test/{i}"), &body).await;
    }
    cache.close().await;
    let cache = open(dir.path(), clock()).await;
    let usage = cache.usage().disk.expect("disk usage");
    assert!(usage.bytes > 0 && usage.bytes <= DISK, "{usage:?}");
    let stored = 2 * DISK / body.len() as u64;
    eprintln!("{} objects on disk of {stored} stored", usage.objects);
    assert!(
        usage.objects > stored / 4 && usage.objects < stored * 3 / 4,
        "the count follows evictions: {usage:?} of {stored} stored"
    );
    let last = 2 * DISK as usize / body.len() - 1;
    assert!(
        fresh(&cache, &format!("http://a.test/{last}"))
            .await
            .is_some()
    );
    assert!(
        fresh(&cache, "http://a.test/0").await.is_none(),
        "the oldest was evicted"
    );
    drop(cache);
    // Evictions are counted by the process that made them.
    let cache = open(dir.path(), clock()).await;
    for i in 0..(DISK as usize / body.len()) {
        store_paced(&cache, &format!("http://b.test/{i}"), &body).await;
    }
    cache.close().await;
    assert!(cache.usage().disk.expect("disk usage").evictions > 0);
}

#[tokio::test]
async fn invalidating_a_url_never_stored_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = clock();
    let journal = dir.path().join("purges");
    let cache = open(dir.path(), clock.clone()).await;
    store(
        &cache,
        "http://a.test/kept",
        &[("cache-control", "max-age=600")],
        b"k",
    );
    let before = std::fs::metadata(&journal).expect("journal").len();
    for i in 0..100 {
        cache.invalidate(&key(&format!("http://a.test/never-{i}")));
    }
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), before);
    // A stored one is invalidated, and stays so after a restart.
    cache.invalidate(&key("http://a.test/kept"));
    assert!(std::fs::metadata(&journal).expect("journal").len() > before);
    cache.close().await;
    let cache = open(dir.path(), clock).await;
    assert!(fresh(&cache, "http://a.test/kept").await.is_none());
}
