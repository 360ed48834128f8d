//! The `outpost` command: `run`, `check` and `demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use outpost_config::ServerUrl;
use outpost_edge::{ConfigSource, Running, demo};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "outpost", version, about = "A caching CDN edge node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the sites of a config file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Check { file } => {
            match outpost_config::load_file(&file).and_then(|loaded| outpost_edge::check(&loaded)) {
                Ok(()) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    eprintln!("{errors}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config } => report(runtime().and_then(|rt| rt.block_on(run(&config)))),
        Command::Demo { state_dir } => {
            report(runtime().and_then(|rt| rt.block_on(run_demo(state_dir))))
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

async fn run(path: &Path) -> Result<()> {
    let loaded = outpost_config::load_file(path)?;
    let source = ConfigSource::File(path.to_path_buf());
    let running = outpost_edge::start(loaded, source, None).await?;
    announce(&running);
    serve_until_shutdown(&running).await?;
    drain(&running).await;
    Ok(())
}

/// Lets requests in flight finish, up to the grace period.
async fn drain(running: &Running) {
    let grace = running.shutdown_grace();
    let left = running.shutdown(grace).await;
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

async fn run_demo(state_dir: Option<PathBuf>) -> Result<()> {
    let state_dir = state_dir.unwrap_or_else(default_state_dir);
    demo::ensure_certificate(&state_dir).map_err(anyhow::Error::msg)?;
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
    let token = outpost_edge::tokens_from_env(&loaded, Some(demo::DEMO_TOKEN))
        .full
        .unwrap_or_default();
    let running = outpost_edge::start(loaded, source, Some(demo::DEMO_TOKEN.to_owned())).await?;
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
    serve_until_shutdown(&running).await?;
    drain(&running).await;
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
    let line =
        serde_json::json!({"event": "ready", "listen": listen, "admin": running.admin.to_string()});
    println!("{line}");
}

/// Serves until SIGTERM or SIGINT; SIGHUP reloads the config meanwhile
/// (the reloader logs the outcome).
async fn serve_until_shutdown(running: &Running) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = running.reload().await;
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing the requests in flight");
    Ok(())
}
