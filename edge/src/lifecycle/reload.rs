//! Hot reload: SIGHUP and `POST /reload` read the config again, refuse a
//! file that moves a socket, build a new generation beside the current one
//! and swap it in only when everything in it was built. One at a time; a
//! refused file changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use outpost_config::{ErrorList, Loaded};
use outpost_purge_api::{Admin, Tokens};
use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};

use crate::lifecycle::check::single_error;
use crate::lifecycle::generation::{Current, Generation, Shared, policy_options};

/// Where the config comes from; read again on every reload.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// A config compiled into the binary (the demo), with the directory
    /// its relative paths resolve against.
    BuiltIn {
        text: &'static str,
        name: String,
        base_dir: PathBuf,
    },
}

impl ConfigSource {
    pub fn load(&self) -> Result<Loaded, ErrorList> {
        match self {
            ConfigSource::File(path) => outpost_config::load_file(path),
            ConfigSource::BuiltIn {
                text,
                name,
                base_dir,
            } => outpost_config::load_str(text, name, base_dir),
        }
    }
}

/// Reloads the config: one at a time, all or nothing.
pub struct Reloader {
    pub(crate) source: ConfigSource,
    pub(crate) current: Current,
    pub(crate) shared: Shared,
    /// The full admin token when its variable is unset (the demo's).
    pub(crate) default_token: Option<String>,
    pub(crate) admin: std::sync::OnceLock<Arc<Admin>>,
    metrics: ReloadMetrics,
    lock: tokio::sync::Mutex<()>,
    /// The last reloads, newest last, for the status page.
    history: std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>,
}

/// Reloads the status page lists.
const HISTORY: usize = 10;

impl Reloader {
    pub(crate) fn new(
        source: ConfigSource,
        current: Current,
        shared: Shared,
        default_token: Option<String>,
        metrics: ReloadMetrics,
    ) -> Self {
        Self {
            metrics,
            source,
            current,
            shared,
            default_token,
            admin: std::sync::OnceLock::new(),
            history: Default::default(),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Records a successful load in the metrics (the start counts as one).
    pub(crate) fn record_success(&self) {
        let metrics = &self.metrics;
        metrics.last_successful.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics.last_success_timestamp.set(now);
    }

    /// Reads the config again and switches to it, or refuses it and keeps
    /// the current one. Returns a summary, or the reasons for the refusal.
    pub async fn reload(&self) -> Result<serde_json::Value, Vec<String>> {
        let _one_at_a_time = self.lock.lock().await;
        let metrics = &self.metrics;
        match self.try_reload().await {
            Ok((generation, restart_needed)) => {
                metrics.reloads.with_label_values(&["ok"]).inc();
                self.record_success();
                let summary = generation.summary(&restart_needed);
                self.remember(serde_json::json!({
                    "at": crate::observe::access_log::rfc3339(SystemTime::now()),
                    "ok": true,
                    "generation": generation.number,
                }));
                tracing::info!(generation = generation.number, file = %generation.loaded.file, "config reloaded");
                for setting in &restart_needed {
                    tracing::warn!("{setting}");
                }
                Ok(summary)
            }
            Err(errors) => {
                metrics.reloads.with_label_values(&["failed"]).inc();
                metrics.last_successful.set(0);
                let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                self.remember(serde_json::json!({
                    "at": crate::observe::access_log::rfc3339(SystemTime::now()),
                    "ok": false,
                    "errors": lines.iter().take(5).collect::<Vec<_>>(),
                }));
                tracing::error!(
                    errors = %lines.join("; "),
                    "config reload refused; the old config keeps serving"
                );
                Err(lines)
            }
        }
    }

    fn remember(&self, reload: serde_json::Value) {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(reload);
    }

    /// The config serving now and the last reloads, for the status page.
    pub(crate) fn status(&self) -> serde_json::Value {
        let generation = self.current.load();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "generation": generation.number,
            "file": generation.loaded.file,
            "reloads": history.iter().rev().cloned().collect::<Vec<_>>(),
        })
    }

    async fn try_reload(&self) -> Result<(Arc<Generation>, Vec<String>), ErrorList> {
        let loaded = self.source.load()?;
        let old = self.current.load_full();
        fixed_settings(&old.loaded, &loaded)?;
        let restart_needed = restart_needed(&old.loaded, &loaded);
        let generation =
            Generation::build(old.number + 1, loaded, &self.shared, Some(&old)).await?;
        let generation = Arc::new(generation);
        // Nothing can fail from here on.
        generation.go_live();
        self.shared
            .cache
            .set_options(policy_options(&generation.loaded.config));
        if let Some(admin) = self.admin.get() {
            admin.set_tokens(&tokens_from_env(
                &generation.loaded,
                self.default_token.as_deref(),
            ));
        }
        self.current.store(generation.clone());
        Ok((generation, restart_needed))
    }
}

/// The side API's tokens, read from the variables the config names;
/// `default_full` stands in for an unset full token (the demo's).
pub fn tokens_from_env(loaded: &Loaded, default_full: Option<&str>) -> Tokens {
    let read = |name: &str| std::env::var(name).ok().filter(|t| !t.trim().is_empty());
    let admin = &loaded.config.admin;
    let mut scoped = Vec::new();
    for token in &admin.scoped_tokens {
        match read(&token.token_env) {
            Some(value) => scoped.push((value, token.hosts.clone())),
            None => {
                tracing::warn!(variable = %token.token_env, "a scoped token's variable is unset or empty")
            }
        }
    }
    let full = read(&admin.token_env).or_else(|| default_full.map(str::to_owned));
    if full.is_none() {
        tracing::warn!(
            variable = %admin.token_env,
            "the admin token variable is unset or empty: only scoped tokens, if any, may purge"
        );
    }
    let budget = outpost_purge_api::PurgeBudget {
        burst: admin.purge_budget.burst,
        per_second: admin.purge_budget.per_second,
    };
    let access = &admin.access;
    let read_token = access.read_token_env.as_deref().and_then(|name| {
        let value = read(name);
        if value.is_none() {
            // Refusing every reader is safer than opening to all.
            tracing::warn!(variable = %name, "the read token's variable is unset or empty: the reading routes take the full token only");
        }
        value
    });
    Tokens {
        full,
        scoped,
        budget,
        read: read_token,
        read_required: access.read_token_env.is_some(),
        networks: access.parsed_networks(),
    }
}

/// Sockets are bound once: a reload that moves them is refused.
fn fixed_settings(old: &Loaded, new: &Loaded) -> Result<(), ErrorList> {
    let (old_config, new_config) = (&old.config, &new.config);
    let shape = |config: &outpost_config::Config| -> Vec<(std::net::SocketAddr, bool, bool)> {
        config
            .listen
            .iter()
            .map(|l| {
                (
                    l.value.addr,
                    l.value.tls.is_some(),
                    l.value.quic().is_some(),
                )
            })
            .collect()
    };
    let (old_shape, new_shape) = (shape(old_config), shape(new_config));
    if old_shape != new_shape {
        let message = "listeners (their addresses, their number and whether they use TLS or QUIC) change only with a restart or an upgrade";
        let first_change = (0..new_shape.len())
            .find(|&i| old_shape.get(i) != new_shape.get(i))
            .or(new_shape.len().checked_sub(1));
        return Err(match first_change {
            Some(i) => ErrorList(vec![new.error_at(
                new_config.listen[i].referenced,
                format!("listen[{i}]"),
                message,
            )]),
            None => single_error(new, "listen", message.to_owned()),
        });
    }
    if old_config.admin.addr != new_config.admin.addr {
        return Err(single_error(
            new,
            "admin.addr",
            format!(
                "the side API's address ({} now) changes only with a restart or an upgrade",
                old_config.admin.addr
            ),
        ));
    }
    Ok(())
}

/// Settings that a reload accepts but that wait for the next restart.
fn restart_needed(old: &Loaded, new: &Loaded) -> Vec<String> {
    let mut notes = Vec::new();
    let (old, new) = (&old.config, &new.config);
    for (i, (was, is)) in old.listen.iter().zip(&new.listen).enumerate() {
        if was.value.quic() != is.value.quic() {
            notes.push(format!(
                "listen[{i}].quic: QUIC keeps its limits and its Alt-Svc until the next restart or upgrade"
            ));
        }
    }
    if old.cache.memory != new.cache.memory {
        notes.push(format!(
            "cache.memory: the memory tier keeps its size ({}) until the next restart or upgrade",
            old.cache.memory
        ));
    }
    let disk = |c: &outpost_config::Config| {
        c.cache
            .disk
            .as_ref()
            .map(|d| (d.path.clone(), d.size.bytes()))
    };
    if disk(old) != disk(new) {
        notes.push(
            "cache.disk: the disk tier keeps its place and size until the next restart or upgrade"
                .to_owned(),
        );
    }
    if cluster_settings(old) != cluster_settings(new) {
        notes.push(
            "cluster: the node keeps its place in the fleet (and its shield tier) until the next restart or upgrade"
                .to_owned(),
        );
    }
    if old.limits.max_connections != new.limits.max_connections {
        notes.push(format!(
            "limits.max_connections: {} stays in force until the next restart or upgrade",
            old.limits.max_connections
        ));
    }
    notes
}

/// The `cluster:` settings as they count for a restart (positions in the
/// file aside).
fn cluster_settings(config: &outpost_config::Config) -> Option<String> {
    let c = config.cluster.as_ref()?;
    let servers: Vec<&str> = c.nats.servers.iter().map(|s| s.value.as_str()).collect();
    Some(format!(
        "{} {servers:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {} {} {} {:?} {} {}",
        c.node.value,
        c.nats.creds_file,
        c.nats.token_env,
        c.nats.user,
        c.nats.password_env,
        c.peer_addr,
        c.state_dir,
        c.fleet,
        c.stream,
        c.subject,
        c.retention,
        c.lag_policy,
        c.max_lag,
        c.heartbeat,
    ))
}

/// What reloads count: each by result, whether the last load succeeded,
/// and when the last one did.
pub(crate) struct ReloadMetrics {
    reloads: IntCounterVec,
    last_successful: IntGauge,
    last_success_timestamp: Gauge,
}

impl ReloadMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "outpost_config_reloads_total",
                "Config reloads (SIGHUP or POST /reload), by result.",
            ),
            &["result"],
        )?;
        for result in ["ok", "failed"] {
            reloads.with_label_values(&[result]);
        }
        let last_successful = IntGauge::new(
            "outpost_config_last_reload_successful",
            "1 when the last config load succeeded, 0 when the last reload was refused.",
        )?;
        let last_success_timestamp = Gauge::new(
            "outpost_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_successful.clone()))?;
        registry.register(Box::new(last_success_timestamp.clone()))?;
        Ok(Self {
            reloads,
            last_successful,
            last_success_timestamp,
        })
    }
}
