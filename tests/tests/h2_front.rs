//! End-to-end: HTTP/2 from raw frames. Malformed requests are reset and
//! never forwarded (RFC 9113 §8.1.1, §8.2); floods end in GOAWAY.

use std::time::Duration;

use outpost_tests::h2raw::*;
use outpost_tests::{Origin, Outpost, respond, simple_config};

async fn setup() -> (Origin, Outpost) {
    let origin = Origin::start(|_| respond(200, &[("cache-control", "no-store")], "ok")).await;
    let outpost = Outpost::start(&simple_config(&origin, &["a.test"], ""), &[], None).await;
    (origin, outpost)
}

const WAIT: Duration = Duration::from_secs(10);

/// An origin answering every request with `body`, cacheable for ten
/// minutes, and an Outpost in front of it for `a.test`.
async fn cacheable(body: impl Into<bytes::Bytes>) -> (Origin, Outpost) {
    let body = body.into();
    let origin = Origin::start(move |_| {
        respond(
            200,
            &[("cache-control", "public, max-age=600")],
            body.clone(),
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["a.test"], ""), &[], None).await;
    (origin, outpost)
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> u64 {
    outpost_tests::memory_kib(pid, "VmRSS")
}

/// What a flood may add to the process's resident memory.
const FLOOD_MEMORY_KIB: u64 = 32 * 1024;

/// The frame that ends stream 1 or the connection, if one came.
fn refusal(frames: &[Frame]) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| f.kind == GOAWAY || (f.kind == RST_STREAM && f.stream == 1))
}

fn answered(frames: &[Frame]) -> bool {
    frames.iter().any(|f| f.kind == HEADERS && f.stream == 1)
}

/// RFC 9113 §8.2.2: connection-specific fields; §8.2.1: upper-case names
/// and CR, LF or NUL in values; §8.3.1: a space in :path; §8.1.1: a
/// content-length that the DATA disagrees with. Each is reset (or, where
/// h2 treats it as a connection error, the connection is closed with
/// GOAWAY), and the origin never sees it.
#[tokio::test]
async fn malformed_requests_are_reset_and_not_forwarded() {
    let (origin, outpost) = setup().await;
    let extra: &[(&str, &[u8], &[u8])] = &[
        ("connection", b"connection", b"keep-alive"),
        ("keep-alive", b"keep-alive", b"timeout=5"),
        ("transfer-encoding", b"transfer-encoding", b"chunked"),
        ("upgrade", b"upgrade", b"websocket"),
        ("te other than trailers", b"te", b"gzip"),
        ("upper-case name", b"X-Upper", b"a"),
        ("LF in a value", b"x-a", b"a\nb"),
        ("CR in a value", b"x-a", b"a\rb"),
        ("NUL in a value", b"x-a", b"a\0b"),
    ];
    for (name, field, value) in extra {
        let mut h2 = H2Raw::connect(outpost.addr()).await;
        let mut fields = request_fields(b"GET", b"a.test", b"/x");
        fields.push((field, value));
        h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &header_block(&fields))
            .await;
        let frames = h2
            .read_until(WAIT, |f| refusal(std::slice::from_ref(f)).is_some())
            .await;
        assert!(
            refusal(&frames).is_some() && !answered(&frames),
            "{name}: {frames:?}"
        );
    }

    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let fields = request_fields(b"GET", b"a.test", b"/a b");
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &header_block(&fields))
        .await;
    let frames = h2.read_until(WAIT, |f| f.kind == RST_STREAM).await;
    assert!(refusal(&frames).is_some(), "space in :path: {frames:?}");

    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let mut fields = request_fields(b"POST", b"a.test", b"/upload");
    fields.push((b"content-length", b"10"));
    h2.send(HEADERS, END_HEADERS, 1, &header_block(&fields))
        .await;
    h2.send(DATA, END_STREAM, 1, b"abc").await;
    let frames = h2.read_until(WAIT, |f| f.kind == RST_STREAM).await;
    assert_eq!(
        refusal(&frames).and_then(Frame::error_code),
        Some(PROTOCOL_ERROR),
        "content-length 10 with 3 bytes: {frames:?}"
    );

    assert_eq!(origin.hits(), 0, "a malformed request was forwarded");
}

/// A request that is well formed passes over the same raw client: the
/// tests above fail for the right reason.
#[tokio::test]
async fn a_well_formed_raw_request_is_answered() {
    let (origin, outpost) = setup().await;
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let fields = request_fields(b"GET", b"a.test", b"/x");
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &header_block(&fields))
        .await;
    let frames = h2
        .read_until(WAIT, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await;
    assert!(answered(&frames), "{frames:?}");
    assert_eq!(origin.hits(), 1);
}

/// Requests sent together and answered from the cache are answered
/// together: the answers leave in one write (so one read takes them all),
/// where h2 alone flushed the socket after each.
#[tokio::test]
async fn answers_to_requests_sent_together_leave_together() {
    let (origin, outpost) = cacheable("x".repeat(1024)).await;
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let fields = request_fields(b"GET", b"a.test", b"/shared");
    let block = header_block(&fields);
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &block).await;
    let warm = h2
        .read_until(WAIT, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await;
    assert!(answered(&warm), "{warm:?}");

    let streams: Vec<u32> = (0..10).map(|i| 3 + 2 * i).collect();
    let burst: Vec<u8> = streams
        .iter()
        .flat_map(|&id| frame(HEADERS, END_HEADERS | END_STREAM, id, &block))
        .collect();
    assert!(h2.send_all(&burst).await);
    let frames = h2.read_once(WAIT).await;
    for id in &streams {
        assert!(
            frames
                .iter()
                .any(|f| f.stream == *id && f.kind == DATA && f.flags & END_STREAM != 0),
            "stream {id} not answered in the first read: {:?}",
            frames
                .iter()
                .map(|f| (f.stream, f.kind, f.flags))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(origin.hits(), 1, "all from the cache");
}

/// RFC 9113 §5.2: a client's window bounds what is sent to it. A cached
/// body of 12 KiB to a client whose streams open with a 1 KiB window
/// (the body's last piece is handed to h2 without a claim on the window
/// first) arrives whole, in pieces no larger than the window, as the
/// client gives the window back.
#[tokio::test]
async fn a_small_window_gets_a_cached_body_whole_in_pieces() {
    let body: Vec<u8> = (0..12 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (origin, outpost) = cacheable(body.clone()).await;
    let stream = tokio::net::TcpStream::connect(outpost.addr())
        .await
        .unwrap();
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(1024)
        .handshake::<_, bytes::Bytes>(stream)
        .await
        .unwrap();
    tokio::spawn(conn);
    for expected in ["Outpost; fwd=miss", "Outpost; hit"] {
        let req = http::Request::get("http://a.test/twelve").body(()).unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(status.starts_with(expected), "{status}");
        let mut recv = response.into_body();
        let mut got = Vec::new();
        while let Some(chunk) = tokio::time::timeout(WAIT, recv.data()).await.unwrap() {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= 1024, "a piece of {} bytes", chunk.len());
            recv.flow_control().release_capacity(chunk.len()).unwrap();
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, body);
    }
    assert_eq!(origin.hits(), 1);
}

/// CONTINUATION flood (CVE-2024-27316 and kin): a header block that never
/// ends is cut off with GOAWAY long before it can exhaust memory.
#[tokio::test]
async fn a_continuation_flood_ends_in_goaway() {
    let (origin, outpost) = setup().await;
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let mut flood = frame(
        HEADERS,
        0,
        1,
        &header_block(&request_fields(b"GET", b"a.test", b"/")),
    );
    let filler = header_block(&[(b"x-filler", &[b'a'; 1000][..])]);
    for _ in 0..10_000 {
        flood.extend_from_slice(&frame(CONTINUATION, 0, 1, &filler));
    }
    // About 10 MB: the server stops reading well before the end.
    let before = rss_kib(outpost.pid());
    let _ = tokio::time::timeout(WAIT, h2.send_all(&flood)).await;
    let frames = h2.read_until(WAIT, |f| f.kind == GOAWAY).await;
    let goaway = frames.iter().find(|f| f.kind == GOAWAY);
    assert!(goaway.is_some(), "no GOAWAY after the flood: {frames:?}");
    assert_eq!(origin.hits(), 0);
    // Issue 19: a flood is told so (RFC 9113 §7).
    assert_eq!(
        goaway.and_then(Frame::error_code),
        Some(ENHANCE_YOUR_CALM),
        "{goaway:?}"
    );
    let grown = rss_kib(outpost.pid()).saturating_sub(before);
    assert!(grown < FLOOD_MEMORY_KIB, "memory grew by {grown} KiB");
}

/// Rapid Reset (CVE-2023-44487): streams opened and reset at once, over
/// and over, end the connection with GOAWAY ENHANCE_YOUR_CALM.
#[tokio::test]
async fn rapid_reset_ends_in_goaway() {
    let (_origin, outpost) = setup().await;
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let block = header_block(&request_fields(b"GET", b"a.test", b"/reset"));
    let mut flood = Vec::new();
    for i in 0..2_000u32 {
        let stream = 2 * i + 1;
        flood.extend_from_slice(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &block));
        flood.extend_from_slice(&frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
    }
    let _ = tokio::time::timeout(WAIT, h2.send_all(&flood)).await;
    let frames = h2.read_until(WAIT, |f| f.kind == GOAWAY).await;
    let goaway = frames.iter().find(|f| f.kind == GOAWAY);
    assert_eq!(
        goaway.and_then(Frame::error_code),
        Some(ENHANCE_YOUR_CALM),
        "{goaway:?}"
    );
}

/// Empty DATA frames cost work and carry nothing; a stream of them ends
/// the connection.
#[tokio::test]
async fn empty_data_frames_end_in_goaway() {
    let (_origin, outpost) = setup().await;
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let fields = request_fields(b"POST", b"a.test", b"/upload");
    let mut flood = frame(HEADERS, END_HEADERS, 1, &header_block(&fields));
    for _ in 0..1_000 {
        flood.extend_from_slice(&frame(DATA, 0, 1, &[]));
    }
    let _ = tokio::time::timeout(WAIT, h2.send_all(&flood)).await;
    let frames = h2.read_until(WAIT, |f| f.kind == GOAWAY).await;
    assert_eq!(
        frames
            .iter()
            .find(|f| f.kind == GOAWAY)
            .and_then(Frame::error_code),
        Some(ENHANCE_YOUR_CALM),
        "{frames:?}"
    );
}

/// Sends `count` copies of a control frame on a new connection, checks that
/// the server's memory did not grow with them, then asks for `/after`;
/// returns the frames that came back.
async fn control_flood(outpost: &Outpost, kind: u8, payload: &[u8], count: usize) -> Vec<Frame> {
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let mut flood = Vec::new();
    for _ in 0..count {
        flood.extend_from_slice(&frame(kind, 0, 0, payload));
    }
    let before = rss_kib(outpost.pid());
    let _ = tokio::time::timeout(WAIT, h2.send_all(&flood)).await;
    let grown = rss_kib(outpost.pid()).saturating_sub(before);
    assert!(grown < FLOOD_MEMORY_KIB, "memory grew by {grown} KiB");
    let fields = request_fields(b"GET", b"a.test", b"/after");
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &header_block(&fields))
        .await;
    h2.read_until(Duration::from_secs(20), |f| {
        f.kind == GOAWAY || (f.stream == 1 && f.flags & END_STREAM != 0)
    })
    .await
}

/// A PING flood ends the connection with GOAWAY once past the budget
/// (1000 at once, 100 a second), and the server's memory does not grow
/// with it.
#[tokio::test]
async fn a_ping_flood_is_absorbed() {
    let (origin, outpost) = setup().await;
    let frames = control_flood(&outpost, PING, &[7; 8], 20_000).await;
    assert!(
        frames.iter().any(|f| f.kind == GOAWAY) && !answered(&frames),
        "no GOAWAY after a PING flood: {frames:?}"
    );
    assert_eq!(origin.hits(), 0);
}

/// A SETTINGS flood ends the connection with GOAWAY, and memory stays
/// bounded.
#[tokio::test]
async fn a_settings_flood_is_absorbed() {
    let (_origin, outpost) = setup().await;
    // SETTINGS_MAX_CONCURRENT_STREAMS (3) = 100, over and over.
    let setting = [0x00, 0x03, 0x00, 0x00, 0x00, 0x64];
    let frames = control_flood(&outpost, SETTINGS, &setting, 20_000).await;
    assert!(
        frames.iter().any(|f| f.kind == GOAWAY),
        "no GOAWAY after a SETTINGS flood: {frames:?}"
    );
}

/// Graceful shutdown sends GOAWAY on HTTP/2 (RFC 9113 §6.8), after the
/// request in flight is answered.
#[tokio::test]
async fn shutdown_sends_goaway() {
    let (origin, mut outpost) = setup().await;
    let mut h2 = H2Raw::connect(outpost.addr()).await;
    let fields = request_fields(b"GET", b"a.test", b"/x");
    h2.send(HEADERS, END_HEADERS | END_STREAM, 1, &header_block(&fields))
        .await;
    let frames = h2
        .read_until(WAIT, |f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await;
    assert!(answered(&frames));
    outpost.terminate();
    let frames = h2.read_until(WAIT, |f| f.kind == GOAWAY).await;
    let goaway = frames.iter().find(|f| f.kind == GOAWAY);
    assert_eq!(goaway.and_then(Frame::error_code), Some(0), "{frames:?}");
    // The server's PING (to settle the last stream id) is answered, and it
    // closes the connection.
    h2.read_until(WAIT, |_| false).await;
    assert_eq!(outpost.exit_code(WAIT).await, Some(0));
    assert_eq!(origin.hits(), 1);
}
