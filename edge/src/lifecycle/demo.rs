//! `outpost demo`: the built-in demo configuration, a self-signed
//! certificate in a state directory, and a small origin on loopback whose
//! paths show the cache's behaviours side by side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The demo configuration, the same file as `config/examples/demo.yaml`.
pub const DEMO_CONFIG: &str = include_str!("../../../config/examples/demo.yaml");

/// Token the demo's side API accepts when `OUTPOST_ADMIN_TOKEN` is unset.
pub const DEMO_TOKEN: &str = "demo-token";

/// Why the demo's certificate could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{}", .path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("making a certificate")]
    Certificate(#[from] crate::front::tls::TlsError),
}

/// Writes a self-signed certificate for localhost into `state_dir` unless one is there.
pub fn ensure_certificate(state_dir: &Path) -> Result<(), DemoError> {
    let cert = state_dir.join("demo-cert.pem");
    let key = state_dir.join("demo-key.pem");
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let written = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Write { path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(written(state_dir))?;
    let (cert_pem, key_pem) =
        crate::front::tls::self_signed(&["localhost", "*.localhost", "127.0.0.1"])?;
    std::fs::write(&cert, cert_pem).map_err(written(&cert))?;
    write_private(&key, key_pem.as_bytes()).map_err(written(&key))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Serves the demo origin on `addr` until the process ends.
pub async fn spawn_origin(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let hits = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
                    async move { Ok::<_, Infallible>(origin_response(&req, n)) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// What the demo origin answers; `n` counts the requests it has served.
fn origin_response(req: &Request<Incoming>, n: u64) -> Response<Full<Bytes>> {
    let now = httpdate::fmt_http_date(SystemTime::now());
    let (status, cache_control, content_type, body): (u16, &str, &str, String) = match req.uri().path() {
        "/" => (200, "max-age=30", "text/plain", format!(
            "Outpost demo origin (request #{n} to the origin)\n\n\
             /static/logo.svg  cached for a year (public, max-age=31536000, immutable)\n\
             /page             cached for 10 seconds, then revalidated with its ETag\n\
             /api/time         no-store, and bypassed by a rule: always fetched\n"
        )),
        "/static/logo.svg" => (200, "public, max-age=31536000, immutable", "image/svg+xml",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\"><circle cx=\"32\" cy=\"32\" r=\"28\" fill=\"#e8590c\"/></svg>\n".to_owned()),
        "/page" => {
            if req.headers().get(http::header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == b"\"page-v1\"") {
                return Response::builder()
                    .status(StatusCode::NOT_MODIFIED)
                    .header("cache-control", "max-age=10")
                    .header("etag", "\"page-v1\"")
                    .header("date", &now)
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_default();
            }
            (200, "max-age=10", "text/html", format!("<p>Rendered by the origin at {now} (request #{n} to the origin).</p>\n"))
        }
        "/api/time" => (200, "no-store", "application/json", format!("{{\"time\": \"{now}\", \"origin_request\": {n}}}\n")),
        "/healthz" => (200, "no-store", "text/plain", "ok\n".to_owned()),
        _ => (404, "max-age=5", "text/plain", "not found\n".to_owned()),
    };
    let mut builder = Response::builder()
        .status(status)
        .header("cache-control", cache_control)
        .header("content-type", content_type)
        .header("date", &now)
        .header("x-origin-request", n.to_string());
    if req.uri().path() == "/page" {
        builder = builder.header("etag", "\"page-v1\"");
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

/// The curl commands a newcomer can paste, for the addresses the demo bound.
pub fn instructions(
    http: SocketAddr,
    https: Option<SocketAddr>,
    admin: SocketAddr,
    token: &str,
) -> String {
    let http_port = http.port();
    let mut text = format!(
        "\nOutpost demo is running.\n\n\
         1. A static file: the first request is a MISS, the second a HIT (see Cache-Status and Age):\n\
         \x20  curl -s -o /dev/null -D - http://localhost:{http_port}/static/logo.svg\n\
         \x20  curl -s -o /dev/null -D - http://localhost:{http_port}/static/logo.svg\n\n\
         2. A short-lived page (10 s, then revalidated with a 304) and a no-store API:\n\
         \x20  curl -s -D - http://localhost:{http_port}/page\n\
         \x20  curl -s -D - http://localhost:{http_port}/api/time\n\n"
    );
    if let Some(https) = https {
        text.push_str(&format!(
            "3. Over HTTPS with HTTP/2 (self-signed certificate, hence -k):\n\
             \x20  curl -sk --http2 -o /dev/null -D - https://localhost:{}/static/logo.svg\n\n",
            https.port()
        ));
    }
    text.push_str(&format!(
        "4. Purge the static file; the next request is a MISS again:\n\
         \x20  curl -s -X POST -H 'Authorization: Bearer {token}' -d '{{\"urls\": [\"http://localhost:{http_port}/static/logo.svg\"]}}' http://{admin}/purge\n\n\
         Metrics: curl -s http://{admin}/metrics | grep outpost_requests_total\n\
         Stop with Ctrl-C.\n"
    ));
    text
}
