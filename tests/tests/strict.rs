//! End-to-end: the front door refuses what the RFCs do not allow, over raw
//! sockets, and the origin sees none of it.

use std::time::Duration;

use outpost_tests::{Origin, Outpost, get, respond, simple_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup() -> (Origin, Outpost) {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "max-age=60")], "ok")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["a.test"], ""), &[], None).await;
    (origin, outpost)
}

/// Sends `raw` on a new connection and reads until the server closes it
/// (bounded: 10 s).
async fn exchange(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the server closed the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 9112 §6.1, §6.3, §2.2, §3.2, §5.2, §7.1; RFC 9110 §8.6: each is
/// answered 400 on a connection that then closes, and nothing reaches the
/// origin.
#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_the_origin() {
    let (origin, outpost) = setup().await;
    let cases: &[(&str, &str)] = &[
        (
            "CL with TE",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE with CL",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing CL",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        ),
        (
            "CL list",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3,3\r\n\r\nabc",
        ),
        (
            "CL sign",
            "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +3\r\n\r\nabc",
        ),
        (
            "TE not chunked last",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ),
        (
            "TE other coding first",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "TE on HTTP/1.0",
            "POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: one\r\n two\r\n\r\n",
        ),
        ("bare LF", "GET / HTTP/1.1\nHost: a.test\n\n"),
        (
            "bare CR",
            "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\rb\r\n\r\n",
        ),
        ("NUL", "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\0b\r\n\r\n"),
        (
            "chunk size",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk extension",
            "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5;\"\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n",
        ),
        ("no Host", "GET / HTTP/1.1\r\n\r\n"),
        (
            "absolute-form disagreeing with Host",
            "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
        ),
        // Issue 19: RFC 9112 §3.2 has no fragment in a target, RFC 3986
        // no backslash.
        ("fragment", "GET /a#b HTTP/1.1\r\nHost: a.test\r\n\r\n"),
        (
            "backslash",
            "GET /a\\..\\b HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ),
    ];
    for (name, raw) in cases {
        let answer = exchange(outpost.addr(), raw.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 "),
            "{name}: got {answer:?}"
        );
    }
    assert_eq!(origin.hits(), 0, "the origin saw a malformed request");
    // The same connection never serves a smuggled second request either.
    let answer = exchange(
        outpost.addr(),
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(origin.hits(), 0);
}

/// Absolute-form that agrees with Host is fine (RFC 9112 §3.2.2).
#[tokio::test]
async fn absolute_form_agreeing_with_host_is_served() {
    let (origin, outpost) = setup().await;
    let answer = exchange(
        outpost.addr(),
        b"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(origin.last().uri.path(), "/x");
}

/// A body sent with a cache hit is read past, not taken for the next
/// request (RFC 9112 §6.3); pipelined requests are answered in order.
#[tokio::test]
async fn a_body_on_a_cache_hit_is_not_parsed_as_a_request() {
    let (origin, outpost) = setup().await;
    get(outpost.addr(), "a.test", "/hit").await;
    get(outpost.addr(), "a.test", "/hit").await.assert_hit();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
    let raw = format!(
        "GET /hit HTTP/1.1\r\nHost: a.test\r\nContent-Length: {}\r\n\r\n{smuggled}GET /hit HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        smuggled.len()
    );
    let answer = exchange(outpost.addr(), raw.as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 200 ").count(), 2, "{answer}");
    assert!(origin.seen().iter().all(|s| s.uri.path() != "/smuggled"));
    assert_eq!(origin.hits(), 1);
}

/// A chunked request body with valid extensions and trailers passes.
#[tokio::test]
async fn a_well_formed_chunked_body_reaches_the_origin() {
    let (origin, outpost) = setup().await;
    let answer = exchange(
        outpost.addr(),
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;name=\"v\\\"1\"\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(origin.last().body, "hello world");
}

/// Over the head limit is 431; over the field count is 431.
#[tokio::test]
async fn oversized_heads_get_431() {
    let (origin, outpost) = setup().await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = exchange(outpost.addr(), big.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.80}");
    let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
    let answer = exchange(
        outpost.addr(),
        format!("GET / HTTP/1.1\r\nHost: a.test\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.80}");
    assert_eq!(origin.hits(), 0);
}

/// An origin's malformed response is a 502: nothing is stored, and the
/// connection it came on is never used again (RFC 9112 §6.3, §6.1).
#[tokio::test]
async fn a_malformed_origin_response_is_502_and_its_connection_dropped() {
    use outpost_tests::{Misbehaviour, RawOrigin};
    let cases: &[(&str, &str)] = &[
        (
            "CL with TE",
            "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        (
            "differing CL",
            "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        ),
        (
            "obs-fold",
            "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\nx-a: one\r\n two\r\ncontent-length: 2\r\n\r\nok",
        ),
        (
            "bad status line",
            "HTTP/1.1 2OO OK\r\ncontent-length: 2\r\n\r\nok",
        ),
    ];
    for (name, raw) in cases {
        let origin = RawOrigin::start(Misbehaviour::Respond(raw)).await;
        let config = simple_config_raw(&origin.url());
        let outpost = Outpost::start(&config, &[], None).await;
        let first = get(outpost.addr(), "a.test", "/x").await;
        assert_eq!(first.status, 502, "{name}");
        let second = get(outpost.addr(), "a.test", "/x").await;
        assert_eq!(second.status, 502, "{name}: nothing was stored");
        assert_eq!(
            origin.connections(),
            origin.hits(),
            "{name}: a connection that carried a malformed response was used again"
        );
    }
}

/// `Content-Length: 2, 2` is one length (RFC 9110 §8.6): passed on as `2`.
#[tokio::test]
async fn a_repeated_origin_content_length_is_made_single() {
    use outpost_tests::{Misbehaviour, RawOrigin};
    let origin = RawOrigin::start(Misbehaviour::Respond(
        "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\ncontent-length: 2, 2\r\n\r\nok",
    ))
    .await;
    let outpost = Outpost::start(&simple_config_raw(&origin.url()), &[], None).await;
    let got = get(outpost.addr(), "a.test", "/x").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), "2");
    assert_eq!(got.body, "ok");
    get(outpost.addr(), "a.test", "/x").await.assert_hit();
}

fn simple_config_raw(url: &str) -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {url}}}], retries: 0}}\nsites:\n  - hosts: [a.test]\n    origin: app\n"
    )
}
