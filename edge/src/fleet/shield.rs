//! The shield tier: for a site with `shield: true`, a miss goes to the
//! member that owns its key (ATS parent selection, Fastly shielding,
//! Cloudflare Tiered Cache), so the origin is asked once for the fleet.
//!
//! Owners are chosen on the ketama ring the origin pools use, over the
//! live members' `peer_addr`s, so every member agrees. The members other
//! than this one form an origin pool on that ring: the owner first, the
//! next members as failover, with the pools' health and ejection rules.
//! Requests to members carry the fleet's name in `CDN-Loop` (RFC 8586);
//! a request that arrives with it has passed a member and is never sent
//! to another.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue};
use outpost_config::OriginPool;

use super::members::Member;
use crate::origin::metrics::OriginMetrics;
use crate::origin::pool::Upstream;
use crate::origin::ring::Ring;

pub(crate) const CDN_LOOP: http::HeaderName = http::HeaderName::from_static("cdn-loop");

/// The members' pool in the origin metrics, a name no configured pool
/// can take without the config saying so.
const POOL: &str = "(fleet)";

/// The members as the shield sees them at one time.
struct Members {
    /// Every live member's label, this node's included, on the ring that
    /// decides ownership.
    labels: Vec<String>,
    ring: Ring,
    /// Index of this node in `labels`.
    own: usize,
    /// The other members, as a pool on the same ring.
    pool: Arc<Upstream>,
}

pub(crate) struct Shield {
    /// The fleet's pseudonym in `CDN-Loop`.
    fleet: String,
    loop_value: HeaderValue,
    own_label: String,
    members: ArcSwapOption<Members>,
    metrics: Arc<OriginMetrics>,
    base_dir: std::path::PathBuf,
}

/// How a member is named on the ring: as the origin pool names a server
/// at a literal address, so both rings agree.
fn label(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl Shield {
    /// The shield of a node reached at `peer_addr`, in fleet `fleet`.
    pub(crate) fn new(
        fleet: &str,
        peer_addr: SocketAddr,
        metrics: Arc<OriginMetrics>,
        base_dir: std::path::PathBuf,
    ) -> Option<Self> {
        Some(Self {
            fleet: fleet.to_owned(),
            loop_value: HeaderValue::from_str(fleet).ok()?,
            own_label: label(peer_addr),
            members: ArcSwapOption::empty(),
            metrics,
            base_dir,
        })
    }

    /// Whether `headers` show that the request has passed a member of
    /// this fleet (`CDN-Loop` lists its name).
    pub(crate) fn has_passed(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(CDN_LOOP)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|entry| entry.split(';').next().unwrap_or("").trim())
            .any(|id| id.eq_ignore_ascii_case(&self.fleet))
    }

    /// The `CDN-Loop` entry a request to a member carries.
    pub(crate) fn loop_value(&self) -> &HeaderValue {
        &self.loop_value
    }

    /// The pool to send a miss for `key_hash` to, when another member owns it.
    pub(crate) fn route(&self, key_hash: &[u8; 32]) -> Option<Arc<Upstream>> {
        let members = self.members.load();
        let members = members.as_ref()?;
        let owner = *members.ring.order(key_hash).first()?;
        (owner != members.own).then(|| members.pool.clone())
    }

    /// Takes the live members in; the pool is built again only when who
    /// they are changed, and servers that stay keep their health.
    pub(crate) async fn update(&self, live: &[Member]) {
        let mut labels: Vec<String> = live
            .iter()
            .filter_map(|m| m.peer_addr.as_deref()?.parse::<SocketAddr>().ok())
            .map(label)
            .collect();
        if !labels.contains(&self.own_label) {
            // This node serves whatever the bucket says of it.
            labels.push(self.own_label.clone());
        }
        labels.sort();
        labels.dedup();
        let current = self.members.load_full();
        if current.as_ref().is_some_and(|c| c.labels == labels) {
            return;
        }
        if labels.len() == 1 {
            self.members.store(None);
            return;
        }
        let others: Vec<String> = labels
            .iter()
            .filter(|l| **l != self.own_label)
            .cloned()
            .collect();
        let mut pool = OriginPool::of_servers(others);
        // Every other member may be tried before the origin is.
        pool.retries = u32::try_from(labels.len()).unwrap_or(u32::MAX);
        let upstream = match Upstream::new(POOL, &pool, self.metrics.clone(), &self.base_dir).await
        {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::warn!(error = %e, "the shield tier's member pool");
                return;
            }
        };
        if let Some(old) = &current {
            upstream.inherit_health(&old.pool, false);
        }
        let ring = Ring::new(labels.iter().map(|l| (l.as_str(), 1)));
        let own = labels
            .iter()
            .position(|l| *l == self.own_label)
            .unwrap_or_default();
        tracing::info!(members = labels.len(), "the shield tier's members changed");
        self.members.store(Some(Arc::new(Members {
            labels,
            ring,
            own,
            pool: Arc::new(upstream),
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shield() -> Shield {
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(OriginMetrics::register(&registry).unwrap());
        Shield::new(
            "fleet-x",
            "127.0.0.1:8001".parse().unwrap(),
            metrics,
            std::env::temp_dir(),
        )
        .unwrap()
    }

    fn member(addr: &str) -> Member {
        Member {
            node: addr.into(),
            version: "0".into(),
            peer_addr: Some(addr.into()),
            started_ms: 0,
            heartbeat_ms: 0,
            applied_seq: 0,
            purge_lag_seconds: 0.0,
        }
    }

    #[test]
    fn cdn_loop_names_the_fleet_among_other_cdns() {
        let shield = shield();
        let mut headers = HeaderMap::new();
        assert!(!shield.has_passed(&headers));
        headers.append(CDN_LOOP, HeaderValue::from_static("other-cdn; v=1"));
        assert!(!shield.has_passed(&headers));
        headers.append(CDN_LOOP, HeaderValue::from_static("foo, FLEET-X ; v=2"));
        assert!(shield.has_passed(&headers));
    }

    #[tokio::test]
    async fn keys_spread_over_the_members_and_own_keys_stay_here() {
        let shield = shield();
        let key = |n: u32| *blake3::hash(&n.to_be_bytes()).as_bytes();
        assert!(
            shield.route(&key(1)).is_none(),
            "alone, nothing is shielded"
        );
        let live = [
            member("127.0.0.1:8001"),
            member("127.0.0.1:8002"),
            member("127.0.0.1:8003"),
        ];
        shield.update(&live).await;
        let routed = (0..3000)
            .filter(|n| shield.route(&key(*n)).is_some())
            .count();
        // About two thirds belong to the other two members.
        assert!((1700..2300).contains(&routed), "{routed}");
        // A member's departure moves only its own keys: ours stay ours.
        let ours: Vec<u32> = (0..3000)
            .filter(|n| shield.route(&key(*n)).is_none())
            .collect();
        shield.update(&live[..2]).await;
        assert!(ours.iter().all(|n| shield.route(&key(*n)).is_none()));
    }
}
