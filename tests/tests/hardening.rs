//! End-to-end: safe defaults under attack (issue 19): personal pages kept
//! out of the shared cache, cache deception, unkeyed headers, hostile
//! request targets, and the origin's and the client's faults told apart.

use outpost_tests::{
    Misbehaviour, Origin, Outpost, RawOrigin, get, pool_config, request, respond, simple_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request with a cookie may be answered with one user's page. Without
/// Cache-Control, it used to be stored (lifetime 0) and then served stale
/// to anyone while the origin was unreachable (RFC 9111 §4.2.4's
/// disconnected cache). It is not stored unless the origin says it may be
/// shared; `public` still is.
#[tokio::test]
async fn a_page_answering_a_cookie_never_reaches_a_stranger() {
    let origin = Origin::start(|seen| {
        let user = seen
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        match seen.uri.path() {
            "/shared" => respond(200, &[("cache-control", "public, max-age=60")], "for all"),
            _ => respond(200, &[], format!("account of {user}")),
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let alice = [("cookie", "session=alice")];
    let got = request(outpost.addr(), "GET", "example.com", "/account", &alice, "").await;
    assert_eq!(got.body, "account of session=alice");
    assert!(
        got.cache_status().contains("detail=request-cookie"),
        "{}",
        got.cache_status()
    );
    request(outpost.addr(), "GET", "example.com", "/shared", &alice, "").await;
    origin.stop();
    let stranger = get(outpost.addr(), "example.com", "/account").await;
    assert_eq!(stranger.status, 502);
    assert!(!String::from_utf8_lossy(&stranger.body).contains("alice"));
    let shared = get(outpost.addr(), "example.com", "/shared").await;
    assert_eq!(
        (shared.status.as_u16(), shared.body.as_ref()),
        (200, &b"for all"[..])
    );
    shared.assert_hit();
}

/// A rule may opt in for paths it knows to be the same for everyone.
#[tokio::test]
async fn a_rule_may_store_what_answers_a_cookie() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "same")).await;
    let rules = "\n      - match: {path_prefix: /assets/}\n        store_with_cookie: true";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    let cookie = [("cookie", "_ga=1")];
    for path in ["/assets/a", "/page"] {
        request(outpost.addr(), "GET", "example.com", path, &cookie, "").await;
    }
    get(outpost.addr(), "example.com", "/assets/a")
        .await
        .assert_hit();
    let page = get(outpost.addr(), "example.com", "/page").await;
    assert!(
        page.cache_status().contains("fwd=miss"),
        "{}",
        page.cache_status()
    );
    assert_eq!(origin.hits(), 3);
}

/// Web cache deception: `/account.php/x.css` matches a rule for `.css`
/// with a ttl, but the origin answers it with the account page. The rule's
/// lifetime applies only to a response whose Content-Type is a type of
/// the extension; the page is cached, if at all, by the origin's words.
#[tokio::test]
async fn a_ttl_by_extension_needs_the_extensions_content_type() {
    let origin = Origin::start(|seen| {
        if seen.uri.path().starts_with("/account.php") {
            respond(
                200,
                &[("content-type", "text/html; charset=utf-8")],
                "secret page",
            )
        } else {
            respond(200, &[("content-type", "text/css")], "body{}")
        }
    })
    .await;
    let rules = "\n      - match: {extensions: [css]}\n        ttl: 1h";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    for path in ["/account.php/x.css", "/site.css"] {
        get(outpost.addr(), "example.com", path).await;
    }
    get(outpost.addr(), "example.com", "/site.css")
        .await
        .assert_hit();
    let again = get(outpost.addr(), "example.com", "/account.php/x.css").await;
    assert!(
        !again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
    assert_eq!(origin.hits(), 3);
}

/// Headers that many origins act on while the key does not see them: a
/// client could have a page stored for everyone that answers its header
/// (`X-Original-URL: /admin`). They are stripped; a site that needs one
/// passes it, and then it joins the key.
#[tokio::test]
async fn unkeyed_headers_are_stripped_unless_passed_and_then_keyed() {
    let origin = Origin::start(|seen| {
        let mut names: Vec<&str> = seen
            .headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.starts_with("x-") && *k != "x-forwarded-for" && *k != "x-forwarded-proto")
            .collect();
        names.sort_unstable();
        let port = seen
            .headers
            .get("x-forwarded-port")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        respond(
            200,
            &[("cache-control", "max-age=60")],
            format!("{} port {port}", names.join(",")),
        )
    })
    .await;
    let mut config = simple_config(&origin, &["example.com"], "");
    config.push_str(
        "  - hosts: [passing.test]\n    origin: app\n    pass_headers: [X-Forwarded-Port]\n",
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let hostile = [
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-forwarded-port", "8443"),
        ("x-forwarded-scheme", "nothttps"),
        ("x-http-method-override", "DELETE"),
        ("x-host", "evil.test"),
        ("x-forwarded-server", "evil.test"),
        ("x-kept", "1"),
    ];
    let got = request(outpost.addr(), "GET", "example.com", "/", &hostile, "").await;
    assert_eq!(got.body, "x-kept port -");
    let got = request(outpost.addr(), "GET", "passing.test", "/", &hostile, "").await;
    assert_eq!(got.body, "x-forwarded-port,x-kept port 8443");
    // Passed, the header makes its own entry: another port is a miss.
    let other = [("x-forwarded-port", "443")];
    let got = request(outpost.addr(), "GET", "passing.test", "/", &other, "").await;
    assert_eq!(got.body, "x-forwarded-port port 443");
    request(outpost.addr(), "GET", "passing.test", "/", &other, "")
        .await
        .assert_hit();
    assert_eq!(origin.hits(), 3);
}

/// RFC 9110 §9.3.8: TRACE would echo credentials back; it is refused.
#[tokio::test]
async fn trace_is_refused() {
    let origin = Origin::start(|_| respond(200, &[], "no")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let got = request(
        outpost.addr(),
        "TRACE",
        "example.com",
        "/",
        &[("cookie", "a=b")],
        "",
    )
    .await;
    assert_eq!(got.status, 405);
    assert_eq!(origin.hits(), 0);
}

/// A server that resets every request it is given was never ejected (only
/// 5xx answers counted), so every other POST kept failing on it. Resets
/// now count toward ejection like 5xx answers and failed connects.
#[tokio::test]
async fn a_server_that_resets_every_request_is_ejected() {
    let resetting = RawOrigin::start(Misbehaviour::CloseWithoutAnswer).await;
    let good = Origin::start(|_| respond(200, &[], "ok")).await;
    let config = pool_config(
        &[resetting.url(), good.url()],
        "    balance: round_robin\n    eject: { consecutive_failures: 3, cooldown: 60s }\n",
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let got = request(
            outpost.addr(),
            "POST",
            "example.com",
            "/order",
            &[],
            "item=1",
        )
        .await;
        statuses.push(got.status.as_u16());
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(failed, 3, "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 200), "{statuses:?}");
}

/// A client's malformed chunked body used to be answered 502 and counted
/// as the origin's reset. It is the client's fault (RFC 9112 §7.1): 400,
/// and the origin's health is untouched.
#[tokio::test]
async fn a_clients_broken_body_is_its_own_fault() {
    let origin = Origin::start(|_| respond(200, &[], "ok")).await;
    let config = pool_config(
        &[origin.url()],
        "    eject: { consecutive_failures: 1, cooldown: 60s }\n",
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let mut stream = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .unwrap();
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    // Once the origin has the request, the body breaks.
    for _ in 0..500 {
        if origin.connections() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stream.write_all(b"zz-not-a-size\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the connection closes")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let metrics = get(outpost.admin, "admin", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(!metrics.contains("outcome=\"reset\""), "{metrics}");
    // One failure would have ejected the only server: it still serves.
    let got = request(
        outpost.addr(),
        "POST",
        "example.com",
        "/upload",
        &[],
        "fine",
    )
    .await;
    assert_eq!(got.status, 200);
}
