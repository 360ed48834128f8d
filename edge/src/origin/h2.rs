//! HTTP/2 to one origin server, on the h2 crate rather than through
//! hyper's client: hyper's HTTP/2 client drops the interim (1xx) responses
//! that h2 receives, and a proxy forwards them (RFC 9110 §15.2).
//!
//! Requests go as streams over as few connections as the server's limit of
//! concurrent streams allows: usually one. A connection is dialled when
//! none has room (requests that arrive meanwhile wait for the same dial),
//! PINGed while streams are open, dropped once it closes, and closed after
//! `keepalive` with no stream open. A pool with `protocol: auto` over TLS
//! lets ALPN decide: when the server picks HTTP/1.1, its requests go to an
//! HTTP/1.1 client for a while, as do WebSocket upgrades, which HTTP/2
//! cannot carry.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_boring::MaybeHttpsStream;
use hyper_util::client::legacy::Client;
use tower_service::Service;

use crate::origin::interim::InterimSink;
use hyper::body::Incoming;

use crate::body::{RecvBody, content_length};
use crate::origin::body::UpstreamBody;
use crate::origin::error::{Cause, Failure};
use crate::origin::h1;
use crate::origin::resolve::Connector;

/// Flow-control windows. h2's defaults of 64 KiB hold a large body to a
/// trickle over any real distance; the stream window is hyper's. Many
/// requests share a connection, so its window is many streams' worth:
/// slow readers of large bodies do not stall the rest until 16 of them
/// hold their whole windows unread.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// The largest response head accepted from an origin.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Streams opened before the server's SETTINGS say how many it takes
/// (hyper's figure), and the request data h2 buffers per stream.
const INITIAL_STREAMS: usize = 100;
const SEND_BUFFER: usize = 400 * 1024;
/// While streams are open, the connection is checked with a PING this
/// often; one unanswered for `PING_TIMEOUT` closes it, failing its streams,
/// so that a connection whose peer vanished is not used for ever.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server whose ALPN picked HTTP/1.1 is sent HTTP/1.1 before
/// ALPN is asked again.
const HTTP1_FOR: Duration = Duration::from_secs(300);

/// A response head from a server that may answer over either protocol:
/// ALPN or an upgrade can send a request to the HTTP/1.1 client.
pub(crate) enum Answered {
    Http1(Response<Incoming>),
    Http2(Response<H2Body>),
}

/// The HTTP/2 side of one origin server.
pub struct Mux {
    connector: Connector,
    /// `scheme://host:port` to dial; the connector dials the server's
    /// address whatever this names, and picks TLS by its scheme.
    dial_uri: http::Uri,
    connect_timeout: Duration,
    keepalive: Duration,
    slot: Arc<Mutex<Slot>>,
    /// When ALPN last chose HTTP/1.1 (`protocol: auto` over TLS).
    http1: Arc<Mutex<Option<tokio::time::Instant>>>,
    /// Where requests go once `http1` is set, and WebSocket upgrades; only
    /// for `protocol: auto` over TLS.
    fallback: Option<Box<Client<Connector, UpstreamBody>>>,
}

/// A server's HTTP/2 connections, and the dial under way, if one is.
#[derive(Default)]
struct Slot {
    open: Vec<Conn>,
    dialing: Option<Shared<BoxFuture<'static, Dialed>>>,
}

/// Where a request goes.
enum Picked {
    /// A stream on this connection, already counted.
    Stream(Conn, Busy),
    /// To the HTTP/1.1 client: ALPN picked it.
    Http1,
    Failed(DialFailure),
}

/// The open connection with the fewest streams, a stream counted on it.
fn least_busy(slot: &Slot) -> Option<Picked> {
    slot.open
        .iter()
        .filter(|conn| !conn.live.closed.load(Ordering::Acquire))
        .min_by_key(|conn| conn.live.open.load(Ordering::Acquire))
        .map(|conn| Picked::Stream(conn.clone(), Busy::new(&conn.live)))
}

/// What a dial came to; shared by every request that waited for it.
#[derive(Clone)]
enum Dialed {
    Http2(Conn),
    /// ALPN picked HTTP/1.1: the connection was dropped.
    Http1,
    Failed(DialFailure),
}

/// Why a dial gave no connection; shared by every request that waited.
#[derive(Clone)]
enum DialFailure {
    Error(Cause),
    TimedOut(Duration),
}

impl From<DialFailure> for Failure {
    fn from(failure: DialFailure) -> Failure {
        match failure {
            DialFailure::Error(cause) => Failure::Connect(cause),
            DialFailure::TimedOut(after) => Failure::ConnectTimeout(after),
        }
    }
}

/// One HTTP/2 connection: the handle that opens streams on it, and
/// whether its connection task has ended.
#[derive(Clone)]
struct Conn {
    send: SendRequest<Bytes>,
    live: Arc<Live>,
}

impl Conn {
    /// Whether a stream opened now would not wait for another to end: the
    /// server's SETTINGS_MAX_CONCURRENT_STREAMS (or, before its SETTINGS
    /// came, `INITIAL_STREAMS`) is not reached.
    fn has_room(&self) -> bool {
        self.live.open.load(Ordering::Acquire) < self.send.current_max_send_streams()
    }
}

#[derive(Default)]
struct Live {
    closed: AtomicBool,
    /// Requests sent on the connection, so the reaper sees use between its looks.
    uses: AtomicU64,
    /// Streams whose response is still awaited or read.
    open: AtomicUsize,
}

/// Counts a stream as open until its response body is dropped.
struct Busy(Arc<Live>);

impl Busy {
    fn new(live: &Arc<Live>) -> Self {
        live.uses.fetch_add(1, Ordering::Relaxed);
        live.open.fetch_add(1, Ordering::AcqRel);
        Self(live.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Mux {
    /// `fallback`: the HTTP/1.1 client for a pool that lets ALPN choose;
    /// None for `protocol: http2`, which speaks HTTP/2 whatever ALPN says.
    pub fn new(
        connector: Connector,
        dial_uri: http::Uri,
        connect_timeout: Duration,
        keepalive: Duration,
        fallback: Option<Box<Client<Connector, UpstreamBody>>>,
    ) -> Self {
        Self {
            connector,
            dial_uri,
            connect_timeout,
            keepalive,
            slot: Arc::new(Mutex::new(Slot::default())),
            http1: Arc::new(Mutex::new(None)),
            fallback,
        }
    }

    /// Sends `req` (its URI absolute) and waits for the final response
    /// head, passing each interim response to `interim` as it comes.
    pub async fn request(
        &self,
        req: Request<UpstreamBody>,
        interim: Option<InterimSink>,
    ) -> Result<Answered, Failure> {
        if let Some(fallback) = &self.fallback
            && (self.speaks_http1() || req.headers().contains_key(http::header::UPGRADE))
        {
            return h1::http1(fallback, req).await.map(Answered::Http1);
        }
        let (mut head, body) = req.into_parts();
        authority_from_host(&mut head);
        strip_connection_fields(&mut head.headers);
        let end_of_stream = body.is_end_stream();
        // A connection found closed when the stream is to be opened carried
        // nothing of this request: one more try, on a fresh connection.
        let mut tries = 0;
        let (conn, busy, mut send) = loop {
            let (conn, busy) = match self.connection().await {
                Picked::Stream(conn, busy) => (conn, busy),
                Picked::Failed(why) => return Err(why.into()),
                Picked::Http1 => match &self.fallback {
                    Some(fallback) => {
                        return h1::http1(fallback, Request::from_parts(head, body))
                            .await
                            .map(Answered::Http1);
                    }
                    None => return Err(Failure::NoHttp2),
                },
            };
            match conn.send.clone().ready().await {
                Ok(send) => break (conn, busy, send),
                Err(e) => {
                    drop(busy);
                    self.forget(&conn);
                    tries += 1;
                    if tries == 2 {
                        return Err(Failure::connect(e));
                    }
                }
            }
        };
        // Refused before a stream was opened (a GOAWAY that came meanwhile):
        // nothing was sent.
        let (response, stream) = send
            .send_request(Request::from_parts(head, ()), end_of_stream)
            .map_err(|e| {
                if e.is_go_away() || e.is_io() {
                    self.forget(&conn);
                    Failure::connect(e)
                } else {
                    Failure::failed(e)
                }
            })?;
        // The upload stops when this request is dropped (a time-out, the
        // client gone) or, later, its response body: h2 resets a stream
        // only once nothing holds it.
        let upload = (!end_of_stream).then(|| Upload(tokio::spawn(send_body(body, stream))));
        match final_response(response, interim).await {
            Ok(response) => {
                let length = content_length(response.headers());
                Ok(Answered::Http2(
                    response.map(|recv| H2Body::new(recv, length, busy, upload)),
                ))
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Whether ALPN picked HTTP/1.1 lately.
    fn speaks_http1(&self) -> bool {
        let mut since = self.http1.lock().unwrap_or_else(|p| p.into_inner());
        match *since {
            Some(when) if when.elapsed() < HTTP1_FOR => true,
            Some(_) => {
                *since = None;
                false
            }
            None => false,
        }
    }

    /// A connection with room for one more stream, the stream counted on
    /// it already: an open one, or one a dial that this call starts or
    /// joins brings. When every open one is at the server's limit of
    /// concurrent streams, another is dialled; should that fail, the least
    /// busy open one takes the stream (h2 holds it until one ends).
    async fn connection(&self) -> Picked {
        // A burst of requests can fill a fresh connection at once: look
        // again after each dial, a few times at most.
        for _ in 0..4 {
            let dialing = {
                let mut slot = lock(&self.slot);
                slot.open
                    .retain(|conn| !conn.live.closed.load(Ordering::Acquire));
                if let Some(conn) = slot.open.iter().find(|conn| conn.has_room()) {
                    return Picked::Stream(conn.clone(), Busy::new(&conn.live));
                }
                match &slot.dialing {
                    Some(dialing) => dialing.clone(),
                    None => {
                        // Dialled on a task of its own, so that it goes on
                        // (and its time-out runs) even when every waiter
                        // has left.
                        let dial = tokio::spawn(self.dial());
                        let dialing = async move {
                            dial.await
                                .unwrap_or_else(|e| Dialed::Failed(DialFailure::Error(Arc::new(e))))
                        }
                        .boxed()
                        .shared();
                        slot.dialing = Some(dialing.clone());
                        dialing
                    }
                }
            };
            let dialed = dialing.clone().await;
            let mut slot = lock(&self.slot);
            if slot
                .dialing
                .as_ref()
                .is_some_and(|current| current.ptr_eq(&dialing))
            {
                slot.dialing = None;
                if let Dialed::Http2(conn) = &dialed {
                    slot.open.push(conn.clone());
                }
            }
            match dialed {
                Dialed::Http2(_) => continue,
                Dialed::Http1 => return Picked::Http1,
                Dialed::Failed(why) => {
                    return least_busy(&slot).unwrap_or(Picked::Failed(why));
                }
            }
        }
        let slot = lock(&self.slot);
        least_busy(&slot).unwrap_or_else(|| {
            let none = std::io::Error::other("no connection stayed open");
            Picked::Failed(DialFailure::Error(Arc::new(none)))
        })
    }

    /// Takes `conn` out of the slot.
    fn forget(&self, conn: &Conn) {
        forget(&self.slot, conn);
    }

    /// Connects, within the connect timeout: TCP, TLS when the scheme
    /// asks, and the HTTP/2 preface.
    fn dial(&self) -> impl Future<Output = Dialed> + Send + 'static {
        let mut connector = self.connector.clone();
        let uri = self.dial_uri.clone();
        let timeout = self.connect_timeout;
        let keepalive = self.keepalive;
        let slot = Arc::downgrade(&self.slot);
        let http1 = self.http1.clone();
        let alpn_decides = self.fallback.is_some();
        async move {
            let connect = async {
                poll_fn(|cx| connector.poll_ready(cx)).await?;
                connector.call(uri).await
            };
            let stream = match tokio::time::timeout(timeout, connect).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Dialed::Failed(DialFailure::Error(Arc::from(e))),
                Err(_) => return Dialed::Failed(DialFailure::TimedOut(timeout)),
            };
            if alpn_decides
                && let MaybeHttpsStream::Https(tls) = &stream
                && tls.ssl().selected_alpn_protocol() != Some(b"h2")
            {
                *http1.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(tokio::time::Instant::now());
                return Dialed::Http1;
            }
            // The socket itself, TLS or not, so that h2's vectored writes
            // reach it (the connector's stream speaks hyper's IO traits).
            let io: Box<dyn Io> = match stream {
                MaybeHttpsStream::Http(tcp) => Box::new(tcp),
                MaybeHttpsStream::Https(tls) => Box::new(tls),
            };
            let handshake = h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_header_list_size(MAX_HEADER_LIST)
                .enable_push(false)
                .initial_max_send_streams(INITIAL_STREAMS)
                .max_send_buffer_size(SEND_BUFFER)
                .handshake::<_, Bytes>(io);
            let (send, mut connection) = match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Dialed::Failed(DialFailure::Error(Arc::new(e))),
                Err(_) => return Dialed::Failed(DialFailure::TimedOut(timeout)),
            };
            let ping = connection.ping_pong();
            let live = Arc::new(Live::default());
            let ended = live.clone();
            let task = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "origin HTTP/2 connection ended");
                }
                ended.closed.store(true, Ordering::Release);
            });
            let conn = Conn { send, live };
            tokio::spawn(watch(
                slot,
                conn.clone(),
                keepalive,
                ping,
                task.abort_handle(),
            ));
            Dialed::Http2(conn)
        }
    }
}

/// A connection's byte stream, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Looks after one connection until it closes: while streams are open it
/// PINGs the server now and then, and ends the connection if no answer
/// comes; once no stream has been open for `keepalive`, it drops the
/// slot's handle, and h2 ends the connection with a GOAWAY.
async fn watch(
    slot: Weak<Mutex<Slot>>,
    conn: Conn,
    keepalive: Duration,
    mut ping: Option<h2::PingPong>,
    task: tokio::task::AbortHandle,
) {
    let tick = (keepalive / 4).clamp(Duration::from_millis(100), PING_EVERY);
    let mut idle_since: Option<(tokio::time::Instant, u64)> = None;
    let mut last_ping = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        if conn.live.closed.load(Ordering::Acquire) {
            break;
        }
        let Some(slot) = slot.upgrade() else { break };
        let uses = conn.live.uses.load(Ordering::Relaxed);
        if conn.live.open.load(Ordering::Acquire) > 0 {
            idle_since = None;
            if let Some(pinger) = &mut ping
                && last_ping.elapsed() >= PING_EVERY
            {
                last_ping = tokio::time::Instant::now();
                let answered = tokio::time::timeout(PING_TIMEOUT, pinger.ping(h2::Ping::opaque()))
                    .await
                    .is_ok_and(|pong| pong.is_ok());
                if !answered {
                    tracing::warn!("an origin connection did not answer a PING; closing it");
                    forget(&slot, &conn);
                    conn.live.closed.store(true, Ordering::Release);
                    task.abort();
                    break;
                }
            }
            continue;
        }
        match idle_since {
            Some((since, seen)) if seen == uses => {
                if since.elapsed() >= keepalive {
                    forget(&slot, &conn);
                    break;
                }
            }
            _ => idle_since = Some((tokio::time::Instant::now(), uses)),
        }
    }
}

fn forget(slot: &Mutex<Slot>, conn: &Conn) {
    lock(slot)
        .open
        .retain(|open| !Arc::ptr_eq(&open.live, &conn.live));
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for the final response head, passing on the interim ones before it.
async fn final_response(
    mut response: ResponseFuture,
    interim: Option<InterimSink>,
) -> Result<Response<RecvStream>, h2::Error> {
    if let Some(interim) = interim {
        while let Some(head) = poll_fn(|cx| response.poll_informational(cx)).await {
            let head = head?;
            interim.send(head.status(), head.headers());
        }
    }
    response.await
}

/// RFC 9113 §8.7: a stream the server refused was not processed, and may
/// be sent again whatever its method; so was one above the last stream a
/// GOAWAY says the server will process (§6.8), the only streams h2 ends
/// with the server's GOAWAY.
fn classify(e: h2::Error) -> Failure {
    let refused = e.reason() == Some(Reason::REFUSED_STREAM) || e.is_go_away();
    if refused && e.is_remote() {
        Failure::Refused(e)
    } else {
        Failure::failed(e)
    }
}

/// Puts the request's Host in its URI, where h2 takes `:authority` from,
/// before Host itself is dropped (RFC 9113 §8.3.1).
fn authority_from_host(head: &mut http::request::Parts) {
    let Some(authority) = head
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .filter(|a| !a.as_str().contains('@'))
    else {
        return;
    };
    let mut parts = std::mem::take(&mut head.uri).into_parts();
    parts.authority = Some(authority);
    if parts.scheme.is_none() {
        parts.scheme = Some(http::uri::Scheme::HTTP);
    }
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    head.uri = http::Uri::from_parts(parts).unwrap_or_default();
}

/// RFC 9113 §8.2.2: fields that belong to one HTTP/1.1 connection are not
/// sent over HTTP/2 (h2 refuses the request if they are there). Host goes
/// too: `:authority` carries it (§8.3.1), and some servers (nginx 1.22)
/// answer 400 to a request with both.
fn strip_connection_fields(headers: &mut http::HeaderMap) {
    for name in [
        http::header::HOST,
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if headers
        .get(http::header::TE)
        .is_some_and(|te| te != "trailers")
    {
        headers.remove(http::header::TE);
    }
}

/// Sends a request body on its stream as the server's window allows, then
/// its trailers or the end of the stream. A body that fails resets the
/// stream, so the origin never takes a cut-off body for a whole one.
async fn send_body(mut body: UpstreamBody, mut stream: SendStream<Bytes>) {
    loop {
        // The server may answer and reset the stream before the body is
        // all sent (RFC 9113 §8.1): stop waiting for the client then.
        let next = tokio::select! {
            frame = body.frame() => frame,
            _ = poll_fn(|cx| stream.poll_reset(cx)) => return,
        };
        let frame = match next {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(_)) => {
                stream.send_reset(Reason::CANCEL);
                return;
            }
            Some(Ok(frame)) => frame,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                    return;
                }
                continue;
            }
        };
        while !data.is_empty() {
            stream.reserve_capacity(data.len());
            let granted = match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(granted)) => granted,
                // The stream was reset or the connection went.
                _ => return,
            };
            if granted == 0 {
                continue;
            }
            let chunk = data.split_to(granted.min(data.len()));
            let last = data.is_empty() && body.is_end_stream();
            if stream.send_data(chunk, last).is_err() {
                return;
            }
            if last {
                return;
            }
        }
    }
}

/// The task sending a request body; stopped when dropped.
struct Upload(tokio::task::JoinHandle<()>);

impl Drop for Upload {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response body read from an HTTP/2 stream; it keeps the stream counted
/// on its connection, and the upload of the request body going, until it
/// is dropped.
pub struct H2Body {
    recv: RecvBody,
    _opened: Busy,
    /// The request body still being sent, if it is.
    _upload: Option<Upload>,
}

impl H2Body {
    /// `length`: the response's Content-Length, if it has one.
    fn new(recv: RecvStream, length: Option<u64>, opened: Busy, upload: Option<Upload>) -> Self {
        Self {
            recv: RecvBody::new(recv, length),
            _opened: opened,
            _upload: upload,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        Pin::new(&mut self.recv).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.recv.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures_util::StreamExt;
    use http_body_util::{Empty, Full};
    use hyper_util::client::legacy::connect::HttpConnector;
    use tokio::sync::mpsc;

    use super::*;
    use crate::origin::resolve::Dial;

    /// An h2c server on loopback that answers every request with its
    /// path, after the request body; it reports each connection it
    /// accepts and each that ends.
    async fn server() -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let events = events.clone();
                let _ = events.send("open");
                tokio::spawn(async move {
                    let mut connection = h2::server::handshake(tcp).await.unwrap();
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        let events = events.clone();
                        tokio::spawn(async move {
                            let (parts, mut body) = request.into_parts();
                            let mut received = match parts.uri.path() {
                                "/authority" => parts.uri.authority().unwrap().to_string(),
                                path => path.to_owned(),
                            }
                            .into_bytes();
                            loop {
                                match body.data().await {
                                    Some(Ok(chunk)) => {
                                        let _ = body.flow_control().release_capacity(chunk.len());
                                        received.extend_from_slice(&chunk);
                                    }
                                    Some(Err(_)) => {
                                        let _ = events.send("reset");
                                        return;
                                    }
                                    None => break,
                                }
                            }
                            let head = Response::builder()
                                .header("content-length", received.len())
                                .body(())
                                .unwrap();
                            let mut send = respond.send_response(head, false).unwrap();
                            send.send_data(Bytes::from(received), true).unwrap();
                        });
                    }
                    let _ = events.send("closed");
                });
            }
        });
        (addr, seen)
    }

    fn mux(addr: SocketAddr, keepalive: Duration) -> Mux {
        let connects = prometheus::IntCounter::new("connects", "connects").unwrap();
        let ssl = boring::ssl::SslConnector::builder(boring::ssl::SslMethod::tls()).unwrap();
        let connector = hyper_boring::HttpsConnector::with_connector(
            Dial::new(HttpConnector::new(), addr, connects),
            ssl,
        )
        .unwrap();
        let uri = format!("http://{addr}/").parse().unwrap();
        Mux::new(connector, uri, Duration::from_secs(5), keepalive, None)
    }

    fn get(addr: SocketAddr, path: &str, body: &'static str) -> Request<UpstreamBody> {
        let body = if body.is_empty() {
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else {
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|never| match never {})
                .boxed_unsync()
        };
        Request::post(format!("http://{addr}{path}"))
            .body(body)
            .unwrap()
    }

    async fn text(answered: Answered) -> (Option<u64>, String) {
        let Answered::Http2(response) = answered else {
            panic!("answered over HTTP/1.1");
        };
        let body = response.into_body();
        let exact = body.size_hint().exact();
        let bytes = body.collect().await.unwrap().to_bytes();
        (exact, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Requests that arrive together share one dial and one connection;
    /// the connection closes after `keepalive` without a stream, and the
    /// next request opens a new one.
    #[tokio::test]
    async fn requests_share_one_connection_which_closes_when_idle() {
        let (addr, mut events) = server().await;
        let mux = mux(addr, Duration::from_millis(200));
        let answers = futures_util::future::join_all(
            (0..8).map(|i| mux.request(get(addr, &format!("/{i}"), "+body"), None)),
        )
        .await;
        for (i, answer) in answers.into_iter().enumerate() {
            let (exact, body) = text(answer.unwrap()).await;
            assert_eq!(body, format!("/{i}+body"));
            assert_eq!(exact, Some(body.len() as u64));
        }
        assert_eq!(events.recv().await, Some("open"));
        let wait = Duration::from_secs(10);
        let closed = tokio::time::timeout(wait, events.recv()).await.unwrap();
        assert_eq!(closed, Some("closed"), "the idle connection closes");
        let (_, body) = text(mux.request(get(addr, "/again", ""), None).await.unwrap()).await;
        assert_eq!(body, "/again");
        assert_eq!(events.recv().await, Some("open"));
        assert!(events.try_recv().is_err());
    }

    /// An h2c server that takes `streams` concurrent streams and holds each
    /// answer to `/hold` until `release` gives a permit; it reports each
    /// connection and each request.
    async fn holding_server(
        streams: u32,
        release: Arc<tokio::sync::Semaphore>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<&'static str>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (events, release) = (events.clone(), release.clone());
                let _ = events.send("open");
                tokio::spawn(async move {
                    let mut connection = h2::server::Builder::new()
                        .max_concurrent_streams(streams)
                        .handshake::<_, Bytes>(tcp)
                        .await
                        .unwrap();
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        let (events, release) = (events.clone(), release.clone());
                        let _ = events.send("request");
                        tokio::spawn(async move {
                            if request.uri().path() == "/hold" {
                                release.acquire().await.unwrap().forget();
                            }
                            let head = Response::builder().body(()).unwrap();
                            let mut send = respond.send_response(head, false).unwrap();
                            send.send_data(Bytes::from_static(b"done"), true).unwrap();
                        });
                    }
                });
            }
        });
        (addr, seen)
    }

    /// When every connection is at the server's limit of concurrent
    /// streams (SETTINGS_MAX_CONCURRENT_STREAMS), another is opened rather
    /// than the request waiting inside h2.
    #[tokio::test]
    async fn a_full_connection_gets_a_second_one_beside_it() {
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let (addr, mut events) = holding_server(2, release.clone()).await;
        let mux = Arc::new(mux(addr, Duration::from_secs(60)));
        // One exchange first, so that the server's SETTINGS are known.
        let (_, body) = text(mux.request(get(addr, "/warm", ""), None).await.unwrap()).await;
        assert_eq!(body, "done");
        assert_eq!(events.recv().await, Some("open"));
        assert_eq!(events.recv().await, Some("request"));
        let held: Vec<_> = (0..4)
            .map(|_| {
                let mux = mux.clone();
                tokio::spawn(async move {
                    let response = mux.request(get(addr, "/hold", ""), None).await;
                    text(response.unwrap()).await.1
                })
            })
            .collect();
        let wait = Duration::from_secs(10);
        let mut seen = Vec::new();
        while seen.iter().filter(|e| **e == "request").count() < 4 {
            seen.push(
                tokio::time::timeout(wait, events.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        assert_eq!(
            seen.iter().filter(|e| **e == "open").count(),
            1,
            "a second connection for the third and fourth streams: {seen:?}"
        );
        release.add_permits(4);
        for answer in held {
            assert_eq!(answer.await.unwrap(), "done");
        }
    }

    /// A request given up while its body is still being sent (a time-out,
    /// the client gone) resets its stream: the server never takes the part
    /// sent for a whole request.
    #[tokio::test]
    async fn a_request_given_up_mid_upload_resets_its_stream() {
        let (addr, mut events) = server().await;
        let mux = mux(addr, Duration::from_secs(60));
        let endless = http_body_util::StreamBody::new(
            futures_util::stream::once(async {
                Ok::<_, crate::body::BoxError>(Frame::data(Bytes::from_static(b"part")))
            })
            .chain(futures_util::stream::pending()),
        )
        .boxed_unsync();
        let req = Request::post(format!("http://{addr}/upload"))
            .body(endless)
            .unwrap();
        let gave_up =
            tokio::time::timeout(Duration::from_millis(300), mux.request(req, None)).await;
        assert!(gave_up.is_err(), "no answer comes while the body is open");
        assert_eq!(events.recv().await, Some("open"));
        let wait = Duration::from_secs(10);
        assert_eq!(
            tokio::time::timeout(wait, events.recv()).await.unwrap(),
            Some("reset")
        );
    }

    /// RFC 9113 §8.3.1: the request's Host becomes `:authority`, and no
    /// Host field goes out besides it.
    #[tokio::test]
    async fn host_travels_as_the_authority() {
        let (addr, _events) = server().await;
        let mux = mux(addr, Duration::from_secs(60));
        let mut req = get(addr, "/authority", "");
        req.headers_mut()
            .insert(http::header::HOST, "site.example:8443".parse().unwrap());
        let (_, body) = text(mux.request(req, None).await.unwrap()).await;
        assert_eq!(body, "site.example:8443");
    }

    /// A server that is not there is a connect failure, which failover may
    /// retry for any request.
    #[tokio::test]
    async fn a_server_that_is_not_there_is_a_connect_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mux = mux(addr, Duration::from_secs(60));
        let Err(failure) = mux.request(get(addr, "/", ""), None).await else {
            panic!("nothing listens there");
        };
        assert!(matches!(failure, Failure::Connect(_)), "{failure:?}");
    }

    /// RFC 9113 §8.2.2: no connection-specific field goes out over HTTP/2;
    /// `TE: trailers` is the one TE value allowed. Host is `:authority`'s
    /// (§8.3.1).
    #[test]
    fn connection_specific_fields_stay_behind() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("host", "example.com"),
            ("accept", "*/*"),
        ] {
            headers.append(name, value.parse().unwrap());
        }
        strip_connection_fields(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["accept"], "*/*");
        headers.insert("te", "trailers".parse().unwrap());
        strip_connection_fields(&mut headers);
        assert_eq!(headers["te"], "trailers");
    }
}
