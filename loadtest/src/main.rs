//! `outpost-loadtest`: a bounded HTTP/1.1 load generator for loopback
//! targets. It keeps N keep-alive connections busy until a request count or
//! a duration runs out, then prints throughput, latency percentiles (HDR
//! histogram), status codes and `Cache-Status` outcomes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "outpost-loadtest",
    about = "Bounded HTTP/1.1 load against a loopback address"
)]
struct Args {
    /// Target address; only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Host header to send.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Paths to request, in turn (repeat the flag for several).
    #[arg(long = "path", default_value = "/")]
    paths: Vec<String>,
    /// Concurrent keep-alive connections.
    #[arg(long, short, default_value_t = 16)]
    connections: usize,
    /// Stop after this many requests in all.
    #[arg(long, short, default_value_t = 100_000)]
    requests: u64,
    /// Stop after this long, whichever comes first (e.g. 10s).
    #[arg(long, short, default_value = "10s")]
    duration: outpost_config::Span,
}

/// What one connection measured.
struct Tally {
    latencies: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    cache: BTreeMap<String, u64>,
    errors: u64,
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Self {
            latencies: Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
            statuses: BTreeMap::new(),
            cache: BTreeMap::new(),
            errors: 0,
        })
    }

    fn merge(&mut self, other: Tally) -> Result<()> {
        self.latencies
            .add(other.latencies)
            .context("merging histograms")?;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.cache {
            *self.cache.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        bail!(
            "{} is not a loopback address: load goes to this machine only",
            args.addr
        );
    }
    if args.connections == 0 || args.paths.is_empty() {
        bail!("need at least one connection and one path");
    }
    let budget = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(args.requests));
    let deadline = Instant::now() + args.duration.get();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for worker in 0..args.connections {
        let budget = budget.clone();
        let host = args.host.clone();
        let paths = args.paths.clone();
        let addr = args.addr;
        tasks.push(tokio::spawn(async move {
            connection(addr, host, paths, worker, budget, deadline).await
        }));
    }
    let mut total = Tally::new()?;
    for task in tasks {
        total.merge(task.await.context("worker panicked")??)?;
    }
    let elapsed = started.elapsed();
    report(&total, elapsed);
    Ok(())
}

/// One keep-alive connection sending requests back to back; reconnects after errors.
async fn connection(
    addr: SocketAddr,
    host: String,
    paths: Vec<String>,
    worker: usize,
    budget: std::sync::Arc<std::sync::atomic::AtomicU64>,
    deadline: Instant,
) -> Result<Tally> {
    use std::sync::atomic::Ordering;
    let mut tally = Tally::new()?;
    let mut sender = None;
    let mut n = worker;
    while Instant::now() < deadline
        && budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok()
    {
        if sender.is_none() {
            let stream = match TcpStream::connect(addr).await {
                Ok(stream) => stream,
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender = Some(s);
        }
        let Some(s) = sender.as_mut() else { continue };
        let path = &paths[n % paths.len()];
        n += 1;
        let req = http::Request::get(path.as_str())
            .header("host", host.as_str())
            .body(Empty::<Bytes>::new())?;
        let start = Instant::now();
        let outcome = async {
            let res = s.send_request(req).await?;
            let status = res.status().as_u16();
            let cache = res
                .headers()
                .get("cache-status")
                .and_then(|v| v.to_str().ok())
                .map(cache_outcome)
                .unwrap_or_default();
            res.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, cache))
        }
        .await;
        match outcome {
            Ok((status, cache)) => {
                let micros = u64::try_from(start.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                tally.latencies.saturating_record(micros);
                *tally.statuses.entry(status).or_default() += 1;
                *tally.cache.entry(cache).or_default() += 1;
            }
            Err(_) => {
                tally.errors += 1;
                sender = None;
            }
        }
    }
    Ok(tally)
}

/// A Cache-Status value without the cache's name and the parameters that
/// change from answer to answer (`ttl`), e.g. `fwd=miss; collapsed`.
fn cache_outcome(value: &str) -> String {
    value
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|p| !p.starts_with("ttl="))
        .collect::<Vec<_>>()
        .join("; ")
}

fn report(tally: &Tally, elapsed: Duration) {
    let done = tally.latencies.len();
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "requests   {done} in {secs:.2}s = {:.0} req/s",
        done as f64 / secs
    );
    println!("errors     {}", tally.errors);
    let ms = |q: f64| tally.latencies.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        tally.latencies.max() as f64 / 1000.0
    );
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("status     {}", statuses.join(", "));
    let cache: Vec<String> = tally
        .cache
        .iter()
        .map(|(k, v)| format!("{}: {v}", if k.is_empty() { "-" } else { k }))
        .collect();
    println!("cache      {}", cache.join(", "));
}
