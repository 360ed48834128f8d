//! Connections to the target: TCP, TLS through BoringSSL with ALPN, the
//! HTTP/1.1 or HTTP/2 handshake, one request and its body, and the sorting
//! of every failure into a kind the report counts.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};
use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::uri::Authority;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::Error;
use crate::target::{Protocol, Scheme, Target};

const AGENT: &str = concat!("outpost-loadtest/", env!("CARGO_PKG_VERSION"));

/// What went wrong with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// The TLS handshake failed (certificate, ALPN, ...).
    Tls,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The peer closed or reset the connection or stream.
    Reset,
    /// The peer broke the protocol (bad framing, bad headers, ...).
    Protocol,
    /// The answer came, with a 5xx status.
    BadStatus,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::BadStatus,
        ErrorKind::Other,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Protocol => "protocol",
            ErrorKind::BadStatus => "bad_status",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed request: its kind and a message for the report.
#[derive(Debug, Clone)]
pub struct Failure {
    /// How to count it.
    pub kind: ErrorKind,
    /// What happened, for the first example of each kind.
    pub message: String,
    /// The server had closed the connection before any byte of the
    /// answer: the request may be sent again on a new connection.
    pub(crate) unanswered: bool,
}

impl Failure {
    /// A failure of a known kind.
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Failure {
        Failure {
            kind,
            message: message.to_string(),
            unanswered: false,
        }
    }

    /// A hyper error (request or body), sorted by its cause.
    pub fn from_hyper(e: &hyper::Error) -> Failure {
        Failure::new(classify(e), chain(e))
    }

    /// A hyper error from an HTTP/1.1 connection before any byte of the
    /// answer came: waiting for the connection to be ready, or sending the
    /// request and waiting for the head. Marked `unanswered` when it says
    /// the server had closed or reset the connection (RFC 9112 §9.3.1).
    pub(crate) fn before_answer(e: &hyper::Error) -> Failure {
        let reset = e
            .source()
            .and_then(|source| source.downcast_ref::<io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                )
            });
        Failure {
            unanswered: e.is_closed() || e.is_canceled() || e.is_incomplete_message() || reset,
            ..Failure::from_hyper(e)
        }
    }
}

/// Sorts a hyper error by what its chain of causes says.
fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() || e.is_user() {
        return ErrorKind::Protocol;
    }
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io_kind(io);
        }
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            if let Some(io) = h2.get_io() {
                return io_kind(io);
            }
            return if h2.is_reset() || h2.is_go_away() {
                match h2.reason() {
                    Some(h2::Reason::PROTOCOL_ERROR | h2::Reason::COMPRESSION_ERROR) => {
                        ErrorKind::Protocol
                    }
                    _ => ErrorKind::Reset,
                }
            } else {
                ErrorKind::Protocol
            };
        }
        source = cause.source();
    }
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() || e.is_body_write_aborted() {
        ErrorKind::Reset
    } else {
        ErrorKind::Other
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::NotConnected => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::InvalidData => ErrorKind::Protocol,
        _ => ErrorKind::Other,
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The request side of one open connection.
pub enum Sender {
    /// HTTP/1.1: one request at a time.
    H1(http1::SendRequest<Empty<Bytes>>),
    /// HTTP/2: a handle that many streams share.
    H2(http2::SendRequest<Empty<Bytes>>),
    /// HTTP/3: a handle that many streams share.
    H3(crate::h3::H3Sender),
}

impl Sender {
    /// Whether the connection is gone and a new one is needed.
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
            Sender::H3(s) => s.is_closed(),
        }
    }

    /// `h1` or `h2`, for the report.
    pub fn label(&self) -> &'static str {
        match self {
            Sender::H1(_) => "h1",
            Sender::H2(_) => "h2",
            Sender::H3(_) => "h3",
        }
    }
}

/// Opens connections to one target; the TLS settings are built once.
pub struct Connector {
    target: Arc<Target>,
    tls: Option<SslConnector>,
    /// For HTTP/3, the QUIC client settings instead.
    quic: Option<quinn::ClientConfig>,
}

impl Connector {
    /// Prepares TLS (ALPN list, certificate checks) for an https target.
    pub fn new(target: Arc<Target>) -> Result<Connector, Error> {
        if target.protocol == Protocol::H3 {
            let quic = crate::h3::client_config(&target)?;
            return Ok(Connector {
                target,
                tls: None,
                quic: Some(quic),
            });
        }
        let tls = match target.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let mut builder = SslConnector::builder(SslMethod::tls()).map_err(Error::Tls)?;
                let alpn: &[u8] = match target.protocol {
                    Protocol::H2 => b"\x02h2",
                    Protocol::Http1 => b"\x08http/1.1",
                    Protocol::Auto | Protocol::H3 => b"\x02h2\x08http/1.1",
                };
                builder.set_alpn_protos(alpn).map_err(Error::Tls)?;
                if target.insecure {
                    builder.set_verify(SslVerifyMode::NONE);
                }
                Some(builder.build())
            }
        };
        Ok(Connector {
            target,
            tls,
            quic: None,
        })
    }

    /// Opens a connection and completes the HTTP handshake. The
    /// connection's driver runs on its own task until the sender is dropped
    /// or the peer closes.
    pub async fn connect(&self) -> Result<Sender, Failure> {
        if let Some(quic) = &self.quic {
            return crate::h3::connect(&self.target, quic).await.map(Sender::H3);
        }
        let tcp = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| Failure::new(ErrorKind::Connect, format!("{}: {e}", self.target.addr)))?;
        // Small requests go out at once.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                let h2 = self.target.protocol == Protocol::H2;
                handshake(tcp, h2).await
            }
            Some(tls) => {
                let mut config = tls
                    .configure()
                    .map_err(|e| Failure::new(ErrorKind::Tls, e))?;
                let name = self.target.server_name();
                if self.target.insecure {
                    config.set_verify_hostname(false);
                }
                if name.parse::<std::net::IpAddr>().is_ok() {
                    // SNI carries names, never addresses.
                    config.set_use_server_name_indication(false);
                }
                let stream = tokio_boring::connect(config, name, tcp)
                    .await
                    .map_err(|e| Failure::new(ErrorKind::Tls, e))?;
                let h2 = stream.ssl().selected_alpn_protocol() == Some(b"h2");
                if !h2 && self.target.protocol == Protocol::H2 {
                    return Err(Failure::new(
                        ErrorKind::Tls,
                        "the server did not choose h2 in ALPN",
                    ));
                }
                handshake(stream, h2).await
            }
        }
    }

    /// Builds a GET for `path`, with `host` or the target's authority as
    /// Host (HTTP/1.1) or, when `h2`, as :authority (HTTP/2 needs an
    /// absolute URI).
    pub fn request(
        &self,
        h2: bool,
        path: &str,
        host: Option<&Authority>,
    ) -> Result<Request<Empty<Bytes>>, Failure> {
        let authority = host.unwrap_or(&self.target.authority);
        let builder = if h2 {
            let uri = Uri::builder()
                .scheme(self.target.scheme.as_str())
                .authority(authority.clone())
                .path_and_query(path)
                .build()
                .map_err(|e| Failure::new(ErrorKind::Other, e))?;
            Request::get(uri)
        } else {
            Request::get(path).header(HOST, authority.as_str())
        };
        builder
            .header(USER_AGENT, AGENT)
            .body(Empty::new())
            .map_err(|e| Failure::new(ErrorKind::Other, e))
    }
}

async fn handshake<T>(io: T, h2: bool) -> Result<Sender, Failure>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| Failure::from_hyper(&e))?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io)
            .await
            .map_err(|e| Failure::from_hyper(&e))?;
        tokio::spawn(conn);
        Ok(Sender::H1(sender))
    }
}

/// Reads a response body to its end; returns its size and, when it is no
/// longer than `sample` bytes (and `sample` is not 0), its content.
/// Longer bodies are not kept.
pub async fn drain(body: Incoming, sample: usize) -> Result<(u64, Option<Vec<u8>>), Failure> {
    let mut body = body;
    let mut bytes = 0u64;
    let mut kept = (sample > 0).then(Vec::new);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::from_hyper(&e))?;
        if let Some(data) = frame.data_ref() {
            bytes += data.len() as u64;
            if let Some(buffer) = kept.as_mut() {
                if buffer.len() + data.len() <= sample {
                    buffer.extend_from_slice(data);
                } else {
                    kept = None;
                }
            }
        }
    }
    Ok((bytes, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_sorted() {
        let k = |kind| io_kind(&io::Error::from(kind));
        assert_eq!(k(io::ErrorKind::ConnectionReset), ErrorKind::Reset);
        assert_eq!(k(io::ErrorKind::UnexpectedEof), ErrorKind::Reset);
        assert_eq!(k(io::ErrorKind::TimedOut), ErrorKind::Timeout);
        assert_eq!(k(io::ErrorKind::InvalidData), ErrorKind::Protocol);
        assert_eq!(k(io::ErrorKind::PermissionDenied), ErrorKind::Other);
    }

    #[test]
    fn kinds_have_distinct_names() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }
}
