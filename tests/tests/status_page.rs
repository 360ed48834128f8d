//! End-to-end: the live status page in a real browser (headless Chromium
//! over WebDriver): it loads from the side API, its figures appear, and
//! they change after traffic, a purge and a reload (issue 21, item 2).

use outpost_tests::{
    Browser, Origin, Outpost, SCOPED_TOKEN, SCOPED_TOKEN_ENV, get, purge, reload, respond,
    simple_config,
};

const TOKEN: &str = "page-token";

fn count(text: &str) -> u64 {
    text.replace(',', "").parse().unwrap_or(0)
}

#[tokio::test]
async fn the_page_shows_live_figures_and_they_follow_traffic() {
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "max-age=300")],
            seen.uri.path().to_owned(),
        )
    })
    .await;
    let rules = "\n      - match: { path_prefix: /api/ }\n        cache: bypass";
    let outpost = Outpost::start(
        &simple_config(&origin, &["example.com"], rules),
        &[],
        Some(TOKEN),
    )
    .await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://{}/", outpost.admin))
        .await
        .expect("the page loads");
    assert_eq!(browser.client.title().await.unwrap(), "Outpost status");
    // The first answer of /status is on the page.
    browser.await_text("updated", |t| t != "never").await;
    assert_eq!(browser.text("generation").await, "1");
    assert_eq!(browser.text("requests").await, "0");
    let origins = browser.text("origins").await;
    assert!(
        origins.contains(&origin.url()) && origins.contains("up"),
        "{origins}"
    );

    // Misses, hits and bypasses: the figures follow.
    for i in 0..5 {
        get(outpost.addr(), "example.com", &format!("/page/{i}")).await;
        get(outpost.addr(), "example.com", &format!("/page/{i}")).await;
        get(outpost.addr(), "example.com", "/api/users").await;
    }
    browser.await_text("requests", |t| count(t) >= 15).await;
    browser.await_text("hit-ratio", |t| t == "50.0%").await;
    let sites = browser.text("sites").await;
    assert!(sites.contains("example.com"), "{sites}");
    let missed = browser.text("top-missed").await;
    assert!(missed.contains("http://example.com/page/0"), "{missed}");
    let bypassed = browser.text("top-bypassed").await;
    assert!(
        bypassed.contains("http://example.com/api/users"),
        "{bypassed}"
    );
    let tiers = browser.text("tiers").await;
    assert!(tiers.contains("memory"), "{tiers}");
    let latency = browser.text("origins").await;
    assert!(
        latency.contains(" ms"),
        "a latency once the origin answered: {latency}"
    );

    // A purge and a reload appear as they happen.
    let res = purge(
        outpost.admin,
        Some(TOKEN),
        r#"{"urls": ["http://example.com/page/0"]}"#,
    )
    .await;
    assert_eq!(res.status, 200);
    browser
        .await_text("purges", |t| t.contains("urls: http://example.com/page/0"))
        .await;
    assert_eq!(reload(outpost.admin, TOKEN).await.status, 200);
    browser.await_text("generation", |t| t == "2").await;
    browser
        .await_text("reloads", |t| t.contains("generation 2"))
        .await;

    let shot = browser.client.screenshot().await.expect("a screenshot");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/status-page.png");
    std::fs::write(&path, &shot).expect("the screenshot saved under target/");
    assert!(shot.starts_with(b"\x89PNG"));
    browser.close().await;
}

/// With a read token required, the page opens without it and asks for
/// it; with it, the figures come.
#[tokio::test]
async fn the_page_asks_for_the_read_token_when_the_side_api_needs_one() {
    let origin = Origin::start(|_| respond(200, &[], "x")).await;
    let config = simple_config(&origin, &["example.com"], "").replace(
        "admin:\n  addr: 127.0.0.1:0\n",
        &format!("admin:\n  addr: 127.0.0.1:0\n  access: {{read_token_env: {SCOPED_TOKEN_ENV}}}\n"),
    );
    let outpost = Outpost::start(&config, &[], Some(TOKEN)).await;
    let browser = Browser::start().await;
    let client = &browser.client;
    client
        .goto(&format!("http://{}/", outpost.admin))
        .await
        .unwrap();
    let form = client
        .wait()
        .for_element(fantoccini::Locator::Id("token-form"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !form.is_displayed().await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token form never showed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(browser.text("updated").await, "never");
    let input = client.find(fantoccini::Locator::Id("token")).await.unwrap();
    input.send_keys(SCOPED_TOKEN).await.unwrap();
    client
        .find(fantoccini::Locator::Css("#token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.await_text("updated", |t| t != "never").await;
    assert_eq!(browser.text("generation").await, "1");
    browser.close().await;
}
