//! The Grafana dashboard in `docs/grafana/outpost.json` (issue 21, item 4):
//! it reads as a dashboard, and every series and label its queries read
//! exists in `/metrics` after a short run of traffic, a purge and a reload.

use outpost_tests::{Origin, Outpost, get, purge, reload, respond, simple_config};

fn dashboard() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/outpost.json");
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// The queries of every panel.
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("a PromQL query").to_owned())
        .collect()
}

/// The `outpost_*` names a query reads.
fn series(query: &str) -> Vec<&str> {
    query
        .match_indices("outpost_")
        .map(|(at, _)| {
            let rest = &query[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// The labels a query groups by (`by (a, b)`), `le` aside.
fn grouped_by(query: &str) -> Vec<&str> {
    query
        .match_indices("by (")
        .flat_map(|(at, _)| {
            let rest = &query[at + 4..];
            rest[..rest.find(')').unwrap_or(0)]
                .split(',')
                .map(str::trim)
        })
        .filter(|label| !label.is_empty() && *label != "le")
        .collect()
}

#[test]
fn the_dashboard_is_importable() {
    let d = dashboard();
    assert_eq!(d["title"], "Outpost");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10);
    for panel in panels {
        assert!(
            panel["gridPos"]["w"].is_number() && panel["title"].is_string(),
            "{panel}"
        );
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}");
    }
    let q = queries(&d);
    assert!(q.iter().all(|query| !series(query).is_empty()), "{q:?}");
}

#[tokio::test]
async fn every_series_the_dashboard_reads_exists() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "body")).await;
    let config = simple_config(&origin, &["example.com"], "").replace(
        "cache:\n  memory: 64MiB\n",
        "cache:\n  memory: 64MiB\n  disk:\n    path: disk\n    size: 64MiB\n",
    );
    let outpost = Outpost::start(&config, &[], Some("t")).await;
    outpost.await_ready().await;
    get(outpost.addr(), "example.com", "/a").await;
    get(outpost.addr(), "example.com", "/a").await.assert_hit();
    get(outpost.addr(), "unknown.example", "/").await;
    assert_eq!(
        purge(
            outpost.admin,
            Some("t"),
            r#"{"urls": ["http://example.com/a"]}"#
        )
        .await
        .status,
        200
    );
    assert_eq!(reload(outpost.admin, "t").await.status, 200);
    let metrics = get(outpost.admin, "admin", "/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    for query in queries(&dashboard()) {
        let names = series(&query);
        for name in &names {
            assert!(
                samples.iter().any(|line| line
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))),
                "{name} (in {query}) is not in /metrics:\n{text}"
            );
        }
        for label in grouped_by(&query) {
            let carried = samples.iter().any(|line| {
                names.iter().any(|name| line.starts_with(name))
                    && line.contains(&format!("{label}=\""))
            });
            assert!(
                carried,
                "no series of {names:?} has the label {label} ({query})"
            );
        }
    }
}
