//! What the origin side counts: requests to each server by outcome, time to
//! the response head, new connections and body bytes; and whether each
//! server takes traffic, read from the pools current when `/metrics` is
//! scraped (a reload may have removed servers: only the current ones report).

use outpost_purge_api::PoolStatus;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

pub(crate) struct OriginMetrics {
    /// Requests to origin servers, by pool, server and outcome
    /// (`ok`, `5xx`, `connect_error`, `refused`, `reset`, `timeout`, `malformed`).
    pub(crate) requests: IntCounterVec,
    /// Time from sending a request to an origin to its response headers.
    pub(crate) response: HistogramVec,
    /// New connections (connect attempts) to origin servers.
    pub(crate) connects: IntCounterVec,
    /// Body bytes received from origins.
    pub(crate) bytes: IntCounter,
}

impl OriginMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "outpost_origin_requests_total",
                "Requests sent to origin servers, by pool, server and outcome.",
            ),
            &["pool", "server", "outcome"],
        )?;
        let response = HistogramVec::new(
            HistogramOpts::new(
                "outpost_origin_response_seconds",
                "Time from sending a request to an origin to its response headers.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["pool"],
        )?;
        let connects = IntCounterVec::new(
            Opts::new(
                "outpost_origin_connects_total",
                "New connections opened (attempted) to origin servers.",
            ),
            &["pool", "server"],
        )?;
        let bytes = IntCounter::new(
            "outpost_origin_body_bytes_total",
            "Body bytes received from origin servers.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(response.clone()))?;
        registry.register(Box::new(connects.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(Self {
            requests,
            response,
            connects,
            bytes,
        })
    }
}

/// The pools serving now, with their servers' health.
pub(crate) type Pools = Box<dyn Fn() -> Vec<PoolStatus> + Send + Sync>;

/// `outpost_origin_up`, read from the current pools at each scrape.
pub(crate) struct OriginsUp {
    up: IntGaugeVec,
    pools: Pools,
}

impl OriginsUp {
    pub(crate) fn register(registry: &Registry, pools: Pools) -> Result<(), prometheus::Error> {
        let up = IntGaugeVec::new(
            Opts::new(
                "outpost_origin_up",
                "1 when an origin server takes traffic, 0 when health checks or ejection keep it out.",
            ),
            &["pool", "server"],
        )?;
        registry.register(Box::new(OriginsUp { up, pools }))
    }
}

impl Collector for OriginsUp {
    fn desc(&self) -> Vec<&Desc> {
        self.up.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.up.reset();
        for pool in (self.pools)() {
            for server in pool.servers {
                self.up
                    .with_label_values(&[pool.name.as_str(), server.label.as_str()])
                    .set(i64::from(server.healthy));
            }
        }
        self.up.collect()
    }
}

#[cfg(test)]
mod tests {
    use outpost_purge_api::ServerStatus;
    use prometheus::{Encoder, TextEncoder};

    use super::*;

    /// Each scrape reports the servers of the pools current then, and no others.
    #[test]
    fn only_current_servers_report() {
        let registry = Registry::new();
        let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = healthy.clone();
        OriginsUp::register(
            &registry,
            Box::new(move || {
                vec![PoolStatus {
                    name: "app".into(),
                    servers: vec![ServerStatus {
                        url: "http://127.0.0.1:9000".into(),
                        address: "127.0.0.1:9000".into(),
                        healthy: seen.load(std::sync::atomic::Ordering::SeqCst),
                        passes_checks: true,
                        ejected_for_ms: 0,
                        in_flight: 0,
                        ejections: 0,
                        latency_ms: None,
                        label: "http://127.0.0.1:9000".into(),
                    }],
                }]
            }),
        )
        .unwrap();
        let render = || {
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let series = "outpost_origin_up{pool=\"app\",server=\"http://127.0.0.1:9000\"}";
        assert!(render().contains(&format!("{series} 0")));
        healthy.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(render().contains(&format!("{series} 1")));
    }
}
