//! End-to-end: a rule's edge actions (redirects, rewrites, request and
//! response headers), a site's HSTS, and error pages that tell clients
//! what happened without telling them where the origin is.

use outpost_tests::{
    Origin, Outpost, access_log_lines, get, metric_sum, purge, reload, request, respond,
    simple_config,
};

/// The rules' YAML under `rules:`, one rule per string.
fn rules(list: &[&str]) -> String {
    list.iter().map(|r| format!("\n      - {r}")).collect()
}

#[tokio::test]
async fn a_redirect_answers_with_its_filled_in_target_and_never_asks_the_origin() {
    let origin = Origin::start(|_| respond(200, &[], "origin")).await;
    let config = simple_config(
        &origin,
        &["example.com"],
        &rules(&[
            "{match: {path_prefix: /old/}, redirect: {to: 'https://{host}/new/{rest}', status: 301}, response_headers: {set: {X-Moved-By: '{request_id}'}}}",
            "{match: {path_prefix: /moved}, redirect: {to: 'https://www.{host}{uri}'}}",
            "{match: {scheme: https, path_prefix: /tls-only}, redirect: {to: /never}}",
            "{match: {scheme: http}, redirect: {to: 'https://{host}{uri}', status: 308}}",
        ]),
    );
    let outpost = Outpost::start(&config, &[], None).await;

    let got = get(outpost.addr(), "Example.COM", "/old/a/b.html?x=1").await;
    assert_eq!(got.status, 301);
    assert_eq!(got.header("location"), "https://example.com/new/a/b.html");
    assert_eq!(got.cache_status(), "Outpost; detail=redirect");
    // The rule's response edits apply to its redirect.
    assert!(!got.header("x-moved-by").is_empty());

    // The default status is 302, and {uri} keeps the query.
    let got = get(outpost.addr(), "example.com", "/moved/x?q=1&r=2").await;
    assert_eq!(got.status, 302);
    assert_eq!(
        got.header("location"),
        "https://www.example.com/moved/x?q=1&r=2"
    );

    // Plain-text clients go to HTTPS; the rule for TLS clients is passed by.
    let got = get(outpost.addr(), "example.com", "/tls-only?a=%20b").await;
    assert_eq!(got.status, 308);
    assert_eq!(
        got.header("location"),
        "https://example.com/tls-only?a=%20b"
    );

    // A POST is redirected too (307/308 keep its method; 301/302 are the
    // operator's choice).
    let got = request(
        outpost.addr(),
        "POST",
        "example.com",
        "/old/form",
        &[],
        "a=1",
    )
    .await;
    assert_eq!(got.status, 301);
    assert_eq!(origin.hits(), 0);
    assert_eq!(
        metric_sum(
            outpost.admin,
            "outpost_requests_total",
            &[("cache_status", "redirect"), ("status_class", "3xx")]
        )
        .await,
        Some(4.0)
    );
}

#[tokio::test]
async fn a_rewrite_changes_what_the_origin_sees_and_the_key_only_when_told() {
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "max-age=300")],
            format!("origin saw {}", seen.uri),
        )
    })
    .await;
    let config = simple_config(
        &origin,
        &["example.com"],
        &rules(&[
            "{match: {path_prefix: /app/}, rewrite: {path_prefix: /v2/app/}}",
            "{match: {path_regex: '^/(en|de)/'}, rewrite: {path_regex: '^/(en|de)/(.*)$', to: '/pages/$2', key: rewritten}}",
        ]),
    );
    let token = "rewrite-token";
    let outpost = Outpost::start(&config, &[], Some(token)).await;

    let got = get(outpost.addr(), "example.com", "/app/x?y=1").await;
    assert_eq!(got.body, "origin saw /v2/app/x?y=1");
    assert_eq!(origin.last().uri, "/v2/app/x?y=1");
    get(outpost.addr(), "example.com", "/app/x?y=1")
        .await
        .assert_hit();
    // Keyed by the client's URL: a purge names what clients use.
    let purged = purge(
        outpost.admin,
        Some(token),
        r#"{"urls": ["http://example.com/app/x?y=1"]}"#,
    )
    .await;
    assert_eq!(purged.status, 200, "{:?}", purged.body);
    let got = get(outpost.addr(), "example.com", "/app/x?y=1").await;
    assert!(
        got.cache_status().starts_with("Outpost; fwd=miss"),
        "{}",
        got.cache_status()
    );
    assert_eq!(origin.hits(), 2);

    // Keyed by the rewritten path: two client paths share one entry, and
    // a purge of either URL reaches it.
    let got = get(outpost.addr(), "example.com", "/en/about").await;
    assert_eq!(got.body, "origin saw /pages/about");
    let got = get(outpost.addr(), "example.com", "/de/about").await;
    got.assert_hit();
    assert_eq!(got.body, "origin saw /pages/about");
    assert_eq!(origin.hits(), 3);
    purge(
        outpost.admin,
        Some(token),
        r#"{"urls": ["http://example.com/de/about"]}"#,
    )
    .await;
    let got = get(outpost.addr(), "example.com", "/en/about").await;
    assert!(
        got.cache_status().starts_with("Outpost; fwd=miss"),
        "{}",
        got.cache_status()
    );
    assert_eq!(origin.hits(), 4);
}

#[tokio::test]
async fn request_headers_change_before_the_key_is_built_and_the_origin_asked() {
    let origin = Origin::start(|seen| {
        let tier = seen
            .headers
            .get("x-tier")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        respond(
            200,
            &[("cache-control", "max-age=300")],
            format!("tier {tier}"),
        )
    })
    .await;
    let config = simple_config(
        &origin,
        &["example.com"],
        &rules(&[
            "{key: {headers: [X-Tier]}, request_headers: {set: {X-Tier: gold, X-Edge-Client: '{client}'}, add: {X-Trace: '{request_id}'}, remove: [Cookie]}}",
        ]),
    );
    let outpost = Outpost::start(&config, &[], None).await;

    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/page",
        &[
            ("x-tier", "silver"),
            ("cookie", "session=1"),
            ("x-trace", "client"),
        ],
        "",
    )
    .await;
    assert_eq!(got.body, "tier gold");
    let seen = origin.last();
    assert!(seen.headers.get("cookie").is_none());
    assert_eq!(seen.headers["x-edge-client"], "127.0.0.1");
    let traces: Vec<_> = seen.headers.get_all("x-trace").iter().collect();
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert_eq!(traces[0], "client");
    // The key saw the value the rule set, so another tier asked by a
    // client still finds the same entry.
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/page",
        &[("x-tier", "bronze")],
        "",
    )
    .await;
    got.assert_hit();
    assert_eq!(origin.hits(), 1);
}

#[tokio::test]
async fn response_headers_apply_on_the_way_out_and_leave_the_stored_copy_alone() {
    let origin = Origin::start(|seen| match seen.uri.path() {
        "/broken" => respond(503, &[("x-powered-by", "php")], "down"),
        _ => respond(
            200,
            &[("cache-control", "max-age=300"), ("x-powered-by", "php")],
            "page",
        ),
    })
    .await;
    let token = "headers-token";
    let with = |always: bool| {
        simple_config(
            &origin,
            &["example.com"],
            &rules(&[&format!(
                "{{response_headers: {{set: {{X-Frame-Options: DENY, X-Served-For: '{{host}}'}}, add: {{X-Extra: one}}, remove: [X-Powered-By], always: {always}}}}}"
            )]),
        )
    };
    let outpost = Outpost::start(&with(false), &[], Some(token)).await;

    for hit in [false, true] {
        let got = get(outpost.addr(), "example.com", "/page").await;
        if hit {
            got.assert_hit();
        }
        assert_eq!(got.header("x-frame-options"), "DENY");
        assert_eq!(got.header("x-served-for"), "example.com");
        assert_eq!(got.header("x-extra"), "one");
        assert_eq!(got.header("x-powered-by"), "");
    }
    // An error answer is left alone unless the rule says `always`.
    let got = get(outpost.addr(), "example.com", "/broken").await;
    assert_eq!(got.status, 503);
    assert_eq!(got.header("x-frame-options"), "");
    assert_eq!(got.header("x-powered-by"), "php");

    std::fs::write(outpost.dir.path().join("outpost.yaml"), with(true)).unwrap();
    assert_eq!(reload(outpost.admin, token).await.status, 200);
    let got = get(outpost.addr(), "example.com", "/broken").await;
    assert_eq!(got.header("x-frame-options"), "DENY");

    // The stored response was never changed: without the rule, the hit
    // has the origin's fields again.
    std::fs::write(
        outpost.dir.path().join("outpost.yaml"),
        simple_config(&origin, &["example.com"], ""),
    )
    .unwrap();
    assert_eq!(reload(outpost.admin, token).await.status, 200);
    let got = get(outpost.addr(), "example.com", "/page").await;
    got.assert_hit();
    assert_eq!(got.header("x-powered-by"), "php");
    assert_eq!(got.header("x-frame-options"), "");
}

#[tokio::test]
async fn error_answers_hide_the_origin_and_carry_the_request_id() {
    let origin = Origin::start(|_| respond(200, &[], "up")).await;
    let address = origin.addr.to_string();
    origin.stop();
    let config = format!(
        "access_log: access.log\nerror_pages:\n  421: {{file: misdirected.txt, content_type: text/plain}}\n\
         listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\n\
         sites:\n  - hosts: [example.com]\n    origin: app\n\
         \x20 - hosts: [pages.example.com]\n    origin: app\n    error_pages:\n      502: {{file: 502.html}}\n",
        origin.url()
    );
    let files = [
        ("misdirected.txt", "No site here ({status}, {request_id})."),
        (
            "502.html",
            "<h1>We are fixing it</h1><p>Quote {request_id}.</p><style>h1 { color: red }</style>",
        ),
    ];
    let outpost = Outpost::start(&config, &files, None).await;

    let got = get(outpost.addr(), "example.com", "/down").await;
    assert_eq!(got.status, 502);
    let body = String::from_utf8_lossy(&got.body).into_owned();
    assert!(body.starts_with("502 Bad Gateway\n"), "{body}");
    assert!(
        !body.contains(&address) && !body.contains("127.0.0.1"),
        "{body}"
    );
    let id = body
        .lines()
        .find_map(|l| l.strip_prefix("request id: "))
        .expect("a request id in the body")
        .to_owned();
    let lines = access_log_lines(&outpost.dir.path().join("access.log"), 1).await;
    assert_eq!(lines[0]["request_id"], id.as_str());
    let error = lines[0]["error"].as_str().expect("the cause in the log");
    assert!(error.contains(&address), "{error}");

    // The site's own page, filled in.
    let got = get(outpost.addr(), "pages.example.com", "/down").await;
    assert_eq!(got.status, 502);
    assert_eq!(got.header("content-type"), "text/html; charset=utf-8");
    let body = String::from_utf8_lossy(&got.body).into_owned();
    assert!(
        body.starts_with("<h1>We are fixing it</h1><p>Quote "),
        "{body}"
    );
    assert!(
        body.ends_with("</p><style>h1 { color: red }</style>"),
        "{body}"
    );
    assert!(!body.contains("{request_id}"), "{body}");

    // A request no site serves gets the file's default page.
    let got = get(outpost.addr(), "nowhere.test", "/").await;
    assert_eq!(got.status, 421);
    assert_eq!(got.header("content-type"), "text/plain");
    let body = String::from_utf8_lossy(&got.body).into_owned();
    assert!(body.starts_with("No site here (421, "), "{body}");
}

#[tokio::test]
async fn hsts_is_sent_over_tls_only() {
    let origin =
        Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "secure")).await;
    let (cert, key) = outpost_edge::tls::self_signed(&["example.com"]).unwrap();
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n  - addr: 127.0.0.1:0\n    tls: {{certificates: [{{cert: c.pem, key: c.key}}]}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\n\
         sites:\n  - hosts: [example.com]\n    origin: app\n    hsts: {{max_age: 365d, include_subdomains: true}}\n",
        origin.url()
    );
    let outpost = Outpost::start(&config, &[("c.pem", &cert), ("c.key", &key)], None).await;

    let plain = get(outpost.listen[0], "example.com", "/").await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("strict-transport-security"), "");

    let mut connector = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).unwrap();
    connector.set_verify(boring::ssl::SslVerifyMode::NONE);
    let tls_config = connector.build().configure().unwrap();
    let tcp = tokio::net::TcpStream::connect(outpost.listen[1])
        .await
        .unwrap();
    let tls = tokio_boring::connect(tls_config, "example.com", tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "example.com")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}
