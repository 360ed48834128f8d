//! The fleet: Outposts that behave as one cache, on NATS JetStream.
//!
//! - `event`: a purge as it travels, one message per purge on `SUBJECT.ID`;
//! - `journal`: what this node keeps on disk so a restart neither misses a
//!   purge nor applies one twice, and the queue of purges waiting for the
//!   stream;
//! - `consume`: this node's durable consumer of the stream, the replay of
//!   what it missed, and what it does when the stream cannot tell it;
//! - `members`: heartbeats in a KV bucket, `GET /cluster`, and who applied
//!   a purge (`GET /purge/{id}`);
//! - `gate`: whether the cache may answer meanwhile, read by the request path;
//! - `shield`: the shield tier, misses sent to the key's owner among the
//!   members, also read by the request path;
//! - `metrics`: what the fleet counts.
//!
//! A purge accepted here is applied at once, written to the journal, and
//! published; when the stream is out of reach it waits in the journal and
//! is published on reconnect. Every node (this one too) reads every purge
//! through its own durable consumer, in the stream's order, and applies it
//! unless it is its own; the journal is synced before the ack.

mod consume;
mod event;
pub(crate) mod gate;
mod journal;
mod members;
mod metrics;
pub(crate) mod shield;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use outpost_config::{Cluster, LagPolicy, Loaded};
use outpost_purge_api::{Announced, BoxFuture, FleetError, PurgeRequest, Purger};
use tokio::sync::{Notify, OnceCell};

use crate::origin::error::Chain;

use event::{PurgeEvent, unix_ms};
use gate::{Access, Gate};
use journal::Journal;
use metrics::FleetMetrics;
use shield::Shield;

/// Why a node cannot join its fleet at start-up.
#[derive(Debug, thiserror::Error)]
pub enum FleetStartError {
    #[error("the fleet journal in {}", .path.display())]
    Journal {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the NATS credentials file {}", .path.display())]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the environment variable {0} named by cluster.nats is not set")]
    MissingEnv(String),
    #[error("NATS server {url:?}")]
    Server {
        url: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("connecting to NATS")]
    Connect(#[source] async_nats::ConnectError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Batches of applied purges waiting to be recorded in the applied bucket.
const RECORD_BATCHES: usize = 64;

/// Purges applied together: (purge id, applied at in Unix milliseconds).
type AppliedBatch = Vec<(String, u64)>;

/// How long a request to JetStream may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// This node in its fleet.
pub(crate) struct Fleet {
    node: String,
    settings: Cluster,
    purger: Arc<Purger>,
    journal: Mutex<Journal>,
    gate: Arc<Gate>,
    client: async_nats::Client,
    js: jetstream::Context,
    progress: Mutex<Progress>,
    /// Set once this process has left the fleet (shutting down).
    left: AtomicBool,
    /// Set while a consumer session has reconciled this node with the
    /// stream: only then may "nothing pending" mean caught up.
    session_ready: AtomicBool,
    metrics: FleetMetrics,
    wake_outbox: Notify,
    /// Batches of (purge id, applied at) for the applied bucket.
    applied_records: tokio::sync::mpsc::Sender<AppliedBatch>,
    records: Mutex<Option<tokio::sync::mpsc::Receiver<AppliedBatch>>>,
    /// The shield tier, when this node has a `peer_addr`.
    shield: Option<Arc<Shield>>,
    members_kv: OnceCell<kv::Store>,
    applied_kv: OnceCell<kv::Store>,
    started_ms: u64,
    started: Instant,
}

#[derive(Debug, Default)]
struct Progress {
    /// When this node last knew it had applied every purge in the stream;
    /// None until it has caught up once since it started.
    caught_up_at: Option<Instant>,
}

/// Joins the fleet `cluster` describes: connects to NATS (in the
/// background: a node serves while NATS is away), opens the journal and
/// starts the consumer, the heartbeat and the publisher of queued purges.
/// The cache stays behind `gate` until the node has caught up with the
/// stream. A successor in a binary upgrade finds the journal held by its
/// predecessor and joins as soon as the predecessor leaves.
pub(crate) async fn start(
    loaded: &Loaded,
    purger: Arc<Purger>,
    registry: &prometheus::Registry,
    gate: Arc<Gate>,
    shield: Option<Arc<Shield>>,
) -> Result<Option<Arc<Membership>>, FleetStartError> {
    let Some(cluster) = &loaded.config.cluster else {
        return Ok(None);
    };
    let state_dir = loaded.resolve(&cluster.state_dir);
    let client = connect(loaded, cluster).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client.clone());
    let metrics = FleetMetrics::register(registry)?;
    let membership = Arc::new(Membership::default());
    let settings = cluster.clone();
    let fleet = move |journal: Journal| {
        let (applied_records, records) = tokio::sync::mpsc::channel(RECORD_BATCHES);
        Fleet {
            node: settings.node.value.clone(),
            settings,
            purger,
            journal: Mutex::new(journal),
            gate,
            client,
            js,
            progress: Mutex::new(Progress::default()),
            session_ready: AtomicBool::new(false),
            left: AtomicBool::new(false),
            metrics,
            wake_outbox: Notify::new(),
            shield,
            members_kv: OnceCell::new(),
            applied_kv: OnceCell::new(),
            started_ms: unix_ms(),
            started: Instant::now(),
            applied_records,
            records: Mutex::new(Some(records)),
        }
    };
    let journal_error = |path: &std::path::Path, source| FleetStartError::Journal {
        path: path.to_owned(),
        source,
    };
    match Journal::open(&state_dir) {
        Ok(journal) => membership.join(fleet(journal)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::info!(path = %state_dir.display(), "the fleet journal is held by the process this one replaces; joining once it leaves");
            let waiting = membership.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match Journal::open(&state_dir) {
                        Ok(journal) => return waiting.join(fleet(journal)),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            let e = journal_error(&state_dir, e);
                            tracing::error!(error = %Chain(&e), "not joining the fleet");
                            return;
                        }
                    }
                }
            });
        }
        Err(e) => return Err(journal_error(&state_dir, e)),
    }
    Ok(Some(membership))
}

/// This process as a member of the fleet: joined at once, or after its
/// predecessor in a binary upgrade has left; left when it shuts down.
#[derive(Default)]
pub(crate) struct Membership {
    fleet: std::sync::OnceLock<Arc<Fleet>>,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Membership {
    fn join(&self, fleet: Fleet) {
        let fleet = Arc::new(fleet);
        fleet
            .metrics
            .queued
            .set(gauge(fleet.journal().outbox().len()));
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.push(tokio::spawn(fleet.clone().consume()).abort_handle());
        tasks.push(tokio::spawn(fleet.clone().keep_gate()).abort_handle());
        tasks.push(tokio::spawn(fleet.clone().heartbeat()).abort_handle());
        tasks.push(tokio::spawn(fleet.clone().drain_outbox()).abort_handle());
        let records = fleet
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(records) = records {
            tasks.push(tokio::spawn(fleet.clone().record(records)).abort_handle());
        }
        tracing::info!(node = %fleet.node, stream = %fleet.settings.stream, "joining the fleet");
        let _ = self.fleet.set(fleet);
    }

    /// Stops reading the stream and lets a successor take the journal;
    /// purges accepted from now on are refused.
    pub(crate) fn leave(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        if let Some(fleet) = self.fleet.get() {
            fleet.left.store(true, Ordering::Release);
            fleet.journal().release();
            tracing::info!("left the fleet: a successor may take the journal");
        }
    }

    fn joined(&self) -> Result<&Arc<Fleet>, FleetError> {
        match self.fleet.get() {
            Some(fleet) if !fleet.left.load(Ordering::Acquire) => Ok(fleet),
            Some(_) => Err("this process has left the fleet (it is shutting down)".into()),
            None => Err(
                "this process is joining the fleet (its predecessor still holds the fleet journal)"
                    .into(),
            ),
        }
    }
}

/// A client that connects in the background and reconnects for ever.
async fn connect(
    loaded: &Loaded,
    cluster: &Cluster,
) -> Result<async_nats::Client, FleetStartError> {
    let nats = &cluster.nats;
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("outpost {}", cluster.node.value))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(REQUEST_TIMEOUT)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).clamp(100, 1000))
        });
    if let Some(file) = &nats.creds_file {
        let path = loaded.resolve(file);
        options = options
            .credentials_file(&path)
            .await
            .map_err(|source| FleetStartError::Credentials { path, source })?;
    }
    let env =
        |name: &str| std::env::var(name).map_err(|_| FleetStartError::MissingEnv(name.into()));
    if let Some(name) = &nats.token_env {
        options = options.token(env(name)?);
    }
    if let (Some(user), Some(name)) = (&nats.user, &nats.password_env) {
        options = options.user_and_password(user.clone(), env(name)?);
    }
    let mut servers = Vec::new();
    for server in &nats.servers {
        let url = server.value.clone();
        servers.push(url.parse::<async_nats::ServerAddr>().map_err(|e| {
            FleetStartError::Server {
                url,
                source: Box::new(e),
            }
        })?);
    }
    options
        .connect(servers)
        .await
        .map_err(FleetStartError::Connect)
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Fleet {
    fn journal(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subject_of(&self, id: &str) -> String {
        format!("{}.{id}", self.settings.subject)
    }

    /// This node knows it has applied every purge of the stream.
    fn caught_up(&self) {
        let mut progress = self.progress();
        if progress.caught_up_at.is_none() {
            tracing::info!(
                elapsed = ?self.started.elapsed(),
                last_seq = self.journal().last_seq(),
                "caught up with the fleet's purges: the cache answers"
            );
        }
        progress.caught_up_at = Some(Instant::now());
        drop(progress);
        self.update_gate();
    }

    /// Applies a purge of everything, because this node cannot know what
    /// it missed.
    fn purge_everything(&self, reason: &'static str) {
        tracing::warn!(reason, "purging everything: purges may have been missed");
        self.metrics
            .purged_everything
            .with_label_values(&[reason])
            .inc();
        if let Err(e) = self.purger.apply(&PurgeRequest::everything()) {
            tracing::error!(error = %e, "the purge of everything was refused");
        }
    }

    /// Seconds behind the stream, and the cache's access that follows from them.
    fn lag(&self) -> (Duration, Access) {
        let since = self.progress().caught_up_at;
        match since {
            None => (self.started.elapsed(), Access::Closed),
            Some(at) => {
                let lag = at.elapsed();
                let access = if lag <= self.settings.max_lag.get() {
                    Access::Open
                } else if self.settings.lag_policy == LagPolicy::Bypass {
                    Access::Closed
                } else {
                    Access::Lagging
                };
                (lag, access)
            }
        }
    }

    /// Keeps the gate and the lag gauge up to date, four times a second.
    async fn keep_gate(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.update_gate();
        }
    }

    fn update_gate(&self) {
        let (lag, access) = self.lag();
        self.metrics.purge_lag.set(lag.as_secs_f64());
        self.metrics.connected.set(i64::from(
            self.client.connection_state() == async_nats::connection::State::Connected,
        ));
        if self.gate.access() != access {
            tracing::info!(?access, lag = ?lag, "the cache's access changes with the fleet's purge stream");
        }
        self.gate.set(access);
    }

    /// Keeps a purge accepted here and publishes it, or leaves it queued
    /// when the stream is out of reach.
    async fn announce(&self, purge: &PurgeRequest) -> Result<Announced, FleetError> {
        let event = PurgeEvent::new(&self.node, purge.clone());
        {
            let mut journal = self.journal();
            journal.announce(&event)?;
            self.metrics.queued.set(gauge(journal.outbox().len()));
        }
        // Published at once; the queue's order matters only while the
        // stream is away (purges commute, but for soft against hard).
        let sequence = match self.publish(&event).await {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::warn!(id = %event.id, error = %e, "purge queued until the stream can be reached");
                None
            }
        };
        if sequence.is_none() {
            self.wake_outbox.notify_one();
        }
        Ok(Announced {
            id: event.id,
            sequence,
        })
    }

    /// Publishes one purge of this node's; its sequence in the stream.
    async fn publish(&self, event: &PurgeEvent) -> Result<u64, FleetError> {
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err("not connected to NATS".into());
        }
        let payload = serde_json::to_vec(event)?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        let ack = self
            .js
            .publish_with_headers(self.subject_of(&event.id), headers, payload.into())
            .await?
            .await?;
        let mut journal = self.journal();
        journal.published(&event.id, ack.sequence)?;
        self.metrics.queued.set(gauge(journal.outbox().len()));
        if !ack.duplicate {
            self.metrics.published.inc();
        }
        Ok(ack.sequence)
    }

    /// Publishes the queued purges, oldest first, whenever woken and every
    /// second.
    async fn drain_outbox(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake_outbox.notified()).await;
            let queued = self.journal().outbox();
            for event in queued {
                if let Err(e) = self.publish(&event).await {
                    tracing::debug!(error = %e, "queued purges wait for the stream");
                    break;
                }
                tracing::info!(id = %event.id, "queued purge published");
            }
        }
    }
}

impl outpost_purge_api::Fleet for Membership {
    fn announce<'a>(
        &'a self,
        purge: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<Announced, FleetError>> {
        Box::pin(async move { self.joined()?.announce(purge).await })
    }

    fn purge_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, FleetError>> {
        Box::pin(async move { self.joined()?.purge_status(id).await })
    }

    fn members(&self) -> BoxFuture<'_, Result<serde_json::Value, FleetError>> {
        Box::pin(async move { self.joined()?.cluster().await })
    }

    fn waiting_for(&self) -> Option<String> {
        match self.fleet.get() {
            None => Some("the fleet journal, held by the process this one replaces".to_owned()),
            Some(fleet) => fleet.progress().caught_up_at.is_none().then(|| {
                "the fleet's purge stream (replaying purges missed while away)".to_owned()
            }),
        }
    }
}
