//! HTTP/3 connections: QUIC through quinn (rustls, TLS 1.3, ALPN `h3`)
//! and requests through the h3 crate, an implementation of its own beside
//! the quiche that Outpost serves with. Each connection has its own UDP
//! socket (quinn endpoint), as each TCP connection has its own port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::{Buf, Bytes};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::client::{ErrorKind, Failure};
use crate::error::Error;
use crate::target::Target;

/// The request side of one HTTP/3 connection, shared by its streams.
#[derive(Clone)]
pub struct H3Sender {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    /// Set by the connection's driver when it ends.
    closed: Arc<AtomicBool>,
    /// Keeps the connection's UDP socket open.
    _endpoint: quinn::Endpoint,
}

impl H3Sender {
    /// Whether the connection is gone and a new one is needed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The QUIC client settings for a target, made once.
pub(crate) fn client_config(target: &Target) -> Result<quinn::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Quic(e.to_string()))?;
    let mut tls = if target.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        for pem in boring::x509::X509::stack_from_pem(&system).unwrap_or_default() {
            if let Ok(der) = pem.to_der() {
                let _ = roots.add(CertificateDer::from(der));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::Quic(e.to_string()))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}

/// Opens a QUIC connection to the target and starts HTTP/3 on it.
pub(crate) async fn connect(
    target: &Target,
    config: &quinn::ClientConfig,
) -> Result<H3Sender, Failure> {
    let local = if target.addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let local = local
        .parse()
        .map_err(|e| Failure::new(ErrorKind::Other, e))?;
    let mut endpoint =
        quinn::Endpoint::client(local).map_err(|e| Failure::new(ErrorKind::Connect, e))?;
    endpoint.set_default_client_config(config.clone());
    let connection = endpoint
        .connect(target.addr, target.server_name())
        .map_err(|e| Failure::new(ErrorKind::Connect, e))?
        .await
        .map_err(|e| match e {
            quinn::ConnectionError::TimedOut => Failure::new(ErrorKind::Connect, e),
            other => Failure::new(ErrorKind::Tls, other),
        })?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection))
        .await
        .map_err(|e| Failure::new(ErrorKind::Protocol, e))?;
    let closed = Arc::new(AtomicBool::new(false));
    let ends = closed.clone();
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        ends.store(true, Ordering::Relaxed);
    });
    Ok(H3Sender {
        send,
        closed,
        _endpoint: endpoint,
    })
}

/// What one exchange gave: when it was sent, status, `Cache-Status`, body
/// size, and the body when it is at most `sample` bytes.
pub(crate) struct Exchanged {
    pub(crate) sent: Instant,
    pub(crate) status: u16,
    pub(crate) cache: Option<String>,
    pub(crate) bytes: u64,
    pub(crate) body: Option<Vec<u8>>,
}

/// Sends `request` on a new stream of `sender`'s connection and reads the
/// whole answer.
pub(crate) async fn exchange(
    sender: &H3Sender,
    request: http::Request<()>,
    sample: usize,
) -> Result<Exchanged, Failure> {
    let mut send = sender.send.clone();
    let sent = Instant::now();
    let mut stream = send.send_request(request).await.map_err(stream_failure)?;
    stream.finish().await.map_err(stream_failure)?;
    let response = stream.recv_response().await.map_err(stream_failure)?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-status")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let mut bytes = 0u64;
    let mut kept = (sample > 0).then(Vec::new);
    while let Some(mut chunk) = stream.recv_data().await.map_err(stream_failure)? {
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            bytes += n as u64;
            if let Some(buffer) = kept.as_mut() {
                if buffer.len() + n <= sample {
                    buffer.extend_from_slice(part);
                } else {
                    kept = None;
                }
            }
            chunk.advance(n);
        }
    }
    Ok(Exchanged {
        sent,
        status,
        cache,
        bytes,
        body: kept,
    })
}

fn stream_failure(e: h3::error::StreamError) -> Failure {
    let text = e.to_string();
    let kind = if text.contains("reset") || text.contains("closed") || text.contains("lost") {
        ErrorKind::Reset
    } else {
        ErrorKind::Protocol
    };
    Failure::new(kind, text)
}

/// `--insecure` over QUIC: any certificate chain is taken, as BoringSSL's
/// `SSL_VERIFY_NONE` takes it over TCP; the handshake's signature is still
/// checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
