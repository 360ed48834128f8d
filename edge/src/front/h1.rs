//! HTTP/1.1 (and 1.0) from clients, served by hyper over the strict
//! connection ([`crate::front::strict`]): the framing checks, head and idle
//! time-outs and interim responses live there; here each request gets the
//! proxy current when it arrives, its interim sink, the client's side of a
//! WebSocket upgrade, and a guard that tells the strict connection when its
//! answer ends; and while the connection drains, answers say
//! `Connection: close`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::front::Live;
use crate::front::drain::{self, Drain};
use crate::front::h1_check::{MAX_FIELDS, MAX_HEAD};
use crate::front::interim::{H1Queue, Opened};
use crate::front::strict::{Answering, Strict};
use crate::proxy::client::{ClientBody, ClientUpgrade, TunnelIo};
use crate::proxy::{BoxError, ConnInfo, ProxyBody};

/// How long an HTTP/1 connection may take over its heads.
pub(crate) struct Timeouts {
    /// When the first request head must be complete.
    pub(crate) first_head: Instant,
    /// Later heads, from their first byte.
    pub(crate) head: Duration,
    /// How long a keep-alive connection may wait for its next request,
    /// from the end of its last answer.
    pub(crate) idle: Duration,
}

/// Serves one HTTP/1 connection until it ends. `read`: bytes already taken
/// off the connection (sniffed).
pub(crate) async fn serve<T>(
    io: T,
    read: &[u8],
    timeouts: Timeouts,
    conn: ConnInfo,
    live: Live,
    drain: Drain,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let strict = Strict::new(io, read, &timeouts);
    let interim = strict.interim();
    let answers = strict.answers();
    let closing = Arc::new(AtomicBool::new(false));
    let draining = closing.clone();
    let service = service_fn(move |req| {
        let answering = answers.begin();
        answer(
            live.clone(),
            conn,
            draining.clone(),
            interim.clone(),
            answering,
            req,
        )
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The idle and head clocks are the strict connection's.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_FIELDS);
    let connection = builder
        .serve_connection(TokioIo::new(strict), service)
        .with_upgrades();
    drain::serve(
        connection,
        |connection| connection.graceful_shutdown(),
        drain,
        &closing,
    )
    .await;
}

/// An answer's body, which ends the answer when it is dropped: written
/// whole, or abandoned.
struct Answered {
    body: ProxyBody,
    /// Held, never read: dropped with the body.
    _answering: Answering,
}

impl Body for Answered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One request: the proxy current when it arrives serves it to its end,
/// whatever reloads happen meanwhile.
async fn answer(
    live: Live,
    conn: ConnInfo,
    closing: Arc<AtomicBool>,
    interim: H1Queue,
    answering: Answering,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<Answered>, Infallible> {
    // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
    let opened = (req.version() == http::Version::HTTP_11).then(|| interim.open());
    let sink = opened.as_ref().map(Opened::sink);
    if let Some(upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() {
        req.extensions_mut().insert(ClientUpgrade::new(async move {
            let upgraded = upgrade.await.map_err(std::io::Error::other)?;
            Ok(Box::new(TokioIo::new(upgraded)) as Box<dyn TunnelIo>)
        }));
    }
    let proxy = live.proxy();
    let answered = proxy.handle(conn, req.map(ClientBody::Http1), sink).await;
    // Nothing more may precede the final answer.
    drop(opened);
    let mut res = answered?;
    if let Some(alt_svc) = conn.alt_svc {
        res.headers_mut()
            .insert(http::header::ALT_SVC, alt_svc.clone());
    }
    if closing.load(Ordering::SeqCst) {
        res.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(res.map(|body| Answered {
        body,
        _answering: answering,
    }))
}
