//! HTTP/2 from clients, served on the h2 crate directly.
//!
//! The connection's task accepts streams, drives the connection and runs
//! the streams beside it (writes flushed once per poll of the task, see
//! [`crate::front::turn`]); each stream hands the request to the proxy, sends
//! the origin's interim responses on the stream as they come (RFC 9113
//! §8.1, `send_informational`), then the final head and the body as the
//! client's window allows. An extended CONNECT (RFC 8441, enabled in the
//! SETTINGS) that the proxy answers with a 2xx turns its stream into the
//! client's side of a tunnel.
//!
//! Limits: streams at once, the header list, windows and the send buffer
//! are SETTINGS and h2 options below; h2 itself ends connections that reset
//! streams faster than they are served (Rapid Reset), make the server reset
//! many (MadeYouReset), or send endless CONTINUATION or empty DATA frames;
//! PING and SETTINGS floods are cut off by [`crate::front::flood`]. A client
//! not heard from for 30 s is PINGed, and one that does not answer within
//! another 30 s is dropped.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{Method, Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::body::{RecvBody, content_length};
use crate::front::drain::{DRAIN_LINGER, Drain};
use crate::front::flood::{Guard, Guarded};
use crate::front::interim::{self, Allowance, Budget, block_size};
use crate::front::turn;
use crate::front::{Live, multiplexed_head};
use crate::proxy::client::{ClientBody, ClientUpgrade, TunnelIo};
use crate::proxy::{ConnInfo, ProxyBody};

/// Streams one connection may have open at once.
const MAX_STREAMS: u32 = 128;
/// Largest decoded header list (431 above it; GOAWAY far above it).
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Flow-control windows: what a client may send before we read.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;
/// Response bytes buffered per stream before back-pressure.
const SEND_BUFFER: usize = 256 * 1024;
/// A body's last piece up to this size is handed to h2 without first
/// claiming room in the window: one DATA frame.
const DIRECT_SEND: usize = 16 * 1024;
/// Streams reset by the client before they were served, at once.
const MAX_PENDING_RESETS: usize = 20;
/// Streams the server reset because of the client's errors.
const MAX_LOCAL_RESETS: Option<usize> = Some(256);
/// A client not heard from this long is PINGed, and dropped when the PING
/// goes unanswered as long.
const PING_INTERVAL: Duration = Duration::from_secs(30);

/// Serves one HTTP/2 connection until it ends. `read`: bytes already taken
/// off the connection (the sniffed preface); the preface must be complete
/// by `preface_by`.
pub(crate) async fn serve<T>(
    io: T,
    read: bytes::BytesMut,
    preface_by: Instant,
    conn: ConnInfo,
    live: Live,
    mut drain: Drain,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (io, guard) = Guarded::new(io, read);
    let (io, turns) = turn::held(io);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(SEND_BUFFER)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_RESETS)
        // RFC 8441: WebSocket over HTTP/2 streams.
        .enable_connect_protocol();
    let mut connection = match tokio::time::timeout_at(preface_by, builder.handshake(io)).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("no HTTP/2 preface in time; closing");
            return;
        }
    };
    let dead = keep_alive(connection.ping_pong(), guard.clone());
    let budget = Budget::default();
    // The drain: started, then (after the linger) GOAWAY sent.
    let (mut draining, mut finishing) = (false, false);
    let mut calmed = false;
    let mut linger = pin!(tokio::time::sleep(Duration::ZERO));
    let mut flooded = pin!(guard.flooded());
    let mut dead = pin!(dead);
    // Made once: a fresh wait on the drain signal at every turn of the
    // loop below (one per request) registers and drops a waiter each time.
    let mut stopped = pin!(drain.stopped());
    // The connection's streams run here, in its own task, as nginx keeps a
    // connection in one worker: no task to spawn (and copy) per request,
    // no wake-up handed to another thread; the connection itself is
    // polled between them.
    let mut streams = FuturesUnordered::new();
    // Polled in turns: the answers written during one poll of this task
    // leave together when it ends.
    turns
        .run(async {
            loop {
                tokio::select! {
                    // In this order: the answers that are ready are all
                    // queued before the connection is polled, which writes
                    // them; the turn's end sends them in one write.
                    biased;
                    () = &mut flooded, if !calmed => {
                        calmed = true;
                        connection.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                    }
                    () = &mut dead => {
                        tracing::debug!("an HTTP/2 client stopped answering PINGs; closing");
                        break;
                    }
                    _ = &mut stopped, if !draining => {
                        draining = true;
                        linger.as_mut().reset(Instant::now() + DRAIN_LINGER);
                    }
                    () = &mut linger, if draining && !finishing => {
                        // GOAWAY (RFC 9113 §6.8): streams open go on, new ones are
                        // refused, and the connection ends with the last.
                        finishing = true;
                        connection.graceful_shutdown();
                    }
                    Some(()) = streams.next(), if !streams.is_empty() => {}
                    accepted = connection.accept() => match accepted {
                        Some(Ok((request, respond))) => {
                            // Boxed: the set moves what it is given into a
                            // task of its own, and a stream's future is
                            // kilobytes.
                            let answer = stream(live.proxy(), conn, request, respond, &budget);
                            streams.push(Box::pin(answer));
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                            break;
                        }
                        None => break,
                    },
                }
            }
        })
        .await;
}

/// Resolves when the client stops answering keep-alive PINGs.
async fn keep_alive(ping_pong: Option<h2::PingPong>, guard: Guard) {
    let Some(mut ping_pong) = ping_pong else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        if guard.heard() {
            continue;
        }
        match tokio::time::timeout(PING_INTERVAL, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// One request on its stream: the proxy's answer, with the origin's
/// interim responses before it.
async fn stream(
    proxy: Arc<crate::proxy::Proxy>,
    conn: ConnInfo,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    budget: &Budget,
) {
    let (mut parts, recv) = request.into_parts();
    let length = content_length(&parts.headers);
    let (tunnel, body) = if parts.method == Method::CONNECT {
        // The stream itself becomes the tunnel: a CONNECT has no body.
        if length.is_some_and(|n| n != 0) {
            respond.send_reset(Reason::PROTOCOL_ERROR);
            return;
        }
        let (give, take) = oneshot::channel::<Box<dyn TunnelIo>>();
        parts.extensions.insert(ClientUpgrade::new(async move {
            take.await
                .map_err(|_| io::Error::other("the stream was not opened as a tunnel"))
        }));
        (Some((give, recv)), ClientBody::Empty)
    } else {
        (None, ClientBody::Http2(RecvBody::new(recv, length)))
    };
    let (sink, mut interim) = interim::channel();
    let mut allowance = Allowance::new(budget);
    let mut handling = pin!(proxy.handle(conn, Request::from_parts(parts, body), Some(sink)));
    let answered = poll_fn(|cx| {
        if let Poll::Ready(answered) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(answered));
        }
        while let Poll::Ready((status, headers)) = interim.poll_recv(cx) {
            if allowance.admit(block_size(&headers)) {
                let mut head = Response::new(());
                *head.status_mut() = status;
                *head.headers_mut() = headers;
                if let Err(e) = respond.send_informational(head) {
                    tracing::debug!(error = %e, "an interim response was not sent");
                }
            }
        }
        // The client reset the stream: the request is given up.
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    // Nothing more may precede the final answer.
    drop(interim);
    drop(allowance);
    let Some(Ok(response)) = answered else {
        return;
    };
    let (mut head, body) = response.into_parts();
    multiplexed_head(&mut head.headers, &body);
    if let Some(alt_svc) = conn.alt_svc {
        head.headers.insert(http::header::ALT_SVC, alt_svc.clone());
    }
    if let Some((give, recv)) = tunnel
        && head.status.is_success()
    {
        // RFC 8441 §5: the stream is the tunnel from here on.
        head.headers.remove(http::header::CONTENT_LENGTH);
        match respond.send_response(Response::from_parts(head, ()), false) {
            Ok(send) => {
                let _ = give.send(Box::new(H2Tunnel::new(send, recv)));
            }
            Err(e) => tracing::debug!(error = %e, "a tunnel's answer was not sent"),
        }
        return;
    }
    if body.is_end_stream() {
        if let Err(e) = respond.send_response(Response::from_parts(head, ()), true) {
            tracing::debug!(error = %e, "an answer was not sent");
        }
        return;
    }
    match respond.send_response(Response::from_parts(head, ()), false) {
        Ok(send) => pipe(body, send).await,
        Err(e) => tracing::debug!(error = %e, "an answer was not sent"),
    }
}

/// Sends a response body on its stream as the client's window allows, then
/// its trailers or the end of the stream. A body that fails resets the
/// stream, so the client never takes a cut-off body for a whole one; a
/// client that resets the stream stops the body.
async fn pipe(body: ProxyBody, send: SendStream<Bytes>) {
    let mut pipe = Pipe {
        body,
        send,
        waiting: None,
    };
    if let Err(e) = poll_fn(|cx| pipe.poll(cx)).await {
        tracing::debug!(error = %e, "a response body was not sent whole");
    }
}

struct Pipe {
    body: ProxyBody,
    send: SendStream<Bytes>,
    /// Data taken from the body, waiting for the window; and whether it ends it.
    waiting: Option<(Bytes, bool)>,
}

impl Pipe {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
        loop {
            if let Poll::Ready(reason) = self.send.poll_reset(cx)? {
                return Poll::Ready(Err(reason.into()));
            }
            if let Some((_, end)) = &self.waiting {
                let end = *end;
                // Some room in the window, then all of it goes: h2 holds
                // what the window cannot take yet (SEND_BUFFER at most).
                while self.send.capacity() == 0 {
                    match ready!(self.send.poll_capacity(cx)) {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Poll::Ready(Err(e)),
                        None => return Poll::Ready(Err(Reason::CANCEL.into())),
                    }
                }
                if let Some((data, _)) = self.waiting.take() {
                    self.send.send_data(data, end)?;
                }
                if end {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => {
                    self.send.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "a response body failed; resetting its stream");
                    self.send.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = self.body.is_end_stream();
                        // A body's last piece, when small (a cached 1 KiB
                        // answer is one), goes to h2 at once, which sends
                        // it as the window allows: it holds these bytes,
                        // not a copy, and nothing more is read after them,
                        // so the wait for a claim on the window is saved.
                        if data.is_empty() || (end && data.len() <= DIRECT_SEND) {
                            self.send.send_data(data, end)?;
                            if end {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        // A claim on the window, not the whole chunk: a
                        // large claim per stream would starve the others.
                        self.send.reserve_capacity(1);
                        self.waiting = Some((data, end));
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.send.reserve_capacity(0);
                            self.send.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
            }
        }
    }
}

/// An HTTP/2 stream as the client's side of a tunnel (RFC 8441): DATA
/// frames both ways, the end of the stream as the end of the bytes.
struct H2Tunnel {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Data received and not yet read.
    unread: Bytes,
}

impl H2Tunnel {
    fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        Self {
            send,
            recv,
            unread: Bytes::new(),
        }
    }
}

fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        e.into_io()
            .unwrap_or_else(|| io::Error::other("h2 I/O error"))
    } else {
        io::Error::other(e)
    }
}

impl AsyncRead for H2Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unread.is_empty() {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    this.unread = data;
                }
                // The client ended its side, or reset the stream as done.
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread[..n]);
        this.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.send.reserve_capacity(data.len());
        loop {
            if let Poll::Ready(reason) = this.send.poll_reset(cx).map_err(io_error)? {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("the client reset the tunnel: {reason:?}"),
                )));
            }
            let room = this.send.capacity();
            if room > 0 {
                let n = room.min(data.len());
                this.send
                    .send_data(Bytes::copy_from_slice(&data[..n]), false)
                    .map_err(io_error)?;
                return Poll::Ready(Ok(n));
            }
            match ready!(this.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The end of our side: an empty DATA frame with END_STREAM.
        let _ = self.send.send_data(Bytes::new(), true);
        Poll::Ready(Ok(()))
    }
}
