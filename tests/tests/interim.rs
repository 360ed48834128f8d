//! End-to-end: interim (1xx) responses. RFC 9110 §15.2: a proxy forwards
//! the 1xx responses it did not ask for, to HTTP/1.1 clients and never to
//! HTTP/1.0 ones; RFC 9111 §3: they are never stored. 103 Early Hints
//! (RFC 8297) reach the client while the origin is still working on the
//! final answer. Over HTTP/2 they are HEADERS frames on the request's
//! stream, before its final HEADERS (RFC 9113 §8.1).

use std::sync::Arc;

use outpost_tests::h2raw::{self, H2Raw};
use outpost_tests::{
    H2Origin, H2Script, Misbehaviour, Origin, Outpost, RawOrigin, get, respond, simple_config,
    tls_connect,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\nconnection: x-hop\r\nx-hop: 1\r\n\r\n";
const FINAL: &str =
    "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncache-control: max-age=600\r\n\r\nfinal";

fn config(origin: &RawOrigin) -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers:\n      - url: {}\nsites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.url()
    )
}

/// Reads from `stream` until `buf` holds a complete head (and `extra`
/// more bytes after the last one).
async fn read_until_head(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
    heads: usize,
) {
    let mut chunk = [0u8; 4096];
    while buf.windows(4).filter(|w| *w == b"\r\n\r\n").count() < heads {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `request` on `client` while the origin holds its final answer:
/// a 103 must arrive first; then the origin is released and the final
/// head read. Returns what had arrived at each of the two points.
async fn hints_then_final(
    client: &mut (impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin),
    request: &[u8],
    release: &tokio::sync::Semaphore,
) -> (String, String) {
    client.write_all(request).await.expect("send");
    let mut seen = Vec::new();
    read_until_head(client, &mut seen, 1).await;
    let hints = String::from_utf8_lossy(&seen).to_string();
    assert!(hints.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{hints}");
    release.add_permits(1);
    read_until_head(client, &mut seen, 2).await;
    (hints, String::from_utf8_lossy(&seen).to_string())
}

#[tokio::test]
async fn early_hints_reach_the_client_before_the_final_answer_and_are_never_stored() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let outpost = Outpost::start(&config(&origin), &[], None).await;

    let mut client = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    // The 103 arrives while the origin still holds its final answer back.
    let (text, whole) = hints_then_final(
        &mut client,
        b"GET /page HTTP/1.1\r\nhost: example.com\r\n\r\n",
        &release,
    )
    .await;
    assert!(
        text.contains("link: </style.css>; rel=preload\r\n"),
        "{text}"
    );
    assert!(
        !text.contains("x-hop"),
        "hop-by-hop fields stay behind: {text}"
    );
    let final_at = whole.find("HTTP/1.1 200 OK\r\n").expect("the final answer");
    assert!(final_at > 0);
    let mut seen = whole.into_bytes();
    let mut chunk = [0u8; 64];
    while !seen.ends_with(b"final") {
        let n = client.read(&mut chunk).await.expect("read the body");
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }

    // The next request on the same connection gets its own hints, after
    // the first answer and before its own.
    let (_, whole) = hints_then_final(
        &mut client,
        b"GET /other HTTP/1.1\r\nhost: example.com\r\n\r\n",
        &release,
    )
    .await;
    assert!(whole.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"));

    // The stored answer is the final one alone.
    let got = get(outpost.addr(), "example.com", "/page").await;
    got.assert_hit();
    assert_eq!(got.body, "final");
    assert_eq!(origin.hits(), 2);
}

/// Over HTTPS the 103 leaves as soon as it is written, not with the final
/// answer: the TLS connection's writes are batched until a flush
/// (`front/batched.rs`), and the interim response is flushed on its own.
#[tokio::test]
async fn early_hints_reach_an_https_client_while_the_origin_works() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let (cert, key) = outpost_edge::tls::self_signed(&["hint.test"]).expect("certificate");
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: c.pem, key: c.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\n\
         sites:\n  - hosts: [hint.test]\n    origin: app\n",
        origin.url()
    );
    let outpost = Outpost::start(&config, &[("c.pem", &cert), ("c.key", &key)], None).await;
    let tcp = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    let mut client = tls_connect(tcp, "hint.test", b"\x08http/1.1").await;
    // The origin holds its final answer until the hints have arrived.
    let (text, whole) = hints_then_final(
        &mut client,
        b"GET /page HTTP/1.1\r\nhost: hint.test\r\n\r\n",
        &release,
    )
    .await;
    assert!(!text.contains("HTTP/1.1 200"), "{text}");
    assert!(whole.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn an_http_1_0_client_gets_no_interim_response() {
    let release = Arc::new(tokio::sync::Semaphore::new(1));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release)).await;
    let outpost = Outpost::start(&config(&origin), &[], None).await;
    let mut client = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    client
        .write_all(b"GET /old HTTP/1.0\r\nhost: example.com\r\n\r\n")
        .await
        .expect("send");
    let mut seen = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.read_to_end(&mut seen),
    )
    .await
    .expect("an answer in time")
    .expect("read");
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.starts_with("HTTP/1.0 200 OK\r\n") || text.starts_with("HTTP/1.1 200 OK\r\n"),
        "{text}"
    );
    assert!(!text.contains(" 103 "), "{text}");
}

/// The first head on stream 1 is the 103, with the origin's link and
/// without its hop-by-hop fields, while the origin holds its final
/// answer; the final head and the body follow on the same stream (RFC
/// 9113 §8.1). Read with the h2 crate's client, which decodes each head.
#[tokio::test]
async fn early_hints_reach_an_http2_client_on_the_request_stream() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let outpost = Outpost::start(&config(&origin), &[], None).await;
    let tcp = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let req = http::Request::get("http://example.com/h2page")
        .body(())
        .expect("request");
    let (mut response, _) = client.send_request(req, true).expect("send");
    let wait = std::time::Duration::from_secs(10);
    let hints = tokio::time::timeout(
        wait,
        std::future::poll_fn(|cx| response.poll_informational(cx)),
    )
    .await
    .expect("an interim head in time")
    .expect("an interim head before the final one")
    .expect("a well-formed head");
    assert_eq!(hints.status(), http::StatusCode::EARLY_HINTS);
    assert_eq!(
        hints.headers().get("link").expect("link"),
        "</style.css>; rel=preload"
    );
    assert!(hints.headers().get("x-hop").is_none(), "{hints:?}");

    release.add_permits(1);
    let response = tokio::time::timeout(wait, response)
        .await
        .expect("the final head in time")
        .expect("the final head");
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    assert_eq!(bytes, b"final");
}

/// A real HTTP/2 client (the h2 crate, which decodes and skips 1xx heads)
/// on one connection: concurrent streams each get their hints and then
/// their own final answer, so the interim frames left h2's HPACK state
/// with the client intact.
#[tokio::test]
async fn interim_frames_leave_http2_header_compression_intact() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let outpost = Outpost::start(&config(&origin), &[], None).await;
    let tcp = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let mut answers = Vec::new();
    for round in 0..3 {
        let mut pending = Vec::new();
        for i in 0..4 {
            let req = http::Request::get(format!("http://example.com/many/{round}/{i}"))
                .header("x-round", round.to_string())
                .body(())
                .expect("request");
            let (response, _) = client.send_request(req, true).expect("send");
            pending.push(response);
        }
        // Every stream has its hints queued or sent before any final answer.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while origin.hits() < 4 * (round + 1) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the origin sees every request");
        release.add_permits(4);
        for response in pending {
            let response = response.await.expect("a final answer");
            let status = response.status();
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("body");
                body.flow_control()
                    .release_capacity(chunk.len())
                    .expect("capacity");
                bytes.extend_from_slice(&chunk);
            }
            answers.push((status, bytes));
        }
    }
    assert_eq!(answers.len(), 12);
    for (status, body) in answers {
        assert_eq!(
            (status, body.as_slice()),
            (http::StatusCode::OK, b"final".as_slice())
        );
    }
}

/// A client's reads, paused and resumed at will: while paused, the socket
/// fills up and Outpost's writes are left pending.
struct Gate<T> {
    inner: T,
    paused: Arc<std::sync::atomic::AtomicBool>,
    waker: Arc<futures_util::task::AtomicWaker>,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Gate<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.waker.register(cx.waker());
        if self.paused.load(std::sync::atomic::Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Gate<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Over TLS, a write the socket leaves pending is already sealed in a
/// record, and the next write must repeat it: an interim response that
/// arrives while a large download has filled the socket waits for it, and
/// the connection carries both streams whole.
#[tokio::test]
async fn interim_frames_wait_for_a_pending_tls_write() {
    const BIG: usize = 24 << 20;
    let big =
        Origin::start(|_| respond(200, &[("cache-control", "no-store")], "z".repeat(BIG))).await;
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let hinted = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let (cert, key) =
        outpost_edge::tls::self_signed(&["big.test", "hint.test"]).expect("certificate");
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: c.pem, key: c.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  big: {{servers: [{{url: {}}}]}}\n  hinted: {{servers: [{{url: {}}}]}}\n\
         sites:\n  - hosts: [big.test]\n    origin: big\n  - hosts: [hint.test]\n    origin: hinted\n",
        big.url(),
        hinted.url()
    );
    let outpost = Outpost::start(&config, &[("c.pem", &cert), ("c.key", &key)], None).await;

    let tcp = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    let socket = std::os::fd::AsFd::as_fd(&tcp)
        .try_clone_to_owned()
        .expect("dup");
    let tls = tls_connect(tcp, "hint.test", b"\x02h2").await;
    let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waker = Arc::new(futures_util::task::AtomicWaker::new());
    let gate = Gate {
        inner: tls,
        paused: paused.clone(),
        waker: waker.clone(),
    };
    let (mut client, connection) = h2::client::Builder::new()
        .initial_window_size(64 << 20)
        .initial_connection_window_size(64 << 20)
        .handshake::<_, bytes::Bytes>(gate)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    // One round trip first, so the connection is settled.
    let warm = http::Request::get("https://hint.test/warm")
        .body(())
        .expect("request");
    let (warm, _) = client.send_request(warm, true).expect("send");
    release.add_permits(1);
    assert_eq!(warm.await.expect("answer").status(), http::StatusCode::OK);

    paused.store(true, std::sync::atomic::Ordering::SeqCst);
    let download = http::Request::get("https://big.test/big")
        .body(())
        .expect("request");
    let (download, _) = client.send_request(download, true).expect("send");
    // The socket fills: what waits in it stops growing.
    let wait = std::time::Duration::from_secs(20);
    tokio::time::timeout(wait, async {
        let mut last = 0;
        let mut steady = 0;
        while steady < 5 {
            tokio::time::sleep(std::time::Duration::from_millis(40)).await;
            let queued = rustix::io::ioctl_fionread(&socket).expect("FIONREAD");
            steady = if queued == last && queued > 0 {
                steady + 1
            } else {
                0
            };
            last = queued;
        }
    })
    .await
    .expect("the socket fills");
    // The hints come while Outpost's write is held.
    let hinted_request = http::Request::get("https://hint.test/page")
        .body(())
        .expect("request");
    let (answer, _) = client.send_request(hinted_request, true).expect("send");
    tokio::time::timeout(wait, async {
        while hinted.hits() < 2 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the origin sees the request");
    release.add_permits(1);

    paused.store(false, std::sync::atomic::Ordering::SeqCst);
    waker.wake();
    let read_all = |response: http::Response<h2::RecvStream>| async move {
        let mut body = response.into_body();
        let mut bytes = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.expect("body");
            body.flow_control()
                .release_capacity(chunk.len())
                .expect("capacity");
            bytes += chunk.len();
        }
        bytes
    };
    let download = tokio::time::timeout(wait, download)
        .await
        .expect("in time")
        .expect("download");
    let answer = tokio::time::timeout(wait, answer)
        .await
        .expect("in time")
        .expect("answer");
    assert_eq!(answer.status(), http::StatusCode::OK);
    assert_eq!(read_all(answer).await, "final".len());
    assert_eq!(read_all(download).await, BIG);
}

/// RFC 9113 §8.2.2: a request with a connection-specific field is
/// malformed, and h2 resets its stream alone: the next request on the
/// connection is answered.
#[tokio::test]
async fn a_malformed_request_resets_its_stream_only() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "ok")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let mut client = H2Raw::connect(outpost.addr()).await;
    let mut bad = h2raw::request_fields(b"GET", b"example.com", b"/bad");
    bad.push((b"connection".as_slice(), b"keep-alive".as_slice()));
    client
        .send(
            h2raw::HEADERS,
            h2raw::END_HEADERS | h2raw::END_STREAM,
            1,
            &h2raw::header_block(&bad),
        )
        .await;
    let good = h2raw::request_fields(b"GET", b"example.com", b"/good");
    client
        .send(
            h2raw::HEADERS,
            h2raw::END_HEADERS | h2raw::END_STREAM,
            3,
            &h2raw::header_block(&good),
        )
        .await;
    let frames = client
        .read_until(std::time::Duration::from_secs(10), |f| {
            f.stream == 3 && f.flags & h2raw::END_STREAM != 0 || f.kind == h2raw::GOAWAY
        })
        .await;
    assert!(frames.iter().all(|f| f.kind != h2raw::GOAWAY), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|f| f.kind == h2raw::RST_STREAM && f.stream == 1),
        "{frames:?}"
    );
    let body: Vec<u8> = frames
        .iter()
        .filter(|f| f.kind == h2raw::DATA && f.stream == 3)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(body, b"ok");
}

fn h2_pool_config(origin: &H2Origin, pool: &str) -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers:\n      - url: {}\n{pool}sites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.url()
    )
}

/// An origin reached over HTTP/2 (h2c, `protocol: http2`) sends two 103s
/// before its final answer: both reach an HTTP/1.1 client, in order and
/// before the origin releases the 200; only the 200 is stored.
#[tokio::test]
async fn early_hints_from_an_http2_origin_reach_the_client() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let hints = vec![
        (103, "</a.css>; rel=preload"),
        (103, "</b.js>; rel=preload"),
    ];
    let origin = H2Origin::start(H2Script::Hints(hints, release.clone(), "final"), None).await;
    let outpost =
        Outpost::start(&h2_pool_config(&origin, "    protocol: http2\n"), &[], None).await;

    let mut client = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    client
        .write_all(b"GET /page HTTP/1.1\r\nhost: example.com\r\n\r\n")
        .await
        .expect("send");
    let mut seen = Vec::new();
    read_until_head(&mut client, &mut seen, 2).await;
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
    let (first, second) = (
        text.find("</a.css>").expect("the first hint"),
        text.find("</b.js>").expect("the second hint"),
    );
    assert!(first < second, "{text}");
    assert!(!text.contains("200 OK"), "{text}");

    release.add_permits(1);
    read_until_head(&mut client, &mut seen, 3).await;
    let mut chunk = [0u8; 64];
    while !seen.ends_with(b"final") {
        let n = client.read(&mut chunk).await.expect("read the body");
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(text.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{text}");

    let got = get(outpost.addr(), "example.com", "/page").await;
    got.assert_hit();
    assert_eq!(got.body, "final");
    assert_eq!(origin.seen().len(), 1);
    assert_eq!(origin.seen()[0].version, http::Version::HTTP_2);
}

/// HTTP/2 end to end: an HTTPS origin that picks h2 by ALPN
/// (`protocol: auto`) sends a 103; the h2 crate's client reads it on its
/// stream (`poll_informational`) while the origin holds the 200.
#[tokio::test]
async fn early_hints_pass_from_an_http2_origin_to_an_http2_client() {
    let (ca_cert, ca_key) = outpost_edge::tls::certificate_authority("Test CA").unwrap();
    let (cert, key) =
        outpost_edge::tls::signed_certificate(&["localhost"], &ca_cert, &ca_key).unwrap();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let hints = vec![(103, "</style.css>; rel=preload")];
    let origin = H2Origin::start(
        H2Script::Hints(hints, release.clone(), "over h2"),
        Some((&cert, &key)),
    )
    .await;
    let config = format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers:\n      - url: https://localhost:{}\n    tls: {{ca_file: ca.pem}}\nsites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.addr.port()
    );
    let outpost = Outpost::start(&config, &[("ca.pem", &ca_cert)], None).await;
    let tcp = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    let req = http::Request::get("http://example.com/hinted")
        .body(())
        .expect("request");
    let (mut response, _) = client.send_request(req, true).expect("send");
    let wait = std::time::Duration::from_secs(10);
    let hint = tokio::time::timeout(
        wait,
        std::future::poll_fn(|cx| response.poll_informational(cx)),
    )
    .await
    .expect("a 103 in time")
    .expect("an interim response")
    .expect("a well-formed one");
    assert_eq!(hint.status(), 103);
    assert_eq!(hint.headers()["link"], "</style.css>; rel=preload");

    release.add_permits(1);
    let response = tokio::time::timeout(wait, response)
        .await
        .expect("the final answer in time")
        .expect("a final answer");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        bytes.extend_from_slice(&chunk.expect("body"));
    }
    assert_eq!(bytes, b"over h2");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    assert!(!seen[0].headers.contains_key("x-outpost-h2-stream"));
}
