//! The side API's part in the metrics: it counts purges, and serves every
//! series of the process from the registry it is handed (each part of the
//! process defines and registers the series it counts).

use std::collections::HashMap;

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// Purge requests, by kind and outcome.
pub(crate) struct PurgeMetrics {
    pub(crate) purges: IntCounterVec,
}

impl PurgeMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let purges = IntCounterVec::new(
            Opts::new(
                "outpost_purges_total",
                "Purge requests on the side API, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(purges.clone()))?;
        Ok(Self { purges })
    }
}

/// The registry in Prometheus text format.
pub(crate) fn render(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for want of space; a failure would
    // be a malformed metric, which leaves a partial page.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    out
}

/// The values of a counter family by one of its labels, summed over the
/// others: `outpost_requests_total` by `cache_status`, for `/stats`.
pub(crate) fn counts_by(registry: &Registry, family: &str, label: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for found in registry.gather().iter().filter(|f| f.name() == family) {
        for metric in found.get_metric() {
            let Some(value) = metric
                .get_label()
                .iter()
                .find(|pair| pair.name() == label)
                .map(|pair| pair.value().to_owned())
            else {
                continue;
            };
            let total = metric.get_counter().value();
            *counts.entry(value).or_insert(0) += total as u64;
        }
    }
    counts
}
