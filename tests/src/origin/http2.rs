//! [`H2Origin`]: HTTP/2 on the h2 crate, for what hyper's server cannot
//! send: interim responses (103 Early Hints) and refused streams. h2c, or
//! TLS with ALPN h2 when given a certificate.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use tokio::io::{AsyncRead, AsyncWrite};

use super::scripted::{Recorder, Scripted, Seen};
use super::tls::origin_acceptor;

/// Serving HTTP/2 frames by script: see [`H2Origin`].
#[derive(Debug)]
pub enum H2 {}

/// An HTTP/2 origin that follows an [`H2Script`] and records every
/// request (refused ones included).
pub type H2Origin = Scripted<H2>;

/// What an [`H2Origin`] does with each request.
#[derive(Debug, Clone)]
pub enum H2Script {
    /// Sends these interim heads (status, `link` value) at once, then,
    /// once the semaphore gives a permit, a 200 with `body`, fresh for
    /// ten minutes.
    Hints(
        Vec<(u16, &'static str)>,
        Arc<tokio::sync::Semaphore>,
        &'static str,
    ),
    /// Resets the first `n` streams with REFUSED_STREAM, then answers 200
    /// with the request's body.
    RefuseFirst(usize),
}

impl Scripted<H2> {
    pub async fn start(script: H2Script, tls: Option<(&str, &str)>) -> H2Origin {
        let acceptor = tls.map(|(cert, key)| Arc::new(origin_acceptor(cert, key, true)));
        Scripted::listen(move |stream, recorder| {
            let (script, acceptor) = (script.clone(), acceptor.clone());
            async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = tokio_boring::accept(&acceptor, stream).await {
                            serve_h2(tls, script, recorder).await;
                        }
                    }
                    None => serve_h2(stream, script, recorder).await,
                }
            }
        })
        .await
    }
}

/// Serves one connection: each stream on a task of its own, as `script`
/// says.
async fn serve_h2<T>(io: T, script: H2Script, recorder: Arc<Recorder>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let (script, recorder) = (script.clone(), recorder.clone());
        tokio::spawn(async move {
            let (parts, mut body) = request.into_parts();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            let n = recorder.record(Seen {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                body: Bytes::from(bytes.clone()),
            });
            let head = |status: u16, fields: &[(&str, &str)]| {
                let mut builder = Response::builder().status(status);
                for (name, value) in fields {
                    builder = builder.header(*name, *value);
                }
                builder.body(()).expect("head")
            };
            match script {
                H2Script::Hints(hints, release, body) => {
                    for (status, link) in hints {
                        if respond
                            .send_informational(head(status, &[("link", link)]))
                            .is_err()
                        {
                            return;
                        }
                    }
                    let Ok(permit) = release.acquire().await else {
                        return;
                    };
                    permit.forget();
                    let length = body.len().to_string();
                    let fields = [
                        ("cache-control", "max-age=600"),
                        ("content-length", length.as_str()),
                    ];
                    if let Ok(mut send) = respond.send_response(head(200, &fields), false) {
                        let _ = send.send_data(Bytes::from_static(body.as_bytes()), true);
                    }
                }
                H2Script::RefuseFirst(refused) if n < refused => {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
                H2Script::RefuseFirst(_) => {
                    let fields = [("cache-control", "no-store")];
                    if let Ok(mut send) = respond.send_response(head(200, &fields), false) {
                        let _ = send.send_data(Bytes::from(bytes), true);
                    }
                }
            }
        });
    }
}
