//! Harness for end-to-end tests: starts the real `outpost` binary with a
//! config the test writes, origins the test scripts, and small clients.
//! Everything binds 127.0.0.1 port 0 and lives in its own temp dir.

pub mod h2raw;

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
    /// Shared with a successor started by [`Outpost::upgrade`].
    pub dir: Arc<tempfile::TempDir>,
    token: Option<String>,
    /// JSON lines printed after `ready` (by a successor sharing stdout).
    events: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
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
        Self::spawn(Arc::new(dir), &[], token).await
    }

    /// Starts a successor on the same config with `run --upgrade`: it takes
    /// this process's sockets over, and this process drains and exits.
    pub async fn upgrade(&self) -> Outpost {
        Self::spawn(self.dir.clone(), &["--upgrade"], self.token.as_deref()).await
    }

    async fn spawn(dir: Arc<tempfile::TempDir>, args: &[&str], token: Option<&str>) -> Outpost {
        let path = dir.path().join("outpost.yaml");
        let mut command = Command::new(outpost_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(&path)
            .args(args)
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
        // Keep draining stdout so the child never blocks on a full pipe;
        // the events on it (a successor's `ready`) go to `events`.
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = events_tx.send(value);
                }
            }
        });
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
            token: token.map(str::to_owned),
            events,
            listen,
            admin,
        }
    }

    /// The first proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("outpost is running")
    }

    /// Waits (bounded: 30 s) for the next `ready` line on this process's
    /// stdout after its own: a successor it started (SIGUSR2).
    pub async fn next_ready(&mut self) -> serde_json::Value {
        tokio::time::timeout(READY_TIMEOUT, async {
            while let Some(event) = self.events.recv().await {
                if event["event"] == "ready" {
                    return event;
                }
            }
            panic!("stdout closed before another ready line");
        })
        .await
        .expect("no ready line in time")
    }

    /// A `/proc/<pid>/status` figure in KiB: `VmRSS` (resident now) or
    /// `VmHWM` (the most it has been resident).
    pub fn memory_kib(&self, field: &str) -> u64 {
        memory_kib(self.pid(), field)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as an init system stopping the service would.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `USR1`, `HUP`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("outpost is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Stops this process (SIGTERM, or SIGKILL with `kill`), waits for it
    /// to exit, and starts Outpost again on the same directory and config:
    /// a restart.
    pub async fn restart(mut self, kill: bool) -> Outpost {
        self.signal(if kill { "KILL" } else { "TERM" });
        let code = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("outpost did not exit in time")
            .expect("wait for outpost");
        if !kill {
            assert_eq!(code.code(), Some(0), "outpost exited with {code}");
        }
        Self::spawn(self.dir.clone(), &[], self.token.as_deref()).await
    }

    /// Waits (bounded) for the process to exit; its exit code.
    pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .expect("outpost did not exit in time")
            .ok()?
            .code()
    }
}

/// A `/proc/<pid>/status` figure in KiB, such as `VmRSS` or `VmHWM`.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// `GET path`, reading the body as it comes and keeping only its length
/// and blake3 (for bodies too large to hold).
pub async fn get_streamed(addr: SocketAddr, host: &str, path: &str) -> (Got, u64, String) {
    let (parts, mut body) = send(addr, "GET", host, path, &[], "")
        .await
        .expect("request to outpost")
        .into_parts();
    let mut len = 0;
    let mut hasher = blake3::Hasher::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("read body").into_data() {
            len += data.len() as u64;
            hasher.update(&data);
        }
    }
    let got = Got {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::new(),
    };
    (got, len, hasher.finalize().to_hex().to_string())
}

/// What a scripted origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Handler = dyn Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync;

/// How a scripted origin listens.
#[derive(Debug, Clone, Default)]
pub struct OriginOptions {
    /// PEM certificate and key: serve TLS.
    pub tls: Option<(String, String)>,
    /// Speak HTTP/2 only (h2c by prior knowledge, or ALPN h2 over TLS).
    pub http2_only: bool,
    /// Hold every answer this long before sending it (a slow origin).
    pub delay: Option<Duration>,
}

/// An origin on 127.0.0.1 port 0 that answers with `handler` and records
/// every request it receives.
pub struct Origin {
    pub addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Origin {
    pub async fn start(
        handler: impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Origin {
        Self::start_with(OriginOptions::default(), handler).await
    }

    pub async fn start_with(
        options: OriginOptions,
        handler: impl Fn(&Seen) -> Response<Full<Bytes>> + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = options
            .tls
            .as_ref()
            .map(|(cert, key)| Arc::new(origin_acceptor(cert, key, options.http2_only)));
        let state = (
            seen.clone(),
            hits.clone(),
            connections.clone(),
            tasks.clone(),
        );
        let accept = tokio::spawn(async move {
            let (seen, hits, connections, tasks) = state;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let (seen, hits, handler, acceptor) = (
                    seen.clone(),
                    hits.clone(),
                    handler.clone(),
                    acceptor.clone(),
                );
                let http2_only = options.http2_only;
                let delay = options.delay;
                let task = tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (seen, hits, handler) = (seen.clone(), hits.clone(), handler.clone());
                        async move {
                            if let Some(delay) = delay {
                                tokio::time::sleep(delay).await;
                            }
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let record = Seen {
                                method: parts.method,
                                uri: parts.uri,
                                version: parts.version,
                                headers: parts.headers,
                                body,
                            };
                            let response = handler(&record);
                            seen.lock().expect("lock").push(record);
                            hits.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
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
                });
                tasks.lock().expect("lock").push(task.abort_handle());
            }
        });
        tasks.lock().expect("lock").push(accept.abort_handle());
        Origin {
            addr,
            seen,
            hits,
            connections,
            tasks,
        }
    }

    /// Stops listening and drops every open connection, as a crashed origin would.
    pub fn stop(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
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

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn origin_acceptor(cert: &str, key: &str, http2_only: bool) -> boring::ssl::SslAcceptor {
    let protocols: &'static [u8] = if http2_only {
        b"\x02h2"
    } else {
        b"\x08http/1.1"
    };
    tls_acceptor(cert, key, protocols)
}

/// A TLS acceptor for a test origin: the PEM chain and key, and the ALPN
/// protocols it picks from, best first, in wire format (`b"\x02h2"`).
pub fn tls_acceptor(cert: &str, key: &str, protocols: &'static [u8]) -> boring::ssl::SslAcceptor {
    use boring::ssl::{AlpnError, SslAcceptor, SslMethod};
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    let mut chain = boring::x509::X509::stack_from_pem(cert.as_bytes())
        .expect("certificate")
        .into_iter();
    builder
        .set_certificate(&chain.next().expect("leaf"))
        .expect("set certificate");
    for extra in chain {
        builder.add_extra_chain_cert(extra).expect("chain");
    }
    builder
        .set_private_key(&boring::pkey::PKey::private_key_from_pem(key.as_bytes()).expect("key"))
        .expect("set key");
    builder.set_alpn_select_callback(move |_, client| {
        boring::ssl::select_next_proto(protocols, client).ok_or(AlpnError::NOACK)
    });
    builder.build()
}

/// How a [`RawOrigin`] misbehaves.
#[derive(Debug, Clone)]
pub enum Misbehaviour {
    /// Answers each request with a small 200 and closes the connection
    /// without saying so: the client believes it may reuse it.
    AnswerThenCloseSilently,
    /// Reads the request and closes the connection without an answer.
    CloseWithoutAnswer,
    /// Answers every request on a connection with these bytes, as they are.
    Respond(&'static str),
    /// Answers with the first bytes, then, once the semaphore gives a
    /// permit, the second (an interim response, then the final one).
    RespondInTwo(&'static str, &'static str, Arc<tokio::sync::Semaphore>),
}

/// An HTTP/1.1 origin written on raw TCP, for failures hyper would not
/// produce on purpose.
pub struct RawOrigin {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl RawOrigin {
    pub async fn start(behaviour: Misbehaviour) -> RawOrigin {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (counter, connected) = (requests.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let counter = counter.clone();
                let behaviour = behaviour.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        head.clear();
                        counter.fetch_add(1, Ordering::SeqCst);
                        match &behaviour {
                            Misbehaviour::AnswerThenCloseSilently => {
                                let _ = stream
                                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok")
                                    .await;
                                return;
                            }
                            Misbehaviour::CloseWithoutAnswer => return,
                            Misbehaviour::Respond(raw) => {
                                if stream.write_all(raw.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            Misbehaviour::RespondInTwo(first, then, release) => {
                                if stream.write_all(first.as_bytes()).await.is_err() {
                                    return;
                                }
                                let Ok(permit) = release.acquire().await else {
                                    return;
                                };
                                permit.forget();
                                if stream.write_all(then.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        RawOrigin {
            addr,
            requests,
            connections,
            task: task.abort_handle(),
        }
    }

    /// Requests whose head was read.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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

/// An HTTP/2 origin written on the h2 crate, for what hyper's server
/// cannot send: interim responses and refused streams. h2c, or TLS with
/// ALPN h2 when given a certificate.
pub struct H2Origin {
    pub addr: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::AbortHandle,
}

impl H2Origin {
    pub async fn start(script: H2Script, tls: Option<(&str, &str)>) -> H2Origin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind h2 origin");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let acceptor = tls.map(|(cert, key)| Arc::new(origin_acceptor(cert, key, true)));
        let (record, connected) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let streams = Arc::new(AtomicUsize::new(0));
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                connected.fetch_add(1, Ordering::SeqCst);
                let (record, script, acceptor, streams) = (
                    record.clone(),
                    script.clone(),
                    acceptor.clone(),
                    streams.clone(),
                );
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = tokio_boring::accept(&acceptor, stream).await {
                                serve_h2(tls, script, record, streams).await;
                            }
                        }
                        None => serve_h2(stream, script, record, streams).await,
                    }
                });
            }
        });
        H2Origin {
            addr,
            seen,
            connections,
            task: task.abort_handle(),
        }
    }

    /// Every request received (refused ones included), in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for H2Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_h2<T>(
    io: T,
    script: H2Script,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    streams: Arc<AtomicUsize>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut connection) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = connection.accept().await {
        let (script, seen, streams) = (script.clone(), seen.clone(), streams.clone());
        tokio::spawn(async move {
            let (parts, mut body) = request.into_parts();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            let n = streams.fetch_add(1, Ordering::SeqCst);
            seen.lock().expect("lock").push(Seen {
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
    try_request(addr, method, host, path, headers, body)
        .await
        .expect("request to outpost")
}

/// [`request`], for when the connection may fail (a process being killed).
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Got, String> {
    let (parts, body) = send(addr, method, host, path, headers, body)
        .await?
        .into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Sends one HTTP/1.1 request on a new connection; the answer's head, and
/// its body to be read.
async fn send(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response<hyper::body::Incoming>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
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
        .map_err(|e| format!("request: {e}"))?;
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))
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

/// A config with one plain listener, the admin API, and one catch-all site
/// served by a pool of `servers` (URLs); `pool` is extra YAML for the pool,
/// indented under it (e.g. `"    balance: round_robin\n"`).
pub fn pool_config(servers: &[String], pool: &str) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|url| format!("      - url: {url}\n"))
        .collect();
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers:\n{}{pool}sites:\n  - hosts: [\"*\"]\n    origin: app\n",
        servers.concat()
    )
}

/// `GET /stats` from the side API, as JSON.
pub async fn stats(admin: SocketAddr) -> serde_json::Value {
    let got = get(admin, "admin", "/stats").await;
    serde_json::from_slice(&got.body).expect("stats JSON")
}

/// One sample from `GET /metrics`: the value of the series written
/// exactly as `series` (name and labels, e.g.
/// `outpost_config_reloads_total{result="ok"}`), if present.
pub async fn metric(admin: SocketAddr, series: &str) -> Option<f64> {
    let got = get(admin, "admin", "/metrics").await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (bounded: 10 s) until `series` reaches `value`.
pub async fn await_metric(admin: SocketAddr, series: &str, value: f64) {
    for _ in 0..1000 {
        if metric(admin, series).await == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "{series} never reached {value}; last {:?}",
        metric(admin, series).await
    );
}

/// `POST /reload` to the side API.
pub async fn reload(admin: SocketAddr, token: &str) -> Got {
    let auth = format!("Bearer {token}");
    request(
        admin,
        "POST",
        "admin",
        "/reload",
        &[("authorization", auth.as_str())],
        "",
    )
    .await
}

/// What a [`Load`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Answers by status code.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Requests that got no answer (connect, reset, malformed), with the
    /// first few reasons.
    pub failed: u64,
    /// Requests sent again because the server closed an idle keep-alive
    /// connection as they were sent (RFC 9112 §9.3.1 lets a client retry
    /// an idempotent request then).
    pub retried: u64,
    pub reasons: Vec<String>,
    /// Bodies seen, by content, when short (which origin answered).
    pub bodies: std::collections::BTreeMap<String, u64>,
}

impl LoadReport {
    pub fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Every request answered 200.
    pub fn assert_all_ok(&self) {
        let not_ok: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(_, n)| n)
            .sum();
        assert!(
            self.failed == 0 && not_ok == 0 && self.answered() > 0,
            "load saw failures: {self:?}"
        );
    }
}

/// A bounded load loop: `connections` keep-alive HTTP/1.1 clients sending
/// `GET path` with `Host: host` until stopped, or until `max_requests` in
/// all or `max_time` have passed, whichever comes first. A client whose
/// connection fails counts the failure and opens a new one.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl Load {
    pub fn start(
        addr: SocketAddr,
        host: &str,
        path: &str,
        connections: usize,
        max_requests: u64,
        max_time: Duration,
    ) -> Load {
        Self::start_with(addr, host, path, connections, max_requests, max_time, true)
    }

    /// As [`Load::start`]; with `keep_alive` false every request opens a
    /// new connection (each one tests that the listener accepts).
    pub fn start_with(
        addr: SocketAddr,
        host: &str,
        path: &str,
        connections: usize,
        max_requests: u64,
        max_time: Duration,
        keep_alive: bool,
    ) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let deadline = tokio::time::Instant::now() + max_time;
        let tasks = (0..connections)
            .map(|_| {
                let (stop, sent) = (stop.clone(), sent.clone());
                let (host, path) = (host.to_owned(), path.to_owned());
                tokio::spawn(async move {
                    let mut report = LoadReport::default();
                    let mut sender: Option<LoadSender> = None;
                    while !stop.load(Ordering::SeqCst)
                        && tokio::time::Instant::now() < deadline
                        && sent.fetch_add(1, Ordering::SeqCst) < max_requests
                    {
                        if !keep_alive {
                            sender = None;
                        }
                        let reused = sender.as_ref().is_some_and(|s| !s.is_closed());
                        let mut outcome = load_one(&mut sender, addr, &host, &path).await;
                        if reused && matches!(&outcome, Err(LoadError::ClosedUnanswered)) {
                            report.retried += 1;
                            sender = None;
                            outcome = load_one(&mut sender, addr, &host, &path).await;
                        }
                        match outcome.map_err(|e| e.to_string()) {
                            Ok((status, body)) => {
                                *report.statuses.entry(status).or_default() += 1;
                                if body.len() <= 32 {
                                    *report.bodies.entry(body).or_default() += 1;
                                }
                            }
                            Err(reason) => {
                                sender = None;
                                report.failed += 1;
                                if report.reasons.len() < 5 {
                                    report.reasons.push(reason);
                                }
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        Load { stop, tasks, sent }
    }

    /// Requests started so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits (bounded: 10 s) until at least `n` more requests have started.
    pub async fn await_progress(&self, n: u64) {
        let target = self.sent() + n;
        for _ in 0..1000 {
            if self.sent() >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the load made no progress");
    }

    /// Stops the clients and sums what they saw.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoadReport::default();
        for task in self.tasks {
            let report = task.await.expect("load task");
            for (status, n) in report.statuses {
                *total.statuses.entry(status).or_default() += n;
            }
            for (body, n) in report.bodies {
                *total.bodies.entry(body).or_default() += n;
            }
            total.failed += report.failed;
            total.retried += report.retried;
            total.reasons.extend(report.reasons);
        }
        total
    }
}

type LoadSender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Why a load request got no answer.
#[derive(Debug)]
enum LoadError {
    /// The connection closed before any byte of an answer.
    ClosedUnanswered,
    Other(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::ClosedUnanswered => f.write_str("connection closed before an answer"),
            LoadError::Other(reason) => f.write_str(reason),
        }
    }
}

async fn load_one(
    sender: &mut Option<LoadSender>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, String), LoadError> {
    let other = LoadError::Other;
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| other(format!("connect: {e}")))?;
        let (new, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| other(format!("handshake: {e}")))?;
        tokio::spawn(conn);
        *sender = Some(new);
    }
    let Some(client) = sender.as_mut() else {
        return Err(other("no connection".into()));
    };
    if client.ready().await.is_err() {
        return Err(LoadError::ClosedUnanswered);
    }
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .map_err(|e| other(format!("request: {e}")))?;
    let res = client.send_request(req).await.map_err(|e| {
        let reset = std::error::Error::source(&e)
            .and_then(|source| source.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            });
        if e.is_canceled() || e.is_incomplete_message() || reset {
            LoadError::ClosedUnanswered
        } else {
            other(format!("send: {e}"))
        }
    })?;
    let status = res.status().as_u16();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| other(format!("body: {e}")))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
