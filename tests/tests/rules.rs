//! End-to-end: per-rule cache settings and serving stale (RFC 5861).

use std::time::Duration;

use outpost_tests::{Origin, Outpost, get, request, respond, simple_config};

/// Waits, bounded, until `condition` holds: the background work it watches
/// signals only through the origin.
async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

/// RFC 5861 §3: within stale-while-revalidate the stale copy answers at
/// once and one background request revalidates it.
#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_revalidates_behind() {
    let origin = Origin::start(|seen| {
        let cc = "max-age=0, stale-while-revalidate=60";
        if seen
            .headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            respond(304, &[("etag", "\"v1\""), ("cache-control", cc)], "")
        } else {
            respond(200, &[("etag", "\"v1\""), ("cache-control", cc)], "v1")
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/swr").await;
    let got = get(outpost.addr(), "example.com", "/swr").await;
    assert_eq!(got.body, "v1");
    assert!(
        got.cache_status().starts_with("Outpost; hit; ttl=-"),
        "{}",
        got.cache_status()
    );
    assert!(
        got.cache_status()
            .ends_with("detail=stale-while-revalidate"),
        "{}",
        got.cache_status()
    );
    until(|| origin.hits() == 2).await;
    assert_eq!(origin.last().headers["if-none-match"], "\"v1\"");

    // A client's no-cache waits for the revalidation instead.
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/swr",
        &[("cache-control", "no-cache")],
        "",
    )
    .await;
    assert_eq!(got.cache_status(), "Outpost; fwd=stale; fwd-status=304");
}

#[tokio::test]
async fn default_ttl_applies_only_without_freshness_and_ttl_by_status_per_code() {
    let origin = Origin::start(|seen| match seen.uri.path() {
        "/none" => respond(200, &[], "none"),
        "/own" => respond(200, &[("cache-control", "max-age=5")], "own"),
        _ => respond(404, &[], "missing"),
    })
    .await;
    let rules = "\n      - match: {}\n        default_ttl: 1h\n        ttl_by_status: {404: 2m}";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    let ttl_of = |status: &str| -> u64 {
        status
            .rsplit("ttl=")
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    for (path, low, high) in [("/none", 3590, 3600), ("/own", 0, 5), ("/gone", 110, 120)] {
        get(outpost.addr(), "example.com", path).await;
        let got = get(outpost.addr(), "example.com", path).await;
        got.assert_hit();
        let ttl = ttl_of(got.cache_status());
        assert!(
            (low..=high).contains(&ttl),
            "{path}: {}",
            got.cache_status()
        );
    }
    assert_eq!(origin.hits(), 3);
}

#[tokio::test]
async fn respect_origin_false_caches_what_the_origin_forbids() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[("cache-control", "no-store, private")],
            "shared anyway",
        )
    })
    .await;
    let rules =
        "\n      - match: {path_prefix: /forced/}\n        respect_origin: false\n        ttl: 10m";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    get(outpost.addr(), "example.com", "/forced/a").await;
    get(outpost.addr(), "example.com", "/forced/a")
        .await
        .assert_hit();
    get(outpost.addr(), "example.com", "/normal").await;
    assert!(
        get(outpost.addr(), "example.com", "/normal")
            .await
            .cache_status()
            .contains("fwd=miss")
    );
    assert_eq!(origin.hits(), 3);
}

/// RFC 9111 §5.2.1.4: a client's no-cache is honoured by default (RFC 9211
/// `fwd=request`: a fresh response the request refused); a rule can set it aside.
#[tokio::test]
async fn client_no_cache_is_honoured_unless_a_rule_ignores_it() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "x")).await;
    let rules = "\n      - match: {path_prefix: /cdn/}\n        ignore_client_no_cache: true";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    let no_cache = [("cache-control", "no-cache"), ("pragma", "no-cache")];
    for path in ["/cdn/a", "/b"] {
        get(outpost.addr(), "example.com", path).await;
    }
    request(
        outpost.addr(),
        "GET",
        "example.com",
        "/cdn/a",
        &no_cache,
        "",
    )
    .await
    .assert_hit();
    let got = request(outpost.addr(), "GET", "example.com", "/b", &no_cache, "").await;
    assert!(
        got.cache_status().starts_with("Outpost; fwd=request"),
        "{}",
        got.cache_status()
    );
}

#[tokio::test]
async fn query_parameters_are_included_or_excluded_from_the_key() {
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "max-age=300")],
            seen.uri.to_string(),
        )
    })
    .await;
    let rules = "\n      - match: {path_prefix: /search}\n        key: {query: {include: [q]}}\n      - match: {}\n        key: {query: {exclude: [utm_source]}}";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    get(outpost.addr(), "example.com", "/search?q=rust&session=1").await;
    get(outpost.addr(), "example.com", "/search?session=2&q=rust")
        .await
        .assert_hit();
    get(outpost.addr(), "example.com", "/page?id=1&utm_source=a").await;
    get(outpost.addr(), "example.com", "/page?utm_source=b&id=1")
        .await
        .assert_hit();
    assert!(
        get(outpost.addr(), "example.com", "/page?id=2")
            .await
            .cache_status()
            .contains("fwd=miss")
    );
}

/// RFC 5861 §4 with the window set by the rule, not the response.
#[tokio::test]
async fn a_rule_default_for_stale_if_error_serves_stale_when_the_origin_is_down() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=0")], "kept")).await;
    let rules = "\n      - match: {}\n        stale_if_error: 10m";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    get(outpost.addr(), "example.com", "/s").await;
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
}

/// `key: {headers, cookies}` make variants of one URL, and a purge of the
/// URL reaches every one of them.
#[tokio::test]
async fn key_headers_and_cookies_make_variants_that_purge_together() {
    let origin = Origin::start(|seen| {
        let device = seen
            .headers
            .get("x-device")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let cookie = seen
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        respond(
            200,
            &[("cache-control", "max-age=300")],
            format!("{device}|{cookie}"),
        )
    })
    .await;
    let rules = "\n      - match: {}\n        key: {headers: [X-Device], cookies: [lang]}";
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com"], rules),
        &[],
        Some("t"),
    )
    .await;
    let variants: [&[(&str, &str)]; 3] = [
        &[("x-device", "mobile"), ("cookie", "lang=en")],
        &[("x-device", "desktop"), ("cookie", "lang=en")],
        &[("x-device", "mobile"), ("cookie", "lang=fr; session=9")],
    ];
    for headers in variants {
        request(outpost.addr(), "GET", "example.com", "/k", headers, "").await;
    }
    for headers in variants {
        request(outpost.addr(), "GET", "example.com", "/k", headers, "")
            .await
            .assert_hit();
    }
    // Another session cookie does not split the variant: only `lang` counts.
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/k",
        &[("x-device", "mobile"), ("cookie", "session=1; lang=en")],
        "",
    )
    .await;
    got.assert_hit();
    assert_eq!(got.body, "mobile|lang=en");
    assert_eq!(origin.hits(), 3);

    let purged = outpost_tests::purge(
        outpost.admin,
        Some("t"),
        r#"{"urls": ["http://example.com/k"]}"#,
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(json["purged"], 3);
    let got = request(outpost.addr(), "GET", "example.com", "/k", variants[0], "").await;
    assert!(
        got.cache_status().contains("fwd="),
        "{}",
        got.cache_status()
    );
}

/// RFC 9111 §4.2.4: a cache that cannot reach the origin ("disconnected")
/// may serve a stale copy the response never allowed it to, for
/// `stale_if_unreachable` (5 minutes unless a rule says otherwise), and
/// never one marked must-revalidate. Staleness comes from the origin's
/// `Age`, so no clock has to move.
#[tokio::test]
async fn an_unreachable_origin_leaves_stale_copies_answering_for_a_while() {
    let origin = Origin::start(|seen| {
        let (cc, age) = match seen.uri.path() {
            "/old" => ("max-age=60", "1000"),
            "/strict" => ("max-age=60, must-revalidate", "100"),
            _ => ("max-age=60", "100"),
        };
        respond(200, &[("cache-control", cc), ("age", age)], "kept")
    })
    .await;
    let rules = "\n      - match: {path_prefix: /off}\n        stale_if_unreachable: 0s";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    for path in ["/recent", "/old", "/strict", "/off"] {
        assert_eq!(get(outpost.addr(), "example.com", path).await.body, "kept");
    }
    origin.stop();
    let got = get(outpost.addr(), "example.com", "/recent").await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (200, &b"kept"[..]),
        "40 s stale, within 5 minutes"
    );
    assert_eq!(
        got.cache_status(),
        "Outpost; fwd=stale; detail=origin-unreachable"
    );
    assert!(got.header("age").parse::<u64>().unwrap() >= 100);
    for (path, why) in [
        ("/old", "940 s stale, past 5 minutes"),
        ("/strict", "must-revalidate"),
        ("/off", "turned off by the rule"),
    ] {
        assert_eq!(
            get(outpost.addr(), "example.com", path).await.status,
            502,
            "{why}"
        );
    }
}
