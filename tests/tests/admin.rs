//! End-to-end: the side API's purge, health, metrics and fleet routes.

use outpost_tests::{
    Origin, Outpost, SCOPED_TOKEN, SCOPED_TOKEN_ENV, explain, get, purge, request, respond,
    simple_config,
};

#[tokio::test]
async fn a_purge_makes_the_next_request_a_miss() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "v")).await;
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com"], ""),
        &[],
        Some("s3cret"),
    )
    .await;
    get(outpost.addr(), "example.com", "/x?b=2&a=1").await;
    get(outpost.addr(), "example.com", "/x?a=1&b=2")
        .await
        .assert_hit();

    // Normalized the same way as the key: case, default port, query order.
    let res = purge(
        outpost.admin,
        Some("s3cret"),
        r#"{"urls": ["http://EXAMPLE.com:80/x?a=1&b=2"]}"#,
    )
    .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(json["purged"], 1);
    assert!(json["request_id"].as_str().is_some_and(|id| !id.is_empty()));

    assert_eq!(
        get(outpost.addr(), "example.com", "/x?a=1&b=2")
            .await
            .cache_status(),
        "Outpost; fwd=miss; stored"
    );
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn a_purge_without_the_right_token_gets_401_and_purges_nothing() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "v")).await;
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com"], ""),
        &[],
        Some("s3cret"),
    )
    .await;
    get(outpost.addr(), "example.com", "/x").await;
    let body = r#"{"urls": ["http://example.com/x"]}"#;
    for token in [None, Some("wrong"), Some("")] {
        let res = purge(outpost.admin, token, body).await;
        assert_eq!(res.status, 401);
        let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
        assert!(json["error"].is_string());
    }
    get(outpost.addr(), "example.com", "/x").await.assert_hit();
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "v")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/m").await;
    get(outpost.addr(), "example.com", "/m").await;
    assert_eq!(get(outpost.admin, "admin", "/healthz").await.status, 200);
    let metrics = get(outpost.admin, "admin", "/metrics").await;
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    // By cache status, site (its first host) and status class.
    assert!(
        text.contains(
            "outpost_requests_total{cache_status=\"hit\",site=\"example.com\",status_class=\"2xx\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "outpost_requests_total{cache_status=\"miss\",site=\"example.com\",status_class=\"2xx\"} 1"
        ),
        "{text}"
    );
    // The miss's body came from the origin, the hit's from memory.
    assert!(
        text.contains("outpost_response_body_bytes_total{source=\"memory\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outpost_response_body_bytes_total{source=\"origin\"} 1"),
        "{text}"
    );
    get(outpost.addr(), "unknown.example", "/m").await;
    let text =
        String::from_utf8(get(outpost.admin, "admin", "/metrics").await.body.to_vec()).unwrap();
    assert!(
        text.contains(
            "outpost_requests_total{cache_status=\"error\",site=\"\",status_class=\"4xx\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("outpost_request_duration_seconds_bucket"),
        "{text}"
    );
}

/// The public listener never purges: PURGE and BAN get 405 and reach no
/// origin, and `/purge` there is an ordinary path.
#[tokio::test]
async fn the_public_listener_never_purges() {
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "max-age=300")],
            seen.uri.path().to_owned(),
        )
    })
    .await;
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com"], ""),
        &[],
        Some("t"),
    )
    .await;
    get(outpost.addr(), "example.com", "/x").await;
    for method in ["PURGE", "BAN"] {
        let got =
            outpost_tests::request(outpost.addr(), method, "example.com", "/x", &[], "").await;
        assert_eq!(got.status, 405, "{method}");
    }
    get(outpost.addr(), "example.com", "/x").await.assert_hit();
    assert_eq!(
        get(outpost.addr(), "example.com", "/purge").await.body,
        "/purge"
    );
    assert_eq!(origin.hits(), 2);
    assert_eq!(get(outpost.admin, "admin", "/readyz").await.status, 200);
}

/// Body bytes from and to clients and from origins are counted.
#[tokio::test]
async fn body_bytes_are_counted() {
    let body = "z".repeat(1000);
    let origin = Origin::start(move |seen| {
        if seen.uri.path() == "/upload" {
            respond(200, &[("cache-control", "no-store")], "stored")
        } else {
            respond(200, &[("cache-control", "max-age=60")], body.clone())
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["a.test"], ""), &[], None).await;
    get(outpost.addr(), "a.test", "/big").await;
    get(outpost.addr(), "a.test", "/big").await.assert_hit();
    outpost_tests::request(
        outpost.addr(),
        "POST",
        "a.test",
        "/upload",
        &[],
        "0123456789",
    )
    .await;
    let value = |series: &'static str| outpost_tests::metric(outpost.admin, series);
    assert_eq!(
        value("outpost_client_body_bytes_total{direction=\"in\"}").await,
        Some(10.0)
    );
    assert_eq!(
        value("outpost_client_body_bytes_total{direction=\"out\"}").await,
        Some(2006.0)
    );
    assert_eq!(value("outpost_origin_body_bytes_total").await, Some(1006.0));
}

/// `GET /cluster` reads the members bucket while this node's heartbeats
/// keep writing to it, and answers every time, promptly. Found by `make
/// api-fuzz`: the member list came from the KV store's key listing, which
/// waited for ever when a heartbeat was written while it started, so one
/// `GET /cluster` (or `GET /purge/{id}`) in a hundred or so never answered.
#[tokio::test]
async fn the_cluster_route_answers_while_heartbeats_write() {
    let nats = outpost_tests::Nats::start().await;
    let config = format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\n\
         origins:\n  app:\n    servers:\n      - url: http://127.0.0.1:9\n\
         sites:\n  - hosts: [\"*\"]\n    origin: app\n\
         cluster:\n  node: a\n  nats:\n    servers: [\"{}\"]\n  state_dir: fleet\n  heartbeat: 100ms\n",
        nats.url()
    );
    let outpost = Outpost::start(&config, &[], Some("t")).await;
    outpost.await_ready().await;
    for i in 0..400 {
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            get(outpost.admin, "admin", "/cluster"),
        )
        .await
        .unwrap_or_else(|_| panic!("GET /cluster number {i} did not answer within 5 s"));
        assert_eq!(got.status, 200, "{:?}", got.body);
        let json: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(json["node"], "a", "{json}");
    }
}

/// Issue 21: `admin.access` limits the side API to client networks (the
/// health probes aside) and may ask a read token of its reading routes.
#[tokio::test]
async fn the_side_api_may_be_limited_to_networks_and_a_read_token() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "v")).await;
    let limited = simple_config(&origin, &["example.com"], "").replace(
        "admin:\n  addr: 127.0.0.1:0\n",
        "admin:\n  addr: 127.0.0.1:0\n  access: {networks: [10.0.0.0/8, \"fd00::/8\"]}\n",
    );
    let outpost = Outpost::start(&limited, &[], Some("t")).await;
    assert_eq!(get(outpost.admin, "admin", "/metrics").await.status, 403);
    assert_eq!(get(outpost.admin, "admin", "/stats").await.status, 403);
    assert_eq!(get(outpost.admin, "admin", "/healthz").await.status, 200);
    assert_eq!(get(outpost.admin, "admin", "/readyz").await.status, 200);
    drop(outpost);

    let read = simple_config(&origin, &["example.com"], "").replace(
        "admin:\n  addr: 127.0.0.1:0\n",
        &format!(
            "admin:\n  addr: 127.0.0.1:0\n  access: {{networks: [127.0.0.0/8], read_token_env: {SCOPED_TOKEN_ENV}}}\n"
        ),
    );
    let outpost = Outpost::start(&read, &[], Some("t")).await;
    assert_eq!(get(outpost.admin, "admin", "/stats").await.status, 401);
    let with = |token: &str| format!("Bearer {token}");
    for token in [SCOPED_TOKEN, "t"] {
        let auth = with(token);
        let got = request(
            outpost.admin,
            "GET",
            "admin",
            "/metrics",
            &[("authorization", &auth)],
            "",
        )
        .await;
        assert_eq!(got.status, 200, "{token}");
    }
    let auth = with("wrong");
    let got = request(
        outpost.admin,
        "GET",
        "admin",
        "/stats",
        &[("authorization", &auth)],
        "",
    )
    .await;
    assert_eq!(got.status, 401);
}

/// `/explain` tells what a request would get and why, through the same
/// routing, key and decision as a request: a hit, a Vary miss (RFC 9111
/// §4.1) beside the stored variant, a rule's bypass; and it fetches,
/// stores and counts nothing.
#[tokio::test]
async fn explain_reports_the_key_the_stored_variants_and_the_decision() {
    let origin = Origin::start(|seen| {
        let language = match seen.header("accept-language") {
            "" => "none".to_owned(),
            given => given.to_owned(),
        };
        respond(
            200,
            &[
                ("cache-control", "max-age=60, stale-while-revalidate=30"),
                ("vary", "Accept-Language"),
                ("surrogate-key", "pages"),
            ],
            language,
        )
    })
    .await;
    let rules = "\n      - match: { path_prefix: /api/ }\n        cache: bypass";
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com"], rules),
        &[],
        Some("s3cret"),
    )
    .await;
    let token = Some("s3cret");
    let en = [("accept-language", "en")];
    request(
        outpost.addr(),
        "GET",
        "example.com",
        "/page?b=2&a=1",
        &en,
        "",
    )
    .await;
    request(
        outpost.addr(),
        "GET",
        "example.com",
        "/page?a=1&b=2",
        &en,
        "",
    )
    .await
    .assert_hit();
    let hits = origin.hits();

    let (status, _) = explain(outpost.admin, None, "http://example.com/page", &[]).await;
    assert_eq!(status, 401);

    let url = "http://EXAMPLE.com/page?b=2&a=1";
    let (status, hit) = explain(outpost.admin, token, url, &["Accept-Language: en"]).await;
    assert_eq!(status, 200, "{hit}");
    assert_eq!(hit["key"]["text"], "http://example.com/page?a=1&b=2");
    assert_eq!(hit["key"]["hash"].as_str().map(str::len), Some(64));
    assert!(hit["rule"].is_null(), "{hit}");
    assert_eq!(hit["decision"]["outcome"], "hit", "{hit}");
    assert_eq!(hit["decision"]["code"], "hit");
    assert!(
        hit["decision"]["cache_status"]
            .as_str()
            .is_some_and(|s| s.starts_with("Outpost; hit; ttl=")),
        "{hit}"
    );
    let stored = hit["stored"].as_array().expect("stored variants");
    assert_eq!(stored.len(), 1, "{hit}");
    let variant = &stored[0];
    assert_eq!(variant["vary"]["accept-language"], "en");
    assert_eq!(variant["tier"], "memory");
    assert_eq!(variant["status"], 200);
    assert_eq!(variant["size"], 2);
    assert_eq!(variant["tags"][0], "pages");
    assert_eq!(variant["lifetime"], 60);
    assert_eq!(variant["freshness_from"], "max-age");
    assert_eq!(variant["fresh"], true);
    assert_eq!(variant["stale_while_revalidate_left"], 30);
    assert_eq!(variant["soft_purged"], false);

    // Another language: the stored variant is listed, the request misses.
    let (_, vary_miss) = explain(outpost.admin, token, url, &["Accept-Language: de"]).await;
    assert_eq!(vary_miss["decision"]["outcome"], "miss", "{vary_miss}");
    assert_eq!(vary_miss["decision"]["code"], "vary-miss");
    assert_eq!(vary_miss["stored"].as_array().map(Vec::len), Some(1));

    let (_, bypass) = explain(outpost.admin, token, "http://example.com/api/x", &[]).await;
    assert_eq!(bypass["decision"]["outcome"], "bypass", "{bypass}");
    assert_eq!(bypass["decision"]["code"], "bypass");
    assert_eq!(bypass["rule"], 0);

    let (_, nothing) = explain(outpost.admin, token, "http://example.com/none", &[]).await;
    assert_eq!(nothing["decision"]["code"], "miss", "{nothing}");
    assert_eq!(nothing["stored"].as_array().map(Vec::len), Some(0));

    // A soft purge shows on the variant, and turns the hit into a revalidation.
    let res = purge(outpost.admin, token, r#"{"tags": ["pages"], "soft": true}"#).await;
    assert_eq!(res.status, 200);
    let (_, soft) = explain(outpost.admin, token, url, &["Accept-Language: en"]).await;
    assert_eq!(soft["stored"][0]["soft_purged"], true, "{soft}");
    assert_eq!(soft["decision"]["outcome"], "stale", "{soft}");

    // Hosts no site serves, and what is not an http(s) URL.
    let (status, other) = explain(outpost.admin, token, "http://other.test/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(other["decision"]["outcome"], "refused", "{other}");
    assert_eq!(other["decision"]["status"], 421);
    let (status, _) = explain(outpost.admin, token, "ftp://example.com/", &[]).await;
    assert_eq!(status, 400);

    // Nothing was fetched or stored: the other language still misses.
    assert_eq!(origin.hits(), hits);
    let de = [("accept-language", "de")];
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/page?a=1&b=2",
        &de,
        "",
    )
    .await;
    assert_eq!(got.cache_status(), "Outpost; fwd=vary-miss; stored");
}
