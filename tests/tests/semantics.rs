//! End-to-end: caching semantics of RFC 9111 and RFC 9213 beyond the basics.

use outpost_tests::{Origin, Outpost, get, request, respond, simple_config};

/// RFC 9111 §4.4: a successful unsafe request invalidates its target and
/// the same-origin URIs in Location and Content-Location, not others.
#[tokio::test]
async fn unsafe_requests_invalidate_location_and_content_location() {
    let origin = Origin::start(|seen| {
        if seen.method == http::Method::POST {
            respond(
                201,
                &[
                    ("location", "/items/7"),
                    ("content-location", "http://example.com/items/list"),
                    ("x-other", "1"),
                ],
                "",
            )
        } else {
            respond(
                200,
                &[("cache-control", "max-age=300")],
                seen.uri.path().to_owned(),
            )
        }
    })
    .await;
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com", "other.test"], ""),
        &[],
        None,
    )
    .await;
    for path in ["/items/7", "/items/list", "/items/8"] {
        get(outpost.addr(), "example.com", path).await;
        get(outpost.addr(), "example.com", path).await.assert_hit();
    }
    get(outpost.addr(), "other.test", "/items/7").await;
    let posted = request(outpost.addr(), "POST", "example.com", "/items", &[], "new").await;
    assert_eq!(posted.status, 201);
    assert_eq!(
        get(outpost.addr(), "example.com", "/items/7")
            .await
            .cache_status(),
        "Outpost; fwd=miss; stored"
    );
    assert_eq!(
        get(outpost.addr(), "example.com", "/items/list")
            .await
            .cache_status(),
        "Outpost; fwd=miss; stored"
    );
    get(outpost.addr(), "example.com", "/items/8")
        .await
        .assert_hit();
    get(outpost.addr(), "other.test", "/items/7")
        .await
        .assert_hit();
}

/// RFC 9111 §5.2.1.7: only-if-cached answers from cache or with 504.
#[tokio::test]
async fn only_if_cached_never_reaches_the_origin() {
    let origin =
        Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "stored")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let oic = [("cache-control", "only-if-cached")];
    let got = request(outpost.addr(), "GET", "example.com", "/o", &oic, "").await;
    assert_eq!(got.status, 504);
    assert_eq!(origin.hits(), 0);
    get(outpost.addr(), "example.com", "/o").await;
    let got = request(outpost.addr(), "GET", "example.com", "/o", &oic, "").await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (200, &b"stored"[..])
    );
    assert_eq!(origin.hits(), 1);
}

/// RFC 9213 §2.1: CDN-Cache-Control decides for Outpost over Cache-Control,
/// which still reaches the client for browsers.
#[tokio::test]
async fn cdn_cache_control_takes_precedence_over_cache_control() {
    let origin = Origin::start(|seen| {
        let headers: &[(&str, &str)] = match seen.uri.path() {
            "/cdn-only" => &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600"),
            ],
            "/cdn-no" => &[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "no-store"),
            ],
            _ => &[
                ("cache-control", "max-age=1"),
                ("surrogate-control", "max-age=600"),
            ],
        };
        respond(200, headers, "x")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/cdn-only").await;
    let got = get(outpost.addr(), "example.com", "/cdn-only").await;
    got.assert_hit();
    assert_eq!(got.header("cache-control"), "no-store");
    get(outpost.addr(), "example.com", "/cdn-no").await;
    assert!(
        get(outpost.addr(), "example.com", "/cdn-no")
            .await
            .cache_status()
            .contains("fwd=miss")
    );
    get(outpost.addr(), "example.com", "/surrogate").await;
    let got = get(outpost.addr(), "example.com", "/surrogate").await;
    got.assert_hit();
    let ttl: u64 = got
        .cache_status()
        .rsplit("ttl=")
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    assert!(
        (590..=600).contains(&ttl),
        "Surrogate-Control max-age=600 wins: {}",
        got.cache_status()
    );
}

/// RFC 9111 §4.1: two variants of one URL are served side by side.
#[tokio::test]
async fn vary_variants_are_stored_side_by_side() {
    let origin = Origin::start(|seen| {
        let encoding = seen
            .headers
            .get("accept-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        respond(
            200,
            &[
                ("cache-control", "max-age=300"),
                ("vary", "Accept-Encoding"),
            ],
            encoding,
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for round in 0..2 {
        for encoding in ["gzip", "br"] {
            let got = request(
                outpost.addr(),
                "GET",
                "example.com",
                "/v",
                &[("accept-encoding", encoding)],
                "",
            )
            .await;
            assert_eq!(got.body, encoding);
            if round == 1 {
                got.assert_hit();
            }
        }
    }
    let got = get(outpost.addr(), "example.com", "/v").await;
    assert_eq!(got.cache_status(), "Outpost; fwd=vary-miss; stored");
    assert_eq!(origin.hits(), 3);
}

fn http_date(seconds_ago: u64) -> String {
    httpdate::fmt_http_date(
        std::time::SystemTime::now() - std::time::Duration::from_secs(seconds_ago),
    )
}

fn ttl(status: &str) -> i64 {
    status
        .rsplit("ttl=")
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(i64::MIN)
}

/// RFC 9111 §4.2.3: the age counts the time since the origin's Date
/// (apparent age) and never goes below the origin's own Age; §5.1: every
/// cached answer carries it. Time is moved by dating the responses.
#[tokio::test]
async fn age_counts_the_apparent_age_and_the_origins_age() {
    let origin = Origin::start(|seen| match seen.uri.path() {
        "/dated" => respond(
            200,
            &[("date", &http_date(100)), ("cache-control", "max-age=300")],
            "d",
        ),
        _ => respond(
            200,
            &[("age", "250"), ("cache-control", "max-age=300")],
            "a",
        ),
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for (path, min_age) in [("/dated", 100), ("/aged", 250)] {
        get(outpost.addr(), "example.com", path).await;
        let got = get(outpost.addr(), "example.com", path).await;
        got.assert_hit();
        let age: u64 = got.header("age").parse().unwrap();
        assert!((min_age..min_age + 5).contains(&age), "{path}: Age {age}");
        let left = ttl(got.cache_status());
        assert!(
            (300 - min_age as i64 - 5..=300 - min_age as i64).contains(&left),
            "{path}: {}",
            got.cache_status()
        );
    }
}

/// RFC 9111 §4.2.1, §5.3: Expires in the past, an invalid Expires and an
/// invalid max-age all mean stale; s-maxage wins over max-age.
#[tokio::test]
async fn explicit_freshness_edge_cases() {
    let origin = Origin::start(|seen| {
        let past = http_date(60);
        let headers: Vec<(&str, String)> = match seen.uri.path() {
            "/past" => vec![("expires", past)],
            "/zero" => vec![("expires", "0".into())],
            "/bad" => vec![("cache-control", "max-age=soon".into())],
            _ => vec![("cache-control", "max-age=1, s-maxage=600".into())],
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        respond(200, &headers, "x")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for path in ["/past", "/zero", "/bad"] {
        get(outpost.addr(), "example.com", path).await;
        let got = get(outpost.addr(), "example.com", path).await;
        assert!(
            !got.cache_status().contains("hit"),
            "{path}: {}",
            got.cache_status()
        );
    }
    get(outpost.addr(), "example.com", "/shared").await;
    let got = get(outpost.addr(), "example.com", "/shared").await;
    assert!(ttl(got.cache_status()) > 590, "{}", got.cache_status());
}

/// RFC 9111 §4.2.2: a heuristic lifetime (10% of Date − Last-Modified,
/// capped) only for heuristically cacheable codes without explicit freshness.
#[tokio::test]
async fn heuristic_freshness_for_cacheable_codes_only() {
    let origin = Origin::start(|seen| {
        let modified = http_date(1000);
        let status = if seen.uri.path() == "/found" {
            302
        } else {
            200
        };
        respond(
            status,
            &[
                ("last-modified", &modified),
                ("date", &http_date(0)),
                ("location", "/x"),
            ],
            "h",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/page").await;
    let got = get(outpost.addr(), "example.com", "/page").await;
    got.assert_hit();
    assert!(
        (95..=100).contains(&ttl(got.cache_status())),
        "{}",
        got.cache_status()
    );
    get(outpost.addr(), "example.com", "/found").await;
    let got = get(outpost.addr(), "example.com", "/found").await;
    assert!(
        !got.cache_status().contains("hit"),
        "302 is not heuristically cacheable: {}",
        got.cache_status()
    );
}

/// RFC 9111 §5.2.2.8: proxy-revalidate forbids serving stale, not serving fresh.
#[tokio::test]
async fn proxy_revalidate_still_allows_fresh_hits() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[("cache-control", "max-age=300, proxy-revalidate")],
            "p",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/p").await;
    get(outpost.addr(), "example.com", "/p").await.assert_hit();
}

/// RFC 9111 §5.2.2.4: a qualified no-cache lets the response be used
/// without revalidation, minus the fields it names.
#[tokio::test]
async fn qualified_no_cache_strips_its_fields_from_hits() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[
                ("cache-control", "max-age=300, no-cache=\"X-Session\""),
                ("x-session", "alice"),
            ],
            "q",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    assert_eq!(
        get(outpost.addr(), "example.com", "/q")
            .await
            .header("x-session"),
        "alice"
    );
    let got = get(outpost.addr(), "example.com", "/q").await;
    got.assert_hit();
    assert!(!got.headers.contains_key("x-session"));
}

/// Concurrent misses for one key make one origin request; the others are
/// collapsed onto it (RFC 9211 `collapsed`) and get the same body.
#[tokio::test]
async fn concurrent_misses_collapse_into_one_fetch() {
    let body = "z".repeat(200_000);
    let expected = body.clone();
    let options = outpost_tests::OriginOptions {
        delay: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, move |_| {
        respond(200, &[("cache-control", "max-age=300")], body.clone())
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let requests: Vec<_> = (0..8)
        .map(|_| get(outpost.addr(), "example.com", "/popular"))
        .collect();
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(origin.hits(), 1);
    let collapsed = answers
        .iter()
        .filter(|got| got.cache_status() == "Outpost; fwd=miss; collapsed")
        .count();
    assert_eq!(
        collapsed,
        7,
        "{:?}",
        answers
            .iter()
            .map(|g| g.cache_status().to_owned())
            .collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|got| got.body == expected.as_bytes()));
    get(outpost.addr(), "example.com", "/popular")
        .await
        .assert_hit();
}

/// A response that cannot be stored is not shared: the waiting requests
/// fetch on their own.
#[tokio::test]
async fn uncacheable_answers_release_the_collapsed_requests() {
    let options = outpost_tests::OriginOptions {
        delay: Some(std::time::Duration::from_millis(200)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "private")], "mine")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let requests: Vec<_> = (0..4)
        .map(|_| get(outpost.addr(), "example.com", "/private"))
        .collect();
    let answers = futures_util::future::join_all(requests).await;
    assert_eq!(origin.hits(), 4);
    assert!(
        answers
            .iter()
            .all(|got| got.body == "mine" && !got.cache_status().contains("collapsed"))
    );
}

/// RFC 9110 §9.3.3: a POST response with explicit freshness and a
/// `Content-Location` equal to the POST's target is stored and answers a
/// later GET; one naming another resource, without explicit freshness, or
/// on a path a rule bypasses, is not.
#[tokio::test]
async fn a_post_response_naming_its_own_target_answers_later_gets() {
    let origin = Origin::start(|seen| {
        if seen.method != http::Method::POST {
            return respond(200, &[("cache-control", "max-age=600")], "from a get");
        }
        let (location, cc) = match seen.uri.path() {
            "/form" => ("/form", "max-age=600"),
            "/private" => ("/private", "max-age=600"),
            "/elsewhere" => ("/other", "max-age=600"),
            _ => ("/heuristic", "public"),
        };
        respond(
            200,
            &[("content-location", location), ("cache-control", cc)],
            "from the post",
        )
    })
    .await;
    let rules = "\n      - match: {path_prefix: /private}\n        cache: bypass";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    for path in ["/form", "/elsewhere", "/heuristic", "/private"] {
        let posted = request(outpost.addr(), "POST", "example.com", path, &[], "a=1").await;
        assert_eq!(posted.body, "from the post");
        assert_eq!(
            posted.cache_status().contains("stored"),
            path == "/form",
            "{path}: {}",
            posted.cache_status()
        );
    }
    let got = get(outpost.addr(), "example.com", "/form").await;
    got.assert_hit();
    assert_eq!(got.body, "from the post");
    for path in ["/elsewhere", "/other", "/heuristic", "/private"] {
        let got = get(outpost.addr(), "example.com", path).await;
        assert_eq!(got.body, "from a get", "{path}");
    }
    assert_eq!(origin.hits(), 8, "a bypassed path stores nothing");
}

/// RFC 9111 §4.3.5: a 200 to a HEAD sent for a stale entry freshens the
/// stored GET response when its validators and Content-Length agree; when
/// they do not, the entry stays stale and the next GET goes to the origin.
#[tokio::test]
async fn a_head_response_freshens_the_stored_get_response() {
    let origin = Origin::start(|seen| {
        let head = seen.method == http::Method::HEAD;
        match (seen.uri.path(), head) {
            (_, false) => respond(
                200,
                &[("cache-control", "max-age=0"), ("x-version", "1")],
                "body",
            ),
            ("/same", true) => respond(
                200,
                &[("cache-control", "max-age=600"), ("x-version", "2")],
                "body",
            ),
            (_, true) => respond(
                200,
                &[("cache-control", "max-age=600"), ("x-version", "2")],
                "a longer body",
            ),
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for path in ["/same", "/changed"] {
        get(outpost.addr(), "example.com", path).await;
        let head = request(outpost.addr(), "HEAD", "example.com", path, &[], "").await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-version"), "2");
    }
    let got = get(outpost.addr(), "example.com", "/same").await;
    got.assert_hit();
    assert_eq!(
        (got.header("x-version"), got.body.as_ref()),
        ("2", &b"body"[..])
    );
    let got = get(outpost.addr(), "example.com", "/changed").await;
    assert_eq!(
        got.header("x-version"),
        "1",
        "fetched again: {}",
        got.cache_status()
    );
    assert_eq!(origin.hits(), 5);
}

/// RFC 9211 §2: the origin's own `Cache-Status` entries stay, in their
/// order, before Outpost's, on the miss and on later hits.
#[tokio::test]
async fn the_origins_cache_status_entries_are_kept_first() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-status", "AppCache; hit"),
            ],
            "kept",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let miss = get(outpost.addr(), "example.com", "/cs").await;
    assert_eq!(
        miss.cache_status(),
        "AppCache; hit, Outpost; fwd=miss; stored"
    );
    let hit = get(outpost.addr(), "example.com", "/cs").await;
    assert!(
        hit.cache_status()
            .starts_with("AppCache; hit, Outpost; hit"),
        "{}",
        hit.cache_status()
    );
}
