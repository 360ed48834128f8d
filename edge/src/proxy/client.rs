//! What the front door hands the proxy with each request, whatever
//! protocol the request came on: its body ([`ClientBody`]), and, for a
//! request that may become a tunnel, the client's side of it once the
//! answer is out ([`ClientUpgrade`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::{BoxError, RecvBody};

/// A request body as the client's connection gives it.
pub(crate) enum ClientBody {
    /// From hyper's HTTP/1.1 server.
    Http1(Incoming),
    /// From a stream of our HTTP/2 server.
    Http2(RecvBody),
    /// From a stream of our HTTP/3 server.
    Http3(crate::front::h3::H3Body),
    /// None at all (an extended CONNECT, whose stream becomes the tunnel).
    Empty,
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Http3(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ClientBody::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Http1(body) => body.is_end_stream(),
            ClientBody::Http2(body) => body.is_end_stream(),
            ClientBody::Http3(body) => body.is_end_stream(),
            ClientBody::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Http1(body) => body.size_hint(),
            ClientBody::Http2(body) => body.size_hint(),
            ClientBody::Http3(body) => body.size_hint(),
            ClientBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// Both directions of a tunnel's client side.
pub(crate) trait TunnelIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> TunnelIo for T {}

/// The client's side of a tunnel, ready once the proxy's answer (101 on
/// HTTP/1.1, 200 on an HTTP/2 stream) has gone out. In the request's
/// extensions when the request may become one.
/// (Extensions are cloned with their request: the first to wait takes it.)
#[derive(Clone)]
pub(crate) struct ClientUpgrade(Arc<Mutex<Option<Upgrading>>>);

type Upgrading = BoxFuture<'static, io::Result<Box<dyn TunnelIo>>>;

impl ClientUpgrade {
    pub(crate) fn new(
        upgraded: impl Future<Output = io::Result<Box<dyn TunnelIo>>> + Send + 'static,
    ) -> Self {
        Self(Arc::new(Mutex::new(Some(Box::pin(upgraded)))))
    }

    /// Waits for the answer to be out and the connection (or stream) to
    /// be the tunnel's.
    pub(crate) async fn upgraded(self) -> io::Result<Box<dyn TunnelIo>> {
        let upgrading = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match upgrading {
            Some(upgrading) => upgrading.await,
            None => Err(io::Error::other("the tunnel was taken already")),
        }
    }
}
