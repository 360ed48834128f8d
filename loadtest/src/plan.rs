//! The plan of a run: what to hit (a loopback target), which paths, how
//! hard and for how long, checked once against the bounds that keep every
//! run a bounded experiment. [`Plan::builder`] starts from the command
//! line's defaults; [`PlanBuilder::build`] checks and resolves.

use std::time::Duration;

use crate::error::Error;
use crate::target::{Protocol, Target};
use crate::urls::{Pick, Source, UrlSet};

pub use crate::bounds::*;

/// A checked run: a loopback target, the paths to ask it for, and limits
/// on connections, requests and time. Made by [`Plan::builder`].
#[derive(Debug, Clone)]
pub struct Plan {
    target: Target,
    urls: UrlSet,
    connections: usize,
    streams: usize,
    requests: u64,
    duration: Duration,
    rate: Option<f64>,
    timeout: Duration,
    seed: u64,
    keep_alive: bool,
    retry_unanswered: bool,
    body_sample: usize,
}

impl Plan {
    /// A plan for `url` (http or https, a loopback address, a port and the
    /// path to request), with the command line's defaults: 16 connections
    /// of one stream, 100,000 requests or 10 s, closed loop, 10 s per
    /// request, kept-alive connections, no retries, bodies not kept.
    pub fn builder(url: impl Into<String>) -> PlanBuilder {
        PlanBuilder {
            url: url.into(),
            host: None,
            protocol: Protocol::Auto,
            insecure: false,
            connections: DEFAULT_CONNECTIONS,
            streams: 1,
            requests: DEFAULT_REQUESTS,
            duration: DEFAULT_DURATION,
            rate: None,
            timeout: DEFAULT_TIMEOUT,
            urls: Urls::TargetPath,
            pick: Pick::InTurn,
            seed: 1,
            keep_alive: true,
            retry_unanswered: false,
            body_sample: 0,
        }
    }

    /// The target address, scheme, protocol and Host.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The paths to request and how to pick among them.
    pub fn urls(&self) -> &UrlSet {
        &self.urls
    }

    /// Connections kept open.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Streams per connection.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// Workers (one per stream) across all connections.
    pub fn workers(&self) -> usize {
        self.connections * self.streams
    }

    /// Request budget.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Time budget.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Requests per second in all, for an open loop.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Per-request time limit.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Seed for key choice.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether connections are kept for the next request.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether a request the server closed its connection on, unanswered,
    /// is sent again.
    pub fn retry_unanswered(&self) -> bool {
        self.retry_unanswered
    }

    /// Bodies up to this many bytes are counted by content (0: none).
    pub fn body_sample(&self) -> usize {
        self.body_sample
    }
}

/// Where the paths come from, until the target is known.
#[derive(Debug, Clone)]
enum Urls {
    /// The URL's own path.
    TargetPath,
    /// Given as they are.
    Given(Source),
    /// `count` keys on a template, by default the URL's path with `{key}`
    /// appended.
    Keys {
        count: u64,
        template: Option<String>,
    },
}

/// Settings for a [`Plan`], each named as the command line's flag.
#[derive(Debug, Clone)]
#[must_use]
pub struct PlanBuilder {
    url: String,
    host: Option<String>,
    protocol: Protocol,
    insecure: bool,
    connections: usize,
    streams: usize,
    requests: u64,
    duration: Duration,
    rate: Option<f64>,
    timeout: Duration,
    urls: Urls,
    pick: Pick,
    seed: u64,
    keep_alive: bool,
    retry_unanswered: bool,
    body_sample: usize,
}

impl PlanBuilder {
    /// The Host header (the :authority for HTTP/2, the SNI name for TLS)
    /// instead of the URL's host and port.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Which HTTP version to speak (`--h2`, `--http1`).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Accept any TLS certificate (`--insecure`).
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Connections to keep open (`--connections`).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Concurrent streams per connection, HTTP/2 only (`--streams`).
    pub fn streams(mut self, streams: usize) -> Self {
        self.streams = streams;
        self
    }

    /// Stop after this many requests in all (`--requests`).
    pub fn requests(mut self, requests: u64) -> Self {
        self.requests = requests;
        self
    }

    /// Stop after this long, whichever comes first (`--duration`).
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Open loop: this many requests per second in all, on a fixed
    /// schedule (`--rate`). Without it the load is closed loop.
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = Some(rate);
        self
    }

    /// Give up on one request (connect, headers and body) after this long
    /// (`--timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Request these paths (or URL list entries) instead of the URL's
    /// (`--path`, `--urls-file`).
    pub fn source(mut self, source: Source) -> Self {
        self.urls = Urls::Given(source);
        self
    }

    /// Spread requests over `count` keys, each path `template` with
    /// `{key}` replaced; by default the URL's path with `{key}` appended
    /// (`--keys`, `--path-template`).
    pub fn keys(mut self, count: u64, template: Option<String>) -> Self {
        self.urls = Urls::Keys { count, template };
        self
    }

    /// How each request picks among the paths (`--zipf`, `--random`).
    pub fn pick(mut self, pick: Pick) -> Self {
        self.pick = pick;
        self
    }

    /// Seed for the random choice of keys (`--seed`).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With `false`, every request opens a new connection (one stream per
    /// connection only), so each one also tests that the server accepts.
    pub fn keep_alive(mut self, keep_alive: bool) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// With `true`, a request on a kept-alive HTTP/1.1 connection that the
    /// server had closed before any byte of the answer is sent once more on
    /// a new connection, as RFC 9112 §9.3.1 lets a client do with an
    /// idempotent request, and counted in `Tally::retried`. Without it,
    /// as on the command line, such a request is a failure.
    pub fn retry_unanswered(mut self, retry: bool) -> Self {
        self.retry_unanswered = retry;
        self
    }

    /// Count the bodies of answers no longer than `max` bytes by their
    /// content, in `Tally::bodies` (at most [`MAX_BODY_SAMPLE`]; 0: none).
    pub fn sample_bodies(mut self, max: usize) -> Self {
        self.body_sample = max;
        self
    }

    /// Checks every setting and resolves the target, refusing anything
    /// that is not a loopback address.
    pub async fn build(self) -> Result<Plan, Error> {
        let target = Target::resolve(
            &self.url,
            self.host.as_deref(),
            self.protocol,
            self.insecure,
        )
        .await?;
        if self.connections == 0 {
            return Err(Error::Connections);
        }
        if self.streams == 0 {
            return Err(Error::Streams);
        }
        if self.streams > 1 && !target.may_multiplex() {
            return Err(Error::StreamsNeedH2(self.streams));
        }
        if self.connections.saturating_mul(self.streams) > MAX_WORKERS {
            return Err(Error::Workers);
        }
        if self.requests == 0 || self.requests > MAX_REQUESTS {
            return Err(Error::Requests);
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(Error::Duration);
        }
        if self.timeout.is_zero() {
            return Err(Error::Timeout);
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(Error::Rate);
        }
        if !self.keep_alive && self.streams > 1 {
            return Err(Error::FreshConnectionStreams);
        }
        if self.body_sample > MAX_BODY_SAMPLE {
            return Err(Error::BodySample);
        }
        let source = match self.urls {
            Urls::TargetPath => Source::Paths(vec![target.path().to_owned()]),
            Urls::Given(source) => source,
            Urls::Keys { count, template } => Source::Keys {
                count,
                template: template.unwrap_or_else(|| default_template(target.path())),
            },
        };
        let urls = UrlSet::new(source, self.pick)?;
        Ok(Plan {
            target,
            urls,
            connections: self.connections,
            streams: self.streams,
            requests: self.requests,
            duration: self.duration,
            rate: self.rate,
            timeout: self.timeout,
            seed: self.seed,
            keep_alive: self.keep_alive,
            retry_unanswered: self.retry_unanswered,
            body_sample: self.body_sample,
        })
    }
}

/// The URL's path with `{key}` appended as a last segment (its query, if
/// any, kept after it): `/obj/` → `/obj/{key}`, `/obj?a=1` → `/obj/{key}?a=1`.
fn default_template(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let slash = if path.ends_with('/') { "" } else { "/" };
    match query {
        Some(q) => format!("{path}{slash}{{key}}?{q}"),
        None => format!("{path}{slash}{{key}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_appends_a_key_segment() {
        assert_eq!(default_template("/"), "/{key}");
        assert_eq!(default_template("/obj/"), "/obj/{key}");
        assert_eq!(default_template("/obj"), "/obj/{key}");
        assert_eq!(default_template("/obj?a=1"), "/obj/{key}?a=1");
    }

    #[tokio::test]
    async fn defaults_are_bounded() {
        let plan = Plan::builder("http://127.0.0.1:8080/")
            .build()
            .await
            .expect("defaults are valid");
        assert_eq!(plan.requests(), 100_000);
        assert_eq!(plan.duration(), Duration::from_secs(10));
        assert_eq!(plan.rate(), None);
        assert_eq!(plan.workers(), 16);
        assert!(plan.keep_alive() && !plan.retry_unanswered());
        assert_eq!(plan.body_sample(), 0);
    }

    #[tokio::test]
    async fn keys_default_to_the_url_path() {
        let plan = Plan::builder("http://127.0.0.1:8080/obj?a=1")
            .keys(3, None)
            .build()
            .await
            .expect("valid");
        assert_eq!(plan.urls().get(2).path, "/obj/2?a=1");
    }

    #[tokio::test]
    async fn settings_only_the_library_has_are_bounded() {
        let base = || Plan::builder("http://127.0.0.1:8080/");
        let fresh_h2 = base()
            .protocol(Protocol::H2)
            .streams(2)
            .keep_alive(false)
            .build()
            .await;
        assert!(matches!(fresh_h2, Err(Error::FreshConnectionStreams)));
        let sample = base().sample_bodies(MAX_BODY_SAMPLE + 1).build().await;
        assert!(matches!(sample, Err(Error::BodySample)));
        assert!(base().sample_bodies(32).build().await.is_ok());
    }
}
