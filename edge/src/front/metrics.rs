//! What the front door counts: client connections open and refused, and
//! TLS handshakes by result.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub(crate) struct FrontMetrics {
    /// Client connections open now, over every proxy listener.
    pub(crate) connections: IntGauge,
    /// Client connections closed at accept because `limits.max_connections` were open.
    pub(crate) refused: IntCounter,
    /// TLS handshakes on the proxy listeners, by result (`ok`, `failed`, `timeout`).
    pub(crate) handshakes: IntCounterVec,
    /// TLS handshakes that resumed a session (ticket or cache).
    pub(crate) resumed: IntCounter,
}

impl FrontMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let connections = IntGauge::new(
            "outpost_client_connections",
            "Client connections open on the proxy listeners.",
        )?;
        let refused = IntCounter::new(
            "outpost_client_connections_refused_total",
            "Client connections closed at once because limits.max_connections were open.",
        )?;
        let handshakes = IntCounterVec::new(
            Opts::new(
                "outpost_tls_handshakes_total",
                "TLS handshakes on the proxy listeners, by result.",
            ),
            &["result"],
        )?;
        for result in ["ok", "failed", "timeout"] {
            handshakes.with_label_values(&[result]);
        }
        let resumed = IntCounter::new(
            "outpost_tls_sessions_resumed_total",
            "TLS handshakes on the proxy listeners that resumed a session.",
        )?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(handshakes.clone()))?;
        registry.register(Box::new(resumed.clone()))?;
        Ok(Self {
            connections,
            refused,
            handshakes,
            resumed,
        })
    }
}
