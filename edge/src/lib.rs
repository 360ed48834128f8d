//! Outpost's edge: it wires the config, the cache, the origin pools and the
//! side API into one process and serves them on their sockets.

pub mod access_log;
pub mod body;
pub mod demo;
pub mod headers;
pub mod health;
pub mod proxy;
pub mod range;
pub mod resolve;
pub mod ring;
pub mod router;
pub mod server;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use outpost_cache::{Cache, CacheKey, PolicyOptions, SystemClock, normalize_path};
use outpost_config::{ErrorList, Loaded};
pub use outpost_purge_api::Tokens;
use outpost_purge_api::{Admin, AdminParts, KeyForUrl, Metrics, OriginsSource};
use tokio::net::TcpListener;

use crate::proxy::Proxy;
use crate::router::{Router, host_name};
use crate::upstream::Upstream;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ErrorList),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the access log {target}: {source}")]
    AccessLog {
        target: String,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A started edge: the addresses it actually listens on, and its drain.
pub struct Running {
    /// Proxy listeners in config order, with whether each speaks TLS.
    pub listeners: Vec<(SocketAddr, bool)>,
    pub admin: SocketAddr,
    drain: server::DrainHandle,
}

impl Running {
    /// Graceful shutdown: stop accepting, ask every connection to finish
    /// (GOAWAY on h2), and wait up to `grace` for requests in flight.
    /// Returns the connections still open when the grace period ended.
    pub async fn shutdown(&self, grace: std::time::Duration) -> usize {
        self.drain.run(grace).await
    }
}

/// What `outpost check` verifies beyond the file itself: every listener
/// certificate and every origin pool's TLS files load, as at start.
pub fn check(loaded: &Loaded) -> Result<(), ErrorList> {
    acceptors(loaded)?;
    for (name, pool) in &loaded.config.origins {
        upstream::check_tls(pool, &loaded.base_dir)
            .map_err(|e| single_error(loaded, format!("origins.{name}: {e}")))?;
    }
    Ok(())
}

/// The TLS acceptor of each listener (None for plain ones), in config order.
fn acceptors(loaded: &Loaded) -> Result<Vec<Option<Arc<boring::ssl::SslAcceptor>>>, ErrorList> {
    let mut acceptors = Vec::new();
    for (i, listener) in loaded.config.listen.iter().enumerate() {
        let Some(tls) = &listener.value.tls else {
            acceptors.push(None);
            continue;
        };
        let files: Vec<tls::CertFiles> = tls
            .certificates
            .iter()
            .map(|c| tls::CertFiles {
                cert: loaded.resolve(&c.value.cert),
                key: loaded.resolve(&c.value.key),
                hosts: c.value.hosts.clone().unwrap_or_default(),
            })
            .collect();
        let acceptor = tls::acceptor(&files).map_err(|e| {
            let at = tls
                .certificates
                .first()
                .map_or(listener.referenced, |c| c.referenced);
            ErrorList(vec![loaded.error_at(
                at,
                format!("listen[{i}].tls.certificates"),
                e.to_string(),
            )])
        })?;
        acceptors.push(Some(Arc::new(acceptor)));
    }
    Ok(acceptors)
}

/// Header names from the config (validated there), lower-cased.
fn header_names(names: &[String]) -> Vec<http::HeaderName> {
    names
        .iter()
        .filter_map(|name| http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok())
        .collect()
}

/// The largest body the memory tier can keep: `max_object_size`, but never
/// more than the tier itself nor what an entry's weight can express.
fn max_stored_body(config: &outpost_config::Config) -> usize {
    let limit = config
        .cache
        .max_object_size
        .bytes()
        .min(config.cache.memory.bytes())
        .min(u64::from(u32::MAX / 2));
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// Builds everything from a validated config, binds every socket, and starts
/// serving. `tokens` are the side API's bearer tokens.
pub async fn start(loaded: &Loaded, tokens: Tokens) -> Result<Running, StartError> {
    let config = &loaded.config;
    let metrics = Arc::new(Metrics::new()?);
    let cache = Arc::new(Cache::new(
        config.cache.memory.bytes(),
        PolicyOptions {
            heuristic_fraction: config.cache.heuristic_fraction,
            heuristic_max: config.cache.heuristic_max.get(),
            tag_headers: header_names(&config.cache.tag_headers),
            targeted: header_names(&config.cache.targeted_fields),
        },
        Arc::new(SystemClock),
    ));
    let router = Router::new(config).map_err(|e| single_error(loaded, format!("regex: {e}")))?;

    let mut upstreams = HashMap::new();
    for (name, pool) in &config.origins {
        let upstream = Upstream::new(name, pool, metrics.clone(), &loaded.base_dir)
            .await
            .map_err(|e| single_error(loaded, format!("origins.{name}: {e}")))?;
        let upstream = Arc::new(upstream);
        upstream.spawn_background(pool.health_check.as_ref(), pool.resolve_interval.get());
        upstreams.insert(name.clone(), upstream);
    }
    let pools: Vec<Arc<Upstream>> = upstreams.values().cloned().collect();
    let origins: Arc<OriginsSource> = Arc::new(move || pools.iter().map(|p| p.status()).collect());

    // Certificates before sockets: a bad one must stop the start first.
    let acceptors = acceptors(loaded)?;

    let access_log = match config.access_log.as_deref() {
        None => None,
        Some("stdout") => Some(access_log::Target::Stdout),
        Some(path) => Some(access_log::Target::File(
            loaded.resolve(std::path::Path::new(path)),
        )),
    };
    let access_log = match access_log {
        Some(target) => Some(access_log::AccessLog::start(target.clone()).await.map_err(
            |source| StartError::AccessLog {
                target: format!("{target:?}"),
                source,
            },
        )?),
        None => None,
    };
    let router = Arc::new(router);
    let proxy = Arc::new(Proxy {
        router: router.clone(),
        cache: cache.clone(),
        upstreams,
        metrics: metrics.clone(),
        max_object_size: max_stored_body(config),
        revalidating: Default::default(),
        coalescer: outpost_cache::Coalescer::new(),
        hidden_headers: if config.cache.expose_tag_headers {
            Vec::new()
        } else {
            header_names(&config.cache.tag_headers)
        },
        coalesce_timeout: config.cache.coalesce_timeout.get(),
        access_log,
        request_ids: Default::default(),
    });

    let mut running = Running {
        listeners: Vec::new(),
        admin: config.admin.addr,
        drain: server::DrainHandle::new(),
    };
    for (listener, acceptor) in config.listen.iter().zip(acceptors) {
        let addr = listener.value.addr;
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = socket
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        running.listeners.push((bound, acceptor.is_some()));
        server::spawn_proxy_listener(socket, acceptor, proxy.clone(), running.drain.drain());
    }

    let key_router = router.clone();
    let key_for_url: Arc<KeyForUrl> = Arc::new(move |url: &str| purge_key(&key_router, url));
    let admin = Arc::new(Admin::new(AdminParts {
        cache,
        metrics,
        tokens,
        key_for_url,
        origins,
    }));
    let addr = config.admin.addr;
    let socket = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    running.admin = socket
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    server::spawn_admin_listener(socket, admin, running.drain.drain());
    Ok(running)
}

/// The key a purge URL names, built with the rules of the site that serves it.
fn purge_key(router: &Router, url: &str) -> Result<CacheKey, String> {
    // Validates the URL as a whole (scheme, host) first.
    CacheKey::from_url(url, &outpost_config::QueryKey::All).map_err(|e| e.to_string())?;
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not absolute"))?;
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(split);
    let host = host_name(authority).ok_or_else(|| format!("{url:?} has no valid host"))?;
    let site = router
        .site(&host)
        .ok_or_else(|| format!("no site serves host {host}"))?;
    let path_and_query = path_and_query.split('#').next().unwrap_or_default();
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    // The same normalization the proxy applies before matching and keying.
    let path = normalize_path(if path.is_empty() { "/" } else { path })
        .map_err(|e| format!("{url:?}: {e}"))?;
    let rule = site.rule_for(&path);
    let target = match query {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    Ok(CacheKey::new(
        &scheme.to_ascii_lowercase(),
        authority,
        &target,
        &rule.query,
    ))
}

fn single_error(loaded: &Loaded, message: String) -> ErrorList {
    ErrorList(vec![outpost_config::ConfigError {
        file: loaded.file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
    }])
}
