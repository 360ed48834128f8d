//! End-to-end: graceful shutdown on SIGTERM.

use std::time::Duration;

use outpost_tests::{
    Origin, OriginOptions, Outpost, access_log_lines, get, respond, simple_config,
};

/// SIGTERM stops accepting, lets the request in flight finish, and exits 0.
#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_exits_zero() {
    let options = OriginOptions {
        delay: Some(Duration::from_millis(700)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "no-store")], "finished")
    })
    .await;
    let mut outpost =
        Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let addr = outpost.addr();
    let in_flight = tokio::spawn(async move { get(addr, "example.com", "/slow").await });
    origin.await_arrivals(1).await;
    outpost.terminate();
    let got = in_flight.await.unwrap();
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (200, &b"finished"[..])
    );
    assert_eq!(outpost.exit_code(Duration::from_secs(10)).await, Some(0));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing listens after the exit"
    );
}

/// Issue 19: while a shutdown drains, new clients are refused at once
/// (the socket kept for upgrades used to keep them waiting in the
/// backlog until the grace period ended), `/readyz` answers 503 at once
/// and `/healthz` 200, so that a load balancer moves on.
#[tokio::test]
async fn a_draining_node_refuses_new_clients_and_says_it_is_not_ready() {
    let options = OriginOptions {
        delay: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "no-store")], "finished")
    })
    .await;
    let config = format!(
        "upgrade_socket: upgrade.sock\n{}",
        simple_config(&origin, &["example.com"], "")
    );
    let mut outpost = Outpost::start(&config, &[], None).await;
    let (addr, admin) = (outpost.addr(), outpost.admin);
    let in_flight = tokio::spawn(async move { get(addr, "example.com", "/slow").await });
    origin.await_arrivals(1).await;
    outpost.terminate();
    let quick = Duration::from_secs(2);
    let mut ready = None;
    for _ in 0..100 {
        let got = tokio::time::timeout(quick, get(admin, "admin", "/readyz"))
            .await
            .expect("/readyz answers at once while draining");
        if got.status == 503 {
            ready = Some(got);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = ready.expect("/readyz turned 503");
    assert!(String::from_utf8_lossy(&ready.body).contains("shutting down"));
    let health = tokio::time::timeout(quick, get(admin, "admin", "/healthz"))
        .await
        .expect("/healthz answers while draining");
    assert_eq!(health.status, 200);
    let connect = tokio::time::timeout(quick, tokio::net::TcpStream::connect(addr))
        .await
        .expect("a new client is refused at once, not left waiting");
    assert!(connect.is_err(), "a new client was accepted while draining");
    let got = in_flight.await.unwrap();
    assert_eq!(got.body, "finished");
    assert_eq!(outpost.exit_code(Duration::from_secs(10)).await, Some(0));
}

/// One JSON line per request, and a reopen on SIGUSR1 for log rotation.
#[tokio::test]
async fn the_access_log_has_a_line_per_request_and_reopens_on_sigusr1() {
    let origin =
        Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "logged")).await;
    let config = format!(
        "access_log: access.log\n{}",
        simple_config(&origin, &["example.com"], "")
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let path = outpost.dir.path().join("access.log");
    get(outpost.addr(), "example.com", "/one?x=1").await;
    get(outpost.addr(), "example.com", "/one?x=1").await;
    let lines = access_log_lines(&path, 2).await;
    let first = &lines[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "example.com");
    assert_eq!(first["path"], "/one?x=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes_sent"], 6);
    assert_eq!(first["cache_status"], "Outpost; fwd=miss; stored");
    assert_eq!(first["origin"], origin.url());
    assert!(first["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["request_id"].is_string() && first["time"].as_str().unwrap().ends_with('Z'));
    assert!(first["duration_ms"].is_number() && first["origin_ms"].is_number());
    assert_eq!(
        lines[1]["cache_status"]
            .as_str()
            .unwrap()
            .split(';')
            .nth(1)
            .map(str::trim),
        Some("hit")
    );

    // Rotation: move the file away, signal, and the next line starts a new file.
    std::fs::rename(&path, outpost.dir.path().join("access.log.1")).unwrap();
    outpost.signal("USR1");
    for _ in 0..500 {
        get(outpost.addr(), "example.com", "/two").await;
        if path.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines = access_log_lines(&path, 1).await;
    assert_eq!(lines[0]["path"], "/two");
}

/// Twenty slow requests in flight when SIGTERM lands all complete.
#[tokio::test]
async fn sigterm_lets_twenty_slow_downloads_complete() {
    let options = OriginOptions {
        delay: Some(Duration::from_millis(800)),
        ..Default::default()
    };
    let body = bytes::Bytes::from("x".repeat(256 * 1024));
    let origin = Origin::start_with(options, move |_| {
        respond(200, &[("cache-control", "no-store")], body.clone())
    })
    .await;
    let mut outpost =
        Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let addr = outpost.addr();
    let downloads: Vec<_> = (0..20)
        .map(|i| tokio::spawn(async move { get(addr, "example.com", &format!("/big/{i}")).await }))
        .collect();
    for _ in 0..1000 {
        if origin.connections() >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        origin.connections() >= 20,
        "every download reached the origin"
    );
    outpost.terminate();
    for download in downloads {
        let got = download.await.unwrap();
        assert_eq!((got.status.as_u16(), got.body.len()), (200, 256 * 1024));
    }
    assert_eq!(outpost.exit_code(Duration::from_secs(10)).await, Some(0));
}
