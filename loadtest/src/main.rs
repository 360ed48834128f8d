//! `outpost-loadtest`: a bounded load generator for loopback targets.
//!
//! It keeps connections (and HTTP/2 streams) busy over HTTP/1.1, h2c or
//! HTTPS, closed loop or at a fixed rate, until a request count or a
//! duration runs out. It reports throughput, latency percentiles (HDR
//! histogram, corrected for coordinated omission), status codes,
//! `Cache-Status` outcomes and hit ratio, errors by kind, its own CPU time
//! and, given `--proxy-pid`, the proxy's CPU time and peak memory (added up
//! over several processes); as text, JSON and an SVG chart.
//!
//! Modules: [`args`] (flags and checks), [`target`] (loopback-only URL),
//! [`urls`] (URL sets and key distributions), [`pacing`] (due times),
//! [`client`] (connections, TLS, error kinds), [`run`] (the workers),
//! [`tally`] and [`cache_status`] (counting), [`procstat`] (CPU and memory),
//! [`progress`], [`report`] and [`chart`] (output).

mod args;
mod cache_status;
mod chart;
mod client;
mod pacing;
mod procstat;
mod progress;
mod report;
mod run;
mod tally;
mod target;
mod urls;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::sync::watch;

use crate::args::{Args, JsonOut, Plan};
use crate::procstat::{CpuTimes, Memory, Pid};
use crate::report::{CpuReport, ProxyReport, Report};

/// Runs the load; on failure prints the error and its causes on one line
/// (no backtrace) and exits 1.
#[tokio::main]
async fn main() -> ExitCode {
    match load().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn load() -> Result<()> {
    let plan = Args::parse().into_plan().await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping: finishing the requests in flight");
            let _ = stop_tx.send(true);
        }
    });

    let proxy_before = if plan.proxy_pids.is_empty() {
        None
    } else {
        Some(CpuTimes::read_sum(&plan.proxy_pids).with_context(|| {
            format!(
                "--proxy-pid {}: is that process running?",
                pid_list(&plan.proxy_pids)
            )
        })?)
    };
    let own_before = CpuTimes::read(Pid::Myself)?;
    let outcome = run::run(&plan, stop_rx).await?;
    let own = CpuTimes::read(Pid::Myself)?.since(own_before);
    let proxy = match proxy_before {
        Some(before) => Some(proxy_report(&plan.proxy_pids, before)?),
        None => None,
    };
    let cpu = CpuReport {
        loadgen: own.into(),
        loadgen_peak_rss_kib: Memory::read(Pid::Myself).ok().and_then(|m| m.peak_rss_kib),
        proxy,
    };
    let report = Report::new(&plan, &outcome, cpu);
    write_outputs(&plan, &report, &outcome)?;
    if report.responses == 0 {
        bail!("no request got an answer");
    }
    Ok(())
}

/// The proxy's CPU time since `before` and its memory now (each added up
/// over `pids`).
fn proxy_report(pids: &[u32], before: CpuTimes) -> Result<ProxyReport> {
    let after = CpuTimes::read_sum(pids)
        .with_context(|| format!("--proxy-pid {} ended during the run", pid_list(pids)))?;
    Ok(ProxyReport {
        pids: pids.to_vec(),
        cpu: after.since(before).into(),
        cpu_s_per_10k_requests: None,
        memory: Memory::read_sum(pids).unwrap_or_default(),
    })
}

/// `1,2,3`, as the flag takes them.
fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Text to stdout (unless JSON goes there), JSON and the chart to files.
fn write_outputs(plan: &Plan, report: &Report, outcome: &run::Outcome) -> Result<()> {
    let json = report.to_json().context("encoding JSON")?;
    let mut stdout = std::io::stdout().lock();
    match &plan.json {
        Some(JsonOut::Stdout) => writeln!(stdout, "{json}")?,
        Some(JsonOut::File(path)) => {
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            write!(stdout, "{}", report.to_text())?;
        }
        None => write!(stdout, "{}", report.to_text())?,
    }
    if let Some(path) = &plan.chart {
        let title = format!(
            "{} — {} × {}, {}",
            plan.target.url,
            plan.connections,
            plan.streams,
            match plan.rate {
                Some(r) => format!("{r} req/s"),
                None => "closed loop".to_owned(),
            }
        );
        chart::write(
            path,
            &title,
            &outcome.tally.latency,
            &report.per_second,
            report.elapsed_s,
        )?;
    }
    Ok(())
}
