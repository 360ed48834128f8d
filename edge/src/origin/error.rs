//! Why a request to an origin failed: per attempt at one server, for the
//! retry decision ([`Failure`]), and for the request as a whole, for the
//! client's answer ([`UpstreamError`]). Every error keeps its cause as its
//! `source`; [`Chain`] writes one with all its causes, for logs and error
//! bodies.

use std::sync::Arc;
use std::time::Duration;

/// An underlying error that one failure may share with others (a dial
/// that several requests waited on).
pub(crate) type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why one attempt at one server failed, as far as a retry cares.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No connection: nothing reached the server.
    #[error("could not connect")]
    Connect(#[source] Cause),
    /// No connection within the connect time-out.
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// Every connection the server may have is in use, for the connect time-out.
    #[error("all {0} connections busy")]
    Busy(usize),
    /// `protocol: http2`, and the server's ALPN chose another protocol.
    #[error("the server refused HTTP/2")]
    NoHttp2,
    /// The server refused the stream unprocessed (RFC 9113 §8.7).
    #[error("the request was refused unprocessed")]
    Refused(#[source] h2::Error),
    /// The request may have reached the server.
    #[error("the exchange failed")]
    Failed(#[source] Cause),
}

impl Failure {
    /// Nothing of the request reached the server: any request may go again.
    pub(crate) fn before_sending(&self) -> bool {
        matches!(
            self,
            Failure::Connect(_) | Failure::ConnectTimeout(_) | Failure::Busy(_) | Failure::NoHttp2
        )
    }

    pub(crate) fn connect(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure::Connect(Arc::new(e))
    }

    pub(crate) fn failed(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure::Failed(Arc::new(e))
    }
}

/// One server's failure: which server, and why.
#[derive(Debug, thiserror::Error)]
#[error("{server}")]
pub(crate) struct Attempt {
    /// The server's name in logs and metrics.
    pub(crate) server: String,
    #[source]
    pub(crate) failure: Failure,
}

/// Why a request got no usable answer from its origin pool.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The pool has no server at all (every name resolved to nothing).
    #[error("no origin server could be reached: the pool has no servers")]
    NoServers,
    /// No server could be reached; the last attempt's failure.
    #[error("no origin server could be reached")]
    Unreachable(#[source] Attempt),
    /// No answer within the response-header time-out.
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    /// A server took the request and failed before answering.
    #[error("the origin failed before answering")]
    Failed(#[source] Attempt),
    /// A server answered with framing that cannot be trusted (RFC 9112 §6.3).
    #[error("the origin failed before answering: {server}: malformed response: {why}")]
    Malformed { server: String, why: &'static str },
    /// The client's request body failed on its way (malformed, or the
    /// client went away): the client's fault, answered 400.
    #[error("the client's request body failed")]
    ClientBody(#[source] Attempt),
    /// The request cannot be written for this server.
    #[error("the origin failed before answering: bad request target")]
    Target(#[source] http::uri::InvalidUri),
}

/// Why a pool could not be built from its config (at start, on reload, or
/// for `outpost check`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// A server URL the config let through but that does not parse here.
    #[error("{0}")]
    Url(String),
    #[error("{server}: cannot resolve {host}")]
    Resolve {
        server: String,
        /// The server's place in the pool's `servers`.
        index: usize,
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{server}: not a URI")]
    Uri {
        server: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("TLS")]
    Tls(#[from] boring::error::ErrorStack),
    #[error("tls.ca_file {}", .path.display())]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: boring::error::ErrorStack,
    },
    #[error("tls.client_cert {}", .path.display())]
    ClientCert {
        path: std::path::PathBuf,
        #[source]
        source: boring::error::ErrorStack,
    },
    #[error("tls.client_key {}", .path.display())]
    ClientKey {
        path: std::path::PathBuf,
        #[source]
        source: boring::error::ErrorStack,
    },
    #[error("tls.client_key does not match tls.client_cert")]
    KeyMismatch(#[source] boring::error::ErrorStack),
}

/// An error and its causes on one line: `a: b: c`.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's error text still tells the whole story, from the
    /// request's failure down to the socket's.
    #[test]
    fn a_chain_names_every_cause() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = UpstreamError::Unreachable(Attempt {
            server: "http://127.0.0.1:1".into(),
            failure: Failure::connect(refused),
        });
        assert_eq!(
            Chain(&e).to_string(),
            "no origin server could be reached: http://127.0.0.1:1: could not connect: refused"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "http://127.0.0.1:1");
    }
}
