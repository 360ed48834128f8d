//! End-to-end: a binary of one's own built on `outpost-edge` with hooks
//! (`edge/examples/custom_edge.rs`) serves a config as `outpost` does, and
//! its hooks act at every phase: request, cache key, origin request,
//! response and log.

use outpost_tests::{
    Origin, Outpost, access_log_lines, example_bin, purge, request, respond, simple_config,
};

#[tokio::test]
async fn an_example_binary_runs_its_hooks_at_every_phase() {
    let origin = Origin::start(|seen| {
        let class = seen
            .headers
            .get("x-device-class")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        respond(
            200,
            &[("cache-control", "max-age=300")],
            format!("page for {class}"),
        )
    })
    .await;
    let config = format!(
        "access_log: access.log\n{}",
        simple_config(&origin, &["example.com"], "")
    );
    let token = "hooks-token";
    let outpost =
        Outpost::start_program(example_bin("custom_edge"), &config, &[], Some(token)).await;
    const MOBILE: &[(&str, &str)] = &[("user-agent", "Phone Mobile Safari")];
    const DESKTOP: &[(&str, &str)] = &[("user-agent", "Desktop Firefox")];
    let (mobile, desktop) = (MOBILE, DESKTOP);
    let get = |headers: &'static [(&'static str, &'static str)], path: &'static str| {
        let addr = outpost.addr();
        async move { request(addr, "GET", "example.com", path, headers, "").await }
    };

    // The cache key phase: one variant per device class.
    let got = get(mobile, "/page").await;
    assert_eq!(got.body, "page for mobile");
    assert_eq!(got.header("x-served-by"), "custom-edge");
    let got = get(desktop, "/page").await;
    assert_eq!(got.body, "page for desktop");
    get(mobile, "/page").await.assert_hit();
    get(desktop, "/page").await.assert_hit();
    assert_eq!(origin.hits(), 2);
    // The origin request phase, and the key's field never leaves.
    let seen = origin.last();
    assert_eq!(seen.headers["x-edge-binary"], "custom-edge");
    assert!(seen.headers.get("outpost-hook-key").is_none());
    // A purge of the URL reaches both variants.
    let purged = purge(
        outpost.admin,
        Some(token),
        r#"{"urls": ["http://example.com/page"]}"#,
    )
    .await;
    assert_eq!(purged.status, 200);
    assert_eq!(get(mobile, "/page").await.body, "page for mobile");
    assert_eq!(origin.hits(), 3);

    // The request phase answers on its own (an async check).
    let got = get(desktop, "/members/area").await;
    assert_eq!(got.status, 401);
    assert_eq!(got.body, "a valid X-Api-Key is needed\n");
    assert_eq!(got.header("x-served-by"), "custom-edge");
    let got = get(&[("x-api-key", "let-me-in")], "/members/area").await;
    assert_eq!(got.status, 200);
    assert_eq!(origin.hits(), 4);

    // A client cannot choose the variant by sending the key's field.
    let got = get(&[("outpost-hook-key", "mobile")], "/page").await;
    assert_eq!(got.body, "page for desktop");

    // The log phase.
    let lines = access_log_lines(&outpost.dir.path().join("access.log"), 8).await;
    assert!(
        lines.iter().all(|line| line["binary"] == "custom-edge"),
        "{lines:?}"
    );
}
