//! End-to-end: the disk tier. Objects outlive a restart and a binary
//! upgrade, `kill -9` during heavy writes never leaves an object that
//! serves wrong bytes, purges stay in force after a restart, and large
//! objects stream from disk, by range too.

use std::time::Duration;

use outpost_tests::{Origin, Outpost, await_metric, explain, get, purge, request, respond};

const TOKEN: &str = "disk-token";

/// `/s/{size}/{id}`: `size` bytes made from `id`, with their blake3 in
/// `x-sum`, tagged with `id`'s first letter, and an `Age` of 100 seconds.
async fn origin() -> Origin {
    Origin::start(|seen| {
        let mut parts = seen.uri.path().trim_start_matches("/s/").splitn(2, '/');
        let size: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let id = parts.next().unwrap_or("");
        let body = body_for(size, id);
        let sum = blake3::hash(&body).to_hex().to_string();
        let tag = id.get(..1).unwrap_or("none").to_owned();
        respond(
            200,
            &[
                ("cache-control", "max-age=3600"),
                ("x-sum", &sum),
                ("surrogate-key", &tag),
                ("age", "100"),
            ],
            body,
        )
    })
    .await
}

fn body_for(size: usize, id: &str) -> Vec<u8> {
    let seed = blake3::hash(id.as_bytes());
    let mut out = Vec::with_capacity(size);
    let mut block = *seed.as_bytes();
    while out.len() < size {
        block = *blake3::hash(&block).as_bytes();
        out.extend_from_slice(&block[..block.len().min(size - out.len())]);
    }
    out
}

fn config(origin: &Origin, extra: &str) -> String {
    format!(
        "{extra}listen:\n  - addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\n\
         cache:\n  memory: 64MiB\n  max_object_size: 64MiB\n  disk:\n    path: disk\n    size: 256MiB\n\
         origins:\n  app:\n    servers:\n      - url: {}\n\
         sites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.url()
    )
}

/// Fetches `/s/{size}/{id}` and checks its body against the origin's sum.
async fn fetch(outpost: &Outpost, size: usize, id: &str) -> outpost_tests::Got {
    let got = get(outpost.addr(), "example.com", &format!("/s/{size}/{id}")).await;
    assert_eq!(got.status, 200, "{id}");
    assert_eq!(
        blake3::hash(&got.body).to_hex().as_str(),
        got.header("x-sum"),
        "{id}: the body does not match its sum"
    );
    got
}

#[tokio::test]
async fn objects_are_hits_after_a_restart_with_a_correct_age() {
    let origin = origin().await;
    let outpost = Outpost::start(&config(&origin, ""), &[], Some(TOKEN)).await;
    let sizes = [
        (1000, "small"),
        (3 << 20, "chunked"),
        (20 << 20, "streamed"),
    ];
    for (size, id) in sizes {
        assert!(
            fetch(&outpost, size, id)
                .await
                .cache_status()
                .contains("fwd=miss")
        );
    }
    let outpost = outpost.restart(false).await;
    // `/explain` reads the disk tier without promoting what it finds.
    let small = "http://example.com/s/1000/small";
    for _ in 0..2 {
        let (_, explained) = explain(outpost.admin, Some(TOKEN), small, &[]).await;
        assert_eq!(explained["stored"][0]["tier"], "disk", "{explained}");
        assert_eq!(explained["decision"]["outcome"], "hit", "{explained}");
    }
    for (size, id) in sizes {
        let got = fetch(&outpost, size, id).await;
        got.assert_hit();
        assert_eq!(got.body.len(), size);
        // RFC 9111 §4.2.3: never younger than the origin said.
        let age: u64 = got.header("age").parse().expect("test setup");
        assert!(age >= 100, "{id}: Age {age}");
    }
    assert_eq!(origin.hits(), sizes.len());
    let (_, explained) = explain(outpost.admin, Some(TOKEN), small, &[]).await;
    assert_eq!(explained["stored"][0]["tier"], "memory+disk", "{explained}");
    let streamed = "http://example.com/s/20971520/streamed";
    let (_, explained) = explain(outpost.admin, Some(TOKEN), streamed, &[]).await;
    assert_eq!(explained["stored"][0]["tier"], "disk", "{explained}");
    assert_eq!(explained["stored"][0]["size"], 20 << 20);
    // A range of an object streamed from disk, and several ranges at once.
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/s/20971520/streamed",
        &[("range", "bytes=10000000-10000099")],
        "",
    )
    .await;
    assert_eq!(got.status, 206);
    let whole = body_for(20 << 20, "streamed");
    assert_eq!(got.body, whole[10_000_000..10_000_100]);
    assert_eq!(
        got.header("content-range"),
        "bytes 10000000-10000099/20971520"
    );
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/s/20971520/streamed",
        &[("range", "bytes=0-9, 15000000-15000009")],
        "",
    )
    .await;
    assert_eq!(got.status, 206);
    assert!(
        got.header("content-type")
            .starts_with("multipart/byteranges")
    );
    let text = String::from_utf8_lossy(&got.body);
    assert!(text.contains("Content-Range: bytes 15000000-15000009/20971520"));
    assert_eq!(origin.hits(), sizes.len(), "ranges were hits");
}

#[tokio::test]
async fn purges_stay_in_force_after_a_restart() {
    let origin = origin().await;
    let outpost = Outpost::start(&config(&origin, ""), &[], Some(TOKEN)).await;
    for id in ["url", "tagged", "kept"] {
        fetch(&outpost, 2000, id).await;
    }
    let purged = purge(
        outpost.admin,
        Some(TOKEN),
        r#"{"urls": ["http://example.com/s/2000/url"], "tags": ["t"]}"#,
    )
    .await;
    assert_eq!(purged.status, 200);
    let outpost = outpost.restart(false).await;
    let before = origin.hits();
    for id in ["url", "tagged"] {
        let got = fetch(&outpost, 2000, id).await;
        assert!(got.cache_status().contains("fwd=miss"), "{id} came back");
    }
    fetch(&outpost, 2000, "kept").await.assert_hit();
    assert_eq!(origin.hits(), before + 2);
}

/// Ten rounds of `kill -9` in the middle of heavy writes: after each
/// restart, every object served as a hit matches its origin's checksum.
#[tokio::test]
async fn kill_nine_during_writes_never_serves_a_damaged_object() {
    let origin = origin().await;
    let mut outpost = Outpost::start(&config(&origin, ""), &[], Some(TOKEN)).await;
    let mut ids: Vec<(usize, String)> = Vec::new();
    let mut hits_after_restarts = 0;
    for round in 0..10 {
        let round_ids: Vec<(usize, String)> = (0..24)
            .map(|i| {
                (
                    1000 + (i * 37_000 + round * 11_000) % 700_000,
                    format!("r{round}-{i}"),
                )
            })
            .collect();
        ids.extend(round_ids.iter().cloned());
        let addr = outpost.addr();
        let started = origin.hits();
        let load = tokio::spawn(async move {
            let mut tasks = Vec::new();
            for (size, id) in round_ids {
                tasks.push(tokio::spawn(async move {
                    // Failures are expected: the process dies under them.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(10),
                        outpost_tests::try_request(
                            addr,
                            "GET",
                            "example.com",
                            &format!("/s/{size}/{id}"),
                            &[],
                            "",
                        ),
                    )
                    .await;
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
        // Kill once about half the round's fills have reached the origin.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while origin.hits() < started + 12 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        outpost = outpost.restart(true).await;
        load.abort();
        for (size, id) in &ids {
            let got = fetch(&outpost, *size, id).await;
            assert_eq!(got.body.len(), *size, "{id}");
            if got.cache_status().starts_with("Outpost; hit") {
                hits_after_restarts += 1;
            }
        }
    }
    eprintln!("{hits_after_restarts} hits checked after the restarts");
    assert!(hits_after_restarts > 0, "nothing survived any restart");
}

#[tokio::test]
async fn the_cache_is_still_warm_after_a_binary_upgrade() {
    let origin = origin().await;
    let mut old = Outpost::start(
        &config(&origin, "upgrade_socket: upgrade.sock\n"),
        &[],
        Some(TOKEN),
    )
    .await;
    for id in ["a", "b"] {
        fetch(&old, 500_000, id).await;
    }
    let new = old.upgrade().await;
    // Until the predecessor has drained and closed the disk tier, the
    // successor serves from memory and the origins, and is not ready.
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));
    await_metric(new.admin, "outpost_disk_open", 1.0).await;
    let ready = get(new.admin, "admin", "/readyz").await;
    assert_eq!(ready.status, 200);
    for id in ["a", "b"] {
        fetch(&new, 500_000, id).await.assert_hit();
    }
    assert_eq!(origin.hits(), 2);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts `size` of tmpfs at `path`; None where mounting is not
    /// allowed (not root, or no CAP_SYS_ADMIN in a container).
    fn mount(path: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| SmallDisk {
            path: path.to_owned(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

async fn disk_io_errors(admin: std::net::SocketAddr) -> f64 {
    outpost_tests::metric(admin, "outpost_disk_errors_total{kind=\"io\"}")
        .await
        .unwrap_or(0.0)
}

/// A full disk: every request is still answered, from memory and the
/// origin; the fault is counted; once space returns, the tier opens and
/// objects are written to disk again. The tier reserves its space when it
/// opens, so a disk filling up later cannot fail its writes.
#[tokio::test]
async fn a_full_disk_costs_no_request_and_writing_resumes_when_space_returns() {
    let origin = origin().await;
    let dir = tempfile::tempdir().expect("test setup");
    let Some(disk) = SmallDisk::mount(&dir.path().join("small"), "24m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    // Room for less than the tier's 16 MiB.
    let filler = disk.path.join("filler");
    std::fs::write(&filler, vec![0u8; 20 << 20]).expect("test setup");
    let config = config(&origin, "").replace(
        "path: disk\n    size: 256MiB",
        &format!(
            "path: {}\n    size: 16MiB",
            disk.path.join("tier").display()
        ),
    );
    let outpost = Outpost::start(&config, &[], Some(TOKEN)).await;
    assert_eq!(get(outpost.admin, "admin", "/readyz").await.status, 503);
    assert!(disk_io_errors(outpost.admin).await >= 1.0);
    for i in 0..20 {
        fetch(&outpost, 300_000, &format!("full-{i}")).await;
    }
    // Served from memory meanwhile.
    fetch(&outpost, 300_000, "full-0").await.assert_hit();
    std::fs::remove_file(&filler).expect("test setup");
    await_metric(outpost.admin, "outpost_disk_open", 1.0).await;
    let ids: Vec<String> = (0..10).map(|i| format!("later-{i}")).collect();
    for id in &ids {
        fetch(&outpost, 100_000, id).await;
    }
    let outpost = outpost.restart(false).await;
    for id in &ids {
        fetch(&outpost, 100_000, id).await.assert_hit();
    }
    drop(outpost);
}

/// What passing or storing one large object may add to the process's peak
/// resident memory.
const LARGE_OBJECT_MEMORY_KIB: u64 = 64 * 1024;

/// A 1 GiB object larger than `max_object_size` passes through, and a
/// 256 MiB one is stored on disk as it passes, and streams from there
/// after: the peak resident memory grows by far less than either.
#[tokio::test]
async fn large_objects_pass_and_fill_with_flat_memory() {
    const GIB: usize = 1 << 30;
    const STORED: usize = 256 << 20;
    let big = bytes::Bytes::from(vec![b'x'; GIB]);
    let stored = bytes::Bytes::from(body_for(STORED, "stored"));
    let stored_sum = blake3::hash(&stored).to_hex().to_string();
    let origin = Origin::start(move |seen| {
        let body = if seen.uri.path() == "/big" {
            big.clone()
        } else {
            stored.clone()
        };
        let mut res = respond(200, &[("cache-control", "max-age=3600")], "");
        *res.body_mut() = http_body_util::Full::new(body);
        res
    })
    .await;
    let config = config(&origin, "")
        .replace("max_object_size: 64MiB", "max_object_size: 512MiB")
        .replace("size: 256MiB", "size: 1GiB");
    let outpost = Outpost::start(&config, &[], Some(TOKEN)).await;
    let before = outpost.memory_kib("VmRSS");

    let (got, len, _) = outpost_tests::get_streamed(outpost.addr(), "example.com", "/big").await;
    assert_eq!(got.status, 200);
    assert_eq!(len, GIB as u64);
    assert!(
        got.cache_status().contains("detail=too-large"),
        "{}",
        got.cache_status()
    );

    let (got, len, sum) =
        outpost_tests::get_streamed(outpost.addr(), "example.com", "/stored").await;
    assert_eq!(
        (got.status.as_u16(), len, sum.as_str()),
        (200, STORED as u64, stored_sum.as_str())
    );
    assert!(
        got.cache_status().contains("stored"),
        "{}",
        got.cache_status()
    );
    let (got, len, sum) =
        outpost_tests::get_streamed(outpost.addr(), "example.com", "/stored").await;
    got.assert_hit();
    assert_eq!((len, sum.as_str()), (STORED as u64, stored_sum.as_str()));

    let peak = outpost.memory_kib("VmHWM");
    eprintln!("resident before {before} KiB, peak after {peak} KiB");
    assert!(
        peak.saturating_sub(before) < LARGE_OBJECT_MEMORY_KIB,
        "peak resident memory grew by {} KiB",
        peak - before
    );
}

/// Concurrent misses for an object too large to hold in memory for them
/// make one origin fetch; the followers read it from the cache once it is
/// stored.
#[tokio::test]
async fn concurrent_misses_for_a_large_object_make_one_fetch() {
    let origin = origin().await;
    let outpost = Outpost::start(&config(&origin, ""), &[], Some(TOKEN)).await;
    let addr = outpost.addr();
    let size = 24 << 20;
    let requests: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                outpost_tests::get_streamed(addr, "example.com", &format!("/s/{size}/large")).await
            })
        })
        .collect();
    let expected = blake3::hash(&body_for(size, "large")).to_hex().to_string();
    let mut collapsed = 0;
    for request in requests {
        let (got, len, sum) = request.await.expect("request task");
        assert_eq!(
            (got.status.as_u16(), len, sum.as_str()),
            (200, size as u64, expected.as_str())
        );
        if got.cache_status().contains("collapsed") {
            collapsed += 1;
        }
    }
    assert_eq!(origin.hits(), 1);
    eprintln!("{collapsed} of 20 requests collapsed onto the fetch");
}

/// A purge whose journal write fails (the disk full) still applies, and
/// says it may not outlive a restart: 500, never a silent success.
#[tokio::test]
async fn a_purge_the_journal_cannot_keep_is_reported() {
    let origin = origin().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("small"), "24m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let config = config(&origin, "").replace(
        "path: disk\n    size: 256MiB",
        &format!("path: {}\n    size: 8MiB", disk.path.join("tier").display()),
    );
    let outpost = Outpost::start(&config, &[], Some(TOKEN)).await;
    fetch(&outpost, 1000, "doomed").await;
    // The journal ends on a page boundary (a line that does not check, so
    // skipped when read), so that its next line needs a new page...
    let journal = disk.path.join("tier").join("purges");
    let len = std::fs::metadata(&journal).expect("journal").len() as usize;
    let pad = 4096 - len % 4096;
    let mut line = "x".repeat(pad.max(2) - 1);
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("journal");
    std::io::Write::write_all(&mut file, line.as_bytes()).expect("pad the journal");
    // ...and nothing is left of the file system.
    let mut filler = std::fs::File::create(disk.path.join("filler")).expect("filler");
    let block = vec![0u8; 1 << 16];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    let purged = purge(
        outpost.admin,
        Some(TOKEN),
        r#"{"urls": ["http://example.com/s/1000/doomed"]}"#,
    )
    .await;
    assert_eq!(purged.status, 500, "{:?}", purged.body);
    // It applies all the same.
    let got = fetch(&outpost, 1000, "doomed").await;
    assert!(
        got.cache_status().contains("fwd=miss"),
        "{}",
        got.cache_status()
    );
}

/// Reads that fail (the tier's files cut short under it, as a failing
/// disk would answer) cost no request: the objects come from the origin,
/// and the faults are counted.
#[tokio::test]
async fn failing_disk_reads_cost_no_request() {
    let origin = origin().await;
    // A memory tier too small for these objects: their hits are disk reads.
    let config = config(&origin, "").replace("memory: 64MiB", "memory: 1MiB");
    let outpost = Outpost::start(&config, &[], Some(TOKEN)).await;
    let ids: Vec<String> = (0..6).map(|i| format!("cut-{i}")).collect();
    for id in &ids {
        fetch(&outpost, 2 << 20, id).await;
    }
    fetch(&outpost, 2 << 20, &ids[0]).await.assert_hit();
    let fetched = origin.hits();
    for file in std::fs::read_dir(outpost.dir.path().join("disk")).expect("tier dir") {
        let path = file.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("foyer"))
        {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open")
                .set_len(0)
                .expect("cut short");
        }
    }
    for id in &ids {
        let got = fetch(&outpost, 2 << 20, id).await;
        assert_eq!(got.body.len(), 2 << 20);
    }
    assert!(origin.hits() > fetched, "the objects came from the origin");
    let faults = outpost_tests::stats(outpost.admin).await["cache"]["disk"].clone();
    let counted = faults["errors"].as_u64().unwrap_or(0) + faults["damaged"].as_u64().unwrap_or(0);
    assert!(counted > 0, "the faults were counted: {faults}");
}

/// Issue 21: the disk tier's object gauge is right after a hard purge of
/// everything (none of what it held counts any more) and after a `kill -9`
/// (the count of the moment before, not of the last minute's snapshot).
#[tokio::test]
async fn the_disk_object_gauge_holds_after_a_purge_of_everything_and_a_kill() {
    let origin = origin().await;
    let outpost = Outpost::start(&config(&origin, ""), &[], Some(TOKEN)).await;
    await_metric(outpost.admin, "outpost_disk_open", 1.0).await;
    let objects = r#"outpost_cache_objects{tier="disk"}"#;
    let written = r#"outpost_disk_io_bytes_total{direction="write"}"#;
    for i in 0..5 {
        fetch(&outpost, 1000, &format!("p{i}")).await;
    }
    await_metric(outpost.admin, objects, 5.0).await;
    // Their writes land on the device after they are counted: all of them
    // before the count of bytes written is taken below, so that it waits
    // for the later objects' own bytes.
    await_written(&outpost, written, 0.0, 5_000.0).await;
    let purged = purge(outpost.admin, Some(TOKEN), r#"{"everything": true}"#).await;
    assert_eq!(purged.status, 200);
    await_metric(outpost.admin, objects, 0.0).await;
    let before = outpost_tests::metric(outpost.admin, written)
        .await
        .unwrap_or(0.0);
    for i in 0..3 {
        fetch(&outpost, 1000, &format!("q{i}")).await;
    }
    await_metric(outpost.admin, objects, 3.0).await;
    // The three are on the device (their heads and bodies, 3,000 bytes at
    // least) before the kill, or a kill would lose them, as it may.
    await_written(&outpost, written, before, 3_000.0).await;
    // Killed well inside the minute between two snapshots of the count.
    let outpost = outpost.restart(true).await;
    await_metric(outpost.admin, "outpost_disk_open", 1.0).await;
    await_metric(outpost.admin, objects, 3.0).await;
    for i in 0..3 {
        fetch(&outpost, 1000, &format!("q{i}")).await.assert_hit();
    }
    fetch(&outpost, 1000, "p0").await;
    await_metric(outpost.admin, objects, 4.0).await;
}

/// A URL's variants are listed in its Vary marker on disk: after a restart
/// `/explain` shows them all before any is asked for again, and a Vary
/// miss is validated with their tags (RFC 9111 §4.3.1).
#[tokio::test]
async fn a_urls_variants_are_known_after_a_restart() {
    let origin = Origin::start(|seen| {
        let language = seen.header("accept-language").to_owned();
        let tag = format!("\"{language}\"");
        let fields = [
            ("cache-control", "max-age=3600"),
            ("vary", "Accept-Language"),
            ("etag", tag.as_str()),
        ];
        respond(200, &fields, language.clone())
    })
    .await;
    let outpost = Outpost::start(&config(&origin, ""), &[], Some(TOKEN)).await;
    await_metric(outpost.admin, "outpost_disk_open", 1.0).await;
    let objects = r#"outpost_cache_objects{tier="disk"}"#;
    for language in ["en", "de", "fr"] {
        let got = request(
            outpost.addr(),
            "GET",
            "example.com",
            "/v",
            &[("accept-language", language)],
            "",
        )
        .await;
        assert_eq!(got.body, language);
    }
    await_metric(outpost.admin, objects, 3.0).await;
    let outpost = outpost.restart(false).await;
    await_metric(outpost.admin, "outpost_disk_open", 1.0).await;
    let (_, explained) = explain(
        outpost.admin,
        Some(TOKEN),
        "http://example.com/v",
        &["Accept-Language: it"],
    )
    .await;
    let stored = explained["stored"].as_array().expect("stored variants");
    let mut languages: Vec<&str> = stored
        .iter()
        .filter_map(|v| v["vary"]["accept-language"].as_str())
        .collect();
    languages.sort_unstable();
    assert_eq!(languages, ["de", "en", "fr"], "{explained}");
    assert!(stored.iter().all(|v| v["tier"] == "disk"), "{explained}");
    assert_eq!(explained["decision"]["code"], "vary-miss");

    // A miss after the restart offers every stored variant's tag.
    request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v",
        &[("accept-language", "it")],
        "",
    )
    .await;
    let offered = origin.last().headers["if-none-match"]
        .to_str()
        .unwrap()
        .to_owned();
    for tag in ["\"en\"", "\"de\"", "\"fr\""] {
        assert!(offered.contains(tag), "{offered}");
    }
}

/// Waits (10 s at most) until the device has been written `bytes` more
/// than `before`, by the counter `written`.
async fn await_written(outpost: &Outpost, written: &str, before: f64, bytes: f64) {
    for _ in 0..1000 {
        let now = outpost_tests::metric(outpost.admin, written)
            .await
            .unwrap_or(0.0);
        if now - before >= bytes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the device was not written {bytes} bytes in 10 s");
}
