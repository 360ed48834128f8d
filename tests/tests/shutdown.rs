//! End-to-end: graceful shutdown on SIGTERM.

use std::time::Duration;

use outpost_tests::{Origin, OriginOptions, Outpost, get, respond, simple_config};

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
    // The request is in flight once the origin has its connection.
    for _ in 0..500 {
        if origin.connections() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
