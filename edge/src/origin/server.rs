//! One origin server at one address: how it is reached (hyper's HTTP/1.1
//! client or our HTTP/2 connection, over plain TCP or TLS) and what is
//! built for it from the pool's settings.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::origin::metrics::OriginMetrics;
use boring::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use outpost_config::{OriginPool, OriginProtocol, ServerUrl};
use tokio::sync::Semaphore;
use tower_layer::Layer;

use crate::origin::body::UpstreamBody;
use crate::origin::error::{Failure, PoolError};
use crate::origin::h1;
use crate::origin::h2::Answered;
use crate::origin::health::Health;
use crate::origin::resolve::Connector;
use crate::origin::resolve::Dial;
use crate::origin::response::OriginStream;
use http_body_util::Either;

/// One origin server at one address.
pub(crate) struct Server {
    /// The URL as configured.
    pub(crate) url: String,
    pub(crate) scheme: &'static str,
    /// `host:port` as configured: the URI authority when a request has no
    /// usable Host, and for health checks.
    pub(crate) authority: String,
    pub(crate) addr: std::net::SocketAddr,
    /// Name in metrics and logs: the URL, with the address when it was a name.
    pub(crate) label: String,
    pub(crate) weight: u32,
    pub(crate) transport: Transport,
    pub(crate) health: Health,
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) permits: Arc<Semaphore>,
}

/// How requests reach a server: hyper's pooled client (HTTP/1.1), or our
/// own HTTP/2 connection where HTTP/2 may be spoken.
pub(crate) enum Transport {
    Hyper(Client<Connector, UpstreamBody>),
    Mux(crate::origin::h2::Mux),
}

impl Server {
    /// Sends one request to this server and waits for the response head;
    /// interim responses go to `interim`.
    pub(crate) async fn request(
        &self,
        mut req: Request<UpstreamBody>,
        interim: Option<crate::origin::interim::InterimSink>,
    ) -> Result<Response<OriginStream>, Failure> {
        // RFC 9110 §15.2: a proxy forwards the 1xx responses it did not ask for.
        if let Some(interim) = interim.clone() {
            hyper::ext::on_informational(&mut req, move |res| {
                interim.send(res.status(), res.headers());
            });
        }
        match &self.transport {
            Transport::Hyper(client) => h1::http1(client, req)
                .await
                .map(|res| res.map(Either::Left)),
            Transport::Mux(mux) => match mux.request(req, interim).await? {
                Answered::Http1(res) => Ok(res.map(Either::Left)),
                Answered::Http2(res) => Ok(res.map(Either::Right)),
            },
        }
    }
}

/// Everything needed to build a server's client.
pub(crate) struct Blueprint {
    pub(crate) pool: String,
    pub(crate) tls: outpost_config::OriginTls,
    pub(crate) base_dir: std::path::PathBuf,
    pub(crate) protocol: OriginProtocol,
    pub(crate) connect_timeout: Duration,
    pub(crate) keepalive: Duration,
    pub(crate) max_idle: usize,
    pub(crate) max_connections: usize,
    pub(crate) metrics: Arc<OriginMetrics>,
}

impl Blueprint {
    pub(crate) fn server(
        &self,
        url: &ServerUrl,
        text: &str,
        weight: u32,
        addr: std::net::SocketAddr,
        literal: bool,
    ) -> Result<Server, PoolError> {
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        let label_base = format!(
            "{}://{}:{}",
            if url.tls { "https" } else { "http" },
            host,
            url.port
        );
        let label = if literal {
            label_base.clone()
        } else {
            format!("{label_base}@{addr}")
        };
        let connects = self
            .metrics
            .connects
            .with_label_values(&[self.pool.as_str(), label.as_str()]);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.connect_timeout));
        http.set_nodelay(true);
        let http = Dial::new(http, addr, connects);
        // SNI and certificate checks use the configured name (or `tls.sni`).
        let tls_name = self.tls.sni.clone().unwrap_or_else(|| url.host.clone());
        let tls_name = url.tls.then_some(tls_name.as_str());
        let scheme = if url.tls { "https" } else { "http" };
        let authority = format!("{host}:{}", url.port);
        // HTTP/1.1 goes through hyper's pool; HTTP/2, and ALPN's choice
        // over TLS, through our own connection (`mux.rs`), which passes on
        // interim responses.
        let http1_client = |connector: Connector| {
            let mut builder = Client::builder(TokioExecutor::new());
            builder
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(self.keepalive)
                .pool_max_idle_per_host(self.max_idle);
            builder.build(connector)
        };
        let transport = match (self.protocol, url.tls) {
            (OriginProtocol::Http1, _) | (OriginProtocol::Auto, false) => {
                Transport::Hyper(http1_client(
                    tls_layer(&self.tls, &self.base_dir, self.protocol, tls_name)?.layer(http),
                ))
            }
            (protocol, _) => {
                let fallback = (protocol == OriginProtocol::Auto).then(|| {
                    tls_layer(&self.tls, &self.base_dir, OriginProtocol::Http1, tls_name)
                        .map(|layer| http1_client(layer.layer(http.clone())))
                });
                let connector =
                    tls_layer(&self.tls, &self.base_dir, protocol, tls_name)?.layer(http);
                let dial_uri = format!("{scheme}://{authority}/")
                    .parse()
                    .map_err(|source| PoolError::Uri {
                        server: text.to_owned(),
                        source,
                    })?;
                Transport::Mux(crate::origin::h2::Mux::new(
                    connector,
                    dial_uri,
                    self.connect_timeout,
                    self.keepalive,
                    fallback.transpose()?.map(Box::new),
                ))
            }
        };
        Ok(Server {
            url: text.to_owned(),
            scheme,
            authority,
            addr,
            label,
            weight,
            transport,
            health: Health::default(),
            in_flight: Arc::new(AtomicUsize::new(0)),
            permits: Arc::new(Semaphore::new(self.max_connections)),
        })
    }
}

/// Loads the pool's TLS settings (CA file, client certificate) as a start
/// would, without resolving or connecting; for `outpost check`.
pub(crate) fn check_tls(pool: &OriginPool, base_dir: &std::path::Path) -> Result<(), PoolError> {
    tls_layer(&pool.tls, base_dir, pool.protocol, Some("check")).map(|_| ())
}

/// The TLS settings of one server: system roots or a CA file, an optional
/// client certificate, ALPN by protocol, SNI and name checks against
/// `name`, and verification off only when asked. With `name` None the
/// server speaks plain HTTP and the layer only carries the type.
fn tls_layer(
    tls: &outpost_config::OriginTls,
    base_dir: &std::path::Path,
    protocol: OriginProtocol,
    name: Option<&str>,
) -> Result<hyper_boring::HttpsLayer, PoolError> {
    let mut ssl = SslConnector::builder(SslMethod::tls())?;
    let Some(name) = name else {
        return Ok(hyper_boring::HttpsLayer::with_connector(ssl)?);
    };
    if let Some(ca) = &tls.ca_file {
        let path = base_dir.join(ca);
        ssl.set_ca_file(&path)
            .map_err(|source| PoolError::CaFile { path, source })?;
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let (cert, key) = (base_dir.join(cert), base_dir.join(key));
        ssl.set_certificate_chain_file(&cert)
            .map_err(|source| PoolError::ClientCert { path: cert, source })?;
        ssl.set_private_key_file(&key, SslFiletype::PEM)
            .map_err(|source| PoolError::ClientKey { path: key, source })?;
        ssl.check_private_key().map_err(PoolError::KeyMismatch)?;
    }
    let alpn: &[u8] = match protocol {
        OriginProtocol::Auto => b"\x02h2\x08http/1.1",
        OriginProtocol::Http1 => b"\x08http/1.1",
        OriginProtocol::Http2 => b"\x02h2",
    };
    ssl.set_alpn_protos(alpn)?;
    if !tls.verify {
        ssl.set_verify(SslVerifyMode::NONE);
    }
    let mut layer = hyper_boring::HttpsLayer::with_connector(ssl)?;
    // The URI's host is the site's; SNI and the name check are the server's.
    layer.set_callback(|config, _uri| {
        config.set_use_server_name_indication(false);
        config.set_verify_hostname(false);
        Ok(())
    });
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let verify = tls.verify;
    layer.set_ssl_callback(move |ssl, _uri| {
        let ip = name.parse::<std::net::IpAddr>().ok();
        if ip.is_none() {
            ssl.set_hostname(&name)?;
        }
        if verify {
            let param = ssl.param_mut();
            match ip {
                Some(ip) => param.set_ip(ip)?,
                None => param.set_host(&name)?,
            }
        }
        Ok(())
    });
    Ok(layer)
}
