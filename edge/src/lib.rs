//! Outpost's edge: it wires the config, the cache, the origin pools and the
//! side API into one process and serves them on their sockets.

pub mod access_log;
pub mod body;
pub mod demo;
pub mod generation;
pub mod headers;
pub mod health;
pub mod interim;
pub mod mux;
pub mod proxy;
pub mod range;
pub mod resolve;
pub mod ring;
pub mod router;
pub mod server;
pub mod strict;
pub mod tls;
pub mod upgrade;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_cache::{Cache, CacheKey, SystemClock, normalize_path};
use outpost_config::{ErrorList, Loaded};
pub use outpost_purge_api::Tokens;
use outpost_purge_api::{
    Admin, AdminParts, KeyForUrl, Metrics, OriginsSource, PoolStatus, ReloadHook,
};
use tokio::net::TcpListener;

pub use crate::generation::{ConfigSource, tokens_from_env};
use crate::generation::{Current, Generation, Reloader};
use crate::router::{Router, host_name};
pub use crate::upgrade::Sockets;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ErrorList),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Disk(String),
}

/// A started edge: the addresses it actually listens on, its drain and
/// its reloader.
pub struct Running {
    /// Proxy listeners in config order, with whether each speaks TLS.
    pub listeners: Vec<(SocketAddr, bool)>,
    pub admin: SocketAddr,
    drain: server::DrainHandle,
    reloader: Arc<Reloader>,
    /// Duplicates of the listening sockets, for a successor.
    sockets: Sockets,
    cache: Arc<Cache>,
}

impl Running {
    /// Answers successors on the config's `upgrade_socket`, if it has one;
    /// the returned notification fires once a successor serves (this
    /// process should then drain). `replace`: this process is itself a
    /// successor taking the socket over from its predecessor.
    pub async fn serve_upgrades(
        &self,
        replace: bool,
    ) -> std::io::Result<Option<Arc<tokio::sync::Notify>>> {
        let Some(path) = self.upgrade_socket() else {
            return Ok(None);
        };
        let sockets = self.sockets.try_clone()?;
        upgrade::serve(path, sockets, replace).await.map(Some)
    }

    /// Where the current config puts the upgrade socket, if anywhere.
    pub fn upgrade_socket(&self) -> Option<std::path::PathBuf> {
        let generation = self.reloader.current.load();
        let loaded = &generation.loaded;
        loaded
            .config
            .upgrade_socket
            .as_deref()
            .map(|p| loaded.resolve(p))
    }

    /// Reads the config again and switches to it (SIGHUP does this); a bad
    /// file is refused with its errors and the old config keeps serving.
    pub async fn reload(&self) -> Result<serde_json::Value, Vec<String>> {
        self.reloader.reload().await
    }

    /// The current config's `shutdown_grace`.
    pub fn shutdown_grace(&self) -> std::time::Duration {
        self.reloader
            .current
            .load()
            .loaded
            .config
            .shutdown_grace
            .get()
    }

    /// Graceful shutdown: stop accepting, ask every connection to finish
    /// (GOAWAY on h2), and wait up to `grace` for requests in flight.
    /// Returns the connections still open when the grace period ended.
    /// Drains, then closes the disk tier (what it has queued is written,
    /// and a successor may open it).
    pub async fn shutdown(&self, grace: std::time::Duration) -> usize {
        let left = self.drain.run(grace).await;
        self.cache.close().await;
        left
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
pub(crate) fn acceptors(loaded: &Loaded) -> Result<Vec<Option<Arc<tls::Tls>>>, ErrorList> {
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
pub(crate) fn header_names(names: &[String]) -> Vec<http::HeaderName> {
    names
        .iter()
        .filter_map(|name| http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok())
        .collect()
}

/// A log layer that counts the errors the disk tier's store reports on its
/// own threads (failed writes: a full or failing disk), for the
/// `outpost_disk_errors_total{kind="io"}` metric. It sees those events only.
pub fn store_error_counter<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    struct Count;
    impl<S: tracing::Subscriber> Layer<S> for Count {
        fn on_event(
            &self,
            _event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            outpost_cache::note_store_error();
        }
    }
    Count.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        *meta.level() == tracing::Level::ERROR && meta.target().starts_with("foyer")
    }))
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

/// How often a disk tier that found no room tries again.
const DISK_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// The cache a config describes. Its disk tier is opened now, or, for a
/// successor in a binary upgrade (`handed_over`), as soon as the
/// predecessor has closed it; meanwhile memory and the origins serve.
async fn open_cache(loaded: &Loaded, handed_over: bool) -> Result<Arc<Cache>, StartError> {
    let config = &loaded.config;
    let memory = config.cache.memory.bytes();
    let options = generation::policy_options(config);
    let Some(disk) = &config.cache.disk else {
        return Ok(Arc::new(Cache::new(memory, options, Arc::new(SystemClock))));
    };
    let cache = Arc::new(Cache::tiered(memory, options, Arc::new(SystemClock)));
    let path = loaded.resolve(&disk.path);
    let size = disk.size.bytes();
    fn attach(cache: &Cache, tier: outpost_cache::DiskTier) -> Result<(), String> {
        let path = tier.path().to_owned();
        cache
            .attach_disk(tier)
            .map_err(|e| format!("the purge journal in {}: {e}", path.display()))
    }
    if !handed_over {
        let started = std::time::Instant::now();
        match outpost_cache::DiskTier::open(&path, size).await {
            Ok(tier) => {
                attach(&cache, tier).map_err(StartError::Disk)?;
                tracing::info!(path = %path.display(), elapsed = ?started.elapsed(), "disk tier open");
                return Ok(cache);
            }
            // A full disk is no reason not to serve: memory and the origins
            // do, and the tier opens once there is room.
            Err(e @ outpost_cache::DiskError::NoSpace { .. }) => {
                tracing::error!(error = %e, "serving without the disk tier until there is room");
                outpost_cache::note_store_error();
            }
            Err(e @ outpost_cache::DiskError::Busy(_)) => {
                return Err(StartError::Disk(format!(
                    "{e}: another Outpost runs on this config; to replace it, start the new one with `run --upgrade`"
                )));
            }
            Err(e) => return Err(StartError::Disk(e.to_string())),
        }
    }
    let waiting = cache.clone();
    tokio::spawn(async move {
        if handed_over {
            tracing::info!(path = %path.display(), "the disk tier opens once the predecessor has closed it");
        }
        loop {
            let opened = if handed_over {
                outpost_cache::DiskTier::open_when_free(&path, size).await
            } else {
                outpost_cache::DiskTier::open(&path, size).await
            };
            match opened {
                Ok(tier) => {
                    match attach(&waiting, tier) {
                        Ok(()) => tracing::info!(path = %path.display(), "disk tier open"),
                        Err(e) => tracing::error!("{e}; serving without the disk tier"),
                    }
                    return;
                }
                Err(outpost_cache::DiskError::NoSpace { .. }) => {
                    tokio::time::sleep(DISK_RETRY).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "serving without the disk tier");
                    outpost_cache::note_store_error();
                    return;
                }
            }
        }
    });
    Ok(cache)
}

/// Builds everything from a validated config, binds every socket, and starts
/// serving. `source` is where a reload reads the config again;
/// `default_token` stands in for an unset admin token (the demo's).
///
/// `inherited` holds sockets handed over by a predecessor (a binary
/// upgrade): a listener configured at the same address takes its socket
/// rather than binding a new one.
pub async fn start(
    loaded: Loaded,
    source: ConfigSource,
    default_token: Option<String>,
    mut inherited: Sockets,
) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new()?);
    let handed_over = !inherited.listeners.is_empty() || inherited.admin.is_some();
    let cache = open_cache(&loaded, handed_over).await?;
    let shared = generation::Shared {
        cache: cache.clone(),
        metrics: metrics.clone(),
        coalescer: outpost_cache::Coalescer::new(),
        revalidating: Default::default(),
        request_ids: Default::default(),
    };
    let tokens = tokens_from_env(&loaded, default_token.as_deref());
    let generation = Generation::build(1, loaded, &shared, None).await?;
    generation.go_live();
    let listen: Vec<(SocketAddr, bool)> = generation
        .loaded
        .config
        .listen
        .iter()
        .map(|l| (l.value.addr, l.value.tls.is_some()))
        .collect();
    let admin_addr = generation.loaded.config.admin.addr;
    let current: Current = Arc::new(ArcSwap::from_pointee(generation));

    let mut running = Running {
        listeners: Vec::new(),
        admin: admin_addr,
        drain: server::DrainHandle::new(),
        reloader: Arc::new(Reloader::new(
            source,
            current.clone(),
            shared,
            default_token,
        )),
        sockets: Sockets::default(),
        cache: cache.clone(),
    };
    running.reloader.record_success();
    let mut sockets = Vec::new();
    for (addr, _) in &listen {
        let (socket, copy) = listen_on(*addr, inherited.take_listener(*addr))?;
        sockets.push(socket);
        running.sockets.listeners.push((*addr, copy));
    }
    let (admin_socket, admin_copy) = listen_on(admin_addr, inherited.take_admin(admin_addr))?;
    running.sockets.admin = Some((admin_addr, admin_copy));
    // Sockets handed over that this config no longer has close here.
    drop(inherited);
    let max_connections = current.load().loaded.config.limits.max_connections;
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    for (index, (socket, (addr, tls))) in sockets.into_iter().zip(listen).enumerate() {
        let bound = socket
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        running.listeners.push((bound, tls));
        server::spawn_proxy_listener(
            socket,
            index,
            current.clone(),
            slots.clone(),
            running.drain.drain(),
        );
    }

    let key_current = current.clone();
    let key_for_url: Arc<KeyForUrl> =
        Arc::new(move |url: &str| purge_key(&key_current.load().proxy.router, url));
    let origins_current = current.clone();
    let origins: Arc<OriginsSource> = Arc::new(move || {
        let generation = origins_current.load();
        let mut pools: Vec<PoolStatus> = generation
            .proxy
            .upstreams
            .values()
            .map(|p| p.status())
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        pools
    });
    let reloader = running.reloader.clone();
    let reload: Arc<ReloadHook> = Arc::new(move || {
        let reloader = reloader.clone();
        Box::pin(async move { reloader.reload().await })
    });
    let admin = Arc::new(Admin::new(AdminParts {
        cache,
        metrics,
        tokens,
        key_for_url,
        origins,
        reload: Some(reload),
    }));
    let _ = running.reloader.admin.set(admin.clone());
    running.admin = admin_socket
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: admin_addr,
            source,
        })?;
    server::spawn_admin_listener(admin_socket, admin, running.drain.drain());
    Ok(running)
}

/// A listening socket for `addr`: the inherited one, or a new one (with
/// `SO_REUSEADDR` and a backlog of 1024). Also returns a duplicate of it,
/// kept for handing over to a successor.
fn listen_on(
    addr: SocketAddr,
    inherited: Option<std::net::TcpListener>,
) -> Result<(TcpListener, std::net::TcpListener), StartError> {
    let bind_error = |source| StartError::Bind { addr, source };
    let socket = match inherited {
        Some(socket) => socket,
        None => {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .map_err(bind_error)?;
            socket.set_reuseaddr(true).map_err(bind_error)?;
            socket.bind(addr).map_err(bind_error)?;
            socket
                .listen(1024)
                .and_then(TcpListener::into_std)
                .map_err(bind_error)?
        }
    };
    socket.set_nonblocking(true).map_err(bind_error)?;
    let copy = socket.try_clone().map_err(bind_error)?;
    Ok((TcpListener::from_std(socket).map_err(bind_error)?, copy))
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

pub(crate) fn single_error(loaded: &Loaded, message: String) -> ErrorList {
    ErrorList(vec![outpost_config::ConfigError {
        file: loaded.file.clone(),
        line: 0,
        column: 0,
        path: String::new(),
        message,
    }])
}
