//! What the fleet counts: purges published and applied, the lag behind the
//! stream, the queue of purges waiting for the stream, and the members seen.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub(crate) struct FleetMetrics {
    /// Seconds since this node last knew it had applied every purge in the
    /// stream (0 when caught up at the last check).
    pub(crate) purge_lag: prometheus::Gauge,
    /// Purges of the stream handled, by outcome: `applied`, `own` (this
    /// node's, applied when accepted), `duplicate`, `invalid`.
    pub(crate) stream_purges: IntCounterVec,
    /// This node's purges published to the stream.
    pub(crate) published: IntCounter,
    /// This node's purges waiting for the stream.
    pub(crate) queued: IntGauge,
    /// Purges of everything this node made because it could not know what
    /// it missed, by reason: `new_node`, `stream_gap`, `stream_reset`.
    pub(crate) purged_everything: IntCounterVec,
    /// 1 while connected to a NATS server.
    pub(crate) connected: IntGauge,
    /// Members heard from within their heartbeat's time to live.
    pub(crate) members: IntGauge,
}

impl FleetMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            purge_lag: prometheus::Gauge::new(
                "outpost_cluster_purge_lag_seconds",
                "Seconds since this node last knew it had applied every purge of the fleet's stream",
            )?,
            stream_purges: IntCounterVec::new(
                Opts::new(
                    "outpost_cluster_stream_purges_total",
                    "Purges read from the fleet's stream, by outcome",
                ),
                &["outcome"],
            )?,
            published: IntCounter::new(
                "outpost_cluster_purges_published_total",
                "Purges accepted by this node and published to the fleet's stream",
            )?,
            queued: IntGauge::new(
                "outpost_cluster_purges_queued",
                "Purges accepted by this node waiting for the fleet's stream",
            )?,
            purged_everything: IntCounterVec::new(
                Opts::new(
                    "outpost_cluster_purged_everything_total",
                    "Purges of everything made because purges may have been missed, by reason",
                ),
                &["reason"],
            )?,
            connected: IntGauge::new(
                "outpost_cluster_connected",
                "1 while connected to a NATS server of the fleet",
            )?,
            members: IntGauge::new(
                "outpost_cluster_members",
                "Fleet members heard from within their heartbeat's time to live",
            )?,
        };
        registry.register(Box::new(metrics.purge_lag.clone()))?;
        registry.register(Box::new(metrics.stream_purges.clone()))?;
        registry.register(Box::new(metrics.published.clone()))?;
        registry.register(Box::new(metrics.queued.clone()))?;
        registry.register(Box::new(metrics.purged_everything.clone()))?;
        registry.register(Box::new(metrics.connected.clone()))?;
        registry.register(Box::new(metrics.members.clone()))?;
        Ok(metrics)
    }
}
