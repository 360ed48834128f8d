//! End-to-end: request coalescing with a slow, streaming origin.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use outpost_tests::{
    Origin, OriginOptions, Outpost, await_metric, get, metric, respond, simple_config,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// An origin that sends its head and "hello", then waits to be told before
/// it sends "world": a body still streaming. It reports each request.
async fn streaming_origin() -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<()>,
    Arc<Notify>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    let (seen, requests) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (seen, gate) = (seen.clone(), gate.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = seen.send(());
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\ncache-control: max-age=60\r\n\r\nhello")
                    .await;
                gate.notified().await;
                let _ = stream.write_all(b"world").await;
            });
        }
    });
    (addr, requests, release)
}

async fn open(addr: std::net::SocketAddr, path: &str) -> hyper::Response<hyper::body::Incoming> {
    let stream = TcpStream::connect(addr).await.expect("test setup");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("test setup");
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "example.com")
        .body(Empty::<Bytes>::new())
        .expect("test setup");
    sender.send_request(req).await.expect("test setup")
}

/// A follower gets the first bytes while the origin is still sending.
#[tokio::test]
async fn followers_receive_the_body_as_it_streams_in() {
    let (origin, mut requests, release) = streaming_origin().await;
    let config = simple_config_for(origin);
    let outpost = Outpost::start(&config, &[], None).await;
    let leader = tokio::spawn({
        let addr = outpost.addr();
        async move {
            open(addr, "/s")
                .await
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
        }
    });
    requests.recv().await.unwrap();
    let follower = open(outpost.addr(), "/s").await;
    assert_eq!(
        follower.headers()["cache-status"],
        "Outpost; fwd=miss; collapsed"
    );
    let mut body = follower.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        first, "hello",
        "the first bytes arrive before the origin has finished"
    );
    release.notify_waiters();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "world");
    assert_eq!(leader.await.unwrap(), "helloworld");
    assert!(requests.try_recv().is_err(), "one origin request in all");
}

/// The leader's client going away does not stop the fill.
#[tokio::test]
async fn the_fill_completes_when_the_leaders_client_goes_away() {
    let (origin, mut requests, release) = streaming_origin().await;
    let outpost = Outpost::start(&simple_config_for(origin), &[], None).await;
    let mut leader = TcpStream::connect(outpost.addr()).await.unwrap();
    leader
        .write_all(b"GET /gone HTTP/1.1\r\nhost: example.com\r\n\r\n")
        .await
        .unwrap();
    requests.recv().await.unwrap();
    let follower = tokio::spawn({
        let addr = outpost.addr();
        async move {
            open(addr, "/gone")
                .await
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
        }
    });
    // The follower has joined once the metric counts its wait.
    for _ in 0..500 {
        let metrics = get(outpost.admin, "admin", "/metrics").await;
        if String::from_utf8_lossy(&metrics.body).contains("outpost_coalesced_requests_total 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(leader);
    release.notify_waiters();
    assert_eq!(follower.await.unwrap(), "helloworld");
    get(outpost.addr(), "example.com", "/gone")
        .await
        .assert_hit();
}

/// Many concurrent requests for a cold key make exactly one origin request.
#[tokio::test]
async fn many_concurrent_requests_make_one_origin_request() {
    let options = OriginOptions {
        delay: Some(std::time::Duration::from_millis(500)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, |_| {
        respond(200, &[("cache-control", "max-age=60")], "cold")
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    let requests: Vec<_> = (0..200)
        .map(|_| get(outpost.addr(), "example.com", "/cold"))
        .collect();
    let answers = futures_util::future::join_all(requests).await;
    assert!(
        answers
            .iter()
            .all(|got| got.status == 200 && got.body == "cold")
    );
    assert_eq!(origin.hits(), 1);
}

fn simple_config_for(origin: std::net::SocketAddr) -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: http://{origin}}}]}}\nsites:\n  - hosts: [example.com]\n    origin: app\n"
    )
}

/// An origin that breaks off mid-body: the client sees an aborted body,
/// never a complete-looking one, and nothing is stored.
#[tokio::test]
async fn a_body_the_origin_breaks_off_is_aborted_and_not_stored() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = listener.local_addr().expect("addr");
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf).await;
                // Chunked, and cut before the last chunk.
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncache-control: max-age=60\r\n\r\n5\r\nhello\r\n")
                    .await;
            });
        }
    });
    let outpost = Outpost::start(&simple_config_for(origin), &[], None).await;
    for _ in 0..2 {
        // The break may come before the head has left Outpost (the client
        // then sees the connection close without an answer) or after (the
        // body does not end cleanly): never a whole-looking response.
        let stream = TcpStream::connect(outpost.addr()).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = http::Request::get("/cut")
            .header("host", "example.com")
            .body(Empty::<Bytes>::new())
            .expect("request");
        if let Ok(response) = sender.send_request(req).await {
            assert_eq!(response.status(), 200);
            let body = response.into_body().collect().await;
            assert!(body.is_err(), "a cut body must not end cleanly");
        }
    }
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "nothing was stored"
    );
}

/// An origin that answers every request with a chunked body (no length):
/// `pieces` pieces of `piece` bytes each, the first at once and the rest
/// once told. It counts requests.
async fn chunked_origin(
    pieces: usize,
    piece: usize,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<Notify>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
    let addr = listener.local_addr().expect("test setup");
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let (count, gate) = (served.clone(), release.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (count, gate) = (count.clone(), gate.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let mut released = Some(gate.notified());
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncache-control: max-age=60\r\ncontent-type: application/octet-stream\r\n\r\n")
                    .await;
                for i in 0..pieces {
                    if i == 1
                        && let Some(released) = released.take()
                    {
                        released.await;
                    }
                    let body = piece_of(i, piece);
                    let _ = stream
                        .write_all(format!("{:x}\r\n", body.len()).as_bytes())
                        .await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.write_all(b"\r\n").await;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    (addr, served, release)
}

/// Piece `i` of a chunked body: bytes that differ by piece and place, so
/// that a piece lost, doubled or out of order shows.
fn piece_of(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((i * 7 + j * 13) % 251) as u8).collect()
}

fn whole_body(pieces: usize, piece: usize) -> Vec<u8> {
    (0..pieces).flat_map(|i| piece_of(i, piece)).collect()
}

/// Opens `clients` requests for `path`, one after another, each once its
/// head is in, and waits until all but the first count as served from its
/// fill; their bodies, unread.
async fn open_collapsed(
    outpost: &Outpost,
    path: &str,
    clients: usize,
) -> Vec<hyper::body::Incoming> {
    let mut bodies = Vec::new();
    for _ in 0..clients {
        let response = open(outpost.addr(), path).await;
        assert_eq!(response.status(), 200);
        bodies.push(response.into_body());
    }
    await_metric(
        outpost.admin,
        "outpost_coalesced_requests_total",
        (clients - 1) as f64,
    )
    .await;
    bodies
}

/// Fills of unknown length are shared like fixed-length ones: concurrent
/// requests for a chunked page make one origin request, the followers
/// receive its first piece while the origin is still sending, and
/// `outpost_coalesced_requests_total` counts exactly the requests served
/// from the shared fill.
#[tokio::test]
async fn followers_stream_a_fill_of_unknown_length() {
    let (origin, served, release) = chunked_origin(3, 1000).await;
    let outpost = Outpost::start(&simple_config_for(origin), &[], None).await;
    let clients = 50;
    // Every head arrives with the origin's first piece still the only
    // one sent: the followers share the fill as it streams.
    let bodies = open_collapsed(&outpost, "/chunked", clients).await;
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    release.notify_waiters();
    for body in bodies {
        let body = body.collect().await.expect("a whole body").to_bytes();
        assert_eq!(body, whole_body(3, 1000));
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
    get(outpost.addr(), "example.com", "/chunked")
        .await
        .assert_hit();
    assert_eq!(
        metric(outpost.admin, "outpost_coalesced_requests_total").await,
        Some((clients - 1) as f64),
        "a hit is not a coalesced request"
    );
}

/// A chunked body longer than the fill's window (16 MiB): every client
/// still gets all of it from one origin request, while the fill holds no
/// more than the window ahead of its slowest reader.
#[tokio::test]
async fn a_chunked_body_longer_than_the_window_reaches_every_client_whole() {
    let (pieces, piece) = (80, 256 << 10); // 20 MiB
    let (origin, served, release) = chunked_origin(pieces, piece).await;
    let outpost = Outpost::start(&simple_config_for(origin), &[], None).await;
    let bodies = open_collapsed(&outpost, "/large", 4).await;
    release.notify_waiters();
    let expected = whole_body(pieces, piece);
    let reads = bodies
        .into_iter()
        .map(|body| async move { body.collect().await.expect("a whole body").to_bytes() });
    for body in futures_util::future::join_all(reads).await {
        assert!(body == expected, "{} bytes, not the origin's", body.len());
    }
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
}
