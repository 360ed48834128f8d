//! End-to-end: the caching proxy over plain HTTP/1.1 and h2c.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use outpost_tests::{Origin, Outpost, get, request, respond, simple_config};

#[tokio::test]
async fn a_max_age_response_is_fetched_once_then_served_as_a_hit() {
    let origin =
        Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "hello")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;

    let first = get(outpost.addr(), "example.com", "/a").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, "hello");
    assert_eq!(first.cache_status(), "Outpost; fwd=miss; stored");
    assert_eq!(
        first.header("age"),
        "",
        "a response fresh from the origin carries no Age of ours"
    );

    let second = get(outpost.addr(), "example.com", "/a").await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body, "hello");
    second.assert_hit();
    assert!(
        second.header("age").parse::<u64>().is_ok(),
        "RFC 9111 §5.1: a cached response carries Age"
    );
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn a_no_store_response_is_fetched_every_time() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "fresh")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for _ in 0..3 {
        let got = get(outpost.addr(), "example.com", "/api").await;
        assert_eq!(got.body, "fresh");
        assert_eq!(got.cache_status(), "Outpost; fwd=miss; detail=not-storable");
    }
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn two_hosts_with_the_same_path_do_not_share_an_entry() {
    let origin = Origin::start(|seen| {
        let host = seen.headers["host"].to_str().unwrap_or_default().to_owned();
        respond(
            200,
            &[("cache-control", "max-age=300")],
            format!("for {host}"),
        )
    })
    .await;
    let outpost = Outpost::start(
        &simple_config(&origin, &["a.test", "b.test"], ""),
        &[],
        None,
    )
    .await;
    assert_eq!(
        get(outpost.addr(), "a.test", "/same").await.body,
        "for a.test"
    );
    assert_eq!(
        get(outpost.addr(), "b.test", "/same").await.body,
        "for b.test"
    );
    assert_eq!(
        get(outpost.addr(), "a.test", "/same").await.body,
        "for a.test"
    );
    assert_eq!(
        get(outpost.addr(), "B.TEST:80", "/same").await.body,
        "for b.test",
        "host is case-insensitive, default port dropped"
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn an_unknown_host_gets_421_and_reaches_no_origin() {
    let origin = Origin::start(|_| respond(200, &[], "should not be seen")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let got = get(outpost.addr(), "other.test", "/").await;
    assert_eq!(got.status, 421);
    assert_eq!(origin.hits(), 0);
}

#[tokio::test]
async fn hop_by_hop_and_client_forwarding_headers_do_not_reach_the_origin() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[
                ("cache-control", "no-store"),
                ("connection", "x-internal"),
                ("x-internal", "1"),
                ("keep-alive", "timeout=5"),
            ],
            "ok",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/h",
        &[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=9"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-host", "evil.test"),
            ("forwarded", "for=198.51.100.1"),
            ("x-forwarded-proto", "https"),
        ],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    let seen = origin.last().headers;
    for name in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "te",
        "x-forwarded-host",
        "forwarded",
    ] {
        assert!(!seen.contains_key(name), "{name} reached the origin");
    }
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["via"], "1.1 outpost");
    assert_eq!(seen["host"], "example.com");
    assert!(
        !got.headers.contains_key("x-internal"),
        "a field the origin's Connection named reached the client"
    );
    assert!(!got.headers.contains_key("keep-alive"));
    assert_eq!(got.header("via"), "1.1 outpost");
}

/// RFC 9111 §3.5: a shared cache answers a request with Authorization from
/// a stored response only when that response allowed it.
#[tokio::test]
async fn authorization_is_not_answered_from_a_shared_entry_unless_allowed() {
    let origin = Origin::start(|seen| {
        let cc = if seen.uri.path() == "/public" {
            "public, max-age=300"
        } else {
            "max-age=300"
        };
        respond(200, &[("cache-control", cc)], "secret")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let auth = [("authorization", "Bearer user-1")];
    for _ in 0..2 {
        let got = request(outpost.addr(), "GET", "example.com", "/private", &auth, "").await;
        assert!(
            got.cache_status().contains("fwd=miss"),
            "{}",
            got.cache_status()
        );
    }
    assert_eq!(origin.hits(), 2);
    request(outpost.addr(), "GET", "example.com", "/public", &auth, "").await;
    let got = request(outpost.addr(), "GET", "example.com", "/public", &auth, "").await;
    got.assert_hit();
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn set_cookie_responses_are_shared_only_when_a_rule_says_so() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[
                ("cache-control", "public, max-age=300"),
                ("set-cookie", "session=abc"),
            ],
            "c",
        )
    })
    .await;
    let rules = "\n      - match: { path_prefix: /shared/ }\n        share_set_cookie: true";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    get(outpost.addr(), "example.com", "/mine").await;
    let got = get(outpost.addr(), "example.com", "/mine").await;
    assert_eq!(got.cache_status(), "Outpost; fwd=miss; detail=set-cookie");
    get(outpost.addr(), "example.com", "/shared/x").await;
    let got = get(outpost.addr(), "example.com", "/shared/x").await;
    got.assert_hit();
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn rules_bypass_and_ignore_the_query() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "x")).await;
    let rules = "\n      - match: { path_prefix: /static/ }\n        key: { query: ignore }\n      - match: { path_prefix: /api/ }\n        cache: bypass";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    get(outpost.addr(), "example.com", "/static/app.js?v=1").await;
    let got = get(outpost.addr(), "example.com", "/static/app.js?v=2").await;
    got.assert_hit();
    for _ in 0..2 {
        assert_eq!(
            get(outpost.addr(), "example.com", "/api/x")
                .await
                .cache_status(),
            "Outpost; fwd=bypass"
        );
    }
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_and_a_304_refreshes_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = Origin::start(move |seen| {
        counter.fetch_add(1, Ordering::SeqCst);
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            respond(
                304,
                &[("etag", "\"v1\""), ("cache-control", "max-age=300")],
                "",
            )
        } else {
            respond(
                200,
                &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
                "body-v1",
            )
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    assert_eq!(
        get(outpost.addr(), "example.com", "/r")
            .await
            .cache_status(),
        "Outpost; fwd=miss; stored"
    );
    let second = get(outpost.addr(), "example.com", "/r").await;
    assert_eq!(second.cache_status(), "Outpost; fwd=stale; fwd-status=304");
    assert_eq!(second.body, "body-v1");
    assert_eq!(origin.last().headers["if-none-match"], "\"v1\"");
    let third = get(outpost.addr(), "example.com", "/r").await;
    third.assert_hit();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// RFC 9110 §13.1.2: a client's matching If-None-Match gets a 304 from cache.
#[tokio::test]
async fn conditional_requests_are_answered_from_cache() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[("etag", "\"e1\""), ("cache-control", "max-age=300")],
            "full body",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/c").await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/c",
        &[("if-none-match", "\"e1\"")],
        "",
    )
    .await;
    assert_eq!(got.status, 304);
    assert!(got.body.is_empty());
    assert_eq!(got.header("etag"), "\"e1\"");
    let head = request(outpost.addr(), "HEAD", "example.com", "/c", &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), "9");
    assert_eq!(origin.hits(), 1);
}

/// RFC 9111 §4.4: a successful unsafe request invalidates the stored response.
#[tokio::test]
async fn a_post_invalidates_the_stored_response_and_its_body_reaches_the_origin() {
    let origin = Origin::start(|seen| {
        if seen.method == http::Method::POST {
            respond(200, &[], "posted")
        } else {
            respond(200, &[("cache-control", "max-age=300")], "page")
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/p").await;
    get(outpost.addr(), "example.com", "/p").await.assert_hit();
    let posted = request(
        outpost.addr(),
        "POST",
        "example.com",
        "/p",
        &[("content-type", "text/plain")],
        "payload",
    )
    .await;
    assert_eq!(posted.body, "posted");
    assert_eq!(posted.cache_status(), "Outpost; fwd=method");
    assert_eq!(
        get(outpost.addr(), "example.com", "/p")
            .await
            .cache_status(),
        "Outpost; fwd=miss; stored"
    );
}

#[tokio::test]
async fn a_body_over_max_object_size_passes_whole_without_being_stored() {
    let big = "x".repeat(3 << 20);
    let body = big.clone();
    let origin =
        Origin::start(move |_| respond(200, &[("cache-control", "max-age=300")], body.clone()))
            .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for _ in 0..2 {
        let got = get(outpost.addr(), "example.com", "/big").await;
        assert_eq!(got.body.len(), big.len());
        assert_eq!(got.cache_status(), "Outpost; fwd=miss; detail=too-large");
    }
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn an_origin_that_is_down_gives_502() {
    // Bind and drop a listener to find a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers: [{{url: http://{dead}}}]\n    retries: 0\nsites:\n  - hosts: [\"*\"]\n    origin: app\n"
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let got = get(outpost.addr(), "example.com", "/").await;
    assert_eq!(got.status, 502);
}

#[tokio::test]
async fn a_failed_server_is_skipped_for_the_next_one() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "alive")).await;
    let config = format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    balance: round_robin\n    servers: [{{url: http://{dead}}}, {{url: {}}}]\n    retries: 1\nsites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.url()
    );
    let outpost = Outpost::start(&config, &[], None).await;
    for _ in 0..4 {
        assert_eq!(get(outpost.addr(), "example.com", "/").await.body, "alive");
    }
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_on_a_plain_listener() {
    let origin =
        Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "over h2c")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let stream = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .unwrap();
    let (mut client, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    for expected in ["Outpost; fwd=miss; stored", "Outpost; hit"] {
        let req = http::Request::get("http://example.com/h2c")
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let response = response.await.unwrap();
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(status.starts_with(expected), "{status}");
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            body.flow_control().release_capacity(chunk.len()).unwrap();
            bytes.extend_from_slice(&chunk);
        }
        assert_eq!(bytes, b"over h2c");
    }
    assert_eq!(origin.hits(), 1);
}

/// Dot segments, plain or encoded, would let a path match one rule and
/// reach another resource at the origin: they are refused.
#[tokio::test]
async fn dot_segments_are_refused_and_escapes_normalized() {
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "no-store")],
            seen.uri.path().to_owned(),
        )
    })
    .await;
    let rules = "\n      - match: { path_prefix: /api/ }\n        cache: bypass";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    for path in ["/static/%2e%2e/account", "/a/../b", "/a/%2E/b"] {
        assert_eq!(
            get(outpost.addr(), "example.com", path).await.status,
            400,
            "{path}"
        );
    }
    assert_eq!(origin.hits(), 0);
    // `%61` is `a`: the request is the /api/ path, bypassed, and forwarded decoded.
    let got = get(outpost.addr(), "example.com", "/%61pi/x").await;
    assert_eq!(got.cache_status(), "Outpost; fwd=bypass");
    assert_eq!(got.body, "/api/x");
}

/// RFC 9112 §3.2: a request with two Host fields is a 400.
#[tokio::test]
async fn two_host_fields_are_a_bad_request() {
    let origin = Origin::start(|_| respond(200, &[], "x")).await;
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com", "other.test"], ""),
        &[],
        None,
    )
    .await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/",
        &[("host", "other.test")],
        "",
    )
    .await;
    assert_eq!(got.status, 400);
    assert_eq!(origin.hits(), 0);
}

/// A body on a GET is dropped, and so is the length that announced it: the
/// origin must not wait for bytes that never come.
#[tokio::test]
async fn a_get_body_is_dropped_with_its_length() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "ok")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let got = request(outpost.addr(), "GET", "example.com", "/g", &[], "hello").await;
    assert_eq!(got.status, 200);
    let seen = origin.last();
    assert!(
        !seen.headers.contains_key("content-length"),
        "{:?}",
        seen.headers
    );
    assert!(seen.body.is_empty());
}

/// RFC 9111 §4.3.1: the cache validates its own entry with its own
/// validators; a client's If-None-Match for another version is not sent.
#[tokio::test]
async fn revalidation_sends_the_caches_validators_not_the_clients() {
    let origin = Origin::start(|seen| {
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            respond(
                304,
                &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
                "",
            )
        } else {
            respond(
                200,
                &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
                "v1",
            )
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/v").await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v",
        &[("if-none-match", "\"v2\"")],
        "",
    )
    .await;
    assert_eq!(origin.last().headers["if-none-match"], "\"v1\"");
    assert_eq!(
        got.status, 200,
        "the client's v2 does not match the stored v1"
    );
    assert_eq!(got.body, "v1");
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v",
        &[("if-none-match", "\"v1\"")],
        "",
    )
    .await;
    assert_eq!(got.status, 304);
}
