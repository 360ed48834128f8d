//! End-to-end: HTTP/3 at the front door (issue 23), driven by quinn and the
//! h3 crate (not quiche), on a TLS listener with `quic: true`.

use std::time::Duration;

use bytes::Bytes;
use outpost_tests::h3client::{H3Client, H3Endpoint};
use outpost_tests::{
    Misbehaviour, Origin, OriginOptions, Outpost, RawOrigin, Scripted, access_log_lines, respond,
};

/// A test authority and a certificate from it for each host.
struct Certs {
    ca: String,
    files: Vec<(String, String)>,
}

impl Certs {
    fn new(hosts: &[&str]) -> Certs {
        let (ca, ca_key) =
            outpost_edge::tls::certificate_authority("Outpost test CA").expect("a test CA");
        let mut files = Vec::new();
        for host in hosts {
            let (cert, key) = outpost_edge::tls::signed_certificate(&[host], &ca, &ca_key)
                .expect("a certificate");
            files.push((format!("{host}.pem"), cert));
            files.push((format!("{host}.key"), key));
        }
        Certs { ca, files }
    }

    fn files(&self) -> Vec<(&str, &str)> {
        self.files
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect()
    }
}

/// A config with one TLS listener serving HTTP/3, certificates for `hosts`
/// (the first is the default), and `quic` as given.
fn config<Kind>(origin: &Scripted<Kind>, hosts: &[&str], quic: &str) -> String {
    let certificates: String = hosts
        .iter()
        .map(|h| format!("        - {{cert: {h}.pem, key: {h}.key}}\n"))
        .collect();
    format!(
        "access_log: {{path: access.log, fields: [protocol, host, path, status, cache_status]}}\n\
         listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n{certificates}    quic: {quic}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\n\
         sites:\n  - hosts: [{}]\n    origin: app\n",
        origin.url(),
        hosts.join(", ")
    )
}

/// Outpost with [`config`]'s listener, certificates for `hosts` from a new
/// test authority, and `quic` as given.
async fn start(origin: &Origin, hosts: &[&str], quic: &str) -> (Certs, Outpost) {
    let certs = Certs::new(hosts);
    let outpost = Outpost::start(&config(origin, hosts, quic), &certs.files(), None).await;
    (certs, outpost)
}

/// A GET misses then hits over HTTP/3, through the same cache as TCP
/// clients; the access log names the protocol; the TCP side advertises
/// HTTP/3 with Alt-Svc (RFC 7838).
#[tokio::test]
async fn http3_gets_miss_then_hit_and_tcp_answers_advertise_it() {
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "max-age=300")],
            format!("page {}", seen.uri.path()),
        )
    })
    .await;
    let (certs, outpost) = start(&origin, &["a.test"], "true").await;
    let client = H3Client::connect(outpost.addr(), "a.test", &certs.ca)
        .await
        .unwrap();

    let miss = client.get("a.test", "/page").await.unwrap();
    assert_eq!(miss.status, 200);
    assert_eq!(miss.body, b"page /page");
    assert!(miss.header("cache-status").contains("fwd=miss"), "{miss:?}");
    let hit = client.get("a.test", "/page").await.unwrap();
    assert_eq!(hit.body, b"page /page");
    assert!(hit.header("cache-status").contains("hit"), "{hit:?}");
    assert_eq!(origin.hits(), 1);
    // The origin sees an ordinary request, not HTTP/3's pseudo-fields.
    assert_eq!(origin.last().header("host"), "a.test");

    // A TCP client of the same listener hits the same entry and is told
    // of HTTP/3 on this port.
    let tcp = tls_get(outpost.addr(), "a.test", "/page").await;
    assert!(tcp.contains("200 OK"), "{tcp}");
    let alt_svc = format!("alt-svc: h3=\":{}\"; ma=86400", outpost.addr().port());
    assert!(tcp.to_ascii_lowercase().contains(&alt_svc), "{tcp}");
    assert_eq!(origin.hits(), 1);
    // Nothing advertises HTTP/3 over HTTP/3 itself.
    assert_eq!(hit.header("alt-svc"), "");

    let on = |protocol: &str| {
        format!("outpost_client_requests_by_protocol_total{{protocol=\"{protocol}\"}}")
    };
    assert_eq!(
        outpost_tests::metric(outpost.admin, &on("h3")).await,
        Some(2.0)
    );
    assert_eq!(
        outpost_tests::metric(outpost.admin, &on("http/1")).await,
        Some(1.0)
    );
    // One QUIC handshake and one over TCP.
    let handshakes = "outpost_tls_handshakes_total{result=\"ok\"}";
    assert_eq!(
        outpost_tests::metric(outpost.admin, handshakes).await,
        Some(2.0)
    );
    let lines = access_log_lines(&outpost.dir.path().join("access.log"), 3).await;
    assert!(
        lines[0]["protocol"].as_str().unwrap().contains("HTTP/3"),
        "{lines:?}"
    );
}

/// HTTP/1.1 over TLS by hand: the answer's head and body as text.
async fn tls_get(addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = outpost_tests::tls_connect(tcp, host, b"").await;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The certificate is chosen by SNI (the client checks the name against
/// it); a request for a host the connection's certificate does not serve
/// is misdirected (RFC 9110 §15.5.20, RFC 9114 §3.3).
#[tokio::test]
async fn the_certificate_follows_sni_and_other_hosts_are_misdirected() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "ok")).await;
    let (certs, outpost) = start(&origin, &["a.test", "b.test"], "true").await;
    for host in ["a.test", "b.test"] {
        let client = H3Client::connect(outpost.addr(), host, &certs.ca)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:#}"));
        let leaf = boring::x509::X509::from_der(&client.peer_certificate).unwrap();
        let names: Vec<String> = leaf
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_owned))
            .collect();
        assert_eq!(names, [host]);
        assert_eq!(client.get(host, "/x").await.unwrap().status, 200);
    }
    let client = H3Client::connect(outpost.addr(), "a.test", &certs.ca)
        .await
        .unwrap();
    assert_eq!(client.get("b.test", "/x").await.unwrap().status, 421);
    assert_eq!(client.get("nowhere.test", "/x").await.unwrap().status, 421);
}

/// A 1 MiB body arrives whole; a POST's body reaches the origin whole and
/// its answer comes back; 100 requests at once on one connection are all
/// answered.
#[tokio::test]
async fn large_bodies_posts_and_a_hundred_streams_at_once() {
    const BIG: usize = 1 << 20;
    let origin = Origin::start(|seen| {
        if seen.method == http::Method::POST {
            return respond(
                200,
                &[("cache-control", "no-store")],
                format!("got {} bytes", seen.body.len()),
            );
        }
        if seen.uri.path() == "/big" {
            let body: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
            return respond(200, &[("cache-control", "max-age=300")], body);
        }
        respond(
            200,
            &[("cache-control", "max-age=300")],
            seen.uri.path().to_owned(),
        )
    })
    .await;
    let (certs, outpost) = start(&origin, &["a.test"], "true").await;
    let client = H3Client::connect(outpost.addr(), "a.test", &certs.ca)
        .await
        .unwrap();

    for _ in 0..2 {
        let big = client.get("a.test", "/big").await.unwrap();
        assert_eq!(big.status, 200);
        assert_eq!(big.body.len(), BIG);
        assert!(
            big.body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == (i % 251) as u8)
        );
        assert_eq!(big.header("content-length"), BIG.to_string());
    }

    let upload: Vec<u8> = (0..300_000).map(|i| (i % 7) as u8).collect();
    let post = http::Request::post("https://a.test/upload")
        .header("content-length", upload.len())
        .body(())
        .unwrap();
    let posted = client.send(post, Bytes::from(upload)).await.unwrap();
    assert_eq!(posted.status, 200);
    assert_eq!(posted.body, b"got 300000 bytes");
    assert_eq!(origin.last().body.len(), 300_000);

    let client = std::sync::Arc::new(client);
    let mut all = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = client.clone();
        all.spawn(async move { (i, client.get("a.test", &format!("/n/{i}")).await) });
    }
    let mut answered = 0;
    while let Some(done) = all.join_next().await {
        let (i, got) = done.unwrap();
        let got = got.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.body, format!("/n/{i}").as_bytes());
        answered += 1;
    }
    assert_eq!(answered, 100);
}

/// SIGTERM: a request in flight on HTTP/3 finishes, the connection is
/// told to go (GOAWAY, RFC 9114 §5.2) and closed without error, and the
/// process exits 0.
#[tokio::test]
async fn shutdown_drains_http3_requests_in_flight() {
    let options = OriginOptions {
        delay: Some(Duration::from_millis(700)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "no-store")], "done")
    })
    .await;
    let (certs, mut outpost) = start(&origin, &["a.test"], "true").await;
    let client = std::sync::Arc::new(
        H3Client::connect(outpost.addr(), "a.test", &certs.ca)
            .await
            .unwrap(),
    );
    let asking = client.clone();
    let in_flight = tokio::spawn(async move { asking.get("a.test", "/slow").await });
    origin.await_arrivals(1).await;
    outpost.terminate();
    let got = in_flight.await.unwrap().unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, &b"done"[..]));
    assert_eq!(outpost.exit_code(Duration::from_secs(10)).await, Some(0));
    let client = std::sync::Arc::into_inner(client).expect("one owner");
    let why = tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the connection closed");
    assert!(why.is_h3_no_error(), "{why:?}");
}

/// `quic` on a listener without TLS is a config error at its place.
#[test]
fn quic_needs_tls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outpost.yaml");
    std::fs::write(
        &path,
        "listen:\n  - addr: 127.0.0.1:0\n    quic: true\nadmin: {addr: 127.0.0.1:0}\n\
         origins:\n  app: {servers: [{url: http://127.0.0.1:9}]}\nsites:\n  - hosts: [a.test]\n    origin: app\n",
    )
    .unwrap();
    let out = std::process::Command::new(outpost_tests::outpost_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("outpost.yaml:2:"), "{text}");
    assert!(text.contains("HTTP/3 needs TLS"), "{text}");
}

/// A binary upgrade hands the UDP socket over with the TCP ones: the
/// successor answers HTTP/3 on the same port, and the old process
/// finishes the request it had in flight before it exits.
#[tokio::test]
async fn an_upgrade_hands_quic_over() {
    let options = OriginOptions {
        delay: Some(Duration::from_millis(1_500)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |seen| {
        respond(
            200,
            &[("cache-control", "no-store")],
            seen.uri.path().to_owned(),
        )
    })
    .await;
    let certs = Certs::new(&["a.test"]);
    let config = format!(
        "upgrade_socket: upgrade.sock\n{}",
        config(&origin, &["a.test"], "true")
    );
    let mut old = Outpost::start(&config, &certs.files(), Some("upgrade-token")).await;
    let addr = old.addr();
    let before = std::sync::Arc::new(H3Client::connect(addr, "a.test", &certs.ca).await.unwrap());
    assert_eq!(before.get("a.test", "/first").await.unwrap().status, 200);
    let asking = before.clone();
    let in_flight = tokio::spawn(async move { asking.get("a.test", "/in-flight").await });
    // The origin holds it while the successor starts and takes over.
    origin.await_arrivals(2).await;

    let new = old.upgrade().await;
    assert_eq!(new.listen, old.listen);
    let got = in_flight.await.unwrap();
    // Its packets may reach either process while both read the socket;
    // QUIC retransmits what the successor drops.
    let got = got.expect("the request in flight finished");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"/in-flight"[..]));
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));

    // A new connection reaches the successor on the same port.
    let after = H3Client::connect(addr, "a.test", &certs.ca).await.unwrap();
    let got = after.get("a.test", "/after").await.unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, &b"/after"[..]));
}

/// Clients asking without pause across an upgrade (docs/operations.md
/// quotes the figures this prints): each keeps one connection, and when
/// a request fails (the old process's GOAWAY, a close) it opens a new one
/// and goes on. No client waits long for an answer, a client loses at
/// most the requests open when its connection ended, and every client is
/// answered by the successor once the old process has exited.
#[tokio::test]
async fn clients_asking_across_an_upgrade_are_answered() {
    const CLIENTS: usize = 8;
    let origin = Origin::start(|seen| {
        respond(
            200,
            &[("cache-control", "max-age=600")],
            seen.uri.path().to_owned(),
        )
    })
    .await;
    let certs = std::sync::Arc::new(Certs::new(&["a.test"]));
    let config = format!(
        "upgrade_socket: upgrade.sock\n{}",
        config(&origin, &["a.test"], "true")
    );
    let mut old = Outpost::start(&config, &certs.files(), Some("upgrade-token")).await;
    let addr = old.addr();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        let (certs, mut stopped) = (certs.clone(), stopped.clone());
        clients.push(tokio::spawn(async move {
            let mut figures = ClientFigures::default();
            let mut client: Option<H3Client> = None;
            let mut last_answer = std::time::Instant::now();
            // Bounded: at most 200,000 requests, and the test stops it.
            for i in 0..200_000u32 {
                if *stopped.borrow_and_update() {
                    break;
                }
                let current = match &client {
                    Some(c) => c,
                    None => match H3Client::connect(addr, "a.test", &certs.ca).await {
                        Ok(c) => {
                            figures.connections += 1;
                            client.insert(c)
                        }
                        Err(_) => {
                            figures.failed_connects += 1;
                            continue;
                        }
                    },
                };
                let path = format!("/c{n}/{}", i % 50);
                match current.get("a.test", &path).await {
                    Ok(got) if got.status == 200 && got.body == path.as_bytes() => {
                        figures.answered += 1;
                        figures.longest_gap = figures.longest_gap.max(last_answer.elapsed());
                        last_answer = std::time::Instant::now();
                    }
                    Ok(got) => panic!("{path}: {} {:?}", got.status, got.body),
                    Err(_) => {
                        figures.failed += 1;
                        client = None;
                    }
                }
            }
            figures
        }));
    }
    // Some traffic on the old process, then the upgrade under it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while origin.hits() < CLIENTS * 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the clients are being answered");
    let started = std::time::Instant::now();
    let new = old.upgrade().await;
    assert_eq!(old.exit_code(Duration::from_secs(30)).await, Some(0));
    let handover = started.elapsed();
    // Served by the successor alone from here: each client is answered
    // again before the test stops it.
    let served = || async {
        outpost_tests::metric_sum(
            new.admin,
            "outpost_client_requests_by_protocol_total",
            &[("protocol", "h3")],
        )
        .await
        .unwrap_or(0.0)
    };
    let served_after = served().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while served().await < served_after + (CLIENTS * 20) as f64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the successor answers the clients");
    stop.send(true).unwrap();
    let mut total = ClientFigures::default();
    for client in clients {
        let figures = client.await.unwrap();
        assert!(
            figures.longest_gap < Duration::from_secs(5),
            "a client waited {:?}",
            figures.longest_gap
        );
        assert!(
            figures.connections >= 2,
            "every client moved to the successor"
        );
        total.answered += figures.answered;
        total.failed += figures.failed;
        total.failed_connects += figures.failed_connects;
        total.connections += figures.connections;
        total.longest_gap = total.longest_gap.max(figures.longest_gap);
    }
    eprintln!(
        "upgrade under HTTP/3 load: {CLIENTS} clients, handover (upgrade to old exit) {handover:?}; \
         answered {}, failed requests {}, failed connects {}, connections {}, longest wait {:?}",
        total.answered, total.failed, total.failed_connects, total.connections, total.longest_gap
    );
    // One request open per client at a time: a connection's end costs it
    // at most that one.
    assert!(
        total.failed <= total.connections,
        "{} failed over {} connections",
        total.failed,
        total.connections
    );
}

#[derive(Default)]
struct ClientFigures {
    answered: usize,
    failed: usize,
    failed_connects: usize,
    connections: usize,
    longest_gap: Duration,
}

/// A reload that replaces a certificate reaches new QUIC handshakes: the
/// client that trusts only the new certificate's authority connects after
/// it, and one that trusts only the old one no longer does.
#[tokio::test]
async fn a_reload_swaps_certificates_for_new_connections() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "ok")).await;
    let old_certs = Certs::new(&["a.test"]);
    let outpost = Outpost::start(
        &config(&origin, &["a.test"], "true"),
        &old_certs.files(),
        Some("reload-token"),
    )
    .await;
    let addr = outpost.addr();
    let kept = H3Client::connect(addr, "a.test", &old_certs.ca)
        .await
        .unwrap();

    let new_certs = Certs::new(&["a.test"]);
    for (name, contents) in new_certs.files() {
        std::fs::write(outpost.dir.path().join(name), contents).unwrap();
    }
    let answer = outpost_tests::reload(outpost.admin, "reload-token").await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    let fresh = H3Client::connect(addr, "a.test", &new_certs.ca)
        .await
        .unwrap();
    assert_eq!(fresh.get("a.test", "/x").await.unwrap().status, 200);
    assert!(
        H3Client::connect(addr, "a.test", &old_certs.ca)
            .await
            .is_err(),
        "the old certificate is no longer offered"
    );
    // A connection made before the reload goes on.
    assert_eq!(kept.get("a.test", "/x").await.unwrap().status, 200);
}

/// 0-RTT (RFC 8470). Off by default: a returning client is offered no
/// early data. With `early_data: true`, a request sent in early data with
/// an unsafe method is answered 425 (the client sends it again after the
/// handshake) and never reaches the origin; a safe one is served and
/// reaches the origin with `Early-Data: 1`, and the origin's own 425 goes
/// back to the client and is not stored.
#[tokio::test]
async fn early_data_serves_only_safe_methods() {
    // This origin will not take a replayable request on /sensitive.
    let origin = Origin::start(|seen| {
        if seen.uri.path() == "/sensitive" && seen.header("early-data") == "1" {
            return respond(425, &[], "too early");
        }
        respond(200, &[("cache-control", "max-age=60")], "ok")
    })
    .await;
    let (certs, off) = start(&origin, &["a.test"], "true").await;
    let endpoint = H3Endpoint::new(&certs.ca, true).unwrap();
    let first = endpoint.connect(off.addr(), "a.test").await.unwrap();
    assert_eq!(first.get("a.test", "/warm").await.unwrap().status, 200);
    assert!(
        endpoint
            .connect_early(off.addr(), "a.test")
            .await
            .unwrap()
            .is_none(),
        "0-RTT is off by default"
    );
    drop(off);

    let (certs, on) = start(&origin, &["a.test"], "{early_data: true}").await;
    let endpoint = H3Endpoint::new(&certs.ca, true).unwrap();
    let first = endpoint.connect(on.addr(), "a.test").await.unwrap();
    assert_eq!(first.get("a.test", "/warm").await.unwrap().status, 200);
    let before = origin.hits();
    let early = std::sync::Arc::new(
        endpoint
            .connect_early(on.addr(), "a.test")
            .await
            .unwrap()
            .expect("a ticket that allows early data"),
    );
    // Both go out in the first flight, before the handshake ends.
    let post = http::Request::post("https://a.test/order")
        .header("content-length", "3")
        .body(())
        .unwrap();
    let (posting, getting, sensitive) = (early.clone(), early.clone(), early.clone());
    let (posted, got, refused) = tokio::join!(
        async move { posting.send(post, Bytes::from_static(b"one")).await },
        async move { getting.get("a.test", "/early").await },
        async move { sensitive.get("a.test", "/sensitive").await },
    );
    assert_eq!(posted.unwrap().status, 425);
    assert_eq!(got.unwrap().status, 200);
    assert_eq!(
        refused.unwrap().status,
        425,
        "the origin's 425 reaches the client"
    );
    assert_eq!(
        origin.hits(),
        before + 2,
        "the POST never reached the origin"
    );
    let early_seen: Vec<_> = origin.seen()[before..].to_vec();
    assert!(early_seen.iter().all(|s| s.header("early-data") == "1"));
    // After the handshake the client asks again and is answered.
    let later = endpoint.connect(on.addr(), "a.test").await.unwrap();
    assert_eq!(later.get("a.test", "/sensitive").await.unwrap().status, 200);
}

/// A client that sends endless empty DATA frames on a request (RFC 9114
/// §10.5: frames that cost the server work and carry nothing) is held by
/// flow control, the frames' own bytes using up the stream's window, so
/// the server's memory does not grow with them; its body brings nothing,
/// and past `body_timeout` the connection ends with H3_EXCESSIVE_LOAD.
/// Other clients are served meanwhile.
#[tokio::test]
async fn a_flood_of_empty_frames_ends_the_connection() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "ok")).await;
    let quic = "{stream_window: 64KiB, body_timeout: 2s}";
    let (certs, outpost) = start(&origin, &["a.test"], quic).await;
    let endpoint = H3Endpoint::new(&certs.ca, false).unwrap();
    let (raw, _control) = raw_connection(&endpoint, outpost.addr()).await;
    let headers = post_head();
    let (mut send, _recv) = raw.open_bi().await.unwrap();
    send.write_all(&headers).await.unwrap();

    let before = outpost.memory_kib("VmRSS");
    // 2-byte DATA frames of length 0, 64 MiB of them at most: far past the
    // 64 KiB window, so the writes stop when it is used up.
    let empty = [0x00u8, 0x00].repeat(8192);
    let mut written = 0usize;
    let flood = async {
        while written < 64 << 20 {
            if send.write_all(&empty).await.is_err() {
                break;
            }
            written += empty.len();
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), flood).await;
    eprintln!("empty DATA frames written: {written} bytes");
    assert!(written < 64 << 20, "the window held the flood back");
    let after = outpost.memory_kib("VmRSS");
    assert!(
        after < before + 16 * 1024,
        "RSS {before} kB grew to {after} kB"
    );
    assert_closed_with(&raw, 0x107, b"request body stalled").await;

    // Others are served meanwhile.
    let other = H3Client::connect(outpost.addr(), "a.test", &certs.ca)
        .await
        .unwrap();
    assert_eq!(other.get("a.test", "/x").await.unwrap().status, 200);
}

/// Waits (10 s at most) for Outpost to close `raw` with the HTTP/3 error
/// `code` and `reason`.
async fn assert_closed_with(raw: &quinn::Connection, code: u32, reason: &'static [u8]) {
    let why = tokio::time::timeout(Duration::from_secs(10), raw.closed())
        .await
        .expect("the connection ends");
    assert_eq!(
        why,
        quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(code),
            reason: Bytes::from_static(reason),
        }),
    );
}

/// A connection kept busy with PINGs and a request head that never ends
/// (a slowloris: the head is not a request until it is whole) is closed
/// once it has gone `idle_timeout` without a request (H3_NO_ERROR), as is
/// any connection left unused that long; one whose requests keep coming
/// stays open.
#[tokio::test]
async fn a_connection_without_requests_is_closed_whatever_keeps_it_alive() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "ok")).await;
    let (certs, outpost) = start(&origin, &["a.test"], "{idle_timeout: 2s}").await;
    let every = Some(Duration::from_millis(300));
    let endpoint = H3Endpoint::with_keep_alive(&certs.ca, false, every).unwrap();
    let (raw, _control) = raw_connection(&endpoint, outpost.addr()).await;
    let (mut send, _recv) = raw.open_bi().await.unwrap();
    // A HEADERS frame that says 100 bytes and brings 4 of them.
    send.write_all(&[0x01, 0x40, 100, 0x00, 0x00, 0xc0 | 17, 0xc0 | 23])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_closed_with(&raw, 0x100, b"idle").await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // Requests every second, each within the timeout of the last: open.
    let client = H3Endpoint::with_keep_alive(&certs.ca, false, every)
        .unwrap()
        .connect(outpost.addr(), "a.test")
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(client.get("a.test", "/x").await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(client.get("a.test", "/x").await.unwrap().status, 200);
}

/// An origin's 103 Early Hints reach the HTTP/3 client on the request's
/// stream before the final answer (RFC 9110 §15.2, RFC 8297), without the
/// fields its Connection named; the final answer follows whole.
#[tokio::test]
async fn early_hints_reach_an_http3_client() {
    const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\nconnection: x-hop\r\nx-hop: 1\r\n\r\n";
    const FINAL: &str =
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncache-control: max-age=600\r\n\r\nfinal";
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release)).await;
    let certs = Certs::new(&["a.test"]);
    let outpost = Outpost::start(&config(&origin, &["a.test"], "true"), &certs.files(), None).await;
    let client = H3Client::connect(outpost.addr(), "a.test", &certs.ca)
        .await
        .unwrap();
    let got = client.get("a.test", "/hinted").await.unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, &b"final"[..]));
    assert_eq!(got.interim.len(), 1, "{got:?}");
    let (status, hints) = &got.interim[0];
    assert_eq!(*status, 103);
    assert_eq!(hints["link"], "</style.css>; rel=preload");
    assert!(!hints.contains_key("x-hop") && !hints.contains_key("connection"));
}

/// A QUIC connection for HTTP/3 frames written by hand, with the client's
/// control stream open (RFC 9114 §6.2.1: its type, then an empty
/// SETTINGS frame).
async fn raw_connection(
    endpoint: &H3Endpoint,
    addr: std::net::SocketAddr,
) -> (quinn::Connection, quinn::SendStream) {
    let raw = endpoint
        .connect_raw(addr, "a.test")
        .await
        .expect("a QUIC connection");
    let mut control = raw.open_uni().await.expect("a control stream");
    control
        .write_all(&[0x00, 0x04, 0x00])
        .await
        .expect("SETTINGS");
    // The stream stays open for the connection's life: keep it.
    (raw, control)
}

/// The HEADERS frame of `POST https://a.test/` in QPACK's static table
/// (RFC 9204 Appendix A): no dynamic table; :method POST, :scheme https,
/// :path /; :authority as a literal with its name from the table.
fn post_head() -> Vec<u8> {
    let mut block = vec![0x00, 0x00, 0xc0 | 20, 0xc0 | 23, 0xc0 | 1, 0x50, 6];
    block.extend_from_slice(b"a.test");
    let mut headers = vec![0x01, u8::try_from(block.len()).expect("short")];
    headers.extend_from_slice(&block);
    headers
}

/// A client that opens requests only to cancel them while they are in
/// flight (a rapid reset flood, RFC 9114 §10.5) loses its connection with
/// H3_EXCESSIVE_LOAD once past its allowance (100 at once, 20 a second
/// after), and the origin sees no more of them.
#[tokio::test]
async fn a_flood_of_cancelled_requests_ends_the_connection() {
    let options = OriginOptions {
        delay: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "no-store")], "ok")
    })
    .await;
    let (certs, outpost) = start(&origin, &["a.test"], "true").await;
    let endpoint = H3Endpoint::new(&certs.ca, false).unwrap();
    let (raw, _control) = raw_connection(&endpoint, outpost.addr()).await;
    let head = post_head();
    let mut cancelled = 0;
    for _ in 0..300 {
        let Ok((mut send, _recv)) = raw.open_bi().await else {
            break;
        };
        if send.write_all(&head).await.is_err() {
            break;
        }
        // In flight: it has reached the origin (or the connection is gone).
        tokio::select! {
            () = origin.await_arrivals(cancelled + 1) => {}
            _ = raw.closed() => break,
        }
        // H3_REQUEST_CANCELLED.
        if send.reset(quinn::VarInt::from_u32(0x10c)).is_err() {
            break;
        }
        cancelled += 1;
        if raw.close_reason().is_some() {
            break;
        }
    }
    let why = tokio::time::timeout(Duration::from_secs(10), raw.closed())
        .await
        .expect("the connection was closed");
    match why {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(0x107),
                "{close:?}"
            );
        }
        other => panic!("closed for another reason: {other:?}"),
    }
    // The burst is allowed; the flood is cut well before 300.
    assert!((100..300).contains(&cancelled), "{cancelled} cancelled");
}

/// Until a client's address is validated, the server sends it no more
/// than `amplification_factor` times what it received (RFC 9000 §8.1): a
/// relay passes on the client's first datagram only and counts what comes
/// back until the server falls quiet, probes included. At 3 the whole
/// first flight (certificate and all) goes out; at 1 it is cut short: the
/// handshake data stays within what the client sent, and quiche's loss
/// probes add no more than a few hundred bytes.
#[tokio::test]
async fn an_unvalidated_address_gets_at_most_the_amplification_factor() {
    let origin = Origin::start(|_| respond(200, &[], "ok")).await;
    let mut sent = Vec::new();
    for factor in [3usize, 1] {
        let quic = format!("{{retry: false, amplification_factor: {factor}}}");
        let (certs, outpost) = start(&origin, &["a.test"], &quic).await;
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        upstream.connect(outpost.addr()).await.unwrap();
        let endpoint = H3Endpoint::new(&certs.ca, false).unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let client = tokio::spawn(async move {
            // Never completes: the relay drops everything after the
            // first datagram.
            let _ = tokio::time::timeout(
                Duration::from_secs(8),
                endpoint.connect(relay_addr, "a.test"),
            )
            .await;
        });
        let mut buf = vec![0u8; 65_536];
        let (received, _) = relay.recv_from(&mut buf).await.unwrap();
        upstream.send(&buf[..received]).await.unwrap();
        // Until the server has been quiet for 2.5 s (its probes come every
        // second or so, fewer as they back off).
        let mut total = 0usize;
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(2500), upstream.recv(&mut buf)).await
        {
            total += n;
            assert!(total < 64 * received, "unbounded: {total} bytes");
        }
        eprintln!("factor {factor}: received {received}, sent {total}");
        assert!(total > 0, "the server answered");
        assert!(
            total <= factor * received + 1200,
            "factor {factor}: {total} bytes sent for {received} received"
        );
        sent.push(total);
        client.abort();
    }
    assert!(
        sent[1] < sent[0],
        "a factor of 1 cut the first flight short: {sent:?}"
    );
}
