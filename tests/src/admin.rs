//! The side API, as tests call it: [`purge`], [`reload`], [`stats`],
//! [`explain`], and the Prometheus [`metric`]s, read once or awaited.

use std::net::SocketAddr;
use std::time::Duration;

use crate::client::{Got, get, request};

/// A `POST /purge` to the side API.
pub async fn purge(admin: SocketAddr, token: Option<&str>, body: &str) -> Got {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    request(admin, "POST", "admin", "/purge", &headers, body).await
}

/// `GET /stats` from the side API, as JSON.
pub async fn stats(admin: SocketAddr) -> serde_json::Value {
    let got = get(admin, "admin", "/stats").await;
    serde_json::from_slice(&got.body).expect("stats JSON")
}

/// One sample from `GET /metrics`: the value of the series written
/// exactly as `series` (name and labels, e.g.
/// `outpost_config_reloads_total{result="ok"}`), if present.
pub async fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let got = get(admin, "admin", "/metrics").await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of the family `name` whose labels include
/// `labels` (the others, such as `site`, summed over); None when no
/// sample of the family has them.
pub async fn metric_sum(admin: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let got = get(admin, "admin", "/metrics").await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    let mut sum = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (family, set) = match series.split_once('{') {
            Some((family, set)) => (family, set.trim_end_matches('}')),
            None => (series, ""),
        };
        if family != name {
            continue;
        }
        let has = |(key, want): &(&str, &str)| {
            set.split(',')
                .filter_map(|pair| pair.split_once('='))
                .any(|(k, v)| k == *key && v.trim_matches('"') == *want)
        };
        if labels.iter().all(has)
            && let Ok(value) = value.parse::<f64>()
        {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// Waits (bounded: 10 s) until `series` reaches `value`.
pub async fn await_metric(admin: SocketAddr, series: &str, value: f64) {
    for _ in 0..1000 {
        if metric(admin, series).await == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{series} never reached {value}; last {:?}",
        metric(admin, series).await
    );
}

/// `POST /reload` to the side API.
pub async fn reload(admin: SocketAddr, token: &str) -> Got {
    let auth = format!("Bearer {token}");
    request(
        admin,
        "POST",
        "admin",
        "/reload",
        &[("authorization", auth.as_str())],
        "",
    )
    .await
}

/// `GET /explain` for `url` with the request header fields `headers`
/// (`Name:value`): the status and the JSON answer.
pub async fn explain(
    admin: SocketAddr,
    token: Option<&str>,
    url: &str,
    headers: &[&str],
) -> (u16, serde_json::Value) {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("url", url);
    for header in headers {
        query.append_pair("header", header);
    }
    let auth = token.map(|t| format!("Bearer {t}"));
    let fields: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let path = format!("/explain?{}", query.finish());
    let got = request(admin, "GET", "admin", &path, &fields, "").await;
    let json = serde_json::from_slice(&got.body).expect("explain JSON");
    (got.status.as_u16(), json)
}
