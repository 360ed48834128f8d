//! Why a plan is refused or a load cannot run: one error type for the
//! library, a case for each reason. Settings are named as the command line
//! spells them (`--connections`), so the binary prints these messages as
//! they are.

use crate::bounds::{KEY, MAX_BODY_SAMPLE, MAX_REQUESTS, MAX_WORKERS};

/// A refused plan, or a load that could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// HTTP/3 asked of a plain-text URL.
    #[error("--url {url:?}: HTTP/3 needs https://")]
    H3NeedsTls {
        /// The URL as given.
        url: String,
    },
    /// The QUIC client could not be set up.
    #[error("QUIC client: {0}")]
    Quic(String),
    /// The target URL does not parse.
    #[error("--url {url:?} is not a URL")]
    NotAUrl {
        /// The URL as given.
        url: String,
        /// What the parser said.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The target URL's scheme is neither http nor https.
    #[error("--url {url:?}: scheme {scheme} is not http or https")]
    Scheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The target URL has no scheme.
    #[error("--url {url:?} needs a scheme: http:// or https://")]
    NoScheme {
        /// The URL as given.
        url: String,
    },
    /// The target URL has no host.
    #[error("--url {url:?} needs a host")]
    NoHost {
        /// The URL as given.
        url: String,
    },
    /// The Host header given is not `host[:port]`.
    #[error("--host {host:?} is not a valid host[:port]")]
    Host {
        /// The value as given.
        host: String,
        /// What the parser said.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// The target's host name could not be resolved.
    #[error("resolving {host}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The target's host name resolves to nothing.
    #[error("{host} resolves to no address")]
    NoAddress {
        /// The name.
        host: String,
    },
    /// The target is not on this machine: load goes to loopback only.
    #[error(
        "{host} is not a loopback address (127.0.0.0/8 or ::1): load goes to this machine only"
    )]
    NotLoopback {
        /// The host as given.
        host: String,
    },

    /// No connections.
    #[error("--connections must be at least 1")]
    Connections,
    /// No streams per connection.
    #[error("--streams must be at least 1")]
    Streams,
    /// Several streams per connection on a target that speaks HTTP/1.1.
    #[error("--streams {0} needs HTTP/2 or HTTP/3: add --h2 or --h3, or use https://")]
    StreamsNeedH2(usize),
    /// Too many connections × streams.
    #[error("--connections × --streams may be at most {MAX_WORKERS}")]
    Workers,
    /// A request budget of 0 or over the limit.
    #[error("--requests must be between 1 and {MAX_REQUESTS}")]
    Requests,
    /// A duration of 0 or over an hour.
    #[error("--duration must be more than 0 and at most 1h")]
    Duration,
    /// A per-request timeout of 0.
    #[error("--timeout must be more than 0")]
    Timeout,
    /// A rate that is not a positive number.
    #[error("--rate must be a positive number of requests per second")]
    Rate,
    /// A new connection for every request, with several streams sharing
    /// each connection.
    #[error("a new connection for every request needs one stream per connection")]
    FreshConnectionStreams,
    /// Bodies sampled beyond the limit.
    #[error("bodies can be counted by content up to {MAX_BODY_SAMPLE} bytes")]
    BodySample,

    /// A path that does not start with `/`.
    #[error("path {0:?} must start with /")]
    PathStart(String),
    /// A path that is not a valid path and query.
    #[error("{path:?} is not a valid path")]
    Path {
        /// The path.
        path: String,
        /// What the parser said.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A line of a URL list that is neither a path nor a URL.
    #[error("{line:?} is neither a path nor a URL")]
    NotPathOrUrl {
        /// The line.
        line: String,
        /// What the parser said.
        #[source]
        source: http::uri::InvalidUri,
    },
    /// A URL in a list with a scheme other than http or https.
    #[error("{line:?}: a URL needs http:// or https://")]
    ListScheme {
        /// The line.
        line: String,
    },
    /// A URL in a list without a host.
    #[error("{line:?} has no host")]
    ListHost {
        /// The line.
        line: String,
    },
    /// A bad line of a URL list, with its position.
    #[error("{name}:{line}")]
    AtLine {
        /// The list's name (its file).
        name: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        #[source]
        source: Box<Error>,
    },
    /// A URL list with no URL in it.
    #[error("{name}: no URLs in the file")]
    EmptyList {
        /// The list's name (its file).
        name: String,
    },
    /// An empty list of paths.
    #[error("need at least one path")]
    NoPaths,
    /// Zero keys.
    #[error("--keys needs at least one key")]
    NoKeys,
    /// A path template without the key placeholder.
    #[error("--path-template {template:?} has no {KEY}")]
    TemplateKey {
        /// The template.
        template: String,
    },
    /// A path template that does not make a valid path.
    #[error("--path-template {template:?}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong with the path it makes.
        #[source]
        source: Box<Error>,
    },
    /// A Zipf exponent that is negative or not finite.
    #[error("--zipf exponent must be a finite number ≥ 0, not {0}")]
    ZipfExponent(f64),
    /// A Zipf law the sampler refused.
    #[error("--zipf {exponent}")]
    Zipf {
        /// The exponent.
        exponent: f64,
        /// What the sampler said.
        #[source]
        source: rand_distr::ZipfError,
    },

    /// The TLS client could not be set up.
    #[error("setting up TLS")]
    Tls(#[source] boring::error::ErrorStack),
    /// A latency histogram could not be made.
    #[error("latency histogram")]
    Histogram(#[source] hdrhistogram::CreationError),
    /// Two latency histograms could not be added up.
    #[error("merging histograms")]
    Merge(#[source] hdrhistogram::AdditionError),
    /// A worker task panicked or was cancelled.
    #[error("a worker failed")]
    Worker(#[source] tokio::task::JoinError),
}
