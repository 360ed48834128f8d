//! End-to-end: validators and ages as RFC 9110 and RFC 9111 define them,
//! where a looser reading is common (issue 22, item 4).

use std::time::Duration;

use outpost_tests::{Origin, OriginOptions, Outpost, get, request, respond, simple_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// RFC 9110 §13.1.2: If-None-Match is a list of entity tags split outside
/// the quotes: a comma inside `"a,b"` is part of the tag.
#[tokio::test]
async fn if_none_match_lists_split_outside_quotes() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[("cache-control", "max-age=300"), ("etag", "\"a,b\"")],
            "body",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/x").await;
    let ask = |inm: &'static str| {
        let addr = outpost.addr();
        async move {
            request(
                addr,
                "GET",
                "example.com",
                "/x",
                &[("if-none-match", inm)],
                "",
            )
            .await
            .status
        }
    };
    assert_eq!(ask("\"a,b\"").await, 304);
    assert_eq!(ask("\"x\", W/\"a,b\"").await, 304);
    assert_eq!(ask("\"a\"").await, 200, "not the first half of the tag");
    assert_eq!(ask("\"b\"").await, 200, "nor its second half");
    assert_eq!(ask("b\"").await, 200);
    assert_eq!(origin.hits(), 1);
}

/// One raw request with `field` (bytes, obs-text allowed) added; the status.
async fn status_with(addr: std::net::SocketAddr, path: &str, field: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head =
        format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n").into_bytes();
    head.extend_from_slice(field);
    head.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&head).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let line = answer.split(|b| *b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(line)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {:?}", String::from_utf8_lossy(&answer)))
}

/// RFC 9110 §8.8.3: an opaque tag may hold obs-text; tags are compared
/// byte for byte.
#[tokio::test]
async fn entity_tags_with_obs_text_compare_as_bytes() {
    let origin = Origin::start(|_| {
        let mut res = respond(200, &[("cache-control", "max-age=300")], "body");
        res.headers_mut().insert(
            "etag",
            http::HeaderValue::from_bytes(b"\"caf\xe9\"").expect("obs-text is valid"),
        );
        res
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/o").await;
    assert_eq!(
        status_with(outpost.addr(), "/o", b"if-none-match: \"caf\xe9\"").await,
        304
    );
    assert_eq!(
        status_with(outpost.addr(), "/o", b"if-none-match: \"caf\xe8\"").await,
        200
    );
    assert_eq!(
        status_with(outpost.addr(), "/o", b"if-none-match: \"caf\"").await,
        200
    );
    assert_eq!(origin.hits(), 1);
}

/// RFC 9111 §5.2: `max-age` is `token [ "=" ... ]` with no white space
/// around "="; `max-age= 300` is an invalid value, and a response whose
/// freshness rests on an invalid value is stale (§4.2.1), so the next
/// request goes to the origin.
#[tokio::test]
async fn white_space_around_equals_makes_max_age_invalid() {
    let origin = Origin::start(|seen| {
        let cc = match seen.uri.path() {
            "/before" => "max-age= 300",
            "/after" => "max-age =300",
            _ => "max-age=300",
        };
        respond(200, &[("cache-control", cc)], "body")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    for path in ["/before", "/after", "/fine"] {
        get(outpost.addr(), "example.com", path).await;
    }
    let fine = get(outpost.addr(), "example.com", "/fine").await;
    fine.assert_hit();
    for path in ["/before", "/after"] {
        let got = get(outpost.addr(), "example.com", path).await;
        assert!(
            !got.cache_status().contains("hit"),
            "{path}: {}",
            got.cache_status()
        );
    }
    assert_eq!(origin.hits(), 5);
}

/// RFC 9111 §4.2.3 and §5.1: a response the origin took a second to send
/// is a second old when it arrives, and says so in `Age`, on the miss that
/// fetched it as on later hits.
#[tokio::test]
async fn a_response_delayed_at_the_origin_carries_its_age() {
    let options = OriginOptions {
        delay: Some(Duration::from_millis(1_200)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "max-age=300")], "slow")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let miss = get(outpost.addr(), "example.com", "/slow").await;
    assert!(miss.cache_status().contains("fwd=miss"));
    let age: u64 = miss.headers["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 1, "Age {age} on a miss delayed 1.2 s");
    let hit = get(outpost.addr(), "example.com", "/slow").await;
    hit.assert_hit();
    let age: u64 = hit.headers["age"].to_str().unwrap().parse().unwrap();
    assert!(age >= 1);
}

/// RFC 9111 §4.3.1 and §4.3.4: a Vary miss goes to the origin with the
/// stored variants' entity tags in If-None-Match, and a 304 selects the
/// one the origin would send: it answers, freshened, and is stored for
/// this request's values too. A 200 is a miss as any other; a client's own
/// preconditions are sent as they are; a variant in a coding the client
/// does not accept is never offered.
#[tokio::test]
async fn a_vary_miss_is_validated_with_the_stored_variants_tags() {
    let origin = Origin::start(|seen| {
        // English of any region is one representation; German another.
        let (tag, body) = if seen.header("accept-language").starts_with("de") {
            ("\"de\"", "hallo")
        } else {
            ("\"en\"", "hello")
        };
        let vary = [
            ("cache-control", "max-age=300"),
            ("vary", "Accept-Language"),
            ("etag", tag),
        ];
        if seen
            .header("if-none-match")
            .split(',')
            .any(|t| t.trim() == tag)
        {
            return respond(304, &vary, "");
        }
        respond(200, &vary, body)
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let ask = |language: &'static str, extra: Option<(&'static str, &'static str)>| {
        let addr = outpost.addr();
        async move {
            let mut headers = vec![("accept-language", language)];
            headers.extend(extra);
            request(addr, "GET", "example.com", "/greeting", &headers, "").await
        }
    };
    let first = ask("en", None).await;
    assert_eq!(first.cache_status(), "Outpost; fwd=miss; stored");
    assert!(origin.last().headers.get("if-none-match").is_none());

    let selected = ask("en-GB", None).await;
    assert_eq!(origin.last().headers["if-none-match"], "\"en\"");
    assert_eq!(selected.status, 200);
    assert_eq!(selected.body, "hello");
    assert_eq!(
        selected.cache_status(),
        "Outpost; fwd=vary-miss; fwd-status=304"
    );
    let hits = origin.hits();
    ask("en-GB", None).await.assert_hit();
    assert_eq!(origin.hits(), hits, "stored for en-GB too");

    let other = ask("de", None).await;
    assert_eq!(other.body, "hallo");
    assert_eq!(other.cache_status(), "Outpost; fwd=vary-miss; stored");
    let offered = origin.last().headers["if-none-match"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(offered.contains("\"en\""), "{offered}");
    ask("de", None).await.assert_hit();

    // The client's own precondition goes as it is, and its 304 is its own.
    let own = ask("fr", Some(("if-none-match", "\"en\""))).await;
    assert_eq!(origin.last().headers["if-none-match"], "\"en\"");
    assert_eq!(own.status, 304);
}

/// A stored variant in a content coding the request does not accept is
/// never offered for selection (RFC 9110 §12.5.3): a 304 could not make
/// its bytes readable to that client.
#[tokio::test]
async fn a_variant_in_a_coding_the_client_refuses_is_not_offered() {
    let origin = Origin::start(|seen| {
        let gzip = seen
            .headers
            .get("accept-encoding")
            .is_some_and(|v| v.as_bytes() == b"gzip");
        let mut fields = vec![
            ("cache-control", "max-age=300"),
            ("vary", "Accept-Encoding"),
            ("etag", "\"same\""),
        ];
        if gzip {
            fields.push(("content-encoding", "gzip"));
        }
        respond(200, &fields, "body")
    })
    .await;
    // Outpost's own compression off: the origin's codings are all there is.
    let rules = "[{match: {}, compress: false}]";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    let ask = |coding: &'static str| {
        let addr = outpost.addr();
        async move {
            request(
                addr,
                "GET",
                "example.com",
                "/x",
                &[("accept-encoding", coding)],
                "",
            )
            .await
        }
    };
    ask("gzip").await;
    let plain = ask("identity").await;
    assert!(origin.last().headers.get("if-none-match").is_none());
    assert!(
        plain.header("content-encoding").is_empty(),
        "{:?}",
        plain.headers
    );
    assert_eq!(plain.cache_status(), "Outpost; fwd=vary-miss; stored");
    // Now the identity copy is a candidate for another request that takes it.
    ask("gzip;q=0, identity").await;
    assert_eq!(origin.last().headers["if-none-match"], "\"same\"");
}

/// A 304 without a validator to a Vary miss that offered one stored
/// variant's tag can be about that variant only: it answers (the
/// http-cache-tests check `conditional-etag-vary-headers-mismatch`).
#[tokio::test]
async fn a_304_without_a_tag_selects_the_only_variant_offered() {
    let origin = Origin::start(|seen| {
        if seen.headers.contains_key("if-none-match") {
            return respond(304, &[("cache-control", "max-age=300")], "");
        }
        respond(
            200,
            &[
                ("cache-control", "max-age=300"),
                ("vary", "Abc"),
                ("etag", "\"abcdef\""),
            ],
            "stored",
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v",
        &[("abc", "123")],
        "",
    )
    .await;
    let other = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v",
        &[("abc", "456")],
        "",
    )
    .await;
    assert_eq!(origin.last().headers["if-none-match"], "\"abcdef\"");
    assert_eq!(other.body, "stored");
    assert_eq!(
        other.cache_status(),
        "Outpost; fwd=vary-miss; fwd-status=304"
    );
    assert_eq!(origin.hits(), 2);
}
