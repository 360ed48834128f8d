//! Listening sockets: accept loops for the proxy (plain text with HTTP/1.1
//! and h2c, or TLS with ALPN) and for the side API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use boring::ssl::SslAcceptor;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use outpost_purge_api::Admin;
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::{ConnInfo, Proxy};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle HTTP/2 connections are pinged this often and closed when a ping goes unanswered as long.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Accepts proxy connections until the process ends.
pub fn spawn_proxy_listener(
    listener: TcpListener,
    tls: Option<Arc<SslAcceptor>>,
    proxy: Arc<Proxy>,
) {
    tokio::spawn(async move {
        loop {
            let Some((stream, remote)) = accept(&listener).await else {
                continue;
            };
            let proxy = proxy.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve_proxy(stream, remote, proxy).await,
                    Some(acceptor) => serve_proxy_tls(stream, remote, &acceptor, proxy).await,
                }
            });
        }
    });
}

/// Accepts side-API connections until the process ends.
pub fn spawn_admin_listener(listener: TcpListener, admin: Arc<Admin>) {
    tokio::spawn(async move {
        loop {
            let Some((stream, _remote)) = accept(&listener).await else {
                continue;
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
                });
                let builder = connection_builder();
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
    });
}

/// How every accepted connection is served: a client gets 30 s to send
/// its request head, and idle HTTP/2 connections are pinged, so that a
/// silent peer does not hold a connection forever.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_INTERVAL);
    builder
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

async fn serve_proxy(stream: TcpStream, remote: SocketAddr, proxy: Arc<Proxy>) {
    let conn = ConnInfo { remote, tls: false };
    let service = service_fn(move |req| proxy.clone().handle(conn, req));
    let builder = connection_builder();
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

async fn serve_proxy_tls(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: &SslAcceptor,
    proxy: Arc<Proxy>,
) {
    let stream =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_boring::accept(acceptor, stream)).await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        };
    let h2 = stream.ssl().selected_alpn_protocol() == Some(b"h2");
    let conn = ConnInfo { remote, tls: true };
    let service = service_fn(move |req| proxy.clone().handle(conn, req));
    let builder = connection_builder();
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%remote, error = %e, "TLS connection ended with an error");
    }
}
