//! End-to-end: interim (1xx) responses. RFC 9110 §15.2: a proxy forwards
//! the 1xx responses it did not ask for, to HTTP/1.1 clients and never to
//! HTTP/1.0 ones; RFC 9111 §3: they are never stored. 103 Early Hints
//! (RFC 8297) reach the client while the origin is still working on the
//! final answer.

use std::sync::Arc;

use outpost_tests::{Misbehaviour, Outpost, RawOrigin, get};
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
