//! Listening sockets: accept loops for the proxy (plain text with HTTP/1.1
//! and h2c, or TLS with ALPN) and for the side API, and the drain that a
//! graceful shutdown runs: stop accepting, ask every connection to finish
//! (GOAWAY on h2, `Connection: close` on HTTP/1.1), wait for them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use outpost_purge_api::Admin;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::front::interim::Interim;
use crate::front::strict::Strict;
use crate::front::tls::Tls;
use crate::lifecycle::generation::Current;
use crate::proxy::{ConnInfo, ProxyBody};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client of the side API may take to send a request head.
const ADMIN_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 128;
/// Largest decoded header list (431 above it; GOAWAY far above it).
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// Flow-control windows: what a client may send before we read.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;
/// Response bytes buffered per stream before back-pressure.
const H2_SEND_BUFFER: usize = 256 * 1024;
/// Streams reset by the client before they were served, at once.
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server reset because of the client's errors.
const H2_MAX_LOCAL_RESETS: Option<usize> = Some(256);
/// How long a draining connection keeps answering (with `Connection:
/// close`) before it is asked to finish.
const DRAIN_LINGER: Duration = Duration::from_secs(1);
/// Idle HTTP/2 connections are pinged this often and closed when a ping goes unanswered as long.
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Shared by every accept loop and connection: the stop signal and the
/// count of connections still open.
#[derive(Clone)]
pub struct Drain {
    stop: watch::Receiver<bool>,
    live: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

/// Starts a drain.
pub struct DrainHandle {
    stop: watch::Sender<bool>,
    drain: Drain,
}

impl DrainHandle {
    pub fn new() -> Self {
        let (stop, rx) = watch::channel(false);
        Self {
            stop,
            drain: Drain {
                stop: rx,
                live: Arc::new(AtomicUsize::new(0)),
                idle: Arc::new(Notify::new()),
            },
        }
    }

    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Stops every accept loop, asks every connection to finish, and waits
    /// up to `grace` for them. Returns the connections still open then.
    pub async fn run(&self, grace: Duration) -> usize {
        let _ = self.stop.send(true);
        let live = &self.drain.live;
        let wait = async {
            while live.load(Ordering::SeqCst) > 0 {
                let idle = self.drain.idle.notified();
                if live.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        live.load(Ordering::SeqCst)
    }
}

impl Default for DrainHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    async fn stopped(&mut self) {
        let _ = self.stop.wait_for(|stop| *stop).await;
    }

    /// Counts a connection open until the returned guard drops.
    fn open(&self) -> OpenConnection {
        self.live.fetch_add(1, Ordering::SeqCst);
        OpenConnection {
            live: self.live.clone(),
            idle: self.idle.clone(),
        }
    }
}

struct OpenConnection {
    live: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// Accepts proxy connections until the drain stops it. `index` is the
/// listener's place in the config: a TLS connection takes that listener's
/// acceptor from the generation current when it is accepted.
///
/// `slots` bounds the client connections open at once over every proxy
/// listener: past it, a connection is closed as soon as it is accepted,
/// which costs a client one round trip rather than a hang, and keeps the
/// process clear of its descriptor limit.
pub fn spawn_proxy_listener(
    listener: TcpListener,
    index: usize,
    current: Current,
    slots: Arc<Semaphore>,
    drain: Drain,
) {
    spawn_accept_loop(listener, drain, move |stream, remote, drain| {
        let generation = current.load();
        let tls = generation.proxy.tls.get(index).cloned().flatten();
        let metrics = generation.proxy.metrics.clone();
        let slot = slots.clone().try_acquire_owned().ok();
        let current = current.clone();
        async move {
            let Some(_slot) = slot else {
                metrics.client_connections_refused.inc();
                tracing::debug!(%remote, "at limits.max_connections: closing a new connection");
                drop(stream);
                return;
            };
            metrics.client_connections.inc();
            match tls {
                None => serve_proxy(stream, remote, index, current, drain).await,
                Some(tls) => serve_proxy_tls(stream, remote, index, &tls, current, drain).await,
            }
            metrics.client_connections.dec();
        }
    });
}

/// Accepts side-API connections until the drain stops it.
pub fn spawn_admin_listener(listener: TcpListener, admin: Arc<Admin>, drain: Drain) {
    spawn_accept_loop(listener, drain, move |stream, _remote, drain| {
        let admin = admin.clone();
        async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
            });
            let builder = connection_builder(ADMIN_HEADER_READ_TIMEOUT);
            serve(
                builder.serve_connection(TokioIo::new(stream), service),
                drain,
                &AtomicBool::new(false),
            )
            .await;
        }
    });
}

fn spawn_accept_loop<F, Fut>(listener: TcpListener, drain: Drain, serve_one: F)
where
    F: Fn(TcpStream, SocketAddr, Drain) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stop = drain.clone();
        loop {
            let accepted = tokio::select! {
                accepted = accept(&listener) => accepted,
                () = stop.stopped() => break,
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
        }
        // The listener is dropped here: new connections are refused.
    });
}

/// Serves one connection until it ends, or asks it to finish once the
/// drain starts and then lets it.
///
/// An HTTP/1.1 client may be sending its next request on an idle
/// keep-alive connection just as the server closes it, and that request
/// is lost (RFC 9112 §9.6). So a draining connection first lingers: for
/// up to [`DRAIN_LINGER`] each response it sends carries `Connection:
/// close` (`closing`), and the client closes once it has its answer. Only
/// then is the connection asked to finish (GOAWAY on h2; HTTP/1.1 closes
/// if idle).
async fn serve<C>(connection: C, mut drain: Drain, closing: &AtomicBool)
where
    C: hyper_util::server::graceful::GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = drain.stopped() => {
            closing.store(true, Ordering::SeqCst);
            tokio::select! {
                result = connection.as_mut() => result,
                () = tokio::time::sleep(DRAIN_LINGER) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// How every accepted connection is served: a client gets 30 s to send
/// its request head, and idle HTTP/2 connections are pinged, so that a
/// silent peer does not hold a connection forever.
fn connection_builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(crate::front::strict::MAX_HEAD)
        .max_headers(crate::front::strict::MAX_FIELDS);
    // HTTP/2 limits. Streams and header lists are bounded; a client that
    // resets streams faster than they are served (Rapid Reset), or that
    // makes the server reset many (MadeYouReset), gets GOAWAY; h2 itself
    // closes connections that send endless CONTINUATION frames or empty
    // DATA frames, and answers PING and SETTINGS one at a time, reading
    // no further until each answer is written.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_INTERVAL)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        // RFC 8441: WebSocket over HTTP/2 streams.
        .enable_connect_protocol();
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

/// One request: the generation current when it arrives serves it to its
/// end, whatever reloads happen meanwhile. While the connection drains,
/// HTTP/1 answers say `Connection: close`.
async fn answer(
    current: Current,
    conn: ConnInfo,
    closing: Arc<AtomicBool>,
    interim: Interim,
    mut req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<ProxyBody>, std::convert::Infallible> {
    let http1 = req.version() < http::Version::HTTP_2;
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    let stream = interim.take_stream(req.headers_mut());
    let opened = match req.version() {
        http::Version::HTTP_11 => Some(interim.open()),
        http::Version::HTTP_2 => stream.map(|stream| interim.open_stream(stream)),
        _ => None,
    };
    if let Some(opened) = &opened {
        req.extensions_mut().insert(opened.handle());
    }
    let proxy = current.load().proxy.clone();
    let answered = proxy.handle(conn, req).await;
    // Nothing more may precede the final answer.
    drop(opened);
    let mut res = answered?;
    if http1 && closing.load(Ordering::SeqCst) {
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(res)
}

async fn serve_proxy(
    stream: TcpStream,
    remote: SocketAddr,
    listener: usize,
    current: Current,
    drain: Drain,
) {
    let conn = ConnInfo {
        remote,
        tls: false,
        listener,
        certificate: None,
    };
    serve_client(stream, conn, false, current, drain).await;
}

/// Serves one client connection, plain or TLS: the strict reader in front,
/// then hyper (HTTP/2 only when ALPN chose it; otherwise HTTP/1.1 or h2c by
/// the first bytes, with upgrades for WebSocket).
async fn serve_client<S>(stream: S, conn: ConnInfo, h2_only: bool, current: Current, drain: Drain)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let closing = Arc::new(AtomicBool::new(false));
    let flag = closing.clone();
    let header_read_timeout = current
        .load()
        .loaded
        .config
        .limits
        .header_read_timeout
        .get();
    let strict = Strict::new(stream, header_read_timeout);
    let interim = strict.interim();
    let service =
        service_fn(move |req| answer(current.clone(), conn, flag.clone(), interim.clone(), req));
    let builder = connection_builder(header_read_timeout);
    let io = TokioIo::new(strict);
    if h2_only {
        let builder = builder.http2_only();
        let connection = builder.serve_connection(io, service);
        serve(connection, drain, &closing).await;
    } else {
        let connection = builder.serve_connection_with_upgrades(io, service);
        serve(connection, drain, &closing).await;
    }
}

fn handshakes(current: &Current, result: &str) {
    current
        .load()
        .proxy
        .metrics
        .tls_handshakes
        .with_label_values(&[result])
        .inc();
}

async fn serve_proxy_tls(
    stream: TcpStream,
    remote: SocketAddr,
    listener: usize,
    tls: &Tls,
    current: Current,
    drain: Drain,
) {
    let stream = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_boring::accept(&tls.acceptor, stream),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            handshakes(&current, "failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            handshakes(&current, "timeout");
            return;
        }
    };
    handshakes(&current, "ok");
    if stream.ssl().session_reused() {
        current.load().proxy.metrics.tls_sessions_resumed.inc();
    }
    let h2 = stream.ssl().selected_alpn_protocol() == Some(b"h2");
    let sni = stream.ssl().servername(boring::ssl::NameType::HOST_NAME);
    let conn = ConnInfo {
        remote,
        tls: true,
        listener,
        // Without SNI the client named no host to check the certificate
        // against; requests are routed by Host alone.
        certificate: sni.map(|name| tls.names.choose(Some(name))),
    };
    serve_client(stream, conn, h2, current, drain).await;
}
