//! End-to-end: the access log's configured fields, in their order, and its
//! `complete` flag (issue 21, item 5).

use outpost_tests::{Origin, Outpost, access_log_lines, get, request, respond, simple_config};

/// The fields the config names, in its order; `complete` is true exactly
/// when the whole body went out: on the miss that fetched it as on the
/// hit, and on a HEAD and a 304, whose bodies are empty by definition.
#[tokio::test]
async fn lines_carry_the_configured_fields_and_whole_bodies_are_complete() {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"v\"")],
            "a body of some length",
        )
    })
    .await;
    let config = format!(
        "access_log:\n  path: access.log\n  fields: [request_id, status, cache_status, user_agent, referer, rule, complete, bytes_sent, ttfb_ms]\n{}",
        simple_config(
            &origin,
            &["example.com"],
            "[{match: {path_prefix: /r/}, ttl: 60s}]"
        )
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let agent = [
        ("user-agent", "tester/1"),
        ("referer", "https://example.org/"),
    ];
    request(outpost.addr(), "GET", "example.com", "/r/a", &agent, "").await;
    request(outpost.addr(), "GET", "example.com", "/r/a", &agent, "").await;
    request(outpost.addr(), "HEAD", "example.com", "/r/a", &[], "").await;
    let not_modified = [("if-none-match", "\"v\"")];
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/r/a",
        &not_modified,
        "",
    )
    .await;
    assert_eq!(got.status, 304);
    get(outpost.addr(), "example.com", "/elsewhere").await;
    let path = outpost.dir.path().join("access.log");
    let lines = access_log_lines(&path, 5).await;
    for line in &lines {
        assert_eq!(line["complete"], true, "{line}");
        assert!(line["ttfb_ms"].is_number());
        assert!(line.get("method").is_none(), "not configured: {line}");
    }
    assert!(
        lines[0]["cache_status"]
            .as_str()
            .unwrap()
            .contains("fwd=miss")
    );
    assert_eq!(lines[0]["bytes_sent"], 21);
    assert_eq!(
        (
            lines[0]["user_agent"].as_str(),
            lines[0]["referer"].as_str()
        ),
        (Some("tester/1"), Some("https://example.org/"))
    );
    assert!(lines[1]["cache_status"].as_str().unwrap().contains("hit"));
    assert_eq!(lines[2]["bytes_sent"], 0);
    assert_eq!(lines[3]["status"], 304);
    assert_eq!(lines[0]["rule"], 0);
    assert!(
        lines[4].get("rule").is_none(),
        "no rule matched: {}",
        lines[4]
    );
    // In the configured order, as written.
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.lines().next().unwrap();
    let order: Vec<usize> = [
        "request_id",
        "status",
        "cache_status",
        "user_agent",
        "rule",
        "complete",
    ]
    .iter()
    .map(|name| first.find(&format!("\"{name}\":")).expect(name))
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{first}");
}

/// `bytes_received` counts the request body read from the client, and a
/// plain connection has no TLS version.
#[tokio::test]
async fn a_line_counts_the_request_body_received() {
    let origin = Origin::start(|seen| respond(200, &[], seen.body.len().to_string())).await;
    let config = format!(
        "access_log:\n  path: access.log\n  fields: [method, status, tls, tls_version, bytes_received, bytes_sent]\n{}",
        simple_config(&origin, &["example.com"], "")
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let body = "x".repeat(1234);
    let got = request(outpost.addr(), "POST", "example.com", "/form", &[], &body).await;
    assert_eq!(got.body, "1234");
    get(outpost.addr(), "example.com", "/page").await;
    let lines = access_log_lines(&outpost.dir.path().join("access.log"), 2).await;
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["bytes_received"], 1234, "{}", lines[0]);
    assert_eq!(lines[0]["bytes_sent"], 4);
    assert_eq!(lines[0]["tls"], false);
    assert!(lines[0]["tls_version"].is_null(), "{}", lines[0]);
    assert_eq!(lines[1]["bytes_received"], 0, "{}", lines[1]);
}
