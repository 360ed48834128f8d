//! Clients for one request each: HTTP/1.1 on a new connection, the answer
//! read whole ([`request`], [`get`], [`Got`]) or streamed and only
//! measured ([`get_streamed`]).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A complete response as a client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    /// This node's own Cache-Status entry: the last one (those of caches
    /// before it, a shield's, come first).
    pub fn own_cache_status(&self) -> &str {
        let status = self.cache_status();
        status.rfind("Outpost;").map_or(status, |at| &status[at..])
    }

    /// Panics unless the answer came from cache as a fresh hit.
    #[track_caller]
    pub fn assert_hit(&self) {
        let status = self.own_cache_status();
        assert!(
            status.starts_with("Outpost; hit"),
            "expected a hit, got Cache-Status: {status:?}"
        );
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    try_request(addr, method, host, path, headers, body)
        .await
        .expect("request to outpost")
}

/// [`request`], for when the connection may fail (a process being killed).
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Got, String> {
    let (parts, body) = send(addr, method, host, path, headers, body)
        .await?
        .into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one HTTP/1.1 request on a new connection; the answer's head, and
/// its body to be read.
async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response<hyper::body::Incoming>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| format!("request: {e}"))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))
}

/// `GET path` with `Host: host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    request(addr, "GET", host, path, &[], "").await
}

/// `GET path`, reading the body as it comes and keeping only its length
/// and blake3 (for bodies too large to hold).
pub async fn get_streamed(addr: SocketAddr, host: &str, path: &str) -> (Got, u64, String) {
    let (parts, mut body) = send(addr, "GET", host, path, &[], "")
        .await
        .expect("request to outpost")
        .into_parts();
    let mut len = 0;
    let mut hasher = blake3::Hasher::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("read body").into_data() {
            len += data.len() as u64;
            hasher.update(&data);
        }
    }
    let got = Got {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::new(),
    };
    (got, len, hasher.finalize().to_hex().to_string())
}

/// A TLS connection over `tcp` that trusts any certificate, naming `sni`
/// and offering `alpn` (wire format, e.g. `b"\x02h2"`; none when empty).
pub async fn tls_connect(
    tcp: TcpStream,
    sni: &str,
    alpn: &[u8],
) -> tokio_boring::SslStream<TcpStream> {
    let mut connector =
        boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).expect("connector");
    connector.set_verify(boring::ssl::SslVerifyMode::NONE);
    if !alpn.is_empty() {
        connector.set_alpn_protos(alpn).expect("ALPN");
    }
    let config = connector.build().configure().expect("TLS config");
    tokio_boring::connect(config, sni, tcp)
        .await
        .expect("TLS handshake")
}
