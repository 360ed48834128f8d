//! The side API's tests: every route, through [`Admin::handle`].

use http_body_util::BodyExt;
use outpost_cache::{Fetched, KeyFields, PolicyOptions, StoreRules, SystemClock};
use outpost_config::QueryKey;

use super::*;

mod conformance;

fn admin(token: Option<&str>) -> (Admin, Arc<Cache>) {
    admin_with(token, prometheus::Registry::new())
}

/// A registry with the proxy's request counter in it, as the edge
/// registers it.
fn requests_registry() -> (prometheus::Registry, prometheus::IntCounterVec) {
    let registry = prometheus::Registry::new();
    let requests = prometheus::IntCounterVec::new(
        prometheus::Opts::new("outpost_requests_total", "Client requests answered."),
        &["cache_status"],
    )
    .unwrap();
    registry.register(Box::new(requests.clone())).unwrap();
    (registry, requests)
}

fn admin_with(token: Option<&str>, registry: prometheus::Registry) -> (Admin, Arc<Cache>) {
    let cache = Arc::new(Cache::new(
        1 << 20,
        PolicyOptions::default(),
        Arc::new(SystemClock),
    ));
    let key_for_url: Arc<KeyForUrl> =
        Arc::new(|url: &str| CacheKey::from_url(url, &QueryKey::All).map_err(UrlError::from));
    let origins: Arc<OriginsSource> = Arc::new(|| {
        vec![PoolStatus {
            name: "app".into(),
            servers: vec![ServerStatus {
                url: "http://127.0.0.1:9000".into(),
                address: "127.0.0.1:9000".into(),
                healthy: false,
                passes_checks: true,
                ejected_for_ms: 4000,
                in_flight: 0,
                ejections: 0,
                latency_ms: None,
                label: "http://127.0.0.1:9000".into(),
            }],
        }]
    });
    let parts = AdminParts {
        cache: cache.clone(),
        registry,
        tokens: Tokens {
            full: token.map(str::to_owned),
            scoped: vec![
                ("team-a".into(), vec!["a.test".into(), "*.a.test".into()]),
                ("team-b".into(), vec!["b.test".into()]),
            ],
            // Refilled slowly, so that no test depends on how fast it runs.
            budget: PurgeBudget {
                burst: 100_000,
                per_second: 1,
            },
            ..Tokens::default()
        },
        purger: Arc::new(Purger::new(cache.clone(), key_for_url)),
        fleet: None,
        origins,
        // Accepts a config unless it is told to refuse the next one.
        reload: Some(Arc::new(|| {
            Box::pin(async {
                if REFUSE_NEXT_RELOAD.swap(false, Ordering::SeqCst) {
                    Err(vec!["outpost.yaml:3:5: listen: bad".to_owned()])
                } else {
                    Ok(json!({"generation": 2}))
                }
            })
        })),
        status: Some(Arc::new(|| json!({"generation": 1}))),
        // Echoes the query; refuses a URL without a scheme as the edge does.
        explain: Some(Arc::new(|query: crate::ExplainQuery| {
            Box::pin(async move {
                if !query.url.contains("://") {
                    return Err(format!("{} is not an absolute URL", query.url));
                }
                let headers: Vec<String> = query
                    .headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or_default()))
                    .collect();
                Ok(json!({"url": query.url, "method": query.method.as_str(), "headers": headers}))
            })
        })),
    };
    (Admin::new(parts).unwrap(), cache)
}

static REFUSE_NEXT_RELOAD: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn reload_request(token: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::post("/reload");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn reload_needs_a_full_token_and_reports_a_refusal() {
    let (admin, _) = admin(Some("secret"));
    let (status, _) = call(&admin, reload_request(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&admin, reload_request(Some("wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&admin, reload_request(Some("team-a"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, body) = call(&admin, reload_request(Some("secret"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "reloaded");
    assert_eq!(body["config"]["generation"], 2);

    REFUSE_NEXT_RELOAD.store(true, Ordering::SeqCst);
    let (status, body) = call(&admin, reload_request(Some("secret"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0], "outpost.yaml:3:5: listen: bad");
    assert!(body["request_id"].is_string());
}

#[tokio::test]
async fn replaced_tokens_take_effect_at_once() {
    let (admin, _) = admin(Some("secret"));
    admin.set_tokens(&Tokens {
        full: Some("rotated".into()),
        ..Tokens::default()
    });
    let body = r#"{"everything": true}"#;
    let (status, _) = call(&admin, purge_request(Some("secret"), body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&admin, purge_request(Some("team-a"), body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&admin, purge_request(Some("rotated"), body)).await;
    assert_eq!(status, StatusCode::OK);
}

fn store(cache: &Cache, url: &str) {
    store_tagged(cache, url, "");
}

fn store_tagged(cache: &Cache, url: &str, tags: &str) {
    let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
    let req = Request::get("/").body(()).unwrap().into_parts().0;
    let res = Response::builder()
        .header("cache-control", "max-age=60")
        .header("surrogate-key", tags)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    cache
        .store_whole(
            &Fetched::at(&key, &req, &res, cache.now()),
            StoreRules::default(),
            &KeyFields::default(),
            Bytes::from_static(b"x"),
        )
        .unwrap();
}

fn purge_request(token: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut b = Request::post("/purge");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()
}

async fn call(admin: &Admin, req: Request<Full<Bytes>>) -> (StatusCode, serde_json::Value) {
    let res = admin.handle(req).await;
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn purge_needs_the_right_token() {
    let (admin, cache) = admin(Some("secret"));
    store(&cache, "http://example.com/a");
    let body = r#"{"urls": ["http://example.com/a"]}"#;
    assert_eq!(
        call(&admin, purge_request(None, body)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&admin, purge_request(Some("wrong"), body)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(cache.usage().memory_objects, 1);
    store(&cache, "https://example.com/a");
    let mut lower_case = purge_request(None, body);
    lower_case.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_static("bearer secret"),
    );
    let (status, json) = call(&admin, lower_case).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["purged"], 2, "both schemes of the URL");
    assert!(json["request_id"].is_string());
    assert_eq!(cache.usage().memory_objects, 0);
}

/// The routing table is what the handler serves: each listed method
/// answers, others get 405 with Allow, other paths 404.
#[tokio::test]
async fn every_listed_route_is_served() {
    let (admin, _) = admin(Some("secret"));
    for (path, methods) in ROUTES {
        for method in *methods {
            let req = Request::builder()
                .method(*method)
                .uri(*path)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let status = admin.handle(req).await.status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {status}"
            );
        }
        let req = Request::builder()
            .method("DELETE")
            .uri(*path)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = admin.handle(req).await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(res.headers().contains_key("allow"));
    }
    let req = Request::get("/reload-nope")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(admin.handle(req).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scoped_tokens_purge_only_their_hosts() {
    let (admin, cache) = admin(Some("secret"));
    store(&cache, "http://www.a.test/x");
    let allowed = r#"{"urls": ["http://www.a.test/x"]}"#;
    let (status, json) = call(&admin, purge_request(Some("team-a"), allowed)).await;
    assert_eq!(
        (status, json["matched"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    for body in [
        r#"{"urls": ["http://b.test/x"]}"#,
        r#"{"hosts": ["evila.test"]}"#,
        r#"{"tags": ["t"], "within_hosts": ["b.test"]}"#,
        r#"{"tags": ["t"], "within_hosts": ["*.test"]}"#,
        r#"{"everything": true}"#,
    ] {
        assert_eq!(
            call(&admin, purge_request(Some("team-a"), body)).await.0,
            StatusCode::FORBIDDEN,
            "{body}"
        );
    }
    assert_eq!(
        call(&admin, purge_request(Some("secret"), r#"{"tags": ["t"]}"#))
            .await
            .0,
        StatusCode::OK
    );
}

/// Issue 22: a scoped token purges tags, but only on its hosts; any
/// token may limit a tag purge with `within_hosts`.
#[tokio::test]
async fn scoped_tokens_purge_tags_of_their_hosts_only() {
    let (admin, cache) = admin(Some("secret"));
    for url in [
        "http://a.test/1",
        "http://www.a.test/2",
        "http://b.test/3",
        "http://c.test/4",
    ] {
        store_tagged(&cache, url, "t");
    }
    let matched = |(status, json): (StatusCode, serde_json::Value)| {
        assert_eq!(status, StatusCode::OK, "{json}");
        json["matched"].as_u64()
    };
    let own = call(&admin, purge_request(Some("team-a"), r#"{"tags": ["t"]}"#)).await;
    assert_eq!(matched(own), Some(2), "a.test and *.a.test");
    let narrower = r#"{"tags": ["t"], "within_hosts": ["WWW.A.test."], "soft": true}"#;
    let narrower = call(&admin, purge_request(Some("team-a"), narrower)).await;
    assert_eq!(matched(narrower), Some(0), "already gone");
    let full = r#"{"tags": ["t"], "within_hosts": ["b.test"]}"#;
    assert_eq!(
        matched(call(&admin, purge_request(Some("secret"), full)).await),
        Some(1)
    );
    let rest = call(&admin, purge_request(Some("secret"), r#"{"tags": ["t"]}"#)).await;
    assert_eq!(matched(rest), Some(1), "c.test was left alone until now");
    for body in [
        r#"{"within_hosts": ["a.test"]}"#,
        r#"{"urls": ["http://a.test/1"], "within_hosts": ["a.test"]}"#,
        r#"{"tags": ["t"], "within_hosts": ["a.test/x"]}"#,
        r#"{"tags": ["t"], "within_hosts": []}"#,
    ] {
        let (status, json) = call(&admin, purge_request(Some("secret"), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
    }
}

#[tokio::test]
async fn bulk_purges_are_rate_limited() {
    let (admin, _) = admin(Some("secret"));
    let statuses: Vec<StatusCode> = everything_purges(&admin, 12).await;
    assert!(
        statuses[..10].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
}

/// Issue 19: the budget counts the items a purge names, per token; a
/// tenant that spends its own leaves the others' alone.
#[tokio::test]
async fn purges_are_limited_by_the_work_they_name_per_token() {
    let (admin, _) = admin(Some("secret"));
    let prefixes = |host: &str, n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("{host}/p{i}/")).collect();
        json!({ "prefixes": list }).to_string()
    };
    let (status, body) = call(
        &admin,
        purge_request(Some("team-a"), &prefixes("a.test", 55_000)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &admin,
        purge_request(Some("team-a"), &prefixes("a.test", 50_000)),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Another tenant, and the full token, still have their whole budget.
    let (status, body) = call(
        &admin,
        purge_request(Some("team-b"), &prefixes("b.test", 50_000)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &admin,
        purge_request(Some("secret"), &prefixes("c.test", 50_000)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // What the spent tenant still holds goes on serving smaller purges.
    let (status, _) = call(
        &admin,
        purge_request(Some("team-a"), &prefixes("a.test", 45_000)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_purge_larger_than_the_burst_is_413() {
    let (admin, _) = admin(Some("secret"));
    admin.set_tokens(&Tokens {
        full: Some("secret".into()),
        scoped: Vec::new(),
        budget: PurgeBudget {
            burst: 10,
            per_second: 1,
        },
        ..Tokens::default()
    });
    let urls: Vec<String> = (0..11).map(|i| format!("http://a/{i}")).collect();
    let body = json!({ "urls": urls }).to_string();
    let (status, body) = call(&admin, purge_request(Some("secret"), &body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("split it"),
        "{body}"
    );
}

async fn everything_purges(admin: &Admin, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(
            call(
                admin,
                purge_request(Some("secret"), r#"{"everything": true}"#),
            )
            .await
            .0,
        );
    }
    statuses
}

#[tokio::test]
async fn without_a_configured_token_purge_is_refused() {
    let (admin, _) = admin(None);
    let body = r#"{"urls": ["http://example.com/a"]}"#;
    assert_eq!(
        call(&admin, purge_request(Some(""), body)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn bad_purge_bodies_are_400_or_413() {
    let (admin, _) = admin(Some("t"));
    for body in [
        "not json",
        r#"{"urls": []}"#,
        r#"{}"#,
        r#"{"everything": false}"#,
        r#"{"prefixes": ["https://a.test/x"]}"#,
        r#"{"hosts": ["a.test/path"]}"#,
        r#"{"urls": ["/relative"]}"#,
        r#"{"urls": ["http://a/"], "extra": 1}"#,
    ] {
        assert_eq!(
            call(&admin, purge_request(Some("t"), body)).await.0,
            StatusCode::BAD_REQUEST,
            "{body}"
        );
    }
    let huge = format!(r#"{{"urls": ["{}"]}}"#, "a".repeat(MAX_BODY));
    assert_eq!(
        call(&admin, purge_request(Some("t"), &huge)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let get = Request::get("/purge")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = admin.handle(get).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "POST");
}

/// The `/metrics` page as text.
async fn metrics_text(admin: &Admin) -> String {
    let res = admin
        .handle(
            Request::get("/metrics")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (registry, requests) = requests_registry();
    let (admin, _) = admin_with(None, registry);
    requests.with_label_values(&["hit"]).inc();
    let text = metrics_text(&admin).await;
    assert!(
        text.contains("outpost_requests_total{cache_status=\"hit\"} 1"),
        "{text}"
    );
    // The side API's own series is served beside the ones it was handed.
    let _ = admin.handle(purge_request(None, r#"{"urls": []}"#)).await;
    let text = metrics_text(&admin).await;
    assert!(
        text.contains("outpost_purges_total{kind=\"urls\",outcome=\"unauthorized\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("outpost_requests_total{cache_status=\"hit\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn stats_report_the_cache_and_the_origins() {
    let (registry, requests) = requests_registry();
    let (admin, cache) = admin_with(None, registry);
    store(&cache, "http://example.com/a");
    requests.with_label_values(&["hit"]).inc_by(3);
    requests.with_label_values(&["miss"]).inc();
    let (status, json) = call(
        &admin,
        Request::get("/stats")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["cache"]["memory"]["objects"], 1);
    assert_eq!(json["hit_ratio"], 0.75);
    assert_eq!(json["origins"][0]["name"], "app");
    assert_eq!(json["origins"][0]["servers"][0]["healthy"], false);
    assert_eq!(json["origins"][0]["servers"][0]["ejected_for_ms"], 4000);
}

/// A purge with one bad part changes nothing: every part is read before
/// any applies.
#[tokio::test]
async fn a_purge_with_a_bad_part_applies_nothing() {
    let (admin, cache) = admin(Some("secret"));
    store(&cache, "http://a.test/x");
    let body = r#"{"urls": ["http://a.test/x"], "prefixes": ["https://a.test/"]}"#;
    let (status, _) = call(&admin, purge_request(Some("secret"), body)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(cache.usage().memory_objects, 1);
}

/// What a fleet was told, and what it answers.
#[derive(Default)]
struct FakeFleet {
    announced: std::sync::Mutex<Vec<PurgeRequest>>,
}

impl Fleet for FakeFleet {
    fn announce<'a>(
        &'a self,
        purge: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<Announced, FleetError>> {
        let mut announced = self.announced.lock().unwrap();
        announced.push(purge.clone());
        let n = announced.len() as u64;
        Box::pin(async move {
            Ok(Announced {
                id: format!("id{n}"),
                sequence: (n > 1).then_some(n),
            })
        })
    }

    fn purge_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, FleetError>> {
        Box::pin(async move { Ok((id == "id1").then(|| json!({"id": "id1"}))) })
    }

    fn members(&self) -> BoxFuture<'_, Result<serde_json::Value, FleetError>> {
        Box::pin(async { Err("no NATS server answers".into()) })
    }

    fn waiting_for(&self) -> Option<String> {
        Some("the fleet's purge stream".into())
    }
}

#[tokio::test]
async fn in_a_fleet_a_purge_is_announced_with_its_id_and_sequence() {
    let (mut admin, cache) = admin(Some("secret"));
    let fleet = Arc::new(FakeFleet::default());
    admin.fleet = Some(fleet.clone());
    store(&cache, "http://a.test/x");
    let body = r#"{"urls": ["http://a.test/x"], "soft": true}"#;
    let (status, first) = call(&admin, purge_request(Some("secret"), body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (first["id"].as_str(), first["queued"].as_bool()),
        (Some("id1"), Some(true))
    );
    assert!(first["sequence"].is_null());
    let (_, second) = call(&admin, purge_request(Some("secret"), body)).await;
    assert_eq!(
        (second["sequence"].as_u64(), second["queued"].as_bool()),
        (Some(2), Some(false))
    );
    // The fleet gets the request as the client wrote it.
    assert_eq!(
        fleet.announced.lock().unwrap()[0],
        PurgeRequest {
            urls: Some(vec!["http://a.test/x".into()]),
            soft: true,
            ..PurgeRequest::default()
        }
    );
    // A refused purge is not announced.
    let (status, _) = call(&admin, purge_request(Some("secret"), r#"{"tags": []}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(fleet.announced.lock().unwrap().len(), 2);

    let get = |path: &str| Request::get(path).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(call(&admin, get("/purge/id1")).await.0, StatusCode::OK);
    assert_eq!(
        call(&admin, get("/purge/id9")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&admin, get("/purge/a.b")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&admin, get("/cluster")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, ready) = call(&admin, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["waiting_for"], "the fleet's purge stream");
}

#[tokio::test]
async fn a_node_on_its_own_is_a_fleet_of_none() {
    let (admin, _) = admin(None);
    let get = |path: &str| Request::get(path).body(Full::new(Bytes::new())).unwrap();
    let (status, cluster) = call(&admin, get("/cluster")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cluster["fleet"].is_null());
    assert_eq!(
        call(&admin, get("/purge/abc")).await.0,
        StatusCode::NOT_FOUND
    );
}

/// A body that never arrives, declaring `length` (None: unknown).
struct Stalled(Option<u64>);

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Pending
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.0 {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}

fn stalled_purge(length: Option<u64>) -> Request<Stalled> {
    Request::post("/purge")
        .header("authorization", "Bearer secret")
        .body(Stalled(length))
        .unwrap()
}

/// Issue 19: a declared length over the limit is refused before anything
/// is read (the body here never comes, so reading would hang).
#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_unread() {
    let (admin, _) = admin(Some("secret"));
    let res = admin.handle(stalled_purge(Some(MAX_BODY as u64 + 1))).await;
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// Issue 19: a body that stalls is given up on (408), not waited for.
#[tokio::test(start_paused = true)]
async fn a_stalled_body_times_out() {
    let (admin, _) = admin(Some("secret"));
    let res = admin.handle(stalled_purge(None)).await;
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
}

fn get_from(path: &str, client: [u8; 4], token: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let mut req = b.body(Full::new(Bytes::new())).unwrap();
    req.extensions_mut()
        .insert(crate::ClientAddr(std::net::IpAddr::from(client)));
    req
}

/// Issue 21: the side API may be limited to client networks (health
/// probes stay open), and its reading routes may ask for a read token,
/// which the full token also satisfies.
#[tokio::test]
async fn the_side_api_keeps_to_its_networks_and_read_token() {
    let (admin, _) = admin(Some("secret"));
    admin.set_tokens(&Tokens {
        full: Some("secret".into()),
        read: Some("reader".into()),
        networks: vec!["10.0.0.0/8".parse().unwrap()],
        ..Tokens::default()
    });
    let status = |req| {
        let admin = &admin;
        async move { admin.handle(req).await.status() }
    };
    let outside = [192, 0, 2, 1];
    let inside = [10, 1, 2, 3];
    assert_eq!(
        status(get_from("/metrics", outside, Some("secret"))).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(get_from("/healthz", outside, None)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(get_from("/readyz", outside, None)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(get_from("/stats", inside, None)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(get_from("/stats", inside, Some("wrong"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(get_from("/stats", inside, Some("team-a"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(get_from("/stats", inside, Some("reader"))).await,
        StatusCode::OK
    );
    assert_eq!(
        status(get_from("/metrics", inside, Some("secret"))).await,
        StatusCode::OK
    );
    // A purge needs its own token; the read token is not one.
    let mut purge = purge_request(Some("reader"), r#"{"everything": true}"#);
    purge
        .extensions_mut()
        .insert(crate::ClientAddr(std::net::IpAddr::from(inside)));
    assert_eq!(status(purge).await, StatusCode::UNAUTHORIZED);
    // Without a known client address, a network limit admits no one.
    let mut unknown = get_from("/stats", inside, Some("reader"));
    unknown.extensions_mut().remove::<crate::ClientAddr>();
    assert_eq!(status(unknown).await, StatusCode::FORBIDDEN);
    // A read token asked for but unset: the full token only.
    admin.set_tokens(&Tokens {
        full: Some("secret".into()),
        read_required: true,
        ..Tokens::default()
    });
    assert_eq!(
        status(get_from("/stats", outside, None)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(get_from("/stats", outside, Some("secret"))).await,
        StatusCode::OK
    );
}

fn explain_request(query: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut req = Request::get(format!("/explain?{query}"));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

/// `/explain` is authorized as purges are: a full token explains any URL,
/// a scoped one its hosts' only.
#[tokio::test]
async fn explain_asks_a_token_and_keeps_a_scoped_one_to_its_hosts() {
    let (admin, _) = admin(Some("secret"));
    let query = "url=http%3A%2F%2Fa.test%2Fx&header=Accept-Language:de";
    let (status, _) = call(&admin, explain_request(query, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&admin, explain_request(query, Some("secret"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["url"], "http://a.test/x");
    assert_eq!(body["method"], "GET");
    assert_eq!(body["headers"][0], "accept-language: de");
    let (status, _) = call(&admin, explain_request(query, Some("team-a"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &admin,
        explain_request("url=http%3A%2F%2Fsub.a.test%2Fx", Some("team-a")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &admin,
        explain_request("url=http%3A%2F%2Fa.test%2Fx", Some("team-b")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("a.test"));
    // The query's own faults, and the edge's refusal, are 400s.
    let (status, body) = call(&admin, explain_request("url=x&header=bad", Some("secret"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("Name:value"));
    let (status, body) = call(&admin, explain_request("url=a.test%2Fx", Some("secret"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("absolute"));
}
