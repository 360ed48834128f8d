//! End-to-end: zero-downtime binary upgrade. A successor takes the
//! listening sockets over a Unix socket, the old process drains and exits.

use std::time::Duration;

use outpost_tests::{
    Origin, Outpost, assert_all_ok, await_progress, get, load_plan, outpost_bin, respond,
    simple_config, start_load,
};

const TOKEN: &str = "upgrade-token";

/// With a disk tier, which passes to the successor.
fn upgradable(origin: &Origin) -> String {
    format!(
        "upgrade_socket: upgrade.sock\n{}",
        simple_config(origin, &["example.com"], "").replace(
            "  memory: 64MiB\n",
            "  memory: 64MiB\n  disk:\n    path: disk\n    size: 64MiB\n"
        )
    )
}

async fn origin() -> Origin {
    Origin::start(|seen| {
        let cache_control = if seen.uri.path().starts_with("/cached/") {
            "max-age=600"
        } else {
            "no-store"
        };
        respond(200, &[("cache-control", cache_control)], "ok")
    })
    .await
}

/// Under continuous load, on kept-alive and on fresh connections, an
/// upgrade refuses no connection and fails no request; the successor
/// answers on the same addresses, the side API included, and its cache
/// is still warm: what the old process stored is a hit.
#[tokio::test]
async fn an_upgrade_under_load_fails_no_request() {
    let origin = origin().await;
    let mut old = Outpost::start(&upgradable(&origin), &[], Some(TOKEN)).await;
    let addr = old.addr();
    for i in 0..20 {
        let got = get(addr, "example.com", &format!("/cached/{i}")).await;
        assert!(got.cache_status().contains("stored"));
    }
    let kept = start_load(
        load_plan(addr, "example.com", "/live")
            .connections(4)
            .requests(200_000)
            .duration(Duration::from_secs(60)),
    )
    .await;
    let fresh = start_load(
        load_plan(addr, "example.com", "/live")
            .connections(2)
            .requests(50_000)
            .duration(Duration::from_secs(60))
            .keep_alive(false),
    )
    .await;
    await_progress(&kept, 100).await;
    await_progress(&fresh, 20).await;

    let new = old.upgrade().await;
    assert_eq!(new.listen, old.listen);
    assert_eq!(new.admin, old.admin);
    assert_ne!(new.pid(), old.pid());
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));

    await_progress(&kept, 100).await;
    await_progress(&fresh, 20).await;
    let kept = kept.finish().await.expect("kept-alive load");
    let fresh = fresh.finish().await.expect("fresh load");
    eprintln!("through the upgrade: kept-alive {kept}; fresh {fresh}");
    assert_all_ok(&kept);
    assert_all_ok(&fresh);
    // Draining connections answer with `Connection: close` before they
    // close, so no client has to retry a request the old process dropped.
    assert_eq!((kept.tally.retried, fresh.tally.retried), (0, 0));
    let served: u64 = outpost_tests::stats(new.admin).await["requests"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert!(served > 0, "the successor served");
    outpost_tests::await_metric(new.admin, "outpost_disk_open", 1.0).await;
    let fetched = origin.hits();
    for i in 0..20 {
        get(addr, "example.com", &format!("/cached/{i}"))
            .await
            .assert_hit();
    }
    assert_eq!(
        origin.hits(),
        fetched,
        "the cache was warm after the upgrade"
    );
}

/// A successor that cannot start (its config is broken) leaves the old
/// process serving on its sockets, and a later upgrade still works.
#[tokio::test]
async fn a_failed_successor_leaves_the_old_process_serving() {
    let origin = origin().await;
    let good = upgradable(&origin);
    let mut old = Outpost::start(&good, &[], Some(TOKEN)).await;
    let path = old.dir.path().join("outpost.yaml");
    std::fs::write(&path, good.replace("origin: app", "origin: nowhere")).unwrap();
    let status = tokio::process::Command::new(outpost_bin())
        .args(["run", "--upgrade", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(!status.success());
    assert!(old.is_running());
    assert_eq!(get(old.addr(), "example.com", "/live").await.body, "ok");

    std::fs::write(&path, &good).unwrap();
    let new = old.upgrade().await;
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));
    assert_eq!(get(new.addr(), "example.com", "/live").await.body, "ok");
}

/// SIGUSR2 makes the running process start its successor itself, as the
/// systemd unit does; the successor reports ready and serves, the old
/// process exits 0.
#[tokio::test]
async fn sigusr2_starts_a_successor() {
    let origin = origin().await;
    let mut old = Outpost::start(&upgradable(&origin), &[], Some(TOKEN)).await;
    old.signal("USR2");
    let ready = old.next_ready().await;
    let pid = ready["pid"].as_u64().unwrap();
    assert_ne!(pid, u64::from(old.pid()));
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));
    assert_eq!(get(old.addr(), "example.com", "/live").await.body, "ok");

    // The successor is not our child: stop it by pid, and wait until it
    // has exited (gone, or a zombie of whoever adopted it).
    std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .unwrap();
    for _ in 0..1000 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .trim_start()
                    .starts_with('Z') =>
            {
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    panic!("the successor {pid} did not exit on SIGTERM");
}

/// Without `--upgrade`, a second process on the same upgrade socket is
/// refused rather than stealing it.
#[tokio::test]
async fn a_second_plain_start_does_not_steal_the_upgrade_socket() {
    let origin = origin().await;
    let old = Outpost::start(&upgradable(&origin), &[], Some(TOKEN)).await;
    let path = old.dir.path().join("outpost.yaml");
    let output = tokio::process::Command::new(outpost_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--upgrade"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(get(old.addr(), "example.com", "/live").await.body, "ok");
}
