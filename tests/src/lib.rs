//! Harness for end-to-end tests: starts the real `outpost` binary with a
//! config the test writes, origins the test scripts, and small clients.
//! Everything binds 127.0.0.1 port 0 and lives in its own temp dir.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

/// Longest a test waits for Outpost to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `outpost` binary of this build: `$OUTPOST_BIN`, or the one beside the
/// test executable's directory (`target/<profile>/outpost`).
pub fn outpost_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("OUTPOST_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = profile_dir.join("outpost");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p outpost-edge` first (make test does)",
        bin.display()
    );
    bin
}

/// A running `outpost run`, killed when dropped.
pub struct Outpost {
    child: Child,
    pub dir: tempfile::TempDir,
    /// Proxy listeners in config order.
    pub listen: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

impl Outpost {
    /// Starts Outpost on `config` (YAML), written to `outpost.yaml` in a new
    /// temp dir; `files` are written there first (certificates, say).
    pub async fn start(config: &str, files: &[(&str, &str)], token: Option<&str>) -> Outpost {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, contents) in files {
            std::fs::write(dir.path().join(name), contents).expect("write file");
        }
        let path = dir.path().join("outpost.yaml");
        std::fs::write(&path, config).expect("write config");
        let mut command = Command::new(outpost_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("OUTPOST_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("OUTPOST_ADMIN_TOKEN", token);
        }
        let mut child = command.spawn().expect("spawn outpost");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && value["event"] == "ready"
                {
                    return Some(value);
                }
            }
            None
        })
        .await
        .expect("outpost did not report ready in time")
        .expect("outpost exited before it was ready");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let listen = ready["listen"]
            .as_array()
            .expect("listen array")
            .iter()
            .map(|l| {
                l["addr"]
                    .as_str()
                    .expect("addr")
                    .parse()
                    .expect("socket address")
            })
            .collect();
        let admin = ready["admin"]
            .as_str()
            .expect("admin")
            .parse()
            .expect("admin address");
        Outpost {
            child,
            dir,
            listen,
            admin,
        }
    }

    /// The first proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// What a scripted origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
}

type Handler = dyn Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync;

/// An HTTP/1.1 origin on 127.0.0.1 port 0 that answers with `handler` and
/// records every request it receives.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
}

impl Origin {
    pub async fn start(
        handler: impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let (seen2, hits2) = (seen.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, hits, handler) = (seen2.clone(), hits2.clone(), handler.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (seen, hits, handler) = (seen.clone(), hits.clone(), handler.clone());
                        async move {
                            let record = Seen {
                                method: req.method().clone(),
                                uri: req.uri().clone(),
                                headers: req.headers().clone(),
                            };
                            // Read the whole request body before answering.
                            let _ = req.into_body().collect().await;
                            let response = handler(&record);
                            seen.lock().expect("lock").push(record);
                            hits.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Origin { addr, seen, hits }
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The last request received.
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("no request reached the origin")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
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

/// A complete response as a client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn cache_status(&self) -> &str {
        self.header("cache-status")
    }

    /// Panics unless the answer came from cache as a fresh hit.
    #[track_caller]
    pub fn assert_hit(&self) {
        let status = self.cache_status();
        assert!(
            status.starts_with("Outpost; hit"),
            "expected a hit, got Cache-Status: {status:?}"
        );
    }
}

/// Sends one HTTP/1.1 request on a new connection and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Got {
    let stream = TcpStream::connect(addr).await.expect("connect to outpost");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let res = sender.send_request(req).await.expect("send request");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Got {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// `GET path` with `Host: host`.
pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    request(addr, "GET", host, path, &[], "").await
}

/// A `POST /purge` to the side API.
pub async fn purge(admin: SocketAddr, token: Option<&str>, body: &str) -> Got {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    request(admin, "POST", "admin", "/purge", &headers, body).await
}

/// A config with one plain listener on port 0, the admin API on port 0, and
/// one site for `hosts` served by `origin`; `rules` is YAML for the rule list.
pub fn simple_config(origin: &Origin, hosts: &[&str], rules: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "listen:\n  - addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\ncache:\n  memory: 64MiB\n  max_object_size: 1MiB\n\
         origins:\n  app:\n    servers:\n      - url: {}\nsites:\n  - hosts: [{}]\n    origin: app\n    rules: {}\n",
        origin.url(),
        hosts.join(", "),
        if rules.is_empty() { "[]" } else { rules }
    )
}
