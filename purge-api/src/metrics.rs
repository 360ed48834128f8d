//! Prometheus metrics. One registry per process, created by the binary and
//! shared by every part; all names start with `outpost_`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests served, by cache status (`hit`, `miss`, `stale`, `bypass`, `error`).
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    /// Purge requests, by kind and outcome.
    pub purges: IntCounterVec,
    /// Objects and bytes held, by tier; set when scraped.
    pub cache_objects: IntGaugeVec,
    pub cache_bytes: IntGaugeVec,
    /// Objects evicted for room, by tier; brought up to date when scraped.
    pub cache_evictions: IntCounterVec,
    /// Lookups each tier answered and did not, by tier; brought up to date when scraped.
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    /// Size each tier may grow to, by tier.
    pub cache_capacity: IntGaugeVec,
    /// Disk tier faults: `io` (reads that failed), `damaged` (records that
    /// did not check, dropped).
    pub disk_errors: IntCounterVec,
    /// Bytes the disk tier wrote and read (`direction`: `write`, `read`).
    pub disk_io_bytes: IntCounterVec,
    /// 1 once the disk tier is open; 0 while it waits for a predecessor.
    pub disk_open: prometheus::IntGauge,
    /// Requests to origin servers, by pool, server and outcome
    /// (`ok`, `5xx`, `connect_error`, `reset`, `timeout`).
    pub origin_requests: IntCounterVec,
    /// Time from sending a request to an origin to its response headers.
    pub origin_response: HistogramVec,
    /// New connections (connect attempts) to origin servers.
    pub origin_connects: IntCounterVec,
    /// 1 when a server takes traffic, 0 when checks or ejection keep it out; set when scraped.
    pub origin_up: IntGaugeVec,
    /// Requests that waited on another request's fetch of the same key.
    pub coalesced: prometheus::IntCounter,
    /// How long they waited for its response head.
    pub coalesce_wait: prometheus::Histogram,
    /// Body bytes received from clients and sent to them (`direction`:
    /// `in`, `out`), and received from origins.
    pub client_bytes_in: prometheus::IntCounter,
    pub client_bytes_out: prometheus::IntCounter,
    pub origin_bytes: prometheus::IntCounter,
    /// Client connections open now, over every proxy listener.
    pub client_connections: prometheus::IntGauge,
    /// Client connections closed at accept because `limits.max_connections` were open.
    pub client_connections_refused: prometheus::IntCounter,
    /// TLS handshakes on the proxy listeners, by result (`ok`, `failed`, `timeout`).
    pub tls_handshakes: IntCounterVec,
    /// TLS handshakes that resumed a session (ticket or cache).
    pub tls_sessions_resumed: prometheus::IntCounter,
    /// Config reloads, by result (`ok`, `failed`).
    pub config_reloads: IntCounterVec,
    /// 1 when the last reload (or the start) succeeded, 0 after a refused one.
    pub config_last_reload_successful: prometheus::IntGauge,
    /// Unix time of the last successful load of the config.
    pub config_last_reload_success_timestamp: prometheus::Gauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "outpost_requests_total",
                "Client requests answered, by cache status.",
            ),
            &["cache_status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "outpost_request_duration_seconds",
                "Time from request to response headers, by cache status.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["cache_status"],
        )?;
        let purges = IntCounterVec::new(
            Opts::new(
                "outpost_purges_total",
                "Purge requests on the side API, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        let cache_objects = IntGaugeVec::new(
            Opts::new("outpost_cache_objects", "Objects stored, by tier."),
            &["tier"],
        )?;
        let cache_bytes = IntGaugeVec::new(
            Opts::new("outpost_cache_bytes", "Bytes stored, by tier."),
            &["tier"],
        )?;
        let cache_evictions = IntCounterVec::new(
            Opts::new(
                "outpost_cache_evictions_total",
                "Objects evicted to make room, by tier.",
            ),
            &["tier"],
        )?;
        registry.register(Box::new(cache_evictions.clone()))?;
        let cache_hits = IntCounterVec::new(
            Opts::new(
                "outpost_cache_hits_total",
                "Lookups a tier answered with a stored object, by tier.",
            ),
            &["tier"],
        )?;
        registry.register(Box::new(cache_hits.clone()))?;
        let cache_misses = IntCounterVec::new(
            Opts::new(
                "outpost_cache_misses_total",
                "Lookups a tier held nothing for, by tier.",
            ),
            &["tier"],
        )?;
        registry.register(Box::new(cache_misses.clone()))?;
        let cache_capacity = IntGaugeVec::new(
            Opts::new(
                "outpost_cache_capacity_bytes",
                "Bytes each tier may hold, by tier.",
            ),
            &["tier"],
        )?;
        registry.register(Box::new(cache_capacity.clone()))?;
        let disk_errors = IntCounterVec::new(
            Opts::new(
                "outpost_disk_errors_total",
                "Disk tier faults: reads that failed (io) and records that did not check (damaged).",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(disk_errors.clone()))?;
        let disk_io_bytes = IntCounterVec::new(
            Opts::new(
                "outpost_disk_io_bytes_total",
                "Bytes the disk tier wrote and read, by direction.",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(disk_io_bytes.clone()))?;
        let disk_open = prometheus::IntGauge::new(
            "outpost_disk_open",
            "1 once the disk tier is open, 0 while it is configured but not open yet.",
        )?;
        registry.register(Box::new(disk_open.clone()))?;
        let origin_requests = IntCounterVec::new(
            Opts::new(
                "outpost_origin_requests_total",
                "Requests sent to origin servers, by pool, server and outcome.",
            ),
            &["pool", "server", "outcome"],
        )?;
        let origin_response = HistogramVec::new(
            HistogramOpts::new(
                "outpost_origin_response_seconds",
                "Time from sending a request to an origin to its response headers.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["pool"],
        )?;
        let origin_connects = IntCounterVec::new(
            Opts::new(
                "outpost_origin_connects_total",
                "New connections opened (attempted) to origin servers.",
            ),
            &["pool", "server"],
        )?;
        let origin_up = IntGaugeVec::new(
            Opts::new(
                "outpost_origin_up",
                "1 when an origin server takes traffic, 0 when health checks or ejection keep it out.",
            ),
            &["pool", "server"],
        )?;
        let coalesced = prometheus::IntCounter::new(
            "outpost_coalesced_requests_total",
            "Requests that waited on another request's fetch of the same key.",
        )?;
        let coalesce_wait = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "outpost_coalesce_wait_seconds",
                "Time a collapsed request waited for the leader's response head.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let client_bytes = IntCounterVec::new(
            Opts::new(
                "outpost_client_body_bytes_total",
                "Body bytes received from clients (in) and sent to them (out).",
            ),
            &["direction"],
        )?;
        let client_bytes_in = client_bytes.with_label_values(&["in"]);
        let client_bytes_out = client_bytes.with_label_values(&["out"]);
        let origin_bytes = prometheus::IntCounter::new(
            "outpost_origin_body_bytes_total",
            "Body bytes received from origin servers.",
        )?;
        registry.register(Box::new(client_bytes.clone()))?;
        registry.register(Box::new(origin_bytes.clone()))?;
        let client_connections = prometheus::IntGauge::new(
            "outpost_client_connections",
            "Client connections open on the proxy listeners.",
        )?;
        let client_connections_refused = prometheus::IntCounter::new(
            "outpost_client_connections_refused_total",
            "Client connections closed at once because limits.max_connections were open.",
        )?;
        let tls_handshakes = IntCounterVec::new(
            Opts::new(
                "outpost_tls_handshakes_total",
                "TLS handshakes on the proxy listeners, by result.",
            ),
            &["result"],
        )?;
        for result in ["ok", "failed", "timeout"] {
            tls_handshakes.with_label_values(&[result]);
        }
        registry.register(Box::new(client_connections.clone()))?;
        registry.register(Box::new(client_connections_refused.clone()))?;
        registry.register(Box::new(tls_handshakes.clone()))?;
        let tls_sessions_resumed = prometheus::IntCounter::new(
            "outpost_tls_sessions_resumed_total",
            "TLS handshakes on the proxy listeners that resumed a session.",
        )?;
        registry.register(Box::new(tls_sessions_resumed.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "outpost_config_reloads_total",
                "Config reloads (SIGHUP or POST /reload), by result.",
            ),
            &["result"],
        )?;
        let config_last_reload_successful = prometheus::IntGauge::new(
            "outpost_config_last_reload_successful",
            "1 when the last config load succeeded, 0 when the last reload was refused.",
        )?;
        let config_last_reload_success_timestamp = prometheus::Gauge::new(
            "outpost_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )?;
        for result in ["ok", "failed"] {
            config_reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_last_reload_successful.clone()))?;
        registry.register(Box::new(config_last_reload_success_timestamp.clone()))?;
        registry.register(Box::new(coalesced.clone()))?;
        registry.register(Box::new(coalesce_wait.clone()))?;
        registry.register(Box::new(origin_requests.clone()))?;
        registry.register(Box::new(origin_response.clone()))?;
        registry.register(Box::new(origin_connects.clone()))?;
        registry.register(Box::new(origin_up.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(purges.clone()))?;
        registry.register(Box::new(cache_objects.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        Ok(Self {
            registry,
            cache_hits,
            cache_misses,
            cache_capacity,
            disk_errors,
            disk_io_bytes,
            disk_open,
            requests,
            request_duration,
            purges,
            cache_objects,
            cache_bytes,
            cache_evictions,
            origin_requests,
            origin_response,
            origin_connects,
            origin_up,
            coalesced,
            coalesce_wait,
            client_bytes_in,
            client_bytes_out,
            origin_bytes,
            client_connections,
            client_connections_refused,
            tls_handshakes,
            tls_sessions_resumed,
            config_reloads,
            config_last_reload_successful,
            config_last_reload_success_timestamp,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for want of space; a failure would
        // be a malformed metric, which leaves a partial page.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }
}
