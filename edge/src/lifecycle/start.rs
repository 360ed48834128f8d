//! Starting the edge: open the cache, build the first generation, bind
//! (or inherit) every socket, and start the accept loops and the side API.
//! [`Running`] is what the binary holds afterwards: reload, upgrade and
//! shutdown go through it.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_cache::{Cache, CacheMetrics, SystemClock};
use outpost_config::{ErrorList, Loaded};
use outpost_purge_api::{
    Admin, AdminParts, ExplainHook, KeyForUrl, OriginsSource, PoolStatus, Purger, ReloadHook,
    StatusHook,
};
use tokio::net::TcpListener;

use crate::fleet::Membership;
use crate::fleet::gate::Gate;
use crate::fleet::shield::Shield;
use crate::front::drain::{DrainHandle, Stop};
use crate::front::metrics::FrontMetrics;
use crate::front::{Live, h3, listen};
use crate::lifecycle::generation::{self, Current, Generation};
use crate::lifecycle::reload::{ConfigSource, ReloadMetrics, Reloader, tokens_from_env};
use crate::lifecycle::upgrade::{self, Sockets};
use crate::origin::error::Chain;
use crate::origin::metrics::{OriginMetrics, OriginsUp};
use crate::proxy::metrics::ProxyMetrics;

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
    #[error("the disk tier")]
    Disk(#[source] outpost_cache::DiskError),
    #[error(
        "another Outpost runs on this config; to replace it, start the new one with `run --upgrade`"
    )]
    Busy(#[source] outpost_cache::DiskError),
    #[error("joining the fleet")]
    Fleet(#[from] crate::fleet::FleetStartError),
    #[error("the purge journal in {}", .path.display())]
    Journal {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A started edge: the addresses it actually listens on, its drain and
/// its reloader.
pub struct Running {
    /// Proxy listeners in config order, with whether each speaks TLS.
    pub listeners: Vec<(SocketAddr, bool)>,
    pub admin: SocketAddr,
    drain: DrainHandle,
    reloader: Arc<Reloader>,
    /// Duplicates of the listening sockets, for a successor.
    sockets: Sockets,
    cache: Arc<Cache>,
    /// This process in its fleet, if it has one.
    fleet: Option<Arc<Membership>>,
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
    ///
    /// `handed_over`: a successor serves on the same sockets and this
    /// process only lets go of them. Otherwise the proxy's listening
    /// sockets close at once (new clients are refused, not left waiting),
    /// and the side API goes on answering until the process exits, with
    /// `/readyz` 503, so that a load balancer moves on.
    pub async fn shutdown(&self, grace: std::time::Duration, handed_over: bool) -> usize {
        // A successor (binary upgrade) takes this node's place in the fleet.
        if let Some(fleet) = &self.fleet {
            fleet.leave();
        }
        let why = if handed_over {
            Stop::HandedOver
        } else {
            if let Some(admin) = self.reloader.admin.get() {
                admin.shutting_down();
            }
            Stop::ShuttingDown
        };
        let left = self.drain.run(grace, why).await;
        self.cache.close().await;
        left
    }
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
    fn attach(cache: &Cache, tier: outpost_cache::DiskTier) -> Result<(), StartError> {
        let path = tier.path().to_owned();
        cache
            .attach_disk(tier)
            .map_err(|source| StartError::Journal { path, source })
    }
    if !handed_over {
        let started = std::time::Instant::now();
        match outpost_cache::DiskTier::open(&path, size).await {
            Ok(tier) => {
                attach(&cache, tier)?;
                tracing::info!(path = %path.display(), elapsed = ?started.elapsed(), "disk tier open");
                return Ok(cache);
            }
            // A full disk is no reason not to serve: memory and the origins
            // do, and the tier opens once there is room.
            Err(e @ outpost_cache::DiskError::NoSpace { .. }) => {
                tracing::error!(error = %e, "serving without the disk tier until there is room");
                outpost_cache::note_store_error();
            }
            Err(e @ outpost_cache::DiskError::Busy(_)) => return Err(StartError::Busy(e)),
            Err(e) => return Err(StartError::Disk(e)),
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
                        Err(e) => {
                            tracing::error!(error = %Chain(&e), "serving without the disk tier");
                        }
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
/// rather than binding a new one. `hooks` are an embedder's (None for the
/// `outpost` command).
pub async fn start(
    loaded: Loaded,
    source: ConfigSource,
    default_token: Option<String>,
    mut inherited: Sockets,
    hooks: Option<Arc<dyn crate::hooks::Hooks>>,
) -> Result<Running, StartError> {
    // Every series of the process, each part registering what it counts.
    let registry = prometheus::Registry::new();
    let handed_over = !inherited.listeners.is_empty() || inherited.admin.is_some();
    let cache = open_cache(&loaded, handed_over).await?;
    CacheMetrics::register(&registry, cache.clone())?;
    let front_metrics = Arc::new(FrontMetrics::register(&registry)?);
    let origin_metrics = Arc::new(OriginMetrics::register(&registry)?);
    let cluster = loaded.config.cluster.as_ref();
    let fleet_shield = cluster.and_then(|c| {
        let shield = Shield::new(
            &c.fleet,
            c.peer_addr?,
            origin_metrics.clone(),
            loaded.base_dir.clone(),
        );
        shield.map(Arc::new)
    });
    let shared = generation::Shared {
        cache: cache.clone(),
        proxy_metrics: Arc::new(ProxyMetrics::register(&registry)?),
        origin_metrics,
        coalescer: outpost_cache::Coalescer::new(),
        revalidating: Default::default(),
        request_ids: Default::default(),
        // Closed until the node has replayed the purges it missed.
        fleet_gate: cluster.map(|_| Arc::new(Gate::closed())),
        fleet_shield: fleet_shield.clone(),
        hooks,
        recent: Default::default(),
    };
    shared.recent.spawn_sampler(
        shared.proxy_metrics.clone(),
        shared.origin_metrics.bytes.clone(),
    );
    let fleet_gate = shared.fleet_gate.clone();
    let tokens = tokens_from_env(&loaded, default_token.as_deref());
    let generation = Generation::build(1, loaded, &shared, None).await?;
    generation.go_live();
    let listen: Vec<(SocketAddr, bool, Option<outpost_config::Quic>)> = generation
        .loaded
        .config
        .listen
        .iter()
        .map(|l| (l.value.addr, l.value.tls.is_some(), l.value.quic().cloned()))
        .collect();
    let admin_addr = generation.loaded.config.admin.addr;
    let current: Current = Arc::new(ArcSwap::from_pointee(generation));

    let mut running = Running {
        listeners: Vec::new(),
        admin: admin_addr,
        drain: DrainHandle::new(),
        reloader: Arc::new(Reloader::new(
            source,
            current.clone(),
            shared,
            default_token,
            ReloadMetrics::register(&registry)?,
        )),
        sockets: Sockets::default(),
        cache: cache.clone(),
        fleet: None,
    };
    running.reloader.record_success();
    let mut sockets = Vec::new();
    for (addr, _, quic) in &listen {
        let mut chosen = 0;
        let ((socket, copy), udp) = loop {
            let (socket, copy) = listen_on(*addr, inherited.take_listener(*addr))?;
            if quic.is_none() {
                break ((socket, copy), None);
            }
            // QUIC on the port the TCP socket has (the one the kernel
            // chose, for port 0).
            let bound = socket.local_addr().map_err(|source| StartError::Bind {
                addr: *addr,
                source,
            })?;
            match quic_on(bound, inherited.take_quic(*addr)) {
                Ok(udp) => break ((socket, copy), Some(udp)),
                // For port 0 the kernel chose a TCP port whose UDP twin
                // another socket holds (any process's client UDP socket
                // may): let it choose again.
                Err(StartError::Bind { source, .. })
                    if addr.port() == 0
                        && source.kind() == std::io::ErrorKind::AddrInUse
                        && chosen < 16 =>
                {
                    chosen += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let udp = udp.map(|(udp, copy)| {
            running.sockets.quic.push((*addr, copy));
            udp
        });
        sockets.push((socket, udp));
        running.sockets.listeners.push((*addr, copy));
    }
    let (admin_socket, admin_copy) = listen_on(admin_addr, inherited.take_admin(admin_addr))?;
    running.sockets.admin = Some((admin_addr, admin_copy));
    // Sockets handed over that this config no longer has close here.
    drop(inherited);
    let max_connections = current.load().loaded.config.limits.max_connections;
    let live: Live = current.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    for (index, ((socket, udp), (addr, tls, quic))) in sockets.into_iter().zip(listen).enumerate() {
        let bound = socket
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        running.listeners.push((bound, tls));
        let mut alt_svc = None;
        if let (Some(udp), Some(quic)) = (udp, quic) {
            alt_svc = Some(advertisement(bound.port(), &quic));
            h3::spawn_quic_listener(
                udp,
                index,
                &quic,
                live.clone(),
                front_metrics.clone(),
                slots.clone(),
                running.drain.drain(),
            )
            .map_err(|source| StartError::Bind { addr, source })?;
        }
        listen::spawn_proxy_listener(
            socket,
            index,
            alt_svc,
            live.clone(),
            front_metrics.clone(),
            slots.clone(),
            running.drain.drain(),
        );
    }

    let key_current = current.clone();
    let key_for_url: Arc<KeyForUrl> =
        Arc::new(move |url: &str| key_current.load().proxy.router.purge_key(url));
    let origins_current = current.clone();
    let pools = move || {
        let generation = origins_current.load();
        let mut pools: Vec<PoolStatus> = generation
            .proxy
            .upstreams
            .values()
            .map(|p| p.status())
            .collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        pools
    };
    let origins: Arc<OriginsSource> = Arc::new(pools.clone());
    OriginsUp::register(&registry, Box::new(pools))?;
    let reloader = running.reloader.clone();
    let reload: Arc<ReloadHook> = Arc::new(move || {
        let reloader = reloader.clone();
        Box::pin(async move { reloader.reload().await })
    });
    let explain_current = current.clone();
    let explain: Arc<ExplainHook> = Arc::new(move |query| {
        let proxy = explain_current.load().proxy.clone();
        Box::pin(async move { proxy.explain(query).await })
    });
    let status_reloader = running.reloader.clone();
    let started_at = crate::observe::access_log::rfc3339(std::time::SystemTime::now());
    let status: Arc<StatusHook> = Arc::new(move || {
        let mut status = status_reloader.status();
        status["traffic"] = status_reloader.shared.recent.summary();
        status["started_at"] = started_at.clone().into();
        status["version"] = env!("CARGO_PKG_VERSION").into();
        status
    });
    let purger = Arc::new(Purger::new(cache.clone(), key_for_url));
    let fleet = match fleet_gate {
        Some(gate) => {
            let loaded = &current.load().loaded;
            crate::fleet::start(loaded, purger.clone(), &registry, gate, fleet_shield).await?
        }
        None => None,
    };
    let admin = Arc::new(Admin::new(AdminParts {
        cache,
        registry,
        tokens,
        purger,
        fleet: fleet
            .clone()
            .map(|f| f as Arc<dyn outpost_purge_api::Fleet>),
        origins,
        reload: Some(reload),
        explain: Some(explain),
        status: Some(status),
    })?);
    let _ = running.reloader.admin.set(admin.clone());
    running.fleet = fleet;
    running.admin = admin_socket
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: admin_addr,
            source,
        })?;
    listen::spawn_admin_listener(admin_socket, admin, running.drain.drain());
    Ok(running)
}

/// The `Alt-Svc` field value that points TCP clients at HTTP/3 on `port`
/// (RFC 7838 §3). Made once per listener for the life of the process.
fn advertisement(port: u16, quic: &outpost_config::Quic) -> &'static http::HeaderValue {
    let max_age = quic.alt_svc_max_age.get().as_secs();
    let value = http::HeaderValue::try_from(format!("h3=\":{port}\"; ma={max_age}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static("clear"));
    Box::leak(Box::new(value))
}

/// The UDP socket for QUIC beside the TCP listener bound to `bound`: the
/// inherited one, or a new one. Also returns a duplicate of it, kept for
/// handing over to a successor.
fn quic_on(
    bound: SocketAddr,
    inherited: Option<std::net::UdpSocket>,
) -> Result<(std::net::UdpSocket, std::net::UdpSocket), StartError> {
    let bind_error = |source| StartError::Bind {
        addr: bound,
        source,
    };
    let socket = match inherited {
        Some(socket) => socket,
        None => std::net::UdpSocket::bind(bound).map_err(bind_error)?,
    };
    socket.set_nonblocking(true).map_err(bind_error)?;
    let copy = socket.try_clone().map_err(bind_error)?;
    Ok((socket, copy))
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
