//! Config generations and hot reload.
//!
//! Everything built from one config file (the router, the origin pools,
//! the TLS acceptors, the access log) is a [`Generation`]; the cache, the
//! metrics and the fills in progress outlive it. A reload (SIGHUP or
//! `POST /reload`) reads the file again, validates it, loads its
//! certificates and builds its pools, and only then swaps the generation
//! in. Each request takes the generation current when it starts and keeps
//! it to the end; each TLS handshake takes the acceptor current at accept.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::origin::metrics::OriginMetrics;
use crate::proxy::metrics::ProxyMetrics;
use arc_swap::ArcSwap;
use outpost_cache::{Cache, Coalescer, PolicyOptions};
use outpost_config::{ErrorList, Loaded};

use crate::front::Serving;
use crate::front::tls::Tls;
use crate::lifecycle::check::{acceptors, single_error, unresolved_error};
use crate::observe::access_log::{AccessLog, Target};
use crate::origin::error::{Chain, PoolError};
use crate::origin::pool::Upstream;
use crate::proxy::Proxy;
use crate::proxy::router::Router;

/// What every generation shares: it outlives reloads.
pub(crate) struct Shared {
    pub cache: Arc<Cache>,
    pub proxy_metrics: Arc<ProxyMetrics>,
    pub origin_metrics: Arc<OriginMetrics>,
    pub coalescer: Arc<Coalescer>,
    pub revalidating: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
    pub request_ids: Arc<AtomicU64>,
    /// Whether the cache may answer, as the fleet's purge stream allows
    /// (None for a node on its own).
    pub fleet_gate: Option<Arc<crate::fleet::gate::Gate>>,
    /// The shield tier (None without `cluster.peer_addr`).
    pub fleet_shield: Option<Arc<crate::fleet::shield::Shield>>,
    /// An embedder's hooks (None for the `outpost` command).
    pub hooks: Option<Arc<dyn crate::hooks::Hooks>>,
    /// The last minute, for the status page.
    pub recent: Arc<crate::observe::recent::Recent>,
}

/// Everything built from one config.
pub struct Generation {
    /// 1 for the config loaded at start, then one more per reload.
    pub number: u64,
    pub loaded: Loaded,
    /// Holds the router, the pools and the cache: what requests need.
    pub proxy: Arc<Proxy>,
    /// Each listener's TLS acceptor (None for plain ones), in config order.
    pub acceptors: Vec<Option<Arc<Tls>>>,
}

/// The generation serving now.
pub type Current = Arc<ArcSwap<Generation>>;

/// The front door takes each request's proxy, and each TLS handshake's
/// acceptor, from the generation current when it arrives.
impl Serving for ArcSwap<Generation> {
    fn proxy(&self) -> Arc<Proxy> {
        self.load().proxy.clone()
    }

    fn acceptor(&self, index: usize) -> Option<Arc<Tls>> {
        self.load().acceptors.get(index).cloned().flatten()
    }
}

impl Generation {
    /// Builds a generation; `previous` lends what may carry over (the
    /// access log writer when its target is the same, origin health).
    pub(crate) async fn build(
        number: u64,
        loaded: Loaded,
        shared: &Shared,
        previous: Option<&Generation>,
    ) -> Result<Generation, ErrorList> {
        let config = &loaded.config;
        let router = Router::new(&loaded)?;
        // Certificates before the pools: a bad one is the likelier error.
        let acceptors = acceptors(&loaded)?;
        let mut upstreams = HashMap::new();
        for (name, pool) in &config.origins {
            let upstream =
                Upstream::new(name, pool, shared.origin_metrics.clone(), &loaded.base_dir)
                    .await
                    .map_err(|e| match e {
                        // Placed at the server's URL, as `outpost check` warns of it.
                        PoolError::Resolve {
                            index,
                            host,
                            source,
                            ..
                        } => ErrorList(vec![unresolved_error(
                            &loaded,
                            name,
                            index,
                            &host,
                            &source.to_string(),
                        )]),
                        e => {
                            single_error(&loaded, &format!("origins.{name}"), Chain(&e).to_string())
                        }
                    })?;
            if let Some(old) = previous.and_then(|p| p.proxy.upstreams.get(name)) {
                upstream.inherit_health(old, pool.health_check.is_some());
            }
            upstreams.insert(name.clone(), Arc::new(upstream));
        }
        let access_log = access_log(&loaded, previous).await?;
        let proxy = Proxy {
            router: Arc::new(router),
            cache: shared.cache.clone(),
            upstreams,
            metrics: shared.proxy_metrics.clone(),
            max_object_size: max_stored_body(config),
            revalidating: shared.revalidating.clone(),
            fleet_gate: shared.fleet_gate.clone(),
            fleet_shield: shared.fleet_shield.clone(),
            compression: crate::proxy::compress::Compression::new(&config.compression)
                .map(Arc::new),
            hooks: shared.hooks.clone(),
            recent: shared.recent.clone(),
            coalescer: shared.coalescer.clone(),
            hidden_headers: if config.cache.expose_tag_headers {
                Vec::new()
            } else {
                header_names(&config.cache.tag_headers)
            },
            coalesce_timeout: config.cache.coalesce_timeout.get(),
            access_log,
            log_format: config
                .access_log
                .as_ref()
                .map(|log| crate::observe::access_log::LogFormat::new(&log.value))
                .unwrap_or_default(),
            request_ids: shared.request_ids.clone(),
            certificates: acceptors
                .iter()
                .map(|tls| tls.as_ref().map(|tls| tls.names.clone()))
                .collect(),
            header_read_timeout: config.limits.header_read_timeout.get(),
            head_timeout: config.limits.head_timeout.get(),
            max_uri_length: usize::try_from(config.limits.max_uri_length.bytes())
                .unwrap_or(usize::MAX),
        };
        Ok(Generation {
            number,
            loaded,
            proxy: Arc::new(proxy),
            acceptors,
        })
    }

    /// Starts the pools' background work (health checks, DNS). Only for the
    /// generation that goes live: a refused one must not probe origins.
    pub(crate) fn go_live(&self) {
        for (name, upstream) in &self.proxy.upstreams {
            if let Some(pool) = self.loaded.config.origins.get(name) {
                upstream.spawn_background(pool.health_check.as_ref(), pool.resolve_interval.get());
            }
        }
    }

    /// A short description for logs and for `POST /reload`.
    pub fn summary(&self, restart_needed: &[String]) -> serde_json::Value {
        let config = &self.loaded.config;
        serde_json::json!({
            "generation": self.number,
            "file": self.loaded.file,
            "sites": config.sites.len(),
            "origins": config.origins.keys().collect::<Vec<_>>(),
            "restart_needed": restart_needed,
        })
    }
}

/// The storage options a config asks of the cache.
pub(crate) fn policy_options(config: &outpost_config::Config) -> PolicyOptions {
    PolicyOptions {
        heuristic_fraction: config.cache.heuristic_fraction,
        heuristic_max: config.cache.heuristic_max.get(),
        tag_headers: header_names(&config.cache.tag_headers),
        targeted: header_names(&config.cache.targeted_fields),
    }
}

async fn access_log(
    loaded: &Loaded,
    previous: Option<&Generation>,
) -> Result<Option<Arc<AccessLog>>, ErrorList> {
    let Some(setting) = &loaded.config.access_log else {
        return Ok(None);
    };
    let target = match setting.value.path.as_str() {
        "stdout" => Target::Stdout,
        path => Target::File(loaded.resolve(std::path::Path::new(path))),
    };
    if let Some(previous) = previous
        && let Some(log) = &previous.proxy.access_log
        && log.target() == &target
    {
        return Ok(Some(log.clone()));
    }
    AccessLog::start(target.clone())
        .await
        .map(Some)
        .map_err(|e| single_error(loaded, "access_log", format!("cannot open {target:?}: {e}")))
}

/// Header names from the config (validated there), lower-cased.
pub(crate) fn header_names(names: &[String]) -> Vec<http::HeaderName> {
    names
        .iter()
        .filter_map(|name| http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok())
        .collect()
}

/// The largest body stored: `max_object_size`; without a disk tier, never
/// more than the memory tier itself nor what an entry's weight can express.
pub(crate) fn max_stored_body(config: &outpost_config::Config) -> usize {
    let limit = if config.cache.disk.is_some() {
        config.cache.max_object_size.bytes()
    } else {
        config
            .cache
            .max_object_size
            .bytes()
            .min(config.cache.memory.bytes())
            .min(u64::from(u32::MAX / 2))
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}
