//! The results: one [`Report`] built from the plan and the tally, printed
//! as text and written as JSON (every figure, for scripts and benchmarks).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use outpost_loadtest::cache_status::{self, CacheStatus};
use outpost_loadtest::{ErrorKind, Outcome, Pick, Plan};
use serde::Serialize;

use crate::procstat::{CpuSeconds, Memory};

/// Percentiles listed in `latency_percentiles_us`, with the quantile each
/// is read at (written out, so that 99.9 reads the same value as `p99_9`:
/// 99.9 / 100 is not 0.999 in floating point).
const LISTED: [(f64, f64); 10] = [
    (50.0, 0.5),
    (75.0, 0.75),
    (90.0, 0.9),
    (95.0, 0.95),
    (99.0, 0.99),
    (99.5, 0.995),
    (99.9, 0.999),
    (99.95, 0.9995),
    (99.99, 0.9999),
    (100.0, 1.0),
];

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `outpost-loadtest/VERSION`.
    pub tool: String,
    /// What was hit.
    pub target: TargetInfo,
    /// How hard and for how long.
    pub load: LoadInfo,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Requests that finished: responses plus failures.
    pub requests: u64,
    /// Complete responses (any status).
    pub responses: u64,
    /// Requests that got no complete response.
    pub failures: u64,
    /// Open loop: requests the schedule had due before the deadline that
    /// were never sent because every stream was busy (0 in a closed loop,
    /// or when interrupted).
    pub unsent: u64,
    /// Responses per second.
    pub throughput_rps: f64,
    /// Body bytes received.
    pub bytes_received: u64,
    /// Latency from each request's due time (coordinated-omission
    /// corrected in an open loop), microseconds.
    pub latency_us: Percentiles,
    /// Latency from the actual send, microseconds.
    pub service_time_us: Percentiles,
    /// Latency at a list of percentiles, microseconds.
    pub latency_percentiles_us: Vec<PercentilePoint>,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
    /// Cache-Status outcomes.
    pub cache: CacheReport,
    /// Failures and 5xx responses by kind.
    pub errors: ErrorReport,
    /// Connections opened.
    pub connections: ConnectionReport,
    /// Completions in each second of the run.
    pub per_second: Vec<SecondReport>,
    /// CPU and memory of the load generator and the proxy.
    pub cpu: CpuReport,
}

/// The target as resolved.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// The URL given.
    pub url: String,
    /// The socket address connected to.
    pub address: String,
    /// The Host header sent.
    pub host: String,
    /// The protocol setting (`http/1.1`, `h2c`, `https h2`, ...).
    pub protocol: String,
}

/// The load settings.
#[derive(Debug, Clone, Serialize)]
pub struct LoadInfo {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Requests per second asked for, in an open loop.
    pub rate_rps: Option<f64>,
    /// Connections.
    pub connections: usize,
    /// Streams per connection.
    pub streams: usize,
    /// The request budget.
    pub requests_limit: u64,
    /// The time budget, seconds.
    pub duration_limit_s: f64,
    /// Per-request timeout, seconds.
    pub timeout_s: f64,
    /// The URL set.
    pub urls: UrlInfo,
}

/// The URL set.
#[derive(Debug, Clone, Serialize)]
pub struct UrlInfo {
    /// `paths`, `keys` or `file`.
    pub kind: &'static str,
    /// Distinct entries.
    pub count: u64,
    /// `in-turn`, `uniform` or `zipf`.
    pub pick: &'static str,
    /// The Zipf exponent.
    pub zipf_s: Option<f64>,
    /// The random seed.
    pub seed: u64,
}

/// Summary of one latency histogram, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p99_9: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// Reads the summary out of a histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Latency at one percentile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PercentilePoint {
    /// 0 to 100.
    pub percentile: f64,
    /// Microseconds.
    pub us: u64,
}

/// Cache-Status outcomes and the hit ratio.
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    /// Responses by outcome (`hit`, `hit-stale`, `miss`, ..., `none`).
    pub outcomes: BTreeMap<String, u64>,
    /// Responses by the header's parameters without `ttl`.
    pub details: BTreeMap<String, u64>,
    /// Hits (fresh or stale) over responses that carried Cache-Status.
    pub hit_ratio: Option<f64>,
}

/// Errors by kind.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    /// Every kind, zero included.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// All of them (failures plus 5xx responses).
    pub total: u64,
    /// The first message of each kind seen.
    pub examples: BTreeMap<&'static str, String>,
}

/// Connections opened (reconnects included).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// All of them.
    pub opened: u64,
    /// By protocol (`h1`, `h2`).
    pub by_protocol: BTreeMap<&'static str, u64>,
}

/// One second of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondReport {
    /// Seconds since the start.
    pub second: u64,
    /// Responses finished in it.
    pub responses: u64,
    /// Failures finished in it.
    pub errors: u64,
}

/// CPU used during the run.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// The load generator's own CPU time.
    pub loadgen: CpuSeconds,
    /// The load generator's peak resident memory, KiB.
    pub loadgen_peak_rss_kib: Option<u64>,
    /// The proxy's, with `--proxy-pid`.
    pub proxy: Option<ProxyReport>,
}

/// The proxy's CPU time over the run and its memory.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyReport {
    /// Its process ids (the figures are their sums).
    pub pids: Vec<u32>,
    /// CPU time it used between the start and the end of the run.
    pub cpu: CpuSeconds,
    /// CPU seconds per 10,000 responses.
    pub cpu_s_per_10k_requests: Option<f64>,
    /// Its memory at the end of the run.
    pub memory: Memory,
}

impl Report {
    /// Puts the report together.
    pub fn new(plan: &Plan, outcome: &Outcome, cpu: CpuReport) -> Report {
        let t = &outcome.tally;
        let secs = outcome.elapsed.as_secs_f64();
        let responses = t.responses();
        let failures = t.failures();
        let with_header: u64 = t
            .cache_outcomes
            .iter()
            .filter(|(k, _)| k.as_str() != cache_status::NONE)
            .map(|(_, n)| n)
            .sum();
        let hits: u64 = t
            .cache_outcomes
            .iter()
            .filter(|(k, _)| CacheStatus::is_hit(k))
            .map(|(_, n)| n)
            .sum();
        let by_kind = ErrorKind::ALL
            .iter()
            .map(|k| (k.as_str(), t.errors.get(k).copied().unwrap_or(0)))
            .collect();
        let (pick, zipf_s) = match plan.urls().pick() {
            Pick::InTurn => ("in-turn", None),
            Pick::Uniform => ("uniform", None),
            Pick::Zipf(s) => ("zipf", Some(s)),
        };
        let mut cpu = cpu;
        if let Some(proxy) = cpu.proxy.as_mut() {
            proxy.cpu_s_per_10k_requests =
                (responses > 0).then(|| proxy.cpu.total_s * 10_000.0 / responses as f64);
        }
        Report {
            tool: format!("outpost-loadtest/{}", env!("CARGO_PKG_VERSION")),
            target: TargetInfo {
                url: plan.target().url.clone(),
                address: plan.target().addr.to_string(),
                host: plan.target().authority.to_string(),
                protocol: plan.target().protocol_label().to_owned(),
            },
            load: LoadInfo {
                mode: if plan.rate().is_some() {
                    "open"
                } else {
                    "closed"
                },
                rate_rps: plan.rate(),
                connections: plan.connections(),
                streams: plan.streams(),
                requests_limit: plan.requests(),
                duration_limit_s: plan.duration().as_secs_f64(),
                timeout_s: plan.timeout().as_secs_f64(),
                urls: UrlInfo {
                    kind: plan.urls().kind(),
                    count: plan.urls().len(),
                    pick,
                    zipf_s,
                    seed: plan.seed(),
                },
            },
            interrupted: outcome.interrupted,
            elapsed_s: secs,
            requests: responses + failures,
            responses,
            failures,
            unsent: match (plan.rate(), outcome.interrupted) {
                (Some(_), false) => outcome.expected.saturating_sub(responses + failures),
                _ => 0,
            },
            throughput_rps: if secs > 0.0 {
                responses as f64 / secs
            } else {
                0.0
            },
            bytes_received: t.bytes,
            latency_us: Percentiles::of(&t.latency),
            service_time_us: Percentiles::of(&t.service),
            latency_percentiles_us: listed(&t.latency),
            status: t.statuses.clone(),
            cache: CacheReport {
                outcomes: t.cache_outcomes.clone(),
                details: t.cache_details.clone(),
                hit_ratio: (with_header > 0).then(|| hits as f64 / with_header as f64),
            },
            errors: ErrorReport {
                by_kind,
                total: t.errors.values().sum(),
                examples: t
                    .error_examples
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect(),
            },
            connections: ConnectionReport {
                opened: t.connections.values().sum(),
                by_protocol: t.connections.clone(),
            },
            per_second: t
                .per_second
                .iter()
                .zip(0u64..)
                .map(|(b, second)| SecondReport {
                    second,
                    responses: b.responses,
                    errors: b.errors,
                })
                .collect(),
            cpu,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// The report for a person to read.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut out);
        out
    }

    fn write_text(&self, out: &mut String) -> std::fmt::Result {
        let l = &self.load;
        writeln!(
            out,
            "target      {} ({}, {}, Host {})",
            self.target.url, self.target.address, self.target.protocol, self.target.host
        )?;
        let mode = match l.rate_rps {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            out,
            "load        {mode}, {} × {}, up to {} requests in {}s",
            plural(l.connections as u64, "connection"),
            plural(l.streams as u64, "stream"),
            l.requests_limit,
            l.duration_limit_s
        )?;
        let what = match l.urls.kind {
            "keys" => "key",
            "file" => "URL from the file",
            _ => "path",
        };
        let zipf = l.urls.zipf_s.map(|s| format!(" s={s}")).unwrap_or_default();
        writeln!(
            out,
            "urls        {}, {}{zipf}",
            plural(l.urls.count, what),
            l.urls.pick.replace('-', " ")
        )?;
        writeln!(
            out,
            "requests    {} in {:.2}s = {:.0} req/s ({} responses, {} failed), {:.1} MiB received{}",
            self.requests,
            self.elapsed_s,
            self.throughput_rps,
            self.responses,
            self.failures,
            self.bytes_received as f64 / (1024.0 * 1024.0),
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            }
        )?;
        let ms = |us: u64| us as f64 / 1000.0;
        let line = |name: &str, p: &Percentiles| {
            format!(
                "{name} p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.p99_9),
                ms(p.max)
            )
        };
        if self.unsent > 0 {
            writeln!(
                out,
                "unsent      {} requests due before the deadline found no free stream (the target fell behind the rate)",
                self.unsent
            )?;
        }
        writeln!(out, "{}", line("latency ms ", &self.latency_us))?;
        if l.rate_rps.is_some() {
            writeln!(
                out,
                "{}  (from the actual send)",
                line("service ms ", &self.service_time_us)
            )?;
        }
        writeln!(out, "status      {}", join(&self.status))?;
        let ratio = self
            .cache
            .hit_ratio
            .map(|r| format!("; hit ratio {:.1}%", r * 100.0))
            .unwrap_or_default();
        writeln!(out, "cache       {}{ratio}", join(&self.cache.outcomes))?;
        let errors: BTreeMap<_, _> = self
            .errors
            .by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .collect();
        if errors.is_empty() {
            writeln!(out, "errors      none")?;
        } else {
            writeln!(out, "errors      {}", join(&errors))?;
            for (kind, message) in &self.errors.examples {
                writeln!(out, "            first {kind}: {message}")?;
            }
        }
        writeln!(
            out,
            "connections {} opened ({})",
            self.connections.opened,
            join(&self.connections.by_protocol)
        )?;
        let c = &self.cpu.loadgen;
        write!(
            out,
            "cpu         loadgen {:.2}s (user {:.2}, sys {:.2})",
            c.total_s, c.user_s, c.sys_s
        )?;
        if let Some(p) = &self.cpu.proxy {
            write!(
                out,
                "; proxy pid{} {} {:.2}s (user {:.2}, sys {:.2})",
                if p.pids.len() == 1 { "" } else { "s" },
                p.pids
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                p.cpu.total_s,
                p.cpu.user_s,
                p.cpu.sys_s
            )?;
            if let Some(per) = p.cpu_s_per_10k_requests {
                write!(out, " = {per:.3}s per 10k requests")?;
            }
            if let Some(kib) = p.memory.peak_rss_kib {
                write!(out, ", peak RSS {:.1} MiB", kib as f64 / 1024.0)?;
            }
        }
        writeln!(out)
    }
}

/// Latency at each of [`LISTED`].
fn listed(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    LISTED
        .iter()
        .map(|&(percentile, quantile)| PercentilePoint {
            percentile,
            us: if h.is_empty() {
                0
            } else {
                h.value_at_quantile(quantile)
            },
        })
        .collect()
}

/// `1 path`, `2 paths`, `3 URLs from the file`.
fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        return format!("1 {what}");
    }
    match what.split_once(' ') {
        Some((noun, rest)) => format!("{n} {noun}s {rest}"),
        None => format!("{n} {what}s"),
    }
}

fn join<K: std::fmt::Display, V: std::fmt::Display>(map: &BTreeMap<K, V>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;
    use outpost_loadtest::{Failure, Tally};

    use super::*;

    #[test]
    fn percentiles_of_a_known_spread() -> anyhow::Result<()> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
        for v in 1..=1000u64 {
            h.record(v)?;
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(
            (p.min, p.p50, p.p90, p.p99, p.p99_9, p.max),
            (1, 500, 900, 990, 999, 1000)
        );
        assert!((p.mean - 500.5).abs() < 0.5);
        let l = listed(&h);
        let at = |pct: f64| l.iter().find(|p| p.percentile == pct).map(|p| p.us);
        assert_eq!(at(99.9), Some(p.p99_9));
        assert_eq!(at(99.0), Some(p.p99));
        assert_eq!(l.first().map(|p| p.us), Some(500));
        assert_eq!(l.last().map(|p| p.us), Some(1000));
        let empty = Histogram::<u64>::new(3)?;
        assert_eq!(Percentiles::of(&empty), Percentiles::default());
        Ok(())
    }

    #[tokio::test]
    async fn json_has_every_figure() -> anyhow::Result<()> {
        let cli = crate::args::Args::try_parse_from([
            "outpost-loadtest",
            "--url",
            "http://127.0.0.1:9/x",
            "--keys",
            "10",
            "--zipf",
            "1.2",
        ])?
        .into_cli()
        .await?;
        let mut tally = Tally::new()?;
        let ms = Duration::from_millis(1);
        tally.response(
            200,
            Some("Outpost; hit; ttl=1"),
            100,
            ms,
            ms,
            Duration::ZERO,
        );
        tally.response(
            200,
            Some("Outpost; hit; ttl=1"),
            100,
            ms,
            ms,
            Duration::ZERO,
        );
        tally.response(200, Some("Outpost; fwd=miss"), 100, ms, ms, Duration::ZERO);
        tally.response(502, None, 0, ms, ms, Duration::from_secs(1));
        tally.failure(Failure::new(ErrorKind::Connect, "refused"), Duration::ZERO);
        tally.connection("h1");
        let outcome = Outcome {
            tally,
            elapsed: Duration::from_secs(2),
            interrupted: false,
            expected: 100_000,
        };
        let cpu = CpuReport {
            loadgen: CpuSeconds {
                user_s: 0.5,
                sys_s: 0.25,
                total_s: 0.75,
            },
            loadgen_peak_rss_kib: Some(1000),
            proxy: Some(ProxyReport {
                pids: vec![42, 43],
                cpu: CpuSeconds {
                    user_s: 1.0,
                    sys_s: 1.0,
                    total_s: 2.0,
                },
                cpu_s_per_10k_requests: None,
                memory: Memory {
                    peak_rss_kib: Some(2048),
                    rss_kib: Some(1024),
                },
            }),
        };
        let report = Report::new(&cli.plan, &outcome, cpu);
        let v: serde_json::Value = serde_json::from_str(&report.to_json()?)?;
        assert_eq!(v["requests"], 5);
        assert_eq!(v["responses"], 4);
        assert_eq!(v["failures"], 1);
        assert_eq!(v["unsent"], 0);
        assert_eq!(v["throughput_rps"], 2.0);
        for key in ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
            assert!(v["latency_us"][key].is_number(), "latency_us.{key}");
            assert!(
                v["service_time_us"][key].is_number(),
                "service_time_us.{key}"
            );
        }
        assert_eq!(
            v["latency_percentiles_us"].as_array().map(Vec::len),
            Some(10)
        );
        assert_eq!(v["status"]["200"], 3);
        assert_eq!(v["status"]["502"], 1);
        assert_eq!(v["cache"]["outcomes"]["hit"], 2);
        assert_eq!(v["cache"]["outcomes"]["none"], 1);
        assert_eq!(v["cache"]["hit_ratio"], 2.0 / 3.0);
        for kind in ErrorKind::ALL {
            assert!(v["errors"]["by_kind"][kind.as_str()].is_u64(), "{kind:?}");
        }
        assert_eq!(v["errors"]["by_kind"]["connect"], 1);
        assert_eq!(v["errors"]["by_kind"]["bad_status"], 1);
        assert_eq!(v["errors"]["total"], 2);
        assert_eq!(v["errors"]["examples"]["connect"], "refused");
        assert_eq!(v["connections"]["opened"], 1);
        assert_eq!(v["per_second"][1]["responses"], 1);
        assert_eq!(v["load"]["mode"], "closed");
        assert_eq!(v["load"]["urls"]["pick"], "zipf");
        assert_eq!(v["load"]["urls"]["count"], 10);
        assert_eq!(v["cpu"]["loadgen"]["total_s"], 0.75);
        assert_eq!(v["cpu"]["proxy"]["cpu_s_per_10k_requests"], 5000.0);
        assert_eq!(v["cpu"]["proxy"]["memory"]["peak_rss_kib"], 2048);
        let text = report.to_text();
        assert!(text.contains("hit ratio 66.7%"), "{text}");
        assert!(text.contains("proxy pids 42,43 2.00s"), "{text}");
        assert_eq!(v["cpu"]["proxy"]["pids"], serde_json::json!([42, 43]));
        assert!(text.contains("first connect: refused"), "{text}");
        assert!(text.contains("10 keys, zipf s=1.2"), "{text}");
        assert_eq!(plural(1, "stream"), "1 stream");
        assert_eq!(plural(3, "URL from the file"), "3 URLs from the file");
        Ok(())
    }
}
