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
//! The load itself is the `outpost_loadtest` library's; this binary is the
//! command line around it. Modules: [`args`] (flags, into the library's
//! plan), [`progress`] (the bar), [`procstat`] (CPU and memory),
//! [`report`] and [`chart`] (output).

mod args;
mod chart;
mod procstat;
mod progress;
mod report;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use outpost_loadtest::{Load, Outcome};

use crate::args::{Args, Cli, JsonOut};
use crate::procstat::{CpuTimes, Memory, Pid};
use crate::progress::Bar;
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
    let cli = Args::parse().into_cli().await?;
    let proxy_before = if cli.proxy_pids.is_empty() {
        None
    } else {
        Some(CpuTimes::read_sum(&cli.proxy_pids).with_context(|| {
            format!(
                "--proxy-pid {}: is that process running?",
                pid_list(&cli.proxy_pids)
            )
        })?)
    };
    let own_before = CpuTimes::read(Pid::Myself)?;
    let load = Load::start(&cli.plan)?;
    let stopper = load.stopper();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping: finishing the requests in flight");
            stopper.stop();
        }
    });
    let bar = Bar::start(cli.quiet, load.progress().clone());
    let outcome = load.wait().await?;
    bar.finish();
    let own = CpuTimes::read(Pid::Myself)?.since(own_before);
    let proxy = match proxy_before {
        Some(before) => Some(proxy_report(&cli.proxy_pids, before)?),
        None => None,
    };
    let cpu = CpuReport {
        loadgen: own.into(),
        loadgen_peak_rss_kib: Memory::read(Pid::Myself).ok().and_then(|m| m.peak_rss_kib),
        proxy,
    };
    let report = Report::new(&cli.plan, &outcome, cpu);
    write_outputs(&cli, &report, &outcome)?;
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
fn write_outputs(cli: &Cli, report: &Report, outcome: &Outcome) -> Result<()> {
    let json = report.to_json().context("encoding JSON")?;
    let mut stdout = std::io::stdout().lock();
    match &cli.json {
        Some(JsonOut::Stdout) => writeln!(stdout, "{json}")?,
        Some(JsonOut::File(path)) => {
            std::fs::write(path, json + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            write!(stdout, "{}", report.to_text())?;
        }
        None => write!(stdout, "{}", report.to_text())?,
    }
    if let Some(path) = &cli.chart {
        let plan = &cli.plan;
        let title = format!(
            "{} — {} × {}, {}",
            plan.target().url,
            plan.connections(),
            plan.streams(),
            match plan.rate() {
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
