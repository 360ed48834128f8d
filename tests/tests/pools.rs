//! End-to-end: origin pools with several scripted origins: key
//! distribution, failover, ejection and recovery, TLS and h2 origins, no
//! replay of unsafe requests, and all-down behaviour.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use outpost_tests::{
    H2Origin, H2Script, Misbehaviour, Origin, OriginOptions, Outpost, RawOrigin, get, pool_config,
    request, respond, stats,
};

/// An origin that names itself in its body and is never cached.
async fn named(name: &'static str) -> Origin {
    Origin::start(move |_| respond(200, &[("cache-control", "no-store")], name)).await
}

#[tokio::test]
async fn consistent_hashing_spreads_keys_and_sends_each_key_to_one_server() {
    let origins = [named("a").await, named("b").await, named("c").await];
    let urls: Vec<String> = origins.iter().map(Origin::url).collect();
    let outpost = Outpost::start(&pool_config(&urls, ""), &[], None).await;
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for i in 0..60 {
            let path = format!("/k{i}");
            let body = String::from_utf8(
                get(outpost.addr(), "example.com", &path)
                    .await
                    .body
                    .to_vec(),
            )
            .unwrap();
            if round == 0 {
                owner.insert(path, body);
            } else {
                assert_eq!(owner[&path], body, "{path} moved between servers");
            }
        }
    }
    for origin in &origins {
        assert!(
            origin.hits() >= 10,
            "a server got {} of 120 requests",
            origin.hits()
        );
    }
}

#[tokio::test]
async fn when_an_origin_dies_its_keys_fail_over_without_errors() {
    let origins = [named("a").await, named("b").await];
    let urls: Vec<String> = origins.iter().map(Origin::url).collect();
    let outpost = Outpost::start(&pool_config(&urls, "    retries: 1\n"), &[], None).await;
    for i in 0..20 {
        assert_eq!(
            get(outpost.addr(), "example.com", &format!("/k{i}"))
                .await
                .status,
            200
        );
    }
    origins[0].stop();
    for i in 0..40 {
        let got = get(outpost.addr(), "example.com", &format!("/k{i}")).await;
        assert_eq!(got.status, 200, "request {i} failed after one origin died");
        assert_eq!(got.body, "b");
    }
}

#[tokio::test]
async fn failing_servers_are_ejected_then_recover_through_health_checks() {
    let broken = Arc::new(AtomicBool::new(true));
    let flag = broken.clone();
    let sick = Origin::start(move |seen| {
        if seen.uri.path() == "/healthz" {
            let status = if flag.load(Ordering::SeqCst) {
                503
            } else {
                200
            };
            return respond(status, &[], "");
        }
        if flag.load(Ordering::SeqCst) {
            respond(500, &[], "sick")
        } else {
            respond(200, &[("cache-control", "no-store")], "sick")
        }
    })
    .await;
    let well = named("well").await;
    let pool = "    balance: round_robin\n    retries: 0\n    eject: {consecutive_failures: 2, cooldown: 1m}\n    health_check: {path: /healthz, interval: 100ms, rise: 1, fall: 1}\n";
    let outpost = Outpost::start(&pool_config(&[sick.url(), well.url()], pool), &[], None).await;

    // Requests reach `sick` until its failures (or its checks) take it out.
    let mut served_by_sick = 0;
    for _ in 0..20 {
        if get(outpost.addr(), "example.com", "/x").await.status == 500 {
            served_by_sick += 1;
        }
    }
    assert!(
        served_by_sick <= 2,
        "sick served {served_by_sick} requests after ejection"
    );
    let report = stats(outpost.admin).await;
    let servers = &report["origins"][0]["servers"];
    assert_eq!(servers[0]["healthy"], false, "{report}");
    assert_eq!(servers[1]["healthy"], true, "{report}");
    let metrics =
        String::from_utf8(get(outpost.admin, "admin", "/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(&format!(
            "outpost_origin_up{{pool=\"app\",server=\"{}\"}} 0",
            sick.url()
        )),
        "{metrics}"
    );

    // It heals; the next passing check brings it back.
    broken.store(false, Ordering::SeqCst);
    let hits_before = sick.hits();
    let mut back = false;
    for _ in 0..200 {
        let body = get(outpost.addr(), "example.com", "/x").await.body;
        if body == "sick" && sick.hits() > hits_before {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(back, "the healed server never came back");
}

#[tokio::test]
async fn a_tls_origin_is_verified_against_the_configured_ca() {
    let (ca_cert, ca_key) = outpost_edge::tls::certificate_authority("Test CA").unwrap();
    let (cert, key) =
        outpost_edge::tls::signed_certificate(&["origin.test", "localhost"], &ca_cert, &ca_key)
            .unwrap();
    let good = Origin::start_with(
        OriginOptions {
            tls: Some((cert, key)),
            http2_only: false,
            delay: None,
        },
        |_| respond(200, &[("cache-control", "no-store")], "over tls"),
    )
    .await;
    let port = good.addr.port();
    let pool = "    tls: {ca_file: ca.pem}\n";
    let outpost = Outpost::start(
        &pool_config(&[format!("https://localhost:{port}")], pool),
        &[("ca.pem", &ca_cert)],
        None,
    )
    .await;
    let got = get(outpost.addr(), "example.com", "/").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "over tls");

    // A certificate from another authority is refused.
    let (rogue_cert, rogue_key) = outpost_edge::tls::self_signed(&["localhost"]).unwrap();
    let rogue = Origin::start_with(
        OriginOptions {
            tls: Some((rogue_cert, rogue_key)),
            http2_only: false,
            delay: None,
        },
        |_| respond(200, &[], "should never be seen"),
    )
    .await;
    let port = rogue.addr.port();
    let outpost = Outpost::start(
        &pool_config(&[format!("https://localhost:{port}")], pool),
        &[("ca.pem", &ca_cert)],
        None,
    )
    .await;
    let got = get(outpost.addr(), "example.com", "/").await;
    assert_eq!(got.status, 502);
    assert_eq!(rogue.hits(), 0);
}

#[tokio::test]
async fn an_h2c_origin_carries_many_requests_on_few_connections() {
    let origin = Origin::start_with(
        OriginOptions {
            tls: None,
            http2_only: true,
            delay: None,
        },
        |_| respond(200, &[("cache-control", "no-store")], "h2"),
    )
    .await;
    let outpost = Outpost::start(
        &pool_config(&[origin.url()], "    protocol: http2\n"),
        &[],
        None,
    )
    .await;
    let requests: Vec<_> = (0..30)
        .map(|i| {
            get(
                outpost.addr(),
                "example.com",
                if i % 2 == 0 { "/a" } else { "/b" },
            )
        })
        .collect();
    for got in futures_util::future::join_all(requests).await {
        assert_eq!(got.status, 200);
    }
    assert_eq!(origin.hits(), 30);
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.version == http::Version::HTTP_2)
    );
    assert!(
        origin.connections() <= 2,
        "{} connections for 30 requests",
        origin.connections()
    );
}

#[tokio::test]
async fn a_post_that_reached_the_origin_is_never_replayed() {
    let resetting = RawOrigin::start(Misbehaviour::CloseWithoutAnswer).await;
    let outpost = Outpost::start(
        &pool_config(&[resetting.url()], "    retries: 3\n"),
        &[],
        None,
    )
    .await;
    let got = request(
        outpost.addr(),
        "POST",
        "example.com",
        "/order",
        &[],
        "buy one",
    )
    .await;
    assert_eq!(got.status, 502);
    assert_eq!(resetting.hits(), 1, "the POST was sent more than once");

    // The same failure on a GET is retried: it is idempotent.
    let got = get(outpost.addr(), "example.com", "/page").await;
    assert_eq!(got.status, 502);
    assert_eq!(resetting.hits(), 1 + 4);
}

#[tokio::test]
async fn a_get_reset_before_its_headers_goes_to_the_next_server() {
    let resetting = RawOrigin::start(Misbehaviour::CloseWithoutAnswer).await;
    let healthy = named("healthy").await;
    let pool = "    balance: round_robin\n    retries: 1\n    eject: {consecutive_failures: 0}\n";
    let outpost = Outpost::start(
        &pool_config(&[resetting.url(), healthy.url()], pool),
        &[],
        None,
    )
    .await;
    for _ in 0..6 {
        assert_eq!(
            get(outpost.addr(), "example.com", "/").await.body,
            "healthy"
        );
    }
    assert!(resetting.hits() >= 2);
}

#[tokio::test]
async fn connections_the_origin_closed_silently_are_retried_without_502s() {
    let origin = RawOrigin::start(Misbehaviour::AnswerThenCloseSilently).await;
    let outpost = Outpost::start(
        &pool_config(&[origin.url()], "    eject: {consecutive_failures: 0}\n"),
        &[],
        None,
    )
    .await;
    for round in 0..10 {
        let requests: Vec<_> = (0..20)
            .map(|_| get(outpost.addr(), "example.com", "/"))
            .collect();
        for got in futures_util::future::join_all(requests).await {
            assert_eq!(got.status, 200, "a 502 in round {round}: {:?}", got.body);
        }
    }
}

#[tokio::test]
async fn when_every_server_is_down_the_answer_is_a_short_502() {
    let dead: Vec<String> = (0..2)
        .map(|_| {
            format!(
                "http://{}",
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
            )
        })
        .collect();
    let outpost = Outpost::start(&pool_config(&dead, ""), &[], None).await;
    let got = get(outpost.addr(), "example.com", "/").await;
    assert_eq!(got.status, 502);
    assert!(got.body.len() < 300, "{:?}", got.body);
    // In general terms (issue 20): the addresses tried go to the log only.
    let body = String::from_utf8_lossy(&got.body);
    assert!(body.contains("could not be reached"), "{body}");
    assert!(dead.iter().all(|url| !body.contains(&url[7..])), "{body}");
}

#[tokio::test]
async fn a_host_name_with_several_addresses_becomes_several_servers() {
    // `localhost` resolves to 127.0.0.1 and often ::1 too; the origin
    // listens on 127.0.0.1 only, so any ::1 server fails over to it.
    let origin = named("local").await;
    let url = format!("http://localhost:{}", origin.addr.port());
    let outpost = Outpost::start(&pool_config(&[url], "    retries: 2\n"), &[], None).await;
    for i in 0..10 {
        assert_eq!(
            get(outpost.addr(), "example.com", &format!("/{i}"))
                .await
                .body,
            "local"
        );
    }
    let report = stats(outpost.admin).await;
    let servers = report["origins"][0]["servers"].as_array().unwrap().clone();
    let addresses: Vec<&str> = servers
        .iter()
        .map(|s| s["address"].as_str().unwrap())
        .collect();
    assert!(
        addresses.contains(&format!("127.0.0.1:{}", origin.addr.port()).as_str()),
        "{addresses:?}"
    );
}

#[tokio::test]
async fn an_https_origin_that_speaks_h2_gets_it_by_alpn() {
    let (ca_cert, ca_key) = outpost_edge::tls::certificate_authority("Test CA").unwrap();
    let (cert, key) =
        outpost_edge::tls::signed_certificate(&["localhost"], &ca_cert, &ca_key).unwrap();
    let origin = Origin::start_with(
        OriginOptions {
            tls: Some((cert, key)),
            http2_only: true,
            delay: None,
        },
        |_| respond(200, &[("cache-control", "no-store")], "h2 over tls"),
    )
    .await;
    let url = format!("https://localhost:{}", origin.addr.port());
    let outpost = Outpost::start(
        &pool_config(&[url], "    tls: {ca_file: ca.pem}\n"),
        &[("ca.pem", &ca_cert)],
        None,
    )
    .await;
    for _ in 0..5 {
        assert_eq!(
            get(outpost.addr(), "example.com", "/").await.body,
            "h2 over tls"
        );
    }
    let last = origin.last();
    assert_eq!(last.version, http::Version::HTTP_2);
    assert_eq!(
        last.uri.authority().map(|a| a.as_str()),
        Some("example.com")
    );
    // RFC 9113 §8.3.1: the host travels as `:authority` alone.
    assert!(!last.headers.contains_key("host"));
    assert_eq!(origin.connections(), 1);
}

/// RFC 5861 §4: when every server is down, or answers 5xx, a stale entry
/// with stale-if-error answers instead of an error.
#[tokio::test]
async fn when_the_origin_fails_stale_if_error_serves_the_stale_copy() {
    let failing = Arc::new(AtomicBool::new(false));
    let flag = failing.clone();
    let origin = Origin::start(move |seen| {
        if flag.load(Ordering::SeqCst) {
            return respond(503, &[], "down");
        }
        let cc = if seen.uri.path() == "/strict" {
            "max-age=0, stale-if-error=60, must-revalidate"
        } else {
            "max-age=0, stale-if-error=60"
        };
        respond(200, &[("cache-control", cc)], "kept")
    })
    .await;
    let outpost = Outpost::start(
        &pool_config(&[origin.url()], "    eject: {consecutive_failures: 0}\n"),
        &[],
        None,
    )
    .await;
    assert_eq!(get(outpost.addr(), "example.com", "/s").await.body, "kept");
    assert_eq!(
        get(outpost.addr(), "example.com", "/strict").await.body,
        "kept"
    );

    failing.store(true, Ordering::SeqCst);
    let got = get(outpost.addr(), "example.com", "/s").await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (200, &b"kept"[..])
    );
    assert_eq!(
        got.cache_status(),
        "Outpost; fwd=stale; fwd-status=503; detail=stale-if-error"
    );
    let got = get(outpost.addr(), "example.com", "/strict").await;
    assert_eq!(got.status, 503, "must-revalidate forbids serving stale");

    origin.stop();
    let got = get(outpost.addr(), "example.com", "/s").await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (200, &b"kept"[..])
    );
    assert_eq!(
        got.cache_status(),
        "Outpost; fwd=stale; detail=stale-if-error"
    );
    assert_eq!(
        get(outpost.addr(), "example.com", "/strict").await.status,
        502
    );
}

/// RFC 9113 §8.7: a stream the server refused was not processed, so even
/// a POST is sent again (within `retries`).
#[tokio::test]
async fn a_refused_http2_stream_is_sent_again_even_for_a_post() {
    let origin = H2Origin::start(H2Script::RefuseFirst(1), None).await;
    let outpost = Outpost::start(
        &pool_config(&[origin.url()], "    protocol: http2\n    retries: 1\n"),
        &[],
        None,
    )
    .await;
    let got = request(
        outpost.addr(),
        "POST",
        "example.com",
        "/form",
        &[("content-type", "text/plain")],
        "the form",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "the form");
    let seen = origin.seen();
    assert_eq!(seen.len(), 2, "refused once, then answered");
    assert!(seen.iter().all(|s| s.method == http::Method::POST));
    assert_eq!(origin.connections(), 1);
}

/// `protocol: auto` over TLS to a server whose ALPN picks HTTP/1.1: the
/// first connection tells, and requests go over pooled HTTP/1.1 from then on.
#[tokio::test]
async fn an_https_origin_that_speaks_only_http1_gets_it_by_alpn() {
    let (ca_cert, ca_key) = outpost_edge::tls::certificate_authority("Test CA").unwrap();
    let (cert, key) =
        outpost_edge::tls::signed_certificate(&["localhost"], &ca_cert, &ca_key).unwrap();
    let origin = Origin::start_with(
        OriginOptions {
            tls: Some((cert, key)),
            http2_only: false,
            delay: None,
        },
        |_| respond(200, &[("cache-control", "no-store")], "h1 over tls"),
    )
    .await;
    let url = format!("https://localhost:{}", origin.addr.port());
    let outpost = Outpost::start(
        &pool_config(&[url], "    tls: {ca_file: ca.pem}\n"),
        &[("ca.pem", &ca_cert)],
        None,
    )
    .await;
    for _ in 0..5 {
        assert_eq!(
            get(outpost.addr(), "example.com", "/").await.body,
            "h1 over tls"
        );
    }
    assert_eq!(origin.hits(), 5);
    assert!(
        origin
            .seen()
            .iter()
            .all(|s| s.version == http::Version::HTTP_11)
    );
    // One connection to learn the protocol, one that is reused.
    assert_eq!(origin.connections(), 2);
}
