//! End-to-end: a fleet of Outposts on a real `nats-server -js`. A purge
//! accepted by any node reaches every node, none is lost or applied twice,
//! a node that was away replays what it missed before its cache answers
//! (or purges everything when the stream no longer holds it), and a node
//! cut off from NATS keeps serving under its lag policy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use outpost_tests::{Nats, Origin, Outpost, await_metric, get, metric, metric_sum, purge, respond};

const TOKEN: &str = "fleet-token";

/// An origin whose bodies name the current version: a test bumps it when
/// it purges, so an old body served afterwards is caught.
async fn versioned_origin() -> (Origin, Arc<AtomicU64>) {
    let version = Arc::new(AtomicU64::new(1));
    let current = version.clone();
    let origin = Origin::start(move |_| {
        let body = format!("v{}", current.load(Ordering::SeqCst));
        respond(200, &[("cache-control", "max-age=600")], body)
    })
    .await;
    (origin, version)
}

/// A node's config: one catch-all site on `origin`, a disk tier (so what
/// it holds outlives a restart), in the fleet on `nats`; `extra` is YAML
/// under `cluster:`.
fn node_config(name: &str, nats: &Nats, origin: &Origin, extra: &str) -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\n\
         cache:\n  memory: 32MiB\n  disk:\n    path: disk\n    size: 64MiB\n\
         origins:\n  app:\n    servers:\n      - url: {}\n\
         sites:\n  - hosts: [\"*\"]\n    origin: app\n\
         cluster:\n  node: {name}\n  nats:\n    servers: [\"{}\"]\n  state_dir: fleet\n  heartbeat: 1s\n{extra}",
        origin.url(),
        nats.url()
    )
}

async fn start_node(name: &str, nats: &Nats, origin: &Origin, extra: &str) -> Outpost {
    let node = Outpost::start(&node_config(name, nats, origin, extra), &[], Some(TOKEN)).await;
    node.await_ready().await;
    node
}

fn json(got: &outpost_tests::Got) -> serde_json::Value {
    serde_json::from_slice(&got.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} {}",
            got.status,
            String::from_utf8_lossy(&got.body)
        )
    })
}

/// Purges one URL through `node`; the answer's JSON.
async fn purge_url(node: &Outpost, path: &str) -> serde_json::Value {
    let body = format!(r#"{{"urls": ["http://example.com{path}"]}}"#);
    let got = purge(node.admin, Some(TOKEN), &body).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    json(&got)
}

/// Waits (bounded: 20 s) until `GET /purge/{id}` on `node` says every
/// member applied it; that answer.
async fn await_applied_everywhere(node: &Outpost, id: &str, members: usize) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        let got = get(node.admin, "admin", &format!("/purge/{id}")).await;
        last = json(&got);
        if got.status == 200
            && last["applied_everywhere"] == true
            && last["members"].as_array().map(Vec::len) == Some(members)
        {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("purge {id} was not applied everywhere: {last}");
}

/// Stores `path` on `node` (a miss, then a hit).
async fn warm(node: &Outpost, path: &str) {
    get(node.addr(), "example.com", path).await;
    get(node.addr(), "example.com", path).await.assert_hit();
}

#[tokio::test]
async fn a_purge_on_one_node_is_gone_from_every_node() {
    let nats = Nats::start().await;
    let (origin, version) = versioned_origin().await;
    let nodes = [
        start_node("a", &nats, &origin, "").await,
        start_node("b", &nats, &origin, "").await,
        start_node("c", &nats, &origin, "").await,
    ];
    for node in &nodes {
        warm(node, "/x").await;
        warm(node, "/kept").await;
    }
    version.store(2, Ordering::SeqCst);
    let answer = purge_url(&nodes[0], "/x").await;
    assert_eq!(answer["matched"], 1, "{answer}");
    assert_eq!(answer["queued"], false, "{answer}");
    assert!(
        answer["sequence"].as_u64().is_some_and(|s| s >= 1),
        "{answer}"
    );
    let id = answer["id"].as_str().expect("purge id");

    // Any node can say who applied it.
    let status = await_applied_everywhere(&nodes[2], id, 3).await;
    assert_eq!(status["origin"], "a", "{status}");
    assert_eq!(status["sequence"], answer["sequence"], "{status}");
    for node in &nodes {
        let got = get(node.addr(), "example.com", "/x").await;
        assert_eq!(&got.body[..], b"v2", "{}", got.cache_status());
        assert!(
            got.cache_status().contains("fwd=miss"),
            "{}",
            got.cache_status()
        );
        get(node.addr(), "example.com", "/kept").await.assert_hit();
    }

    let cluster = json(&get(nodes[1].admin, "admin", "/cluster").await);
    let names: Vec<&str> = cluster["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["node"].as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"], "{cluster}");
    assert_eq!(cluster["node"], "b");
    for member in cluster["members"].as_array().expect("members") {
        assert!(member["version"].is_string(), "{member}");
        assert!(member["last_heartbeat_ms"].as_u64().is_some(), "{member}");
        assert!(member["purge_lag_seconds"].as_f64().is_some(), "{member}");
    }
    let unknown = get(nodes[0].admin, "admin", "/purge/nosuchpurge").await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_thousand_purges_arrive_everywhere_once() {
    const PURGES: usize = 1000;
    let nats = Nats::start().await;
    let (origin, _) = versioned_origin().await;
    let nodes = [
        start_node("a", &nats, &origin, "").await,
        start_node("b", &nats, &origin, "").await,
        start_node("c", &nats, &origin, "").await,
    ];
    let answers: Vec<serde_json::Value> = futures_util::stream::iter(0..PURGES)
        .map(|i| {
            let node = &nodes[i % 3];
            async move { purge_url(node, &format!("/p{i}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut ids: Vec<&str> = answers.iter().filter_map(|a| a["id"].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), PURGES, "every purge has its own id");
    for (n, node) in nodes.iter().enumerate() {
        let own = (0..PURGES).filter(|i| i % 3 == n).count();
        await_metric(
            node.admin,
            r#"outpost_cluster_stream_purges_total{outcome="own"}"#,
            own as f64,
        )
        .await;
        await_metric(
            node.admin,
            r#"outpost_cluster_stream_purges_total{outcome="applied"}"#,
            (PURGES - own) as f64,
        )
        .await;
        assert_eq!(
            metric(
                node.admin,
                r#"outpost_cluster_stream_purges_total{outcome="invalid"}"#
            )
            .await,
            None
        );
    }
}

#[tokio::test]
async fn a_node_that_was_away_replays_what_it_missed_before_answering() {
    let nats = Nats::start().await;
    let (origin, version) = versioned_origin().await;
    let a = start_node("a", &nats, &origin, "").await;
    let c = start_node("c", &nats, &origin, "").await;
    for i in 0..100 {
        warm(&c, &format!("/o/{i}")).await;
    }
    warm(&c, "/kept").await;
    let c = c.stop(false).await;
    version.store(2, Ordering::SeqCst);
    for i in 0..100 {
        purge_url(&a, &format!("/o/{i}")).await;
    }
    let c = c.start().await;
    // From its first answer on, c serves none of what was purged while it
    // was away: whether it is still replaying (the cache is passed by) or
    // has caught up (the objects are gone).
    for i in 0..100 {
        let got = get(c.addr(), "example.com", &format!("/o/{i}")).await;
        assert_eq!(&got.body[..], b"v2", "/o/{i}: {}", got.cache_status());
    }
    c.await_ready().await;
    await_metric(
        c.admin,
        r#"outpost_cluster_stream_purges_total{outcome="applied"}"#,
        100.0,
    )
    .await;
    get(c.addr(), "example.com", "/kept").await.assert_hit();
    assert_eq!(
        metric(
            c.admin,
            r#"outpost_cluster_purged_everything_total{reason="stream_gap"}"#
        )
        .await,
        None
    );
}

#[tokio::test]
async fn a_node_away_longer_than_the_streams_retention_purges_everything() {
    let nats = Nats::start().await;
    let (origin, _) = versioned_origin().await;
    let a = start_node("a", &nats, &origin, "  retention: 1s\n").await;
    let c = start_node("c", &nats, &origin, "  retention: 1s\n").await;
    warm(&c, "/purged").await;
    warm(&c, "/kept").await;
    let c = c.stop(false).await;
    let answer = purge_url(&a, "/purged").await;
    let id = answer["id"].as_str().expect("id").to_owned();
    // The stream forgets the purge: c cannot learn of it any more.
    for _ in 0..100 {
        if get(a.admin, "admin", &format!("/purge/{id}")).await.status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(a.admin, "admin", &format!("/purge/{id}")).await.status,
        404
    );
    let c = c.start().await;
    c.await_ready().await;
    assert_eq!(
        metric(
            c.admin,
            r#"outpost_cluster_purged_everything_total{reason="stream_gap"}"#
        )
        .await,
        Some(1.0)
    );
    for path in ["/purged", "/kept"] {
        let got = get(c.addr(), "example.com", path).await;
        assert!(
            got.cache_status().contains("fwd=miss"),
            "{path}: {}",
            got.cache_status()
        );
    }
}

#[tokio::test]
async fn purges_made_while_nats_restarts_are_all_delivered() {
    const PURGES: usize = 300;
    let mut nats = Nats::start().await;
    let (origin, _) = versioned_origin().await;
    let a = start_node("a", &nats, &origin, "").await;
    let b = start_node("b", &nats, &origin, "").await;
    let mut queued = 0;
    for i in 0..PURGES {
        if i == 50 {
            nats.kill().await;
        }
        if i == 150 {
            nats.restart().await;
        }
        let answer = purge_url(&a, &format!("/burst/{i}")).await;
        if answer["queued"] == true {
            queued += 1;
        }
    }
    assert!(queued > 0, "some purges were made while NATS was down");
    await_metric(a.admin, "outpost_cluster_purges_queued", 0.0).await;
    await_metric(
        a.admin,
        "outpost_cluster_purges_published_total",
        PURGES as f64,
    )
    .await;
    await_metric(
        b.admin,
        r#"outpost_cluster_stream_purges_total{outcome="applied"}"#,
        PURGES as f64,
    )
    .await;
    await_metric(
        a.admin,
        r#"outpost_cluster_stream_purges_total{outcome="own"}"#,
        PURGES as f64,
    )
    .await;
}

#[tokio::test]
async fn a_node_cut_off_from_the_stream_follows_its_lag_policy() {
    let mut nats = Nats::start().await;
    let (origin, _) = versioned_origin().await;
    let serve = start_node("serve", &nats, &origin, "  max_lag: 1s\n").await;
    let bypass = start_node(
        "bypass",
        &nats,
        &origin,
        "  max_lag: 1s\n  lag_policy: bypass\n",
    )
    .await;
    warm(&serve, "/x").await;
    warm(&bypass, "/x").await;
    nats.kill().await;
    // Past max_lag, `serve` still answers from the cache and says so;
    // `bypass` passes the cache by.
    let mut statuses = (String::new(), String::new());
    for _ in 0..100 {
        statuses = (
            get(serve.addr(), "example.com", "/x")
                .await
                .cache_status()
                .to_owned(),
            get(bypass.addr(), "example.com", "/x")
                .await
                .cache_status()
                .to_owned(),
        );
        if statuses.0.contains("purge-lag") && statuses.1.contains("purge-lag") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        statuses.0.contains("hit; ") && statuses.0.contains("detail=purge-lag"),
        "{statuses:?}"
    );
    assert!(
        statuses.1.contains("fwd=bypass") && statuses.1.contains("detail=purge-lag"),
        "{statuses:?}"
    );
    assert!(
        metric(serve.admin, "outpost_cluster_purge_lag_seconds")
            .await
            .is_some_and(|lag| lag > 1.0)
    );
    // Purges are still accepted, and queued.
    let answer = purge_url(&serve, "/y").await;
    assert_eq!(answer["queued"], true, "{answer}");

    nats.restart().await;
    for node in [&serve, &bypass] {
        let mut status = String::new();
        for _ in 0..100 {
            status = get(node.addr(), "example.com", "/x")
                .await
                .cache_status()
                .to_owned();
            if !status.contains("purge-lag") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(status.contains("hit"), "{status}");
    }
    await_metric(serve.admin, "outpost_cluster_purges_queued", 0.0).await;
}

/// A free port on 127.0.0.1 for a node's listener, which its `peer_addr`
/// must name before the node starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Three shielded nodes on fixed ports, each seeing all three members.
async fn shielded_fleet(nats: &Nats, origin: &Origin) -> Vec<Outpost> {
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let port = free_port();
        let config = node_config(
            name,
            nats,
            origin,
            &format!("  peer_addr: 127.0.0.1:{port}\n"),
        )
        .replace(
            "listen: [{addr: 127.0.0.1:0}]",
            &format!("listen: [{{addr: 127.0.0.1:{port}}}]"),
        )
        .replace("    origin: app\n", "    origin: app\n    shield: true\n");
        let node = Outpost::start(&config, &[], Some(TOKEN)).await;
        node.await_ready().await;
        nodes.push(node);
    }
    for node in &nodes {
        await_metric(node.admin, "outpost_cluster_members", 3.0).await;
    }
    nodes
}

/// Requests `paths` on every node, `concurrency` at a time, in an order
/// that mixes nodes and keys; every answer must be the origin's body.
async fn request_everywhere(nodes: &[&Outpost], paths: &[String], concurrency: usize) {
    let requests: Vec<(usize, &String)> = paths
        .iter()
        .flat_map(|p| (0..nodes.len()).map(move |n| (n, p)))
        .collect();
    let results: Vec<(String, outpost_tests::Got)> = futures_util::stream::iter(requests)
        .map(|(n, path)| async move {
            (
                path.clone(),
                get(nodes[n].addr(), "example.com", path).await,
            )
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (path, got) in results {
        assert_eq!(got.status, 200, "{path}: {}", got.cache_status());
        assert_eq!(&got.body[..], b"v1", "{path}");
    }
}

#[tokio::test]
async fn the_shield_tier_fetches_each_object_from_the_origin_once() {
    let nats = Nats::start().await;
    let (origin, _) = versioned_origin().await;
    let nodes = shielded_fleet(&nats, &origin).await;
    let paths: Vec<String> = (0..100).map(|i| format!("/s/{i}")).collect();
    let all: Vec<&Outpost> = nodes.iter().collect();
    request_everywhere(&all, &paths, 24).await;
    assert_eq!(
        origin.hits(),
        100,
        "one origin fetch per object for three edges"
    );

    // A non-owner's answer lists the owner's entry, then its own (RFC 9211).
    let mut two_entries = 0;
    for path in &paths {
        let got = get(nodes[0].addr(), "example.com", path).await;
        got.assert_hit();
        if got.cache_status().matches("Outpost;").count() == 2 {
            two_entries += 1;
        }
    }
    assert!(
        (40..=90).contains(&two_entries),
        "{two_entries} of 100 keys owned by b or c"
    );

    // The owner of some keys is gone: they are still answered, by the next
    // member on the ring or by the origin.
    let [a, b, c]: [Outpost; 3] = nodes.try_into().ok().expect("three nodes");
    c.stop(true).await;
    let fresh: Vec<String> = (0..60).map(|i| format!("/after/{i}")).collect();
    request_everywhere(&[&a, &b], &fresh, 8).await;
    assert!(origin.hits() <= 100 + 60 * 2, "{}", origin.hits());
}

#[tokio::test]
async fn a_request_that_passed_a_member_never_goes_to_another() {
    let nats = Nats::start().await;
    let (origin, _) = versioned_origin().await;
    let nodes = shielded_fleet(&nats, &origin).await;
    for i in 0..30 {
        let path = format!("/loop/{i}");
        let got = outpost_tests::request(
            nodes[0].addr(),
            "GET",
            "example.com",
            &path,
            &[("cdn-loop", "other-cdn, outpost; v=1")],
            "",
        )
        .await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.cache_status().matches("Outpost;").count(),
            1,
            "{path}: {}",
            got.cache_status()
        );
    }
    assert_eq!(origin.hits(), 30);
    for node in &nodes[1..] {
        assert_eq!(
            metric_sum(
                node.admin,
                "outpost_requests_total",
                &[("cache_status", "miss")]
            )
            .await,
            None,
            "no member was asked"
        );
    }
}

/// A binary upgrade hands the node's place in the fleet over: the old
/// process leaves (it releases the fleet journal as it starts to drain),
/// the successor joins with the same name and journal and applies the
/// purges made from then on.
#[tokio::test]
async fn a_binary_upgrade_hands_the_fleet_journal_over() {
    let nats = Nats::start().await;
    let (origin, version) = versioned_origin().await;
    let config = format!(
        "upgrade_socket: upgrade.sock\n{}",
        node_config("a", &nats, &origin, "")
    );
    let old = Outpost::start(&config, &[], Some(TOKEN)).await;
    old.await_ready().await;
    let b = start_node("b", &nats, &origin, "").await;
    warm(&old, "/x").await;
    let mut old = old;
    let new = old.upgrade().await;
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));
    new.await_ready().await;
    // The successor answers from the shared disk tier and the old journal.
    get(new.addr(), "example.com", "/x").await.assert_hit();
    version.store(2, Ordering::SeqCst);
    let answer = purge_url(&b, "/x").await;
    let id = answer["id"].as_str().expect("id");
    await_applied_everywhere(&b, id, 2).await;
    let got = get(new.addr(), "example.com", "/x").await;
    assert_eq!(&got.body[..], b"v2", "{}", got.cache_status());
    // Its own purges travel as before.
    let answer = purge_url(&new, "/x").await;
    assert_eq!(answer["queued"], false, "{answer}");
}
