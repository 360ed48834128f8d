//! HTTP/3 from clients (RFC 9114) over QUIC (RFC 9000), on tokio-quiche and
//! the same BoringSSL as the TCP listeners.
//!
//! A TLS listener with `quic` binds UDP on its port too. tokio-quiche runs
//! QUIC: one task reads the socket and routes datagrams to connections
//! (answering Retry and version negotiation itself), and each connection's
//! I/O runs in a task of its own that drives quiche's HTTP/3 framing. Here
//! each connection has one more task, which takes the requests it
//! announces, checks their heads (RFC 9114 §4.3.1), hands them to the
//! proxy current when they arrive, and sends the answers back as the
//! client's flow control allows. The connection's requests run inside that
//! task, as the HTTP/2 server runs a connection's streams.
//!
//! Certificates are chosen by SNI at each handshake from the listener's
//! acceptor current then, so a reload reaches new connections. Limits come
//! from the listener's `quic` settings: requests at once, the idle timeout,
//! the header section, flow-control windows. Retry (address validation)
//! is on unless the config turns it off; QPACK's dynamic table is off
//! (quiche keeps none), so a client cannot make us hold its fields; a peer
//! past a limit gets a connection error from quiche, and one that cancels
//! requests in flight faster than [`Cancels`] allows gets one from us.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use boring::ssl::{NameType, SniError, SslContextBuilder, SslMethod, SslRef};
use bytes::Bytes;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use outpost_config::Quic;
use quiche::h3::{Header, NameValue};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_quiche::http3::driver::{
    H3Event, InboundFrame, InboundFrameStream, IncomingH3Headers, OutboundFrame,
    OutboundFrameSender, ServerH3Event,
};
use tokio_quiche::http3::settings::Http3Settings;
use tokio_quiche::metrics::DefaultMetrics;
use tokio_quiche::quic::{
    ConnectionHook, ConnectionShutdownBehaviour, QuicCommand, QuicheConnection,
};
use tokio_quiche::settings::{CertificateKind, Hooks, QuicSettings, TlsCertificatePaths};
use tokio_quiche::{ConnectionParams, ServerH3Controller, ServerH3Driver};

use crate::front::drain::{DRAIN_LINGER, Drain, Stop};
use crate::front::interim::{self, Allowance, Budget, block_size};
use crate::front::metrics::FrontMetrics;
use crate::front::{Live, multiplexed_head};
use crate::proxy::client::ClientBody;
use crate::proxy::{ConnInfo, ProxyBody};

/// Longest a client may take from its first packet to a finished
/// handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may stay without a request after its handshake.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a drained connection's close may take before it is let go.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The application's "no error" and "excessive load" (RFC 9114 §8.1).
const H3_NO_ERROR: u64 = 0x100;
const H3_EXCESSIVE_LOAD: u64 = 0x107;

/// Starts HTTP/3 on `socket` (bound to the port of the TCP listener at
/// `index` in the config) and accepts connections until the drain stops
/// it.
///
/// QUIC connections count against `limits.max_connections` with the TCP
/// ones (`slots`): past it, a new connection is dropped before its
/// handshake.
pub(crate) fn spawn_quic_listener(
    socket: std::net::UdpSocket,
    index: usize,
    settings: &Quic,
    live: Live,
    metrics: Arc<FrontMetrics>,
    slots: Arc<Semaphore>,
    drain: Drain,
) -> std::io::Result<()> {
    let hooks = Hooks {
        connection_hook: Some(Arc::new(CertBySni {
            live: live.clone(),
            index,
        })),
    };
    // The hook builds the TLS context, so these paths are never opened;
    // tokio-quiche asks for the hook only when it is given some.
    let unused = TlsCertificatePaths {
        cert: "",
        private_key: "",
        kind: CertificateKind::X509,
    };
    let params = ConnectionParams::new_server(quic_settings(settings), unused, hooks);
    let Some(mut accepted) = tokio_quiche::listen([socket], params, DefaultMetrics)?.pop() else {
        return Err(std::io::Error::other("no QUIC listener"));
    };
    let h3 = h3_settings(settings);
    let timeouts = Timeouts {
        body: settings.body_timeout.get(),
        unused: settings.idle_timeout.get(),
    };
    tokio::spawn(async move {
        let mut stop = drain.clone();
        let why = loop {
            let next = tokio::select! {
                next = accepted.next() => next,
                why = stop.stopped() => break why,
            };
            let initial = match next {
                Some(Ok(initial)) => initial,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "a QUIC connection was not accepted");
                    continue;
                }
                None => break Stop::ShuttingDown,
            };
            let remote = initial.peer_addr();
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics.refused.inc();
                tracing::debug!(%remote, "at limits.max_connections: dropping a new QUIC connection");
                drop(initial);
                continue;
            };
            let (driver, controller) = ServerH3Driver::new(h3.clone());
            let quic = initial.start(driver);
            let open = drain.open();
            let (live, metrics, drain) = (live.clone(), metrics.clone(), drain.clone());
            tokio::spawn(async move {
                metrics.connections.inc();
                let at = (index, live, metrics.clone());
                serve(controller, remote, at, timeouts, drain).await;
                metrics.connections.dec();
                drop(quic);
                drop((slot, open));
            });
        };
        // Dropping the stream of new connections makes tokio-quiche ignore
        // new ones; those open go on until they end, and the socket closes
        // with the last.
        drop(accepted);
        tracing::debug!(?why, "QUIC listener stopped accepting");
    });
    Ok(())
}

/// QUIC transport parameters from the listener's settings.
fn quic_settings(config: &Quic) -> QuicSettings {
    let mut settings = QuicSettings::default();
    settings.alpn = vec![b"h3".to_vec()];
    settings.max_idle_timeout = Some(config.idle_timeout.get());
    settings.handshake_timeout = Some(HANDSHAKE_TIMEOUT);
    settings.initial_max_streams_bidi = config.max_streams;
    // The client's control and QPACK streams (RFC 9114 §6.2), and room
    // for the reserved ones clients open to exercise extension points.
    settings.initial_max_streams_uni = 16;
    let stream = config.stream_window.bytes();
    let connection = config.connection_window.bytes();
    settings.initial_max_data = connection;
    settings.initial_max_stream_data_bidi_remote = stream;
    settings.initial_max_stream_data_bidi_local = stream;
    settings.initial_max_stream_data_uni = stream.min(64 * 1024);
    // Windows grow with a fast reader only up to what the config allows.
    settings.max_connection_window = connection;
    settings.max_stream_window = stream;
    settings.disable_client_ip_validation = !config.retry;
    settings.max_amplification_factor = usize::from(config.amplification_factor);
    settings.enable_dgram = false;
    settings.enable_early_data = config.early_data;
    settings
}

fn h3_settings(config: &Quic) -> Http3Settings {
    let mut settings = Http3Settings::default();
    settings.max_header_list_size = Some(config.max_header_list.bytes());
    // No dynamic table: a client cannot make us keep fields for it.
    settings.qpack_max_table_capacity = Some(0);
    settings.qpack_blocked_streams = Some(0);
    settings.post_accept_timeout = Some(FIRST_REQUEST_TIMEOUT);
    settings
}

/// Chooses each QUIC handshake's certificate by SNI, from the listener's
/// certificates current at that moment.
///
/// The certificate is set on the connection, not by switching it to
/// another context as the TCP listeners do: BoringSSL would then take ALPN
/// from that context, which knows nothing of `h3`.
struct CertBySni {
    live: Live,
    index: usize,
}

impl ConnectionHook for CertBySni {
    fn create_custom_ssl_context_builder(
        &self,
        _: TlsCertificatePaths<'_>,
    ) -> Option<SslContextBuilder> {
        let mut builder = match SslContextBuilder::new(SslMethod::tls()) {
            Ok(builder) => builder,
            Err(e) => {
                tracing::error!(error = %e, "a TLS context for QUIC");
                return None;
            }
        };
        let (live, index) = (self.live.clone(), self.index);
        // BoringSSL calls this with or without SNI.
        builder.set_servername_callback(move |ssl, _alert| {
            let Some(tls) = live.acceptor(index) else {
                return Err(SniError::ALERT_FATAL);
            };
            let name = ssl.servername(NameType::HOST_NAME).map(str::to_owned);
            let chosen = tls.names.find(name.as_deref()).unwrap_or(0);
            let Some(pair) = tls.pairs.get(chosen).or(tls.pairs.first()) else {
                return Err(SniError::ALERT_FATAL);
            };
            use_pair(ssl, pair).map_err(|_| SniError::ALERT_FATAL)
        });
        Some(builder)
    }
}

fn use_pair(
    ssl: &mut SslRef,
    pair: &crate::front::tls::CertPair,
) -> Result<(), boring::error::ErrorStack> {
    ssl.set_certificate(&pair.leaf)?;
    for cert in &pair.chain {
        ssl.add_chain_cert(cert)?;
    }
    ssl.set_private_key(&pair.key)
}

/// One connection: its requests until it ends, or, once the drain starts,
/// a GOAWAY and the requests it already has.
async fn serve(
    mut controller: ServerH3Controller,
    remote: SocketAddr,
    at: (usize, Live, Arc<FrontMetrics>),
    timeouts: Timeouts,
    mut drain: Drain,
) {
    let (index, live, metrics) = at;
    let mut events = controller.take_event_receiver();
    // The connection's worker runs this once the handshake is done (or
    // 0-RTT data came); it is dropped unrun when the handshake fails.
    let (named, name) = tokio::sync::oneshot::channel();
    let _ = controller.cmd_sender().send(QuicCommand::Custom(Box::new(
        move |quic: &mut QuicheConnection| {
            let _ = named.send((quic.server_name().map(str::to_owned), quic.is_resumed()));
        },
    )));
    let handshakes = |result: &str| metrics.handshakes.with_label_values(&[result]).inc();
    let sni = tokio::select! {
        named = name => match named {
            Ok((sni, resumed)) => {
                handshakes("ok");
                if resumed {
                    metrics.resumed.inc();
                }
                sni
            }
            Err(_) => {
                tracing::debug!(%remote, "QUIC handshake failed");
                handshakes("failed");
                return;
            }
        },
        _ = drain.stopped() => return,
    };
    // Without SNI the client named no host to check the certificate
    // against; requests are routed by :authority alone.
    let certificate = sni
        .as_deref()
        .and_then(|sni| live.acceptor(index).map(|tls| tls.names.choose(Some(sni))));
    let budget = Budget::default();
    let stall = Stall {
        timeout: timeouts.body,
        seen: Arc::new(Notify::new()),
    };
    let mut cancels = Cancels::new();
    let mut requests = FuturesUnordered::new();
    let mut aborts: HashMap<u64, AbortHandle> = HashMap::new();
    // While draining: once no request is left, the client has a moment to
    // close the connection itself (and the last answers to leave); then
    // the connection is closed, and this task (which holds the drain
    // open) ends with it, so the process never exits with an answer still
    // in the connection's buffers.
    let mut draining = false;
    let mut closing = false;
    let mut quiet: Option<Instant> = None;
    // A connection without a request for a whole period of this clock is
    // closed, whatever keeps its packets coming (PINGs, or a request head
    // that never ends): between one and two idle timeouts after its last
    // request, with no clock read or timer reset per request.
    let unused = tokio::time::sleep(timeouts.unused);
    tokio::pin!(unused);
    let mut asked = false;
    // Made once, not at every turn of the loop (one or more per request).
    let stopped = drain.stopped();
    tokio::pin!(stopped);
    loop {
        let until = quiet;
        let event = tokio::select! {
            event = events.recv() => event,
            Some(done) = requests.next(), if !requests.is_empty() => {
                // An aborted one left the map when it was reset.
                if let Ok(stream_id) = done {
                    aborts.remove(&stream_id);
                }
                if draining && requests.is_empty() && !closing {
                    quiet = Some(Instant::now() + DRAIN_LINGER);
                }
                continue;
            }
            _ = &mut stopped, if !draining => {
                draining = true;
                // RFC 9114 §5.2: requests already here are answered, the
                // client opens new ones on another connection. Sent once:
                // tokio-quiche fails the connection on a second.
                controller.send_goaway();
                if requests.is_empty() {
                    quiet = Some(Instant::now() + DRAIN_LINGER);
                }
                continue;
            }
            () = &mut unused, if requests.is_empty() && !draining => {
                if std::mem::take(&mut asked) {
                    unused.as_mut().reset(crate::front::later(Instant::now(), timeouts.unused));
                    continue;
                }
                tracing::debug!(%remote, "an HTTP/3 connection had no request for its idle timeout; closing");
                close(&controller, H3_NO_ERROR, b"idle");
                break;
            }
            () = stall.seen.notified() => {
                // The client holds a request open with a body that does not
                // come, or floods it with frames that carry no bytes (which
                // quiche does not pass on): either way, work for nothing.
                tracing::debug!(%remote, "an HTTP/3 request body stalled; closing");
                close(&controller, H3_EXCESSIVE_LOAD, b"request body stalled");
                break;
            }
            () = wait_until(until), if requests.is_empty() => {
                if closing {
                    // The connection did not end in time; let it go.
                    break;
                }
                closing = true;
                close(&controller, H3_NO_ERROR, b"");
                quiet = Some(Instant::now() + CLOSE_WAIT);
                continue;
            }
        };
        match event {
            None => break,
            Some(ServerH3Event::Headers {
                incoming_headers,
                is_in_early_data,
                ..
            }) => {
                let conn = ConnInfo {
                    remote,
                    tls: true,
                    tls_version: Some("TLSv1.3"),
                    listener: index,
                    certificate,
                    alt_svc: None,
                };
                let stream_id = incoming_headers.stream_id;
                asked = true;
                let (abort, registration) = AbortHandle::new_pair();
                aborts.insert(stream_id, abort);
                let early = *is_in_early_data;
                let request = request(
                    live.proxy(),
                    conn,
                    incoming_headers,
                    early,
                    budget.clone(),
                    stall.clone(),
                );
                requests.push(Abortable::new(
                    Box::pin(async move {
                        request.await;
                        stream_id
                    }) as Pin<Box<dyn Future<Output = u64> + Send>>,
                    registration,
                ));
            }
            Some(ServerH3Event::Core(event)) => match event {
                H3Event::ResetStream { stream_id } => {
                    // The client gave the request up.
                    if let Some(abort) = aborts.remove(&stream_id) {
                        abort.abort();
                        if !cancels.take() {
                            // Requests opened only to be cancelled (a rapid
                            // reset flood) cost work each: the connection
                            // ends instead (RFC 9114 §10.5).
                            tracing::debug!(%remote, "an HTTP/3 client cancels too many requests; closing");
                            close(
                                &controller,
                                H3_EXCESSIVE_LOAD,
                                b"too many cancelled requests",
                            );
                            break;
                        }
                    }
                }
                H3Event::ConnectionError(e) => {
                    tracing::debug!(%remote, error = ?e, "an HTTP/3 connection failed");
                    break;
                }
                H3Event::ConnectionShutdown(e) => {
                    tracing::debug!(%remote, error = ?e, "an HTTP/3 connection ended");
                    break;
                }
                _ => {}
            },
        }
    }
    // Without its event receiver, the connection closes (H3_NO_ERROR) once
    // the streams it has are done.
}

/// Closes the connection with an application error `code` (RFC 9114 §8.1).
fn close(controller: &ServerH3Controller, code: u64, reason: &[u8]) {
    let _ =
        controller
            .cmd_sender()
            .send(QuicCommand::ConnectionClose(ConnectionShutdownBehaviour {
                send_application_close: true,
                error_code: code,
                reason: reason.to_vec(),
            }));
}

/// How many requests in flight a client may cancel: a burst, refilled at
/// a steady rate (browsers cancel what a navigation made useless; a flood
/// of requests opened only to be reset is an attack on the origin).
struct Cancels {
    left: f64,
    at: Instant,
}

impl Cancels {
    const BURST: f64 = 100.0;
    const PER_SECOND: f64 = 20.0;

    fn new() -> Self {
        Self {
            left: Self::BURST,
            at: Instant::now(),
        }
    }

    /// Takes one cancel; false past the bound.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * Self::PER_SECOND;
        self.left = (self.left + refill).min(Self::BURST);
        self.at = now;
        if self.left < 1.0 {
            return false;
        }
        self.left -= 1.0;
        true
    }
}

/// Resolves at `at`; never without it.
async fn wait_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One request on its stream: checked, handed to the proxy, answered.
/// `early`: it came in 0-RTT data, which an attacker may replay.
async fn request(
    proxy: Arc<crate::proxy::Proxy>,
    conn: ConnInfo,
    incoming: IncomingH3Headers,
    early: bool,
    budget: Budget,
    stall: Stall,
) {
    let IncomingH3Headers {
        headers,
        mut send,
        recv,
        read_fin,
        ..
    } = incoming;
    let mut parts = match head(&headers) {
        Ok(parts) => parts,
        Err(why) => {
            tracing::debug!(remote = %conn.remote, why, "a malformed HTTP/3 request");
            // RFC 9114 §4.1.2: a stream error of type H3_MESSAGE_ERROR.
            let _ = send.send(OutboundFrame::PeerStreamError).await;
            return;
        }
    };
    if early {
        if !parts.method.is_safe() {
            // RFC 8470 §5.2: the client sends it again after the handshake.
            respond(&mut send, plain(http::StatusCode::TOO_EARLY)).await;
            return;
        }
        // RFC 8470 §5.1: whoever answers knows the request may be a replay
        // (and may answer 425 itself).
        parts
            .headers
            .insert("early-data", HeaderValue::from_static("1"));
    }
    if parts.method == Method::CONNECT {
        // Tunnels over HTTP/3 (RFC 9220) are not served.
        respond(&mut send, plain(http::StatusCode::NOT_IMPLEMENTED)).await;
        return;
    }
    let length = crate::body::content_length(&parts.headers);
    let body = if read_fin {
        if length.is_some_and(|n| n > 0) {
            let _ = send.send(OutboundFrame::PeerStreamError).await;
            return;
        }
        ClientBody::Empty
    } else {
        ClientBody::Http3(H3Body::new(recv, length, stall))
    };
    // The origin's interim answers (103 Early Hints) go out on the stream
    // as they come, before the final one (RFC 9114 §4.1).
    let (sink, mut interim) = interim::channel();
    let mut allowance = Allowance::new(&budget);
    let mut handling =
        std::pin::pin!(proxy.handle(conn, Request::from_parts(parts, body), Some(sink)));
    let mut head = |status: http::StatusCode, headers: HeaderMap| {
        allowance
            .admit(block_size(&headers))
            .then(|| OutboundFrame::Headers(fields(Some(status), &headers), None))
    };
    let answered = loop {
        tokio::select! {
            answered = &mut handling => break answered,
            (status, headers) = interim.recv() => {
                if let Some(frame) = head(status, headers)
                    && send.send(frame).await.is_err()
                {
                    return;
                }
            }
        }
    };
    // Those that came before the final answer go before it; nothing more
    // may.
    while let Some((status, headers)) = interim.try_recv() {
        if let Some(frame) = head(status, headers)
            && send.send(frame).await.is_err()
        {
            return;
        }
    }
    drop(interim);
    // Its share of the connection's budget goes back now.
    drop(allowance);
    let Ok(response) = answered;
    respond(&mut send, response).await;
}

fn plain(status: http::StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(crate::proxy::respond::full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A request's head from its field section, or why it is malformed
/// (RFC 9114 §4.3.1, §4.2).
fn head(fields: &[Header]) -> Result<http::request::Parts, &'static str> {
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut regular = false;
    for field in fields {
        let (name, value) = (field.name(), field.value());
        if let Some(pseudo) = name.strip_prefix(b":") {
            if regular {
                return Err("a pseudo-header after a regular field");
            }
            let slot = match pseudo {
                b"method" => &mut method,
                b"scheme" => &mut scheme,
                b"authority" => &mut authority,
                b"path" => &mut path,
                _ => return Err("an unknown pseudo-header"),
            };
            if slot.replace(value).is_some() {
                return Err("a pseudo-header twice");
            }
            continue;
        }
        regular = true;
        if name.iter().any(u8::is_ascii_uppercase) {
            return Err("an uppercase field name");
        }
        let name = HeaderName::from_bytes(name).map_err(|_| "an invalid field name")?;
        if is_connection_specific(&name, value) {
            return Err("a connection-specific field");
        }
        if name == http::header::COOKIE {
            // RFC 9114 §4.2.1: crumbs are joined before the request goes
            // on over another version of HTTP.
            cookies.push(value);
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| "an invalid field value")?;
        headers.append(name, value);
    }
    if !cookies.is_empty() {
        let joined = cookies.join(&b"; "[..]);
        let value = HeaderValue::from_bytes(&joined).map_err(|_| "an invalid cookie")?;
        headers.insert(http::header::COOKIE, value);
    }
    let method = Method::from_bytes(method.ok_or("no :method")?).map_err(|_| "a bad :method")?;
    let mut uri = Uri::builder();
    if method == Method::CONNECT {
        if scheme.is_some() || path.is_some() {
            return Err(":scheme or :path on a CONNECT");
        }
        uri = uri.authority(authority.ok_or("no :authority on a CONNECT")?);
    } else {
        let scheme = scheme.ok_or("no :scheme")?;
        let path = path.ok_or("no :path")?;
        if path.is_empty() {
            return Err("an empty :path");
        }
        if scheme != b"https" && scheme != b"http" {
            return Err("a :scheme other than http or https");
        }
        // RFC 9114 §4.3.1: :authority or Host, and the same if both.
        let host = headers.get(http::header::HOST).map(HeaderValue::as_bytes);
        let authority = match (authority, host) {
            (Some(a), Some(h)) if a != h => return Err(":authority and Host differ"),
            (Some(a), _) => a,
            (None, Some(h)) => h,
            (None, None) => return Err("no :authority or Host"),
        };
        if authority.is_empty() {
            return Err("an empty :authority");
        }
        uri = uri.scheme(scheme).authority(authority).path_and_query(path);
    }
    let uri = uri.build().map_err(|_| "a bad :authority or :path")?;
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_3;
    *request.headers_mut() = headers;
    Ok(request.into_parts().0)
}

/// Fields that belong to one connection of HTTP/1.1 and are malformed in
/// HTTP/3 (RFC 9114 §4.2); `TE` only with the value `trailers`.
fn is_connection_specific(name: &HeaderName, value: &[u8]) -> bool {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    if name == TE {
        return !value.eq_ignore_ascii_case(b"trailers");
    }
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// A field section for quiche: `:status` first when there is one (a head,
/// not trailers), then `headers`.
fn fields(status: Option<http::StatusCode>, headers: &HeaderMap) -> Vec<Header> {
    let mut fields = Vec::with_capacity(headers.len() + 1);
    if let Some(status) = status {
        fields.push(Header::new(b":status", status.as_str().as_bytes()));
    }
    fields.extend(
        headers
            .iter()
            .map(|(n, v)| Header::new(n.as_str().as_bytes(), v.as_bytes())),
    );
    fields
}

/// Sends an answer on its stream: the head, the body as the client's flow
/// control takes it, then trailers or the end of the stream. A body that
/// fails resets the stream (the sender is dropped without a FIN), so the
/// client never takes a cut-off body for a whole one.
async fn respond(send: &mut OutboundFrameSender, response: Response<ProxyBody>) {
    let (mut head, mut body) = response.into_parts();
    multiplexed_head(&mut head.headers, &body);
    let ends = body.is_end_stream();
    if send
        .send(OutboundFrame::Headers(
            fields(Some(head.status), &head.headers),
            None,
        ))
        .await
        .is_err()
    {
        return;
    }
    if ends {
        let _ = send.send(OutboundFrame::Body(Bytes::new(), true)).await;
        return;
    }
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let sent = match frame {
            None => send.send(OutboundFrame::Body(Bytes::new(), true)).await,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "a response body failed; resetting its stream");
                let _ = send.send(OutboundFrame::PeerStreamError).await;
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    if data.is_empty() && !end {
                        continue;
                    }
                    let sent = send.send(OutboundFrame::Body(data, end)).await;
                    if sent.is_ok() && !end {
                        continue;
                    }
                    sent
                }
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => {
                        send.send(OutboundFrame::Trailers(fields(None, &trailers), None))
                            .await
                    }
                    Err(_) => continue,
                },
            },
        };
        if sent.is_err() {
            tracing::debug!("an HTTP/3 client went away during a response");
        }
        return;
    }
}

/// A request body as it arrives on its stream, held to its Content-Length
/// (RFC 9114 §4.1.2: a body longer or shorter is malformed).
pub(crate) struct H3Body {
    recv: InboundFrameStream,
    /// What Content-Length promised and has not come yet.
    remaining: Option<u64>,
    done: bool,
    stall: Stall,
    /// Running while the body is read and nothing comes.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl H3Body {
    fn new(recv: InboundFrameStream, length: Option<u64>, stall: Stall) -> Self {
        Self {
            recv,
            remaining: length,
            done: false,
            stall,
            waiting: None,
        }
    }
}

/// A connection's clocks from the listener's `quic` settings.
#[derive(Clone, Copy)]
struct Timeouts {
    /// A request body bringing nothing (`body_timeout`).
    body: Duration,
    /// No request at all (`idle_timeout`).
    unused: Duration,
}

/// How long a request body may bring nothing while it is read, and whom
/// to tell when one does.
///
/// The clock runs only while the proxy waits for the client's next bytes,
/// never while an origin is slow to take them.
#[derive(Clone)]
pub(crate) struct Stall {
    timeout: Duration,
    seen: Arc<Notify>,
}

/// Why a request body ended badly.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H3BodyError {
    #[error("the request body does not match its Content-Length")]
    Length,
    #[error("the client stopped sending the request body")]
    Reset,
    #[error("the request body brought nothing for too long")]
    Stalled,
}

impl Body for H3Body {
    type Data = Bytes;
    type Error = H3BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H3BodyError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let next = match this.recv.poll_recv(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    let timeout = this.stall.timeout;
                    let waiting = this
                        .waiting
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    std::task::ready!(waiting.as_mut().poll(cx));
                    this.done = true;
                    this.stall.seen.notify_one();
                    return Poll::Ready(Some(Err(H3BodyError::Stalled)));
                }
            };
            let (data, fin) = match next {
                Some(InboundFrame::Body(data, fin)) => (data.freeze(), fin),
                Some(InboundFrame::Datagram(_)) => continue,
                None => {
                    this.done = true;
                    return Poll::Ready(Some(Err(H3BodyError::Reset)));
                }
            };
            if let Some(remaining) = &mut this.remaining {
                let Some(left) = remaining.checked_sub(data.len() as u64) else {
                    this.done = true;
                    return Poll::Ready(Some(Err(H3BodyError::Length)));
                };
                *remaining = left;
                if fin && left != 0 {
                    this.done = true;
                    return Poll::Ready(Some(Err(H3BodyError::Length)));
                }
            }
            this.done = fin;
            if !data.is_empty() {
                this.waiting = None;
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<Header> {
        pairs
            .iter()
            .map(|(n, v)| Header::new(n.as_bytes(), v.as_bytes()))
            .collect()
    }

    const GET: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a?b=c"),
    ];

    #[test]
    fn a_request_head_becomes_an_http3_request() {
        let mut pairs = GET.to_vec();
        pairs.extend([("accept", "*/*"), ("cookie", "a=1"), ("cookie", "b=2")]);
        let parts = head(&fields(&pairs)).unwrap();
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "https://example.com/a?b=c");
        assert_eq!(parts.version, Version::HTTP_3);
        assert_eq!(parts.headers["accept"], "*/*");
        // RFC 9114 §4.2.1: cookie crumbs joined.
        assert_eq!(parts.headers["cookie"], "a=1; b=2");
    }

    /// RFC 9114 §4.3.1 and §4.2: each of these is malformed.
    #[test]
    fn malformed_heads_are_refused() {
        let cases: Vec<Vec<(&str, &str)>> = vec![
            GET[1..].to_vec(),
            vec![GET[0], GET[1], GET[2]],
            vec![GET[0], GET[2], GET[3]],
            [GET, &[(":method", "GET")]].concat(),
            [GET, &[(":protocol", "x")]].concat(),
            vec![GET[0], GET[1], ("accept", "*/*"), GET[2], GET[3]],
            [GET, &[("Accept", "*/*")]].concat(),
            [GET, &[("connection", "close")]].concat(),
            [GET, &[("transfer-encoding", "chunked")]].concat(),
            [GET, &[("te", "gzip")]].concat(),
            [GET, &[("host", "other.example")]].concat(),
            vec![GET[0], ("scheme", "ftp"), GET[2], GET[3]],
            vec![GET[0], GET[1], GET[2], (":path", "")],
        ];
        for case in cases {
            assert!(head(&fields(&case)).is_err(), "{case:?}");
        }
        let te = [GET, &[("te", "trailers")]].concat();
        assert!(head(&fields(&te)).is_ok());
        let host_only = vec![GET[0], GET[1], GET[3], ("host", "example.com")];
        assert_eq!(
            head(&fields(&host_only)).unwrap().uri,
            "https://example.com/a?b=c"
        );
    }

    /// A client may cancel 100 requests in flight at once, then 20 a
    /// second.
    #[tokio::test(start_paused = true)]
    async fn cancels_are_a_burst_then_a_rate() {
        let mut cancels = Cancels::new();
        for _ in 0..100 {
            assert!(cancels.take());
        }
        assert!(!cancels.take());
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..10 {
            assert!(cancels.take());
        }
        assert!(!cancels.take());
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..100 {
            assert!(cancels.take());
        }
        assert!(!cancels.take());
    }

    #[tokio::test]
    async fn a_body_is_held_to_its_content_length() {
        async fn read(
            frames: Vec<(&'static str, bool)>,
            length: Option<u64>,
        ) -> Result<Vec<u8>, H3BodyError> {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            for (data, fin) in frames {
                tx.send(InboundFrame::Body(bytes::BytesMut::from(data), fin))
                    .await
                    .unwrap();
            }
            drop(tx);
            let mut body = H3Body::new(rx, length, stall(Duration::from_secs(30)).0);
            let mut got = Vec::new();
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                got.extend_from_slice(&frame?.into_data().unwrap());
            }
            Ok(got)
        }
        assert_eq!(
            read(vec![("ab", false), ("c", true)], Some(3))
                .await
                .unwrap(),
            b"abc"
        );
        assert_eq!(
            read(vec![("ab", false), ("", true)], None).await.unwrap(),
            b"ab"
        );
        assert!(matches!(
            read(vec![("abcd", true)], Some(3)).await,
            Err(H3BodyError::Length)
        ));
        assert!(matches!(
            read(vec![("ab", true)], Some(3)).await,
            Err(H3BodyError::Length)
        ));
        assert!(matches!(
            read(vec![("ab", false)], Some(3)).await,
            Err(H3BodyError::Reset)
        ));
    }

    fn stall(timeout: Duration) -> (Stall, Arc<Notify>) {
        let seen = Arc::new(Notify::new());
        let stall = Stall {
            timeout,
            seen: seen.clone(),
        };
        (stall, seen)
    }

    /// The clock runs while the body is awaited and restarts with every
    /// byte: a body that trickles is served, one that stops is ended and
    /// the connection told.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_brings_nothing_is_ended() {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let (guard, seen) = stall(Duration::from_secs(10));
        let mut body = H3Body::new(rx, None, guard);
        async fn next(body: &mut H3Body) -> Option<Result<Frame<Bytes>, H3BodyError>> {
            std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
        }
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                tx.send(InboundFrame::Body(bytes::BytesMut::from("x"), false))
                    .await
                    .unwrap();
            }
            // Then nothing, with the stream still open.
            std::future::pending::<()>().await;
        });
        let started = Instant::now();
        for _ in 0..3 {
            let frame = next(&mut body).await.expect("a frame").expect("data");
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        assert!(matches!(
            next(&mut body).await,
            Some(Err(H3BodyError::Stalled))
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(34));
        tokio::time::timeout(Duration::from_millis(1), seen.notified())
            .await
            .expect("the connection is told");
        assert!(next(&mut body).await.is_none());
        feeder.abort();
    }
}
