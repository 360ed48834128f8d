//! The load itself: connections × streams workers take request numbers
//! (tickets) from one counter, wait for each request's due time (open loop)
//! or go at once (closed loop), send it, read the body, and count the
//! outcome. The run ends when the tickets or the time run out, or when the
//! stop signal is raised (Ctrl-C).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{Mutex, watch};

use crate::args::Plan;
use crate::client::{self, Connector, ErrorKind, Failure, Sender};
use crate::pacing::{Schedule, Slot};
use crate::progress::Progress;
use crate::tally::Tally;
use crate::urls::{Choice, UrlSet};

/// A pause after a failed connect, so a target that is down is not
/// hammered in a tight loop (each attempt still uses up a request).
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Everything counted.
    pub tally: Tally,
    /// From the start to the last worker's end.
    pub elapsed: Duration,
    /// Whether the run was stopped early by the stop signal.
    pub interrupted: bool,
    /// Requests the schedule would ask for: the budget, or in an open
    /// loop fewer if the deadline comes first.
    pub expected: u64,
}

/// Live counters for the progress bar.
#[derive(Debug, Default)]
pub struct Live {
    /// Responses so far.
    pub responses: AtomicU64,
    /// Failed requests so far.
    pub errors: AtomicU64,
}

/// What all workers share.
struct Shared {
    schedule: Schedule,
    tickets: AtomicU64,
    live: Arc<Live>,
    connector: Connector,
    urls: UrlSet,
    seed: u64,
    timeout: Duration,
    stop: watch::Receiver<bool>,
}

/// One connection, shared by its streams; reopened when it breaks.
#[derive(Default)]
struct ConnSlot {
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    sender: Option<Sender>,
    /// Bumped on every new connection, so a worker whose request failed
    /// drops only the connection it used, not a newer one.
    generation: u64,
}

/// A complete response.
struct Answer {
    status: u16,
    cache: Option<String>,
    bytes: u64,
    sent: Instant,
}

/// Runs the plan until its request count or time runs out, or `stop` turns
/// true.
pub async fn run(plan: &Plan, stop: watch::Receiver<bool>) -> Result<Outcome> {
    let target = Arc::new(plan.target.clone());
    let connector = Connector::new(target).context("setting up TLS")?;
    let start = Instant::now();
    let schedule = Schedule::new(start, plan.duration, plan.requests, plan.rate);
    let live = Arc::new(Live::default());
    let shared = Arc::new(Shared {
        schedule,
        tickets: AtomicU64::new(0),
        live: live.clone(),
        connector,
        urls: plan.urls.clone(),
        seed: plan.seed,
        timeout: plan.timeout,
        stop: stop.clone(),
    });
    let progress = Progress::start(plan.quiet, schedule, live);
    let mut workers = Vec::with_capacity(plan.workers());
    for _ in 0..plan.connections {
        let slot = Arc::new(ConnSlot::default());
        for _ in 0..plan.streams {
            let id = workers.len();
            workers.push(tokio::spawn(worker(shared.clone(), slot.clone(), id)));
        }
    }
    let mut tally = Tally::new()?;
    for w in workers {
        tally.merge(w.await.context("a worker failed")??)?;
    }
    let elapsed = start.elapsed();
    progress.finish();
    let interrupted = *stop.borrow();
    Ok(Outcome {
        tally,
        elapsed,
        interrupted,
        expected: schedule.expected(),
    })
}

/// One stream: takes tickets until the schedule says done.
async fn worker(shared: Arc<Shared>, slot: Arc<ConnSlot>, id: usize) -> Result<Tally> {
    let mut tally = Tally::new()?;
    let mut picker = shared.urls.picker(shared.seed, id)?;
    let mut stop = shared.stop.clone();
    let start = shared.schedule.start();
    loop {
        if *stop.borrow() {
            break;
        }
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let due = match shared.schedule.slot(ticket, now) {
            Slot::Done => break,
            Slot::Now => now,
            // Behind schedule (this stream was busy when the request fell
            // due): latency counts from the due time, so the stall shows.
            Slot::At(at) if at <= now => at,
            // Ahead of it: wait. The timer wakes up to a millisecond late;
            // that lag is the generator's own, so count from the wake-up.
            Slot::At(at) => {
                if !pause_until(at, &mut stop).await {
                    break;
                }
                Instant::now()
            }
        };
        let choice = picker.choose(ticket);
        let mut used = None;
        let result = tokio::time::timeout(
            shared.timeout,
            exchange(&shared, &slot, &choice, &mut used, &mut tally),
        )
        .await;
        let end = Instant::now();
        let at = end.saturating_duration_since(start);
        let failure = match result {
            Ok(Ok(answer)) => {
                tally.response(
                    answer.status,
                    answer.cache.as_deref(),
                    answer.bytes,
                    end.saturating_duration_since(due),
                    end.saturating_duration_since(answer.sent),
                    at,
                );
                shared.live.responses.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Err(failure)) => failure,
            Err(_) => Failure::new(
                ErrorKind::Timeout,
                format!("no complete answer within {:?}", shared.timeout),
            ),
        };
        let kind = failure.kind;
        slot.forget(used).await;
        tally.failure(failure, at);
        shared.live.errors.fetch_add(1, Ordering::Relaxed);
        if matches!(kind, ErrorKind::Connect | ErrorKind::Tls)
            && !pause_until(Instant::now() + CONNECT_BACKOFF, &mut stop).await
        {
            break;
        }
    }
    Ok(tally)
}

/// Sleeps until `at`; false if the stop signal came first.
async fn pause_until(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(at.into()) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// One request on the slot's connection (opening it first if needed), and
/// its whole body. `used` learns which connection generation it ran on.
async fn exchange(
    shared: &Shared,
    slot: &ConnSlot,
    choice: &Choice<'_>,
    used: &mut Option<u64>,
    tally: &mut Tally,
) -> Result<Answer, Failure> {
    let mut state = slot.state.lock().await;
    if state.sender.as_ref().is_none_or(Sender::is_closed) {
        state.sender = None;
        let sender = shared.connector.connect().await?;
        tally.connection(sender.label());
        state.sender = Some(sender);
        state.generation += 1;
    }
    *used = Some(state.generation);
    let h2 = matches!(state.sender, Some(Sender::H2(_)));
    let request = shared.connector.request(h2, &choice.path, choice.host)?;
    let (sent, response) = match state.sender.as_mut() {
        None => return Err(Failure::new(ErrorKind::Other, "no connection")),
        Some(Sender::H2(s)) => {
            // Streams share the connection: let go of the slot at once.
            let mut s = s.clone();
            drop(state);
            s.ready().await.map_err(|e| Failure::from_hyper(&e))?;
            let sent = Instant::now();
            (sent, s.send_request(request).await)
        }
        Some(Sender::H1(s)) => {
            // Wait for the previous exchange on this connection to end,
            // queue this one, then let the next stream queue behind it.
            s.ready().await.map_err(|e| Failure::from_hyper(&e))?;
            let sent = Instant::now();
            let pending = s.send_request(request);
            drop(state);
            (sent, pending.await)
        }
    };
    let response = response.map_err(|e| Failure::from_hyper(&e))?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-status")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let bytes = client::drain(response.into_body()).await?;
    Ok(Answer {
        status,
        cache,
        bytes,
        sent,
    })
}

impl ConnSlot {
    /// After a failure on connection `generation`: an HTTP/1.1 connection
    /// is dropped (its state is unknown); an HTTP/2 one is kept unless
    /// closed, since a failed stream leaves the others alone.
    async fn forget(&self, generation: Option<u64>) {
        let Some(generation) = generation else { return };
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return;
        }
        let drop_it = match &state.sender {
            Some(Sender::H1(_)) => true,
            Some(s @ Sender::H2(_)) => s.is_closed(),
            None => false,
        };
        if drop_it {
            state.sender = None;
        }
    }
}

#[cfg(test)]
mod tests {
    //! Runs the generator against a tiny hyper server on 127.0.0.1:0 in
    //! this process: HTTP/1.1, h2c, and h2 over TLS with a self-signed
    //! certificate made on the spot.

    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;

    use boring::ssl::{AlpnError, SslAcceptor, SslMethod};
    use bytes::Bytes;
    use clap::Parser;
    use http::{Request, Response, Version};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use tokio::net::TcpListener;

    use super::*;
    use crate::args::Args;

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
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).expect("acceptor");
        acceptor.set_private_key(&key).expect("key");
        acceptor.set_certificate(&cert).expect("cert");
        acceptor.set_alpn_select_callback(|_, client| {
            boring::ssl::select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
        });
        acceptor.build()
    }

    async fn load(argv: &[&str]) -> Outcome {
        let mut full = vec!["outpost-loadtest", "--quiet"];
        if !argv.contains(&"-d") {
            full.extend_from_slice(&["--duration", "30s"]);
        }
        full.extend_from_slice(argv);
        let plan = Args::try_parse_from(full)
            .expect("valid flags")
            .into_plan()
            .await
            .expect("valid plan");
        let (_stop_tx, stop) = watch::channel(false);
        run(&plan, stop).await.expect("run")
    }

    #[tokio::test]
    async fn http1_counts_every_request() {
        let (addr, seen) = serve(None).await;
        let url = format!("http://{addr}/obj/");
        let out = load(&["--url", &url, "--keys", "10", "-c", "4", "-r", "200"]).await;
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
    }

    #[tokio::test]
    async fn h2c_streams_share_connections() {
        let (addr, seen) = serve(None).await;
        let url = format!("http://{addr}/");
        let out = load(&[
            "--url",
            &url,
            "--h2",
            "-c",
            "2",
            "-s",
            "8",
            "-r",
            "300",
            "--host",
            "example.test",
        ])
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
        let out = load(&[
            "--url",
            &url,
            "--insecure",
            "-c",
            "2",
            "-s",
            "4",
            "-r",
            "100",
        ])
        .await;
        let t = &out.tally;
        assert_eq!(t.responses(), 100, "{:?}", t.error_examples);
        assert_eq!(seen.h2.load(Ordering::Relaxed), 100);
        assert_eq!(t.connections.get("h2"), Some(&2));
        assert_eq!(t.cache_outcomes.get("hit"), Some(&100));

        // ALPN can also settle on HTTP/1.1.
        let out = load(&[
            "--url",
            &url,
            "--insecure",
            "--http1",
            "-c",
            "1",
            "-r",
            "10",
        ])
        .await;
        assert_eq!(out.tally.responses(), 10);
        assert_eq!(out.tally.connections.get("h1"), Some(&1));

        // Without --insecure the self-signed certificate is refused.
        let out = load(&["--url", &url, "-c", "1", "-r", "3"]).await;
        assert_eq!(out.tally.responses(), 0);
        assert_eq!(out.tally.errors.get(&ErrorKind::Tls), Some(&3));
    }

    #[tokio::test]
    async fn open_loop_keeps_its_schedule() {
        let (addr, seen) = serve(None).await;
        let url = format!("http://{addr}/");
        let out = load(&[
            "--url", &url, "--rate", "200", "-d", "1s", "-r", "100000", "-c", "2",
        ])
        .await;
        // Due times 0, 5ms, ... 995ms: exactly 200 before the deadline.
        assert_eq!(out.tally.responses(), 200);
        assert_eq!(seen.requests.load(Ordering::Relaxed), 200);
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
        let out = load(&[
            "--url", &url, "--rate", "100", "-d", "1s", "-r", "1000", "-c", "1",
        ])
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
        let out = load(&["--url", &url, "-c", "2", "-r", "10"]).await;
        assert_eq!(out.tally.responses(), 10);
        assert_eq!(out.tally.errors.get(&ErrorKind::BadStatus), Some(&10));

        let url = format!("http://{addr}/slow");
        let out = load(&["--url", &url, "-c", "2", "-r", "2", "--timeout", "100ms"]).await;
        assert_eq!(out.tally.errors.get(&ErrorKind::Timeout), Some(&2));
        assert!(out.elapsed < Duration::from_secs(2));

        // A port nobody listens on: every attempt is a connect error, and
        // the run still ends at its request count.
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let url = format!("http://127.0.0.1:{port}/");
        let out = load(&["--url", &url, "-c", "2", "-r", "20"]).await;
        assert_eq!(out.tally.failures(), 20);
        assert_eq!(out.tally.errors.get(&ErrorKind::Connect), Some(&20));
    }

    #[tokio::test]
    async fn stop_signal_ends_the_run_early() {
        let (addr, _) = serve(None).await;
        let url = format!("http://{addr}/");
        let plan = Args::try_parse_from([
            "outpost-loadtest",
            "--quiet",
            "--url",
            &url,
            "--rate",
            "10",
            "-d",
            "60s",
        ])
        .expect("valid flags")
        .into_plan()
        .await
        .expect("plan");
        let (stop_tx, stop) = watch::channel(false);
        let started = Instant::now();
        let handle = tokio::spawn(async move { run(&plan, stop).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(true).expect("send");
        let out = handle.await.expect("join").expect("run");
        assert!(out.interrupted);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(out.tally.responses() >= 1);
    }
}
