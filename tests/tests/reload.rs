//! End-to-end: config reload on SIGHUP and `POST /reload`.

use std::time::Duration;

use outpost_tests::{
    Origin, OriginOptions, Outpost, assert_all_ok, await_metric, await_progress, get, load_plan,
    metric, reload, respond, simple_config, start_load,
};

const TOKEN: &str = "reload-token";
const OK: &str = "outpost_config_reloads_total{result=\"ok\"}";
const FAILED: &str = "outpost_config_reloads_total{result=\"failed\"}";

/// An origin that names itself in every body: cacheable under /cached/,
/// uncacheable elsewhere.
async fn named_origin(name: &'static str) -> Origin {
    Origin::start(move |seen| {
        let cache_control = if seen.uri.path().starts_with("/cached/") {
            "max-age=600"
        } else {
            "no-store"
        };
        respond(200, &[("cache-control", cache_control)], name)
    })
    .await
}

fn write_config(outpost: &Outpost, config: &str) {
    std::fs::write(outpost.dir.path().join("outpost.yaml"), config).expect("write config");
}

/// A reload switches the origin; an object stored before it stays a hit,
/// since its site's key rules did not change.
#[tokio::test]
async fn post_reload_switches_the_config_and_keeps_stored_objects() {
    let (a, b) = (named_origin("A").await, named_origin("B").await);
    let outpost = Outpost::start(&simple_config(&a, &["example.com"], ""), &[], Some(TOKEN)).await;
    let addr = outpost.addr();
    assert_eq!(get(addr, "example.com", "/cached/x").await.body, "A");
    get(addr, "example.com", "/cached/x").await.assert_hit();
    assert_eq!(metric(outpost.admin, OK).await, Some(0.0));
    assert_eq!(
        metric(outpost.admin, "outpost_config_last_reload_successful").await,
        Some(1.0)
    );

    write_config(&outpost, &simple_config(&b, &["example.com"], ""));
    let answer = reload(outpost.admin, TOKEN).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["config"]["generation"], 2);
    assert_eq!(metric(outpost.admin, OK).await, Some(1.0));

    assert_eq!(get(addr, "example.com", "/live").await.body, "B");
    let cached = get(addr, "example.com", "/cached/x").await;
    cached.assert_hit();
    assert_eq!(cached.body, "A");
    assert_eq!(a.hits(), 1);
}

/// A file that does not parse, or that moves a listener, is refused with
/// its errors; the old config keeps serving, and the refusal is counted.
#[tokio::test]
async fn a_bad_file_is_refused_and_the_old_config_keeps_serving() {
    let a = named_origin("A").await;
    let good = simple_config(&a, &["example.com"], "");
    let outpost = Outpost::start(&good, &[], Some(TOKEN)).await;
    let addr = outpost.addr();

    write_config(&outpost, &good.replace("origin: app", "origin: nowhere"));
    let answer = reload(outpost.admin, TOKEN).await;
    assert_eq!(answer.status, 422);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let error = body["errors"][0].as_str().unwrap();
    assert!(
        error.contains("outpost.yaml:") && error.contains("nowhere"),
        "{error}"
    );
    assert_eq!(get(addr, "example.com", "/live").await.body, "A");

    write_config(&outpost, &good.replace("127.0.0.1:0", "127.0.0.2:0"));
    let answer = reload(outpost.admin, TOKEN).await;
    assert_eq!(answer.status, 422);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert!(
        body["errors"][0].as_str().unwrap().contains("listen"),
        "{body}"
    );

    // SIGHUP goes through the same door.
    write_config(&outpost, "listen: [");
    outpost.signal("HUP");
    await_metric(outpost.admin, FAILED, 3.0).await;
    assert_eq!(
        metric(outpost.admin, "outpost_config_last_reload_successful").await,
        Some(0.0)
    );
    assert_eq!(metric(outpost.admin, OK).await, Some(0.0));
    assert_eq!(get(addr, "example.com", "/live").await.body, "A");
}

/// A request in flight when the reload lands finishes on the config it
/// started with; the next one uses the new config.
#[tokio::test]
async fn a_request_in_flight_finishes_on_its_config() {
    let slow = Origin::start_with(
        OriginOptions {
            delay: Some(Duration::from_millis(800)),
            ..Default::default()
        },
        |_| respond(200, &[("cache-control", "no-store")], "old"),
    )
    .await;
    let fast = named_origin("new").await;
    let outpost = Outpost::start(
        &simple_config(&slow, &["example.com"], ""),
        &[],
        Some(TOKEN),
    )
    .await;
    let addr = outpost.addr();
    let in_flight = tokio::spawn(async move { get(addr, "example.com", "/slow").await });
    for _ in 0..500 {
        if slow.connections() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    write_config(&outpost, &simple_config(&fast, &["example.com"], ""));
    assert_eq!(reload(outpost.admin, TOKEN).await.status, 200);
    assert!(
        !in_flight.is_finished(),
        "the reload waited for the request"
    );
    assert_eq!(get(addr, "example.com", "/slow").await.body, "new");
    let got = in_flight.await.unwrap();
    assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, &b"old"[..]));
}

/// Ten reloads on SIGHUP and one refused reload under continuous load:
/// not one request fails, and traffic follows each switch.
#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let (a, b) = (named_origin("A").await, named_origin("B").await);
    let configs = [
        simple_config(&a, &["example.com"], ""),
        simple_config(&b, &["example.com"], ""),
    ];
    let outpost = Outpost::start(&configs[0], &[], Some(TOKEN)).await;
    let load = start_load(
        load_plan(outpost.addr(), "example.com", "/live")
            .connections(4)
            .requests(200_000)
            .duration(Duration::from_secs(60)),
    )
    .await;
    await_progress(&load, 50).await;
    for round in 1..=10 {
        write_config(&outpost, &configs[round % 2]);
        outpost.signal("HUP");
        await_metric(outpost.admin, OK, round as f64).await;
        await_progress(&load, 50).await;
        if round == 5 {
            write_config(&outpost, "sites: {");
            assert_eq!(reload(outpost.admin, TOKEN).await.status, 422);
            await_progress(&load, 50).await;
        }
    }
    let report = load.finish().await.expect("load");
    assert_all_ok(&report);
    assert_eq!(report.tally.retried, 0, "a reload closes no connection");
    let bodies = &report.tally.bodies;
    assert!(
        bodies.get("A").is_some_and(|n| *n > 0) && bodies.get("B").is_some_and(|n| *n > 0),
        "{report}"
    );
    assert_eq!(metric(outpost.admin, FAILED).await, Some(1.0));
}

/// Settings a running process cannot change in place are accepted and
/// named in the answer.
#[tokio::test]
async fn settings_that_wait_for_a_restart_are_named() {
    let a = named_origin("A").await;
    let config = simple_config(&a, &["example.com"], "");
    let outpost = Outpost::start(&config, &[], Some(TOKEN)).await;
    write_config(
        &outpost,
        &format!(
            "limits: {{max_connections: 50}}\n{}",
            config.replace("memory: 64MiB", "memory: 32MiB")
        ),
    );
    let answer = reload(outpost.admin, TOKEN).await;
    assert_eq!(answer.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let notes = body["config"]["restart_needed"].to_string();
    assert!(
        notes.contains("cache.memory") && notes.contains("limits.max_connections"),
        "{notes}"
    );
}
