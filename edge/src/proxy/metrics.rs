//! What the proxy counts: requests answered and their time to the response
//! head, by outcome (see [`super::status::Outcome`]), requests collapsed onto
//! another's fetch, body bytes to and from clients, and compression.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

pub(crate) struct ProxyMetrics {
    /// Requests answered, by outcome.
    pub(crate) requests: IntCounterVec,
    pub(crate) request_duration: HistogramVec,
    /// Requests that waited on another request's fetch of the same key.
    pub(crate) coalesced: IntCounter,
    /// How long they waited for its response head.
    pub(crate) coalesce_wait: Histogram,
    /// Body bytes received from clients and sent to them.
    pub(crate) client_bytes_in: IntCounter,
    pub(crate) client_bytes_out: IntCounter,
    /// Body bytes sent to clients, by where they came from.
    pub(crate) sent_from: [IntCounter; 4],
    /// Responses Outpost compressed, by coding (once per stored object).
    pub(crate) compressed: IntCounterVec,
    /// Stored compressed copies decoded for a client that accepts none
    /// of Outpost's codings, by coding.
    pub(crate) decompressed: IntCounterVec,
    /// Client requests by the protocol they came on: HTTP/1.x, 2, 3.
    by_protocol: [IntCounter; 3],
}

/// Where the body bytes of an answer come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Memory,
    Disk,
    Origin,
    Outpost,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Memory,
        Source::Disk,
        Source::Origin,
        Source::Outpost,
    ];

    fn label(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Origin => "origin",
            Source::Outpost => "outpost",
        }
    }
}

/// The class of a status code, as a label: `2xx` .. `5xx`.
pub(crate) fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl ProxyMetrics {
    /// The counter of bytes sent from `source`.
    /// The counter of requests that came on `version`.
    pub(crate) fn arrived_on(&self, version: http::Version) -> &IntCounter {
        let index = match version {
            http::Version::HTTP_2 => 1,
            http::Version::HTTP_3 => 2,
            _ => 0,
        };
        &self.by_protocol[index]
    }

    pub(crate) fn sent_from(&self, source: Source) -> &IntCounter {
        &self.sent_from[source as usize]
    }

    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "outpost_requests_total",
                "Client requests answered, by cache status, site (its first host name) and status class.",
            ),
            &["cache_status", "site", "status_class"],
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
        let coalesced = IntCounter::new(
            "outpost_coalesced_requests_total",
            "Requests that waited on another request's fetch of the same key.",
        )?;
        let coalesce_wait = Histogram::with_opts(
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
        let sent = IntCounterVec::new(
            Opts::new(
                "outpost_response_body_bytes_total",
                "Body bytes sent to clients, by where they came from: the memory tier, the disk tier, an origin (misses, passes, revalidations) or Outpost itself (its own answers).",
            ),
            &["source"],
        )?;
        let compressed = IntCounterVec::new(
            Opts::new(
                "outpost_compressed_responses_total",
                "Origin responses Outpost compressed, by coding.",
            ),
            &["encoding"],
        )?;
        let decompressed = IntCounterVec::new(
            Opts::new(
                "outpost_decompressed_responses_total",
                "Stored compressed copies decoded for clients that accept no coding Outpost serves, by coding.",
            ),
            &["encoding"],
        )?;
        // Every coding's series exists from the start, at 0.
        for coding in ["br", "zstd", "gzip"] {
            compressed.with_label_values(&[coding]);
            decompressed.with_label_values(&[coding]);
        }
        registry.register(Box::new(compressed.clone()))?;
        registry.register(Box::new(decompressed.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(coalesced.clone()))?;
        registry.register(Box::new(coalesce_wait.clone()))?;
        registry.register(Box::new(client_bytes.clone()))?;
        registry.register(Box::new(sent.clone()))?;
        let protocols = IntCounterVec::new(
            Opts::new(
                "outpost_client_requests_by_protocol_total",
                "Client requests by the protocol they came on (http/1, h2, h3).",
            ),
            &["protocol"],
        )?;
        registry.register(Box::new(protocols.clone()))?;
        Ok(Self {
            requests,
            request_duration,
            coalesced,
            coalesce_wait,
            client_bytes_in: client_bytes.with_label_values(&["in"]),
            client_bytes_out: client_bytes.with_label_values(&["out"]),
            sent_from: Source::ALL.map(|source| sent.with_label_values(&[source.label()])),
            compressed,
            decompressed,
            by_protocol: ["http/1", "h2", "h3"].map(|p| protocols.with_label_values(&[p])),
        })
    }
}
