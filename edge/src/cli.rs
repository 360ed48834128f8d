//! The `outpost` command: `run`, `check` and `demo`, as a function, so
//! that a binary built on this crate with its own [`Hooks`] is the same
//! command (signals, reloads, upgrades, the demo) with its logic added.
//! It is the process's `main`: the one place in the library where errors
//! are `anyhow`'s, printed and turned into the exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::hooks::Hooks;
use crate::{ConfigSource, Running, Sockets, demo};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use outpost_config::ServerUrl;
use tokio::sync::Notify;
use tracing_log::AsLog;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

#[derive(Parser)]
#[command(name = "outpost", version, about = "A caching CDN edge node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the sites of a config file. SIGHUP reloads the file, SIGUSR1
    /// reopens the access log, SIGUSR2 starts a successor (binary upgrade),
    /// SIGTERM and SIGINT stop gracefully.
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Take over the listening sockets of the outpost answering on the
        /// config's `upgrade_socket`; it drains and exits once this one serves.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file; errors are printed as FILE:LINE:COL: key.path: message.
    Check { file: PathBuf },
    /// Serve the built-in demo configuration and a demo origin on loopback.
    Demo {
        /// Where the demo keeps its self-signed certificate.
        #[arg(long, env = "OUTPOST_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
}

/// Parses the command line and runs the command; `hooks` join every
/// request of `run` and `demo`.
pub fn main(hooks: Option<Arc<dyn Hooks>>) -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let most = filter.max_level_hint();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(crate::store_error_counter())
        .init();
    // Records from crates that log through `log` (quiche) are bridged to
    // tracing; the bridge lets every level through, so without this each
    // of quiche's trace records on the packet path is made and dropped.
    log::set_max_level(most.map_or(log::LevelFilter::Trace, |level| level.as_log()));
    match cli.command {
        Command::Check { file } => {
            let checked = outpost_config::load_file(&file)
                .and_then(|loaded| crate::check(&loaded).map(|()| loaded));
            match checked {
                Ok(loaded) => {
                    let warnings = match runtime() {
                        Ok(rt) => rt.block_on(crate::unresolved(&loaded)),
                        Err(e) => {
                            eprintln!("outpost: {e:#}");
                            return ExitCode::FAILURE;
                        }
                    };
                    for warning in &warnings {
                        let mut warning = warning.clone();
                        warning.message = format!(
                            "warning: {}; `outpost run` refuses to start with it",
                            warning.message
                        );
                        eprintln!("{warning}");
                    }
                    match warnings.len() {
                        0 => println!("{}: ok", file.display()),
                        n => println!("{}: ok, {n} warning(s)", file.display()),
                    }
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, upgrade } => {
            report(runtime().and_then(|rt| rt.block_on(run(&config, upgrade, hooks))))
        }
        Command::Demo { state_dir } => {
            report(runtime().and_then(|rt| rt.block_on(run_demo(state_dir, hooks))))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn report(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &Path, upgrade: bool, hooks: Option<Arc<dyn Hooks>>) -> Result<()> {
    let loaded = outpost_config::load_file(path)?;
    let (inherited, handshake) = if upgrade {
        let socket = loaded
            .config
            .upgrade_socket
            .as_deref()
            .map(|p| loaded.resolve(p))
            .context("--upgrade needs `upgrade_socket` in the config")?;
        let (sockets, handshake) =
            tokio::task::spawn_blocking(move || crate::upgrade::request(&socket))
                .await
                .context("the upgrade exchange")??;
        tracing::info!(
            from_pid = handshake.from_pid,
            "took over the listening sockets"
        );
        (sockets, Some(handshake))
    } else {
        (Sockets::default(), None)
    };
    let source = ConfigSource::File(path.to_path_buf());
    // Should anything fail from here to READY, the predecessor keeps serving.
    let running = crate::start(loaded, source, None, inherited, hooks).await?;
    let handed_over = running
        .serve_upgrades(handshake.is_some())
        .await
        .context("the upgrade socket")?;
    let signals = Signals::install()?;
    // Ready (and, under systemd, the main process) before the predecessor
    // is told to go: systemd must never see the service without one.
    announce(&running);
    if let Some(handshake) = handshake {
        let from_pid = handshake.from_pid;
        tokio::task::spawn_blocking(move || handshake.ready())
            .await
            .context("the upgrade exchange")?
            .context("telling the predecessor to drain")?;
        tracing::info!(from_pid, "serving; the predecessor drains");
    }
    let handed_over = serve_until_shutdown(&running, signals, handed_over, Some(path)).await?;
    drain(&running, handed_over).await;
    Ok(())
}

/// Lets requests in flight finish, up to the grace period.
async fn drain(running: &Running, handed_over: bool) {
    let grace = running.shutdown_grace();
    let left = running.shutdown(grace, handed_over).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            ?grace,
            "grace period over; closing the connections left"
        );
    } else {
        tracing::info!("every connection finished; exiting");
    }
}

async fn run_demo(state_dir: Option<PathBuf>, hooks: Option<Arc<dyn Hooks>>) -> Result<()> {
    let state_dir = state_dir.unwrap_or_else(default_state_dir);
    demo::ensure_certificate(&state_dir)?;
    let source = ConfigSource::BuiltIn {
        text: demo::DEMO_CONFIG,
        name: "demo.yaml (built in)".to_owned(),
        base_dir: state_dir.clone(),
    };
    let loaded = source.load()?;
    for pool in loaded.config.origins.values() {
        for server in &pool.servers {
            let url = ServerUrl::parse(&server.url.value).map_err(anyhow::Error::msg)?;
            let addr = format!("{}:{}", url.host, url.port)
                .parse()
                .context("the demo origin must be an IP address")?;
            demo::spawn_origin(addr)
                .await
                .with_context(|| format!("starting the demo origin on {addr}"))?;
        }
    }
    let token = crate::tokens_from_env(&loaded, Some(demo::DEMO_TOKEN))
        .full
        .unwrap_or_default();
    let running = crate::start(
        loaded,
        source,
        Some(demo::DEMO_TOKEN.to_owned()),
        Sockets::default(),
        hooks,
    )
    .await?;
    let signals = Signals::install()?;
    announce(&running);
    let http = running
        .listeners
        .iter()
        .find(|(_, tls)| !tls)
        .map(|(a, _)| *a);
    let https = running
        .listeners
        .iter()
        .find(|(_, tls)| *tls)
        .map(|(a, _)| *a);
    if let Some(http) = http {
        println!("{}", demo::instructions(http, https, running.admin, &token));
    }
    println!("(state directory: {})", state_dir.display());
    let handed_over = serve_until_shutdown(&running, signals, None, None).await?;
    drain(&running, handed_over).await;
    Ok(())
}

fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("outpost-demo");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/outpost-demo"),
        None => std::env::temp_dir().join("outpost-demo"),
    }
}

/// One line on stdout with the bound addresses, for people and for tests
/// that start Outpost on port 0.
fn announce(running: &Running) {
    let listen: Vec<serde_json::Value> = running
        .listeners
        .iter()
        .map(|(addr, tls)| serde_json::json!({"addr": addr.to_string(), "tls": tls}))
        .collect();
    let line = serde_json::json!({
        "event": "ready",
        "pid": std::process::id(),
        "listen": listen,
        "admin": running.admin.to_string(),
    });
    println!("{line}");
    // Under systemd (Type=notify, NotifyAccess=all) a successor becomes the
    // service's main process; elsewhere this does nothing.
    if let Err(e) = sd_notify::notify(&[
        sd_notify::NotifyState::MainPid(std::process::id()),
        sd_notify::NotifyState::Ready,
    ]) {
        tracing::warn!(error = %e, "notifying systemd");
    }
}

/// The signals `run` and `demo` act on. They are installed before the
/// ready line, so that a signal sent as soon as it appears is handled
/// rather than killing the process.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    upgrade: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing the {name} handler"))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            term: install(SignalKind::terminate(), "SIGTERM")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
            upgrade: install(SignalKind::user_defined2(), "SIGUSR2")?,
        })
    }
}

/// Serves until SIGTERM or SIGINT, or until a successor serves in our
/// place (then true). Meanwhile SIGHUP reloads the config (the reloader
/// logs the outcome) and SIGUSR2 starts a successor on `config`.
async fn serve_until_shutdown(
    running: &Running,
    signals: Signals,
    handed_over: Option<Arc<Notify>>,
    config: Option<&Path>,
) -> Result<bool> {
    let Signals {
        mut interrupt,
        mut term,
        mut hangup,
        mut upgrade,
    } = signals;
    let handed_over = async {
        match handed_over {
            Some(notify) => notify.notified().await,
            None => std::future::pending().await,
        }
    };
    let mut handed_over = std::pin::pin!(handed_over);
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = term.recv() => break,
            () = &mut handed_over => {
                tracing::info!("a successor serves on our sockets: draining");
                return Ok(true);
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = running.reload().await;
            }
            _ = upgrade.recv() => start_successor(running, config),
        }
    }
    tracing::info!("shutting down: new connections refused, finishing the requests in flight");
    Ok(false)
}

/// SIGUSR2: runs this program's path again as `run --config FILE
/// --upgrade`; it takes the sockets over and tells us to drain. When it
/// fails, we keep serving.
fn start_successor(running: &Running, config: Option<&Path>) {
    let Some(config) = config else {
        tracing::warn!("SIGUSR2: the built-in demo config cannot be upgraded");
        return;
    };
    if running.upgrade_socket().is_none() {
        tracing::warn!("SIGUSR2: the config has no upgrade_socket; no upgrade");
        return;
    }
    // argv[0], as the operator started us: after a package upgrade it names
    // the new binary, where /proc/self/exe would name the old one.
    let program = std::env::args_os()
        .next()
        .unwrap_or_else(|| "outpost".into());
    let spawned = tokio::process::Command::new(&program)
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--upgrade")
        .stdin(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tracing::info!(pid = child.id(), program = ?program, "SIGUSR2: started a successor");
            tokio::spawn(async move {
                match child.wait().await {
                    Ok(status) if status.success() => {}
                    Ok(status) => {
                        tracing::error!(%status, "the successor failed; this process keeps serving")
                    }
                    Err(e) => tracing::error!(error = %e, "waiting on the successor"),
                }
            });
        }
        Err(e) => {
            tracing::error!(error = %e, program = ?program, "SIGUSR2: cannot start a successor")
        }
    }
}
