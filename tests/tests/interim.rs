//! End-to-end: interim (1xx) responses. RFC 9110 §15.2: a proxy forwards
//! the 1xx responses it did not ask for, to HTTP/1.1 clients and never to
//! HTTP/1.0 ones; RFC 9111 §3: they are never stored. 103 Early Hints
//! (RFC 8297) reach the client while the origin is still working on the
//! final answer. Over HTTP/2 they are HEADERS frames on the request's
//! stream, before its final HEADERS (RFC 9113 §8.1).

use std::sync::Arc;

use outpost_tests::h2raw::{self, H2Raw};
use outpost_tests::{Misbehaviour, Origin, Outpost, RawOrigin, get, respond, simple_config};
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
async fn read_until_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, heads: usize) {
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

#[tokio::test]
async fn early_hints_reach_the_client_before_the_final_answer_and_are_never_stored() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let outpost = Outpost::start(&config(&origin), &[], None).await;

    let mut client = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    client
        .write_all(b"GET /page HTTP/1.1\r\nhost: example.com\r\n\r\n")
        .await
        .expect("send");
    let mut seen = Vec::new();
    // The 103 arrives while the origin still holds its final answer back.
    read_until_head(&mut client, &mut seen, 1).await;
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(text.starts_with("HTTP/1.1 103 Early Hints\r\n"), "{text}");
    assert!(
        text.contains("link: </style.css>; rel=preload\r\n"),
        "{text}"
    );
    assert!(
        !text.contains("x-hop"),
        "hop-by-hop fields stay behind: {text}"
    );
    release.add_permits(1);
    read_until_head(&mut client, &mut seen, 2).await;
    let text = String::from_utf8_lossy(&seen).to_string();
    let final_at = text.find("HTTP/1.1 200 OK\r\n").expect("the final answer");
    assert!(final_at > 0);
    let mut chunk = [0u8; 64];
    while !seen.ends_with(b"final") {
        let n = client.read(&mut chunk).await.expect("read the body");
        assert!(n > 0);
        seen.extend_from_slice(&chunk[..n]);
    }

    // The next request on the same connection gets its own hints, after
    // the first answer and before its own.
    let mut seen = Vec::new();
    client
        .write_all(b"GET /other HTTP/1.1\r\nhost: example.com\r\n\r\n")
        .await
        .expect("send");
    read_until_head(&mut client, &mut seen, 1).await;
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 103 Early Hints\r\n"));
    release.add_permits(1);
    read_until_head(&mut client, &mut seen, 2).await;
    assert!(String::from_utf8_lossy(&seen).contains("\r\n\r\nHTTP/1.1 200 OK\r\n"));

    // The stored answer is the final one alone.
    let got = get(outpost.addr(), "example.com", "/page").await;
    got.assert_hit();
    assert_eq!(got.body, "final");
    assert_eq!(origin.requests(), 2);
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

/// The first HEADERS frame on stream 1 is the 103, with the origin's link
/// and without its hop-by-hop fields, while the origin holds its final
/// answer; the final HEADERS and the body follow on the same stream.
#[tokio::test]
async fn early_hints_reach_an_http2_client_on_the_request_stream() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let origin = RawOrigin::start(Misbehaviour::RespondInTwo(HINTS, FINAL, release.clone())).await;
    let outpost = Outpost::start(&config(&origin), &[], None).await;
    let mut client = H2Raw::connect(outpost.addr()).await;
    let fields = h2raw::request_fields(b"GET", b"example.com", b"/h2page");
    client
        .send(
            h2raw::HEADERS,
            h2raw::END_HEADERS | h2raw::END_STREAM,
            1,
            &h2raw::header_block(&fields),
        )
        .await;
    let wait = std::time::Duration::from_secs(10);
    let frames = client
        .read_until(wait, |f| f.kind == h2raw::HEADERS && f.stream == 1)
        .await;
    let hints = frames.last().expect("a HEADERS frame on stream 1");
    assert_eq!(hints.kind, h2raw::HEADERS);
    assert_eq!(hints.flags & h2raw::END_STREAM, 0, "not the stream's end");
    assert!(
        hints.payload.starts_with(b"\x08\x03103"),
        "{:?}",
        hints.payload
    );
    let block = String::from_utf8_lossy(&hints.payload).to_string();
    assert!(
        block.contains("\x04link\x19</style.css>; rel=preload"),
        "{block:?}"
    );
    assert!(!block.contains("x-hop"), "{block:?}");

    release.add_permits(1);
    let frames = client
        .read_until(wait, |f| f.stream == 1 && f.flags & h2raw::END_STREAM != 0)
        .await;
    let on_stream: Vec<_> = frames.iter().filter(|f| f.stream == 1).collect();
    assert_eq!(
        on_stream.first().map(|f| f.kind),
        Some(h2raw::HEADERS),
        "the final head"
    );
    let body: Vec<u8> = on_stream
        .iter()
        .filter(|f| f.kind == h2raw::DATA)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(body, b"final");
    assert!(frames.iter().all(|f| f.kind != h2raw::GOAWAY));
}

/// A real HTTP/2 client (the h2 crate, which decodes and skips 1xx heads)
/// on one connection: concurrent streams each get their hints and then
/// their own final answer, so the interim frames left h2's HPACK state
/// with the client intact. The field naming a stream never reaches the
/// origin.
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
            while origin.requests() < 4 * (round + 1) {
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

#[tokio::test]
async fn the_stream_field_never_reaches_the_origin() {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "ok")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let tcp = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .expect("connect");
    let (mut client, connection) = h2::client::handshake(tcp).await.expect("handshake");
    tokio::spawn(connection);
    // A client's own field of that name is dropped too.
    let req = http::Request::get("http://example.com/tagged")
        .header("x-outpost-h2-stream", "41")
        .body(())
        .expect("request");
    let (response, _) = client.send_request(req, true).expect("send");
    assert_eq!(
        response.await.expect("answer").status(),
        http::StatusCode::OK
    );
    let seen = origin.last();
    assert!(
        seen.headers.get("x-outpost-h2-stream").is_none(),
        "{:?}",
        seen.headers
    );
}
