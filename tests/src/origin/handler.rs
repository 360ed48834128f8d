//! [`Origin`], the usual scripted origin: hyper serves HTTP/1.1 or HTTP/2,
//! plain or over TLS, and a handler the test writes answers each request.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use super::scripted::{Recorder, Scripted, Seen};
use super::tls::origin_acceptor;

/// Serving with hyper and a handler: see [`Origin`].
#[derive(Debug)]
pub enum Hyper {}

/// An origin that answers with a handler and records every request it
/// receives.
pub type Origin = Scripted<Hyper>;

type Handler = dyn Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync;

/// How an [`Origin`] listens.
#[derive(Debug, Clone, Default)]
pub struct OriginOptions {
    /// PEM certificate and key: serve TLS.
    pub tls: Option<(String, String)>,
    /// Speak HTTP/2 only (h2c by prior knowledge, or ALPN h2 over TLS).
    pub http2_only: bool,
    /// Hold every answer this long before sending it (a slow origin).
    pub delay: Option<Duration>,
}

impl Scripted<Hyper> {
    pub async fn start(
        handler: impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Origin {
        Self::start_with(OriginOptions::default(), handler).await
    }

    pub async fn start_with(
        options: OriginOptions,
        handler: impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Origin {
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = options
            .tls
            .as_ref()
            .map(|(cert, key)| Arc::new(origin_acceptor(cert, key, options.http2_only)));
        let (http2_only, delay) = (options.http2_only, options.delay);
        Scripted::listen(move |stream, recorder| {
            let (handler, acceptor) = (handler.clone(), acceptor.clone());
            async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let (recorder, handler) = (recorder.clone(), handler.clone());
                    answer(req, recorder, handler, delay)
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                if http2_only {
                    builder = builder.http2_only();
                }
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = tokio_boring::accept(&acceptor, stream).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        })
        .await
    }
}

/// Reads one request whole, asks the handler, and records the request.
async fn answer(
    req: Request<Incoming>,
    recorder: Arc<Recorder>,
    handler: Arc<Handler>,
    delay: Option<Duration>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    recorder.arrive();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        body,
    };
    let response = handler(&seen);
    recorder.record(seen);
    Ok(response)
}

/// A response with the given status, headers and body.
pub fn respond(
    status: u16,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).expect("response")
}

/// A range-capable answer with `headers` and the representation `body`:
/// a request's single `bytes=` range (first-last, first-, or -suffix) gets
/// a 206 with that part; an If-Range that differs from the `etag` among
/// `headers`, several ranges or none get the whole body with 200; a range
/// past the end gets 416.
pub fn respond_ranged(
    seen: &Seen,
    headers: &[(&str, &str)],
    body: &'static [u8],
) -> Response<Full<Bytes>> {
    let len = body.len() as u64;
    let etag = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("etag"))
        .map(|(_, value)| *value);
    let if_range = seen.header("if-range");
    let spec = seen.header("range").strip_prefix("bytes=").unwrap_or("");
    let range = (!spec.is_empty()
        && !spec.contains(',')
        && (if_range.is_empty() || Some(if_range) == etag))
        .then(|| spec.split_once('-'))
        .flatten()
        .and_then(
            |(first, last)| match (first.parse::<u64>(), last.parse::<u64>()) {
                (Ok(first), Ok(last)) => Some((first, last.min(len.saturating_sub(1)))),
                (Ok(first), Err(_)) if last.is_empty() => Some((first, len.saturating_sub(1))),
                (Err(_), Ok(suffix)) if first.is_empty() => {
                    Some((len.saturating_sub(suffix), len.saturating_sub(1)))
                }
                _ => None,
            },
        );
    match range {
        None => respond(200, headers, Bytes::from_static(body)),
        Some((first, last)) if first >= len || last < first => {
            respond(416, &[("content-range", &format!("bytes */{len}"))], "")
        }
        Some((first, last)) => {
            let content_range = format!("bytes {first}-{last}/{len}");
            let mut fields = headers.to_vec();
            fields.push(("content-range", &content_range));
            respond(
                206,
                &fields,
                Bytes::from_static(&body[first as usize..=last as usize]),
            )
        }
    }
}
