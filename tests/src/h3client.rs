//! An HTTP/3 client that is not quiche: quinn (QUIC, rustls) and the h3
//! crate, so that the tests of Outpost's QUIC listener check two
//! implementations against each other. The client trusts one test
//! certificate authority and checks the server's name against it, so a
//! handshake that succeeds proves the certificate chosen by SNI.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::{Buf, Bytes};

/// One QUIC connection to Outpost, speaking HTTP/3.
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    /// Resolves when the connection closes, with why.
    closed: tokio::task::JoinHandle<h3::error::ConnectionError>,
    endpoint: quinn::Endpoint,
    /// The certificate the server presented (DER).
    pub peer_certificate: Vec<u8>,
}

/// An answer: status, fields and the whole body, and the interim (1xx)
/// answers that came before it.
#[derive(Debug)]
pub struct H3Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub interim: Vec<(u16, http::HeaderMap)>,
}

impl H3Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A client's UDP socket and TLS settings: connections made from one share
/// its session tickets, so a later one may resume and send 0-RTT data.
pub struct H3Endpoint {
    endpoint: quinn::Endpoint,
}

impl H3Endpoint {
    /// Trusts the PEM certificate authority `ca`; offers 0-RTT when
    /// `early_data` and a ticket allow.
    pub fn new(ca: &str, early_data: bool) -> anyhow::Result<Self> {
        Self::with_keep_alive(ca, early_data, None)
    }

    /// As [`H3Endpoint::new`], its connections sending a PING every
    /// `keep_alive` when given, so that only the server may end them for
    /// being idle.
    pub fn with_keep_alive(
        ca: &str,
        early_data: bool,
        keep_alive: Option<std::time::Duration>,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let der = boring::x509::X509::from_pem(ca.as_bytes())?.to_der()?;
        roots.add(rustls::pki_types::CertificateDer::from(der))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        tls.enable_early_data = early_data;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        if keep_alive.is_some() {
            let mut transport = quinn::TransportConfig::default();
            transport.keep_alive_interval(keep_alive);
            config.transport_config(Arc::new(transport));
        }
        endpoint.set_default_client_config(config);
        Ok(Self { endpoint })
    }

    /// A new connection to `addr` (UDP), naming `server_name` in SNI,
    /// after a whole handshake.
    pub async fn connect(&self, addr: SocketAddr, server_name: &str) -> anyhow::Result<H3Client> {
        let connection = self
            .endpoint
            .connect(addr, server_name)?
            .await
            .context("QUIC handshake")?;
        H3Client::start(connection, self.endpoint.clone()).await
    }

    /// A QUIC connection with ALPN `h3` and nothing on it yet, for tests
    /// that write HTTP/3 frames by hand.
    pub async fn connect_raw(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> anyhow::Result<quinn::Connection> {
        self.endpoint
            .connect(addr, server_name)?
            .await
            .context("QUIC handshake")
    }

    /// A new connection that sends its requests as 0-RTT data before the
    /// handshake ends; None when this endpoint holds no ticket for it.
    pub async fn connect_early(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> anyhow::Result<Option<H3Client>> {
        match self.endpoint.connect(addr, server_name)?.into_0rtt() {
            Ok((connection, _accepted)) => Ok(Some(
                H3Client::start(connection, self.endpoint.clone()).await?,
            )),
            Err(_) => Ok(None),
        }
    }
}

impl H3Client {
    /// Connects to `addr` (UDP), naming `server_name` in SNI and trusting
    /// the PEM certificate authority `ca`.
    pub async fn connect(addr: SocketAddr, server_name: &str, ca: &str) -> anyhow::Result<Self> {
        H3Endpoint::new(ca, false)?.connect(addr, server_name).await
    }

    async fn start(
        connection: quinn::Connection,
        endpoint: quinn::Endpoint,
    ) -> anyhow::Result<Self> {
        let peer_certificate = connection
            .peer_identity()
            .and_then(|id| {
                id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                    .ok()
            })
            .and_then(|chain| chain.first().map(|c| c.to_vec()))
            .unwrap_or_default();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection)).await?;
        let closed =
            tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
        Ok(Self {
            send,
            closed,
            endpoint,
            peer_certificate,
        })
    }

    /// A GET of `https://{authority}{path}`.
    pub async fn get(&self, authority: &str, path: &str) -> anyhow::Result<H3Got> {
        let request = http::Request::get(format!("https://{authority}{path}")).body(())?;
        self.send(request, Bytes::new()).await
    }

    /// Sends `request` with `body` on a new stream and reads the whole
    /// answer.
    pub async fn send(&self, request: http::Request<()>, body: Bytes) -> anyhow::Result<H3Got> {
        let mut send = self.send.clone();
        let mut stream = send.send_request(request).await?;
        if !body.is_empty() {
            stream.send_data(body).await?;
        }
        stream.finish().await?;
        let mut interim = Vec::new();
        let mut response = stream.recv_response().await?;
        while response.status().is_informational() {
            interim.push((response.status().as_u16(), response.headers().clone()));
            response = stream.recv_response().await?;
        }
        let mut body = Vec::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            while chunk.has_remaining() {
                let part = chunk.chunk();
                body.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(H3Got {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body,
            interim,
        })
    }

    /// Waits for the server to close the connection, with why.
    pub async fn closed(self) -> h3::error::ConnectionError {
        let why = self.closed.await.expect("the connection's driver");
        self.endpoint.wait_idle().await;
        why
    }
}
