//! The command line: every flag and its default, turned into the library's
//! [`Plan`] (which checks the settings and bounds) and the outputs around
//! it, a [`Cli`] the rest of the program can trust.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use outpost_loadtest::{DEFAULT_CONNECTIONS, DEFAULT_REQUESTS, Pick, Plan, Protocol, Source};

/// Bounded HTTP load against a loopback target: HTTP/1.1, h2c or HTTPS (h2
/// by ALPN), closed loop or a fixed request rate, with latency percentiles,
/// status codes, Cache-Status outcomes, CPU use, JSON and an SVG chart.
#[derive(Parser, Debug, Clone)]
#[command(name = "outpost-loadtest", version)]
pub struct Args {
    /// Target URL: scheme (http or https), a loopback address (127.0.0.0/8,
    /// [::1] or localhost), a port, and the path to request.
    #[arg(long, short = 'u', default_value = "http://127.0.0.1:8080/")]
    pub url: String,
    /// Old form of the target: an address (IP:PORT) for http://ADDR/.
    #[arg(long, hide = true, conflicts_with = "url")]
    pub addr: Option<String>,
    /// Host header (the :authority for HTTP/2, the SNI name for TLS);
    /// default: the URL's host and port.
    #[arg(long)]
    pub host: Option<String>,
    /// Speak HTTP/2: with http:// as h2c with prior knowledge; with
    /// https:// offer only h2 in ALPN.
    #[arg(long, conflicts_with = "http1")]
    pub h2: bool,
    /// With https://, offer only http/1.1 in ALPN.
    #[arg(long)]
    pub http1: bool,
    /// Speak HTTP/3 over QUIC (https:// only; UDP on the URL's port).
    #[arg(long, conflicts_with_all = ["h2", "http1"])]
    pub h3: bool,
    /// Accept any TLS certificate (self-signed, wrong name, expired).
    #[arg(long, short = 'k')]
    pub insecure: bool,

    /// Connections to keep open.
    #[arg(long, short, default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// Concurrent streams per connection (HTTP/2 only).
    #[arg(long, short = 's', default_value_t = 1)]
    pub streams: usize,
    /// Stop after this many requests in all (always bounded).
    #[arg(long, short, default_value_t = DEFAULT_REQUESTS)]
    pub requests: u64,
    /// Stop after this long, whichever comes first (e.g. 10s, 2m).
    #[arg(long, short, default_value = "10s")]
    pub duration: outpost_config::Span,
    /// Open loop: send this many requests per second in all, on a fixed
    /// schedule; latency counts from each request's scheduled time.
    /// Without it the load is closed loop (each stream sends as soon as its
    /// previous answer is in).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Give up on one request (connect, headers and body) after this long.
    #[arg(long, default_value = "10s")]
    pub timeout: outpost_config::Span,

    /// Paths to request in turn instead of the URL's (repeat the flag).
    #[arg(long = "path", conflicts_with_all = ["keys", "urls_file"])]
    pub paths: Vec<String>,
    /// Spread requests over N distinct keys (uniform unless --zipf).
    #[arg(long, conflicts_with = "urls_file")]
    pub keys: Option<u64>,
    /// Path for --keys, where `{key}` becomes 0..N-1; default: the URL's
    /// path with `{key}` appended.
    #[arg(long, requires = "keys")]
    pub path_template: Option<String>,
    /// Pick keys (or lines of --urls-file, or --path entries) by a Zipf
    /// law with this exponent: the first is the most popular.
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Request the paths (or absolute URLs, whose host becomes the Host
    /// header) listed in this file, one a line; `#` starts a comment.
    #[arg(long)]
    pub urls_file: Option<PathBuf>,
    /// Pick paths of --path or --urls-file uniformly at random instead of
    /// in turn.
    #[arg(long, conflicts_with = "zipf")]
    pub random: bool,
    /// Seed for the random choice of keys, so runs can be repeated.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Count the CPU time and peak memory of this process (the proxy under
    /// test) over the run. Several, comma-separated or by repeating the
    /// flag (an nginx's workers, say), are added up.
    #[arg(long, value_delimiter = ',')]
    pub proxy_pid: Vec<u32>,
    /// Write every figure as JSON to this file (`-` for stdout, which then
    /// replaces the text report).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart: latency by percentile, throughput per second.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where the JSON report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonOut {
    /// Standard output, instead of the text report.
    Stdout,
    /// A file; the text report still goes to standard output.
    File(PathBuf),
}

/// The validated command line: the run's [`Plan`], and what the binary
/// adds around it (the proxy to measure, where the results go).
#[derive(Debug, Clone)]
pub struct Cli {
    /// What to hit, how hard, for how long.
    pub plan: Plan,
    /// Processes whose CPU time and memory to report, added up (none: no
    /// proxy figures).
    pub proxy_pids: Vec<u32>,
    /// JSON output.
    pub json: Option<JsonOut>,
    /// SVG chart output.
    pub chart: Option<PathBuf>,
    /// Hide the progress bar.
    pub quiet: bool,
}

impl Args {
    /// Checks the flags and resolves the target (only loopback addresses
    /// pass), reading `--urls-file` if given.
    pub async fn into_cli(self) -> Result<Cli> {
        let url = match &self.addr {
            Some(addr) => format!("http://{addr}/"),
            None => self.url.clone(),
        };
        let protocol = match (self.h3, self.h2, self.http1) {
            (true, _, _) => Protocol::H3,
            (false, true, _) => Protocol::H2,
            (false, false, true) => Protocol::Http1,
            (false, false, false) => Protocol::Auto,
        };
        let pick = match (self.zipf, self.random) {
            (Some(s), _) => Pick::Zipf(s),
            (None, true) => Pick::Uniform,
            (None, false) if self.keys.is_some() => Pick::Uniform,
            (None, false) => Pick::InTurn,
        };
        let mut plan = Plan::builder(url)
            .protocol(protocol)
            .insecure(self.insecure)
            .connections(self.connections)
            .streams(self.streams)
            .requests(self.requests)
            .duration(self.duration.get())
            .timeout(self.timeout.get())
            .pick(pick)
            .seed(self.seed);
        // The old --addr form sent `Host: localhost`; keep that for it.
        if let Some(host) = self
            .host
            .as_deref()
            .or(self.addr.as_ref().map(|_| "localhost"))
        {
            plan = plan.host(host);
        }
        if let Some(rate) = self.rate {
            plan = plan.rate(rate);
        }
        if let Some(n) = self.keys {
            plan = plan.keys(n, self.path_template.clone());
        } else if let Some(file) = &self.urls_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("reading --urls-file {}: {e}", file.display()))?;
            plan = plan.source(Source::parse_list(&text, &format!("{}", file.display()))?);
        } else if !self.paths.is_empty() {
            plan = plan.source(Source::Paths(self.paths.clone()));
        }
        let plan = plan.build().await?;
        if self.proxy_pid.contains(&0) {
            bail!("--proxy-pid must name a process");
        }
        let mut proxy_pids = self.proxy_pid.clone();
        proxy_pids.sort_unstable();
        proxy_pids.dedup();
        let json = self.json.map(|p| {
            if p.as_os_str() == "-" {
                JsonOut::Stdout
            } else {
                JsonOut::File(p)
            }
        });
        Ok(Cli {
            plan,
            proxy_pids,
            json,
            chart: self.chart,
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["outpost-loadtest"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("valid flags")
    }

    #[tokio::test]
    async fn defaults_are_bounded() {
        let cli = parse(&[]).into_cli().await.expect("defaults are valid");
        let plan = &cli.plan;
        assert_eq!(plan.requests(), 100_000);
        assert_eq!(plan.duration(), Duration::from_secs(10));
        assert_eq!(plan.rate(), None);
        assert_eq!(plan.workers(), 16);
        // The flags' defaults are the library's.
        assert_eq!(plan.duration(), outpost_loadtest::DEFAULT_DURATION);
        assert_eq!(plan.timeout(), outpost_loadtest::DEFAULT_TIMEOUT);
        assert!(plan.keep_alive() && !plan.retry_unanswered());
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_a_message() {
        let cases: &[(&[&str], &str)] = &[
            (&["--url", "http://10.0.0.1/"], "loopback"),
            (&["--requests", "0"], "--requests"),
            (&["--connections", "0"], "--connections"),
            (&["--streams", "4"], "needs HTTP/2"),
            (&["--rate=-3"], "--rate"),
            (&["--keys", "0"], "at least one"),
            (&["--keys", "10", "--zipf=-1"], "zipf"),
            (&["--proxy-pid", "12,0"], "--proxy-pid"),
        ];
        for (argv, needle) in cases {
            let err = parse(argv).into_cli().await.expect_err("should be refused");
            assert!(
                format!("{err:#}").contains(needle),
                "{argv:?}: {err:#} lacks {needle}"
            );
        }
    }

    #[tokio::test]
    async fn old_addr_form_still_works() {
        let cli = parse(&["--addr", "127.0.0.1:8080", "--path", "/a", "--path", "/b"])
            .into_cli()
            .await
            .expect("valid");
        assert_eq!(cli.plan.target().url, "http://127.0.0.1:8080/");
        assert_eq!(cli.plan.target().authority.as_str(), "localhost");
        assert_eq!(cli.plan.urls().len(), 2);
    }

    #[tokio::test]
    async fn proxy_pids_are_a_comma_separated_list() {
        let cli = parse(&["--proxy-pid", "30,10", "--proxy-pid", "20,10"])
            .into_cli()
            .await
            .expect("valid");
        assert_eq!(cli.proxy_pids, [10, 20, 30]);
        let cli = parse(&["--proxy-pid", "7"])
            .into_cli()
            .await
            .expect("valid");
        assert_eq!(cli.proxy_pids, [7]);
        let cli = parse(&[]).into_cli().await.expect("valid");
        assert!(cli.proxy_pids.is_empty());
        assert!(Args::try_parse_from(["outpost-loadtest", "--proxy-pid", "1,x"]).is_err());
    }

    #[tokio::test]
    async fn h2_allows_streams_and_json_dash_means_stdout() {
        let cli = parse(&["--h2", "--streams", "8", "-c", "2", "--json", "-"])
            .into_cli()
            .await
            .expect("valid");
        assert_eq!(cli.plan.workers(), 16);
        assert_eq!(cli.json, Some(JsonOut::Stdout));
    }
}
