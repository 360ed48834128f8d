//! Listening sockets: accept loops for the proxy (plain text, or TLS with
//! the certificate chosen by SNI and ALPN) and for the side API. Each proxy
//! connection then goes to the HTTP/2 server when ALPN chose `h2` or its
//! first bytes are the HTTP/2 preface, and to the HTTP/1 server otherwise.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use outpost_purge_api::Admin;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::front::batched::Batched;
use crate::front::drain::{self, Drain, Stop};
use crate::front::metrics::FrontMetrics;
use crate::front::sniff::{Sniffed, sniff};
use crate::front::tls::Tls;
use crate::front::{Live, h1, h2};
use crate::proxy::ConnInfo;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client of the side API may take to send a request head.
const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts proxy connections until the drain stops it. `index` is the
/// listener's place in the config: a TLS connection takes that listener's
/// acceptor from the proxy current when it is accepted.
///
/// `slots` bounds the client connections open at once over every proxy
/// listener: past it, a connection is closed as soon as it is accepted,
/// which costs a client one round trip rather than a hang, and keeps the
/// process clear of its descriptor limit.
pub(crate) fn spawn_proxy_listener(
    listener: TcpListener,
    index: usize,
    alt_svc: Option<&'static http::HeaderValue>,
    live: Live,
    metrics: Arc<FrontMetrics>,
    slots: Arc<Semaphore>,
    drain: Drain,
) {
    spawn_accept_loop(
        listener,
        drain,
        OnShutdown::Refuse,
        move |stream, remote, drain| {
            let tls = live.acceptor(index);
            let metrics = metrics.clone();
            let slot = slots.clone().try_acquire_owned().ok();
            let live = live.clone();
            async move {
                let Some(_slot) = slot else {
                    metrics.refused.inc();
                    tracing::debug!(%remote, "at limits.max_connections: closing a new connection");
                    drop(stream);
                    return;
                };
                metrics.connections.inc();
                match tls {
                    None => {
                        let conn = ConnInfo {
                            remote,
                            tls: false,
                            tls_version: None,
                            listener: index,
                            certificate: None,
                            alt_svc,
                        };
                        serve_client(stream, conn, false, live, drain).await;
                    }
                    Some(tls) => {
                        let at = Accepted {
                            remote,
                            listener: index,
                            alt_svc,
                        };
                        serve_tls(stream, at, &tls, &metrics, live, drain).await
                    }
                }
                metrics.connections.dec();
            }
        },
    );
}

/// Accepts side-API connections until the drain stops it.
pub(crate) fn spawn_admin_listener(listener: TcpListener, admin: Arc<Admin>, drain: Drain) {
    spawn_accept_loop(
        listener,
        drain,
        OnShutdown::KeepAnswering,
        move |stream, remote, drain| {
            let admin = admin.clone();
            async move {
                let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let admin = admin.clone();
                    // Who is asking, for `admin.access.networks`.
                    req.extensions_mut()
                        .insert(outpost_purge_api::ClientAddr(remote.ip()));
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(ADMIN_HEADER_READ_TIMEOUT);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                drain::serve(
                    connection,
                    |connection| connection.graceful_shutdown(),
                    drain,
                    &AtomicBool::new(false),
                )
                .await;
            }
        },
    );
}

fn spawn_accept_loop<F, Fut>(
    listener: TcpListener,
    drain: Drain,
    on_shutdown: OnShutdown,
    serve_one: F,
) where
    F: Fn(TcpStream, SocketAddr, Drain) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stop = drain.clone();
        let why = loop {
            let accepted = tokio::select! {
                accepted = accept(&listener) => accepted,
                why = stop.stopped() => break why,
            };
            let Some((stream, remote)) = accepted else {
                continue;
            };
            let open = drain.open();
            let connection = serve_one(stream, remote, drain.clone());
            tokio::spawn(async move {
                connection.await;
                drop(open);
            });
        };
        if why == Stop::HandedOver {
            // The successor accepts on the same socket; dropping this copy
            // leaves it to them.
            return;
        }
        match on_shutdown {
            OnShutdown::Refuse => {
                // Copies of the socket are kept for upgrades, so dropping
                // this one would leave it listening with no one to accept:
                // clients would connect and wait. Shutting it down closes
                // it for every copy: new connections are refused at once.
                if let Err(e) = rustix::net::shutdown(&listener, rustix::net::Shutdown::Read) {
                    tracing::warn!(error = %e, "closing a listening socket");
                }
            }
            OnShutdown::KeepAnswering => {
                // Until the process exits, so that a load balancer asking
                // `/readyz` hears at once that this node is going. These
                // connections do not hold the drain up.
                loop {
                    if let Some((stream, remote)) = accept(&listener).await {
                        tokio::spawn(serve_one(stream, remote, drain.clone()));
                    }
                }
            }
        }
    });
}

/// What an accept loop does when the process shuts down (not when it
/// hands over to a successor: then it lets go in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnShutdown {
    /// Closes the socket: new connections are refused.
    Refuse,
    /// Goes on accepting until the process exits.
    KeepAnswering,
}

/// One accepted connection; accept errors (out of descriptors, say) are
/// logged and slowed down rather than ending the loop.
async fn accept(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok((stream, remote)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, remote))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Serves one client connection, plain or TLS: HTTP/2 when ALPN chose it
/// (`h2_alpn`) or the client opens with the preface, HTTP/1 otherwise. The
/// first request head (or the preface) is due within the configured
/// `limits.head_timeout`.
async fn serve_client<S>(mut stream: S, conn: ConnInfo, h2_alpn: bool, live: Live, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (head_timeout, idle_timeout) = {
        let proxy = live.proxy();
        (proxy.head_timeout, proxy.header_read_timeout)
    };
    let first_head = crate::front::later(Instant::now(), head_timeout);
    if h2_alpn {
        h2::serve(stream, Default::default(), first_head, conn, live, drain).await;
        return;
    }
    match sniff(&mut stream, first_head).await {
        Some(Sniffed::Http2(read)) => {
            h2::serve(stream, read, first_head, conn, live, drain).await;
        }
        Some(Sniffed::Http1(read)) => {
            let timeouts = h1::Timeouts {
                first_head,
                head: head_timeout,
                idle: idle_timeout,
            };
            h1::serve(stream, &read, timeouts, conn, live, drain).await;
        }
        None => {}
    }
}

/// Where a connection came from, and what its listener advertises.
struct Accepted {
    remote: SocketAddr,
    listener: usize,
    alt_svc: Option<&'static http::HeaderValue>,
}

async fn serve_tls(
    stream: TcpStream,
    at: Accepted,
    tls: &Tls,
    metrics: &FrontMetrics,
    live: Live,
    drain: Drain,
) {
    let handshakes = |result: &str| metrics.handshakes.with_label_values(&[result]).inc();
    let stream = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_boring::accept(&tls.acceptor, Batched::new(stream)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(remote = %at.remote, error = %e, "TLS handshake failed");
            handshakes("failed");
            return;
        }
        Err(_) => {
            tracing::debug!(remote = %at.remote, "TLS handshake timed out");
            handshakes("timeout");
            return;
        }
    };
    handshakes("ok");
    if stream.ssl().session_reused() {
        metrics.resumed.inc();
    }
    let h2 = stream.ssl().selected_alpn_protocol() == Some(b"h2");
    let sni = stream.ssl().servername(boring::ssl::NameType::HOST_NAME);
    let conn = ConnInfo {
        remote: at.remote,
        tls: true,
        tls_version: Some(stream.ssl().version_str()),
        listener: at.listener,
        alt_svc: at.alt_svc,
        // Without SNI the client named no host to check the certificate
        // against; requests are routed by Host alone.
        certificate: sni.map(|name| tls.names.choose(Some(name))),
    };
    serve_client(stream, conn, h2, live, drain).await;
}
