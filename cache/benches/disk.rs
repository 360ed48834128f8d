//! The disk tier: fill throughput, disk-hit and memory-hit throughput,
//! start-up time with 100k stored objects, and resident memory per object
//! the tier indexes. Medians of 3 runs; a temp dir on the machine's disk.
//!
//!     cargo bench -p outpost-cache --bench disk

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_cache::{
    Cache, CacheKey, DiskTier, Fetched, KeyFields, Lookup, PolicyOptions, StoreRules, SystemClock,
};
use outpost_config::QueryKey;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DISK: u64 = 2 << 30;
const MEMORY: u64 = 1 << 30;

fn request() -> http::request::Parts {
    http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0
}

fn key(i: usize) -> CacheKey {
    CacheKey::from_url(&format!("http://example.com/o/{i}"), &QueryKey::All).expect("key")
}

async fn open(dir: &std::path::Path) -> Cache {
    let disk = DiskTier::open(dir, DISK).await.expect("open the tier");
    Cache::with_disk(
        MEMORY,
        disk,
        PolicyOptions::default(),
        Arc::new(SystemClock),
    )
    .expect("attach the tier")
}

/// Stores `count` objects of `size` bytes through the streaming path, in
/// 16 KiB pieces as a body arrives; returns the time it took, the disk
/// having written everything (the tier closed).
async fn fill(cache: Cache, count: usize, size: usize) -> Duration {
    let body = vec![7u8; size];
    let req = request();
    let res = http::Response::builder()
        .header("cache-control", "max-age=86400")
        .body(())
        .expect("response")
        .into_parts()
        .0;
    let started = Instant::now();
    for i in 0..count {
        let key = key(i);
        let mut storing = cache
            .admit(
                &Fetched::at(&key, &req, &res, cache.now()),
                StoreRules::default(),
                &KeyFields::default(),
                Some(size as u64),
                u64::MAX,
            )
            .expect("storable");
        for piece in body.chunks(16 << 10) {
            storing.push(piece);
            if let Some(backlog) = storing.backlog() {
                backlog.await;
            }
        }
        cache.finish(storing);
    }
    cache.close().await;
    started.elapsed()
}

/// Looks every object up once and reads its body, 32 at a time as
/// concurrent requests would; returns the time and how many were hits.
async fn read_all(cache: &Cache, count: usize) -> (Duration, usize) {
    use futures_util::StreamExt;
    let req = request();
    let started = Instant::now();
    let hits = futures_util::stream::iter(0..count)
        .map(|i| {
            let req = &req;
            async move {
                let Lookup::Fresh(entry) = cache.lookup_tiered(&key(i), req).await else {
                    return 0;
                };
                let mut body = cache.body(&entry, 0, entry.body_len().saturating_sub(1));
                while let Some(piece) = body.next().await {
                    std::hint::black_box(piece.expect("body"));
                }
                1
            }
        })
        .buffer_unordered(32)
        .fold(0, |hits, hit| async move { hits + hit })
        .await;
    (started.elapsed(), hits)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn throughput(count: usize, size: usize) {
    let (mut fills, mut disk_reads, mut memory_reads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        let dir = tempfile::tempdir().expect("temp dir");
        fills.push(fill(open(dir.path()).await, count, size).await);
        let cache = open(dir.path()).await;
        let (took, hits) = read_all(&cache, count).await;
        assert_eq!(hits, count, "every object is a disk hit after reopening");
        disk_reads.push(took);
        let (took, hits) = read_all(&cache, count).await;
        assert_eq!(hits, count);
        memory_reads.push(took);
        cache.close().await;
    }
    let mib = (count * size) as f64 / f64::from(1 << 20);
    let rate = |d: Duration| {
        format!(
            "{:>9.0} objects/s {:>7.0} MiB/s",
            count as f64 / d.as_secs_f64(),
            mib / d.as_secs_f64()
        )
    };
    println!("{count} objects of {size} bytes:");
    println!("  fill (to disk and memory)      {}", rate(median(fills)));
    println!(
        "  disk hits (memory empty)       {}",
        rate(median(disk_reads))
    );
    println!(
        "  memory hits (after promotion)  {}",
        rate(median(memory_reads))
    );
}

/// Opens the tier in `dir` in this process, fresh, and reports the time
/// and what opening it added to resident memory (run as a child process,
/// so that no memory freed by the fill is reused and hides it).
async fn reopen(dir: &std::path::Path, count: usize) {
    let before = rss_kib();
    let started = Instant::now();
    let cache = open(dir).await;
    let took = started.elapsed();
    let grew = rss_kib().saturating_sub(before);
    let (_, hits) = read_all(&cache, 100).await;
    assert_eq!(hits, 100);
    println!("{} {}", took.as_micros(), grew);
    let _ = count;
    cache.close().await;
}

/// The median time to open a tier of `count` objects, and the median
/// resident memory opening it added, in KiB.
async fn start_up(count: usize) -> (Duration, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    fill(open(dir.path()).await, count, 1024).await;
    let mut runs = Vec::new();
    let mut grew = Vec::new();
    for _ in 0..3 {
        let out = std::process::Command::new(std::env::current_exe().expect("this bench"))
            .env("DISK_BENCH_REOPEN", dir.path())
            .env("DISK_BENCH_COUNT", count.to_string())
            .output()
            .expect("run the reopening");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut figures = text
            .lines()
            .last()
            .unwrap_or("")
            .split(' ')
            .filter_map(|f| f.parse::<u64>().ok());
        runs.push(Duration::from_micros(figures.next().expect("time")));
        grew.push(figures.next().expect("memory"));
    }
    grew.sort_unstable();
    let grew = grew[1];
    let took = median(runs);
    println!(
        "start-up with {count} objects of 1 KiB on disk: median {took:?}; resident memory after opening +{grew} KiB"
    );
    (took, grew)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if let Some(dir) = std::env::var_os("DISK_BENCH_REOPEN") {
            let count = std::env::var("DISK_BENCH_COUNT")
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            reopen(std::path::Path::new(&dir), count).await;
            return;
        }
        throughput(20_000, 4 << 10).await;
        throughput(100, 4 << 20).await;
        let (_, small) = start_up(10_000).await;
        let (_, large) = start_up(100_000).await;
        // The fixed cost (the store's buffers, the runtime) is the same in
        // both; what grows with the objects is the per-object cost.
        println!(
            "memory per object on disk (slope from 10k to 100k objects): {} bytes",
            large.saturating_sub(small) * 1024 / 90_000
        );
    });
}
