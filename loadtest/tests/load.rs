//! The library end to end: loads against a tiny hyper server on
//! 127.0.0.1:0 in this process (HTTP/1.1, h2c, and h2 over TLS with a
//! self-signed certificate made on the spot), and against a raw TCP server
//! that closes kept-alive connections under the client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boring::ssl::{AlpnError, SslAcceptor, SslMethod};
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use outpost_loadtest::{ErrorKind, Load, Outcome, Pick, Plan, PlanBuilder, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const BODY: &[u8] = b"hello, world\n";

/// What the server saw.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    h2: AtomicU64,
    host_example: AtomicU64,
}

/// `/fail` answers 503, `/slow` takes 5 s, `/sleep` 100 ms; other paths answer 200 and
/// a Cache-Status hit when they end in an even digit, a miss otherwise.
async fn handle(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    if req.version() == Version::HTTP_2 {
        seen.h2.fetch_add(1, Ordering::Relaxed);
    }
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if host == "example.test" {
        seen.host_example.fetch_add(1, Ordering::Relaxed);
    }
    let path = req.uri().path();
    let mut res = Response::new(Full::new(Bytes::from_static(BODY)));
    if path == "/fail" {
        *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(res);
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if path == "/sleep" {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let even = path
        .bytes()
        .last()
        .is_some_and(|b| b.is_ascii_digit() && (b - b'0').is_multiple_of(2));
    let status = if even {
        "Outpost; hit; ttl=30"
    } else {
        "Outpost; fwd=miss; stored"
    };
    res.headers_mut()
        .insert("cache-status", http::HeaderValue::from_static(status));
    Ok(res)
}

/// Serves HTTP/1.1 and h2c (or, with `tls`, both through ALPN) on a
/// fresh loopback port until the test's runtime ends.
async fn serve(tls: Option<SslAcceptor>) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let tls = tls.map(Arc::new);
    let served = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = served.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, seen.clone()));
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    Some(acceptor) => {
                        if let Ok(stream) = tokio_boring::accept(&acceptor, stream).await {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A TLS acceptor with a fresh self-signed certificate, choosing h2.
fn self_signed() -> SslAcceptor {
    use boring::asn1::Asn1Time;
    use boring::bn::BigNum;
    use boring::ec::{EcGroup, EcKey};
    use boring::hash::MessageDigest;
    use boring::nid::Nid;
    use boring::pkey::PKey;
    use boring::x509::{X509, X509NameBuilder};

    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "localhost").expect("cn");
    let name = name.build();
    let mut cert = X509::builder().expect("x509");
    cert.set_version(2).expect("version");
    let serial = BigNum::from_u32(1)
        .and_then(|b| b.to_asn1_integer())
        .expect("serial");
    cert.set_serial_number(&serial).expect("serial");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("pubkey");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    cert.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("na");
    cert.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = cert.build();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
    acceptor.set_private_key(&key).expect("key");
    acceptor.set_certificate(&cert).expect("cert");
    acceptor.set_alpn_select_callback(|_, client| {
        boring::ssl::select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
    });
    acceptor.build()
}

/// A plan for `url` with time enough for any of these tests.
fn plan(url: &str) -> PlanBuilder {
    Plan::builder(url).duration(Duration::from_secs(30))
}

/// Runs `plan` to its end.
async fn load(plan: PlanBuilder) -> Outcome {
    let plan = plan.build().await.expect("valid plan");
    Load::start(&plan)
        .expect("start")
        .wait()
        .await
        .expect("run")
}

#[tokio::test]
async fn http1_counts_every_request() {
    let (addr, seen) = serve(None).await;
    let url = format!("http://{addr}/obj/");
    let out = load(
        plan(&url)
            .keys(10, None)
            .pick(Pick::Uniform)
            .connections(4)
            .requests(200),
    )
    .await;
    let t = &out.tally;
    assert_eq!(t.responses(), 200);
    assert_eq!(t.failures(), 0, "{:?}", t.error_examples);
    assert_eq!(seen.requests.load(Ordering::Relaxed), 200);
    assert_eq!(seen.h2.load(Ordering::Relaxed), 0);
    assert_eq!(t.statuses.get(&200), Some(&200));
    assert_eq!(t.connections.get("h1"), Some(&4));
    assert_eq!(t.bytes, 200 * BODY.len() as u64);
    let hit = t.cache_outcomes.get("hit").copied().unwrap_or(0);
    let miss = t.cache_outcomes.get("miss").copied().unwrap_or(0);
    assert_eq!(hit + miss, 200);
    assert!(hit > 0 && miss > 0);
    assert_eq!(t.per_second.iter().map(|b| b.responses).sum::<u64>(), 200);
    assert_eq!(t.retried, 0);
    assert!(t.bodies.is_empty(), "bodies are not kept unless asked");
}

#[tokio::test]
async fn h2c_streams_share_connections() {
    let (addr, seen) = serve(None).await;
    let url = format!("http://{addr}/");
    let out = load(
        plan(&url)
            .protocol(Protocol::H2)
            .connections(2)
            .streams(8)
            .requests(300)
            .host("example.test"),
    )
    .await;
    let t = &out.tally;
    assert_eq!(t.responses(), 300);
    assert_eq!(t.failures(), 0, "{:?}", t.error_examples);
    assert_eq!(seen.requests.load(Ordering::Relaxed), 300);
    assert_eq!(seen.h2.load(Ordering::Relaxed), 300);
    assert_eq!(seen.host_example.load(Ordering::Relaxed), 300);
    assert_eq!(t.connections.get("h2"), Some(&2));
    assert_eq!(t.connections.get("h1"), None);
}

#[tokio::test]
async fn https_negotiates_h2_and_checks_certificates() {
    let (addr, seen) = serve(Some(self_signed())).await;
    let url = format!("https://{addr}/a/2");
    let out = load(
        plan(&url)
            .insecure(true)
            .connections(2)
            .streams(4)
            .requests(100),
    )
    .await;
    let t = &out.tally;
    assert_eq!(t.responses(), 100, "{:?}", t.error_examples);
    assert_eq!(seen.h2.load(Ordering::Relaxed), 100);
    assert_eq!(t.connections.get("h2"), Some(&2));
    assert_eq!(t.cache_outcomes.get("hit"), Some(&100));

    // ALPN can also settle on HTTP/1.1.
    let out = load(
        plan(&url)
            .insecure(true)
            .protocol(Protocol::Http1)
            .connections(1)
            .requests(10),
    )
    .await;
    assert_eq!(out.tally.responses(), 10);
    assert_eq!(out.tally.connections.get("h1"), Some(&1));

    // Without `insecure` the self-signed certificate is refused.
    let out = load(plan(&url).connections(1).requests(3)).await;
    assert_eq!(out.tally.responses(), 0);
    assert_eq!(out.tally.errors.get(&ErrorKind::Tls), Some(&3));
}

#[tokio::test]
async fn open_loop_keeps_its_schedule() {
    let (addr, seen) = serve(None).await;
    let url = format!("http://{addr}/");
    let out = load(
        Plan::builder(&url)
            .rate(200.0)
            .duration(Duration::from_secs(1))
            .requests(100_000)
            .connections(2),
    )
    .await;
    // Due times 0, 5ms, ... 995ms: 200 before the deadline, never more
    // (`pacing.rs` pins each due time). A machine too busy to keep the
    // schedule leaves some unsent rather than sending them late, so how
    // many went is not asserted: that is a benchmark's business.
    let sent = out.tally.responses();
    assert!((1..=200).contains(&sent), "{sent}");
    assert_eq!(seen.requests.load(Ordering::Relaxed), sent);
    assert!(
        out.elapsed >= Duration::from_millis(990),
        "{:?}",
        out.elapsed
    );
    assert!(out.elapsed < Duration::from_secs(3), "{:?}", out.elapsed);
}

#[tokio::test]
async fn a_stalled_target_shows_in_latency_not_just_service_time() {
    let (addr, _) = serve(None).await;
    let url = format!("http://{addr}/sleep");
    // 100 req/s for 1 s on one connection that can do about 10.
    let out = load(
        Plan::builder(&url)
            .rate(100.0)
            .duration(Duration::from_secs(1))
            .requests(1000)
            .connections(1),
    )
    .await;
    let t = &out.tally;
    let done = t.responses() + t.failures();
    assert!((8..=12).contains(&done), "{done}");
    assert_eq!(out.expected, 100);
    // Service time stays near 100 ms; latency from the due times grows
    // as the schedule runs ahead of the stalled connection.
    assert!(t.service.max() < 400_000, "{}", t.service.max());
    assert!(t.latency.max() > 700_000, "{}", t.latency.max());
    assert!(
        out.elapsed < Duration::from_millis(1500),
        "{:?}",
        out.elapsed
    );
}

#[tokio::test]
async fn failures_are_counted_by_kind() {
    let (addr, _) = serve(None).await;
    let url = format!("http://{addr}/fail");
    let out = load(plan(&url).connections(2).requests(10)).await;
    assert_eq!(out.tally.responses(), 10);
    assert_eq!(out.tally.errors.get(&ErrorKind::BadStatus), Some(&10));

    let url = format!("http://{addr}/slow");
    let out = load(
        plan(&url)
            .connections(2)
            .requests(2)
            .timeout(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(out.tally.errors.get(&ErrorKind::Timeout), Some(&2));
    assert!(out.elapsed < Duration::from_secs(2));

    // A port nobody listens on: every attempt is a connect error, and
    // the run still ends at its request count.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/");
    let out = load(plan(&url).connections(2).requests(20)).await;
    assert_eq!(out.tally.failures(), 20);
    assert_eq!(out.tally.errors.get(&ErrorKind::Connect), Some(&20));
}

#[tokio::test]
async fn stop_signal_ends_the_run_early() {
    let (addr, _) = serve(None).await;
    let url = format!("http://{addr}/");
    let plan = Plan::builder(&url)
        .rate(10.0)
        .duration(Duration::from_secs(60))
        .build()
        .await
        .expect("plan");
    let started = Instant::now();
    let load = Load::start(&plan).expect("start");
    let stopper = load.stopper();
    assert!(load.progress().sent_at_least(2).await);
    stopper.stop();
    let out = load.wait().await.expect("run");
    assert!(out.interrupted);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(out.tally.responses() >= 1);
}

#[tokio::test]
async fn progress_wakes_waiters_and_ends_with_the_run() {
    let (addr, _) = serve(None).await;
    let url = format!("http://{addr}/");
    let load = Load::start(
        &plan(&url)
            .connections(2)
            .requests(1_000_000)
            .build()
            .await
            .expect("plan"),
    )
    .expect("start");
    let progress = load.progress().clone();
    let wait = Duration::from_secs(10);
    let before = progress.sent();
    let reached = tokio::time::timeout(wait, progress.sent_at_least(before + 50)).await;
    assert_eq!(reached, Ok(true));
    assert!(progress.counts().sent >= before + 50);
    let out = load.finish().await.expect("run");
    assert!(out.interrupted);
    assert!(out.tally.responses() >= 50, "{out}");
    assert!(progress.is_over());
    let counts = progress.counts();
    assert_eq!(counts.responses + counts.failures, counts.sent);
    // A run that is over sends nothing more: waiting for more says so.
    assert!(!progress.sent_at_least(counts.sent + 1).await);

    // A run that ends by itself wakes its waiters too.
    let load = Load::start(
        &plan(&url)
            .connections(1)
            .requests(10)
            .build()
            .await
            .expect("plan"),
    )
    .expect("start");
    let reached = tokio::time::timeout(wait, load.progress().sent_at_least(11)).await;
    assert_eq!(reached, Ok(false));
    assert_eq!(load.wait().await.expect("run").tally.responses(), 10);

    // Dropping a load stops it.
    let load = Load::start(
        &plan(&url)
            .connections(1)
            .requests(1_000_000)
            .build()
            .await
            .expect("plan"),
    )
    .expect("start");
    let progress = load.progress().clone();
    assert!(progress.sent_at_least(1).await);
    drop(load);
    let ended = tokio::time::timeout(wait, progress.sent_at_least(u64::MAX)).await;
    assert_eq!(ended, Ok(false));
}

#[tokio::test]
async fn without_keep_alive_every_request_opens_a_connection() {
    let (addr, seen) = serve(None).await;
    let url = format!("http://{addr}/");
    let out = load(plan(&url).connections(2).requests(20).keep_alive(false)).await;
    assert_eq!(out.tally.responses(), 20, "{out}");
    assert_eq!(out.tally.connections.get("h1"), Some(&20));
    assert_eq!(seen.requests.load(Ordering::Relaxed), 20);
}

#[tokio::test]
async fn short_bodies_are_counted_by_content_when_asked() {
    let (addr, _) = serve(None).await;
    let url = format!("http://{addr}/");
    let out = load(plan(&url).connections(2).requests(20).sample_bodies(32)).await;
    let text = String::from_utf8_lossy(BODY).into_owned();
    assert_eq!(out.tally.bodies.get(&text), Some(&20), "{out}");
    assert_eq!(out.tally.bodies.len(), 1);
    // Longer than the sample: not kept.
    let out = load(plan(&url).connections(2).requests(20).sample_bodies(4)).await;
    assert!(out.tally.bodies.is_empty(), "{out}");
    assert_eq!(out.tally.responses(), 20);
}

/// A raw HTTP/1.1 server that answers the first request on each
/// connection without closing it, and closes it, unanswered, when the
/// second request arrives: a server that gave up on an idle connection
/// just as the client reused it.
async fn serve_closing_on_reuse() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                for answered in [false, true] {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    head.clear();
                    if answered {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_unanswered_request_on_a_reused_connection_is_retried_when_asked() {
    let addr = serve_closing_on_reuse().await;
    let url = format!("http://{addr}/");
    // Every request after the first goes out on a connection the server
    // then closes; sent again on a new one, it is answered.
    let out = load(
        plan(&url)
            .connections(1)
            .requests(10)
            .retry_unanswered(true),
    )
    .await;
    let t = &out.tally;
    assert_eq!(
        (t.responses(), t.failures(), t.retried),
        (10, 0, 9),
        "{out}"
    );
    assert_eq!(t.connections.get("h1"), Some(&10));

    // As on the command line, without retries each of those fails.
    let out = load(plan(&url).connections(1).requests(10)).await;
    let t = &out.tally;
    assert_eq!((t.responses(), t.failures(), t.retried), (5, 5, 0), "{out}");
    assert_eq!(t.errors.get(&ErrorKind::Reset), Some(&5), "{out}");
}
