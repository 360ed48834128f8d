//! End-to-end: request coalescing with a slow, streaming origin.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use outpost_tests::{Origin, OriginOptions, Outpost, get, respond, simple_config};
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
