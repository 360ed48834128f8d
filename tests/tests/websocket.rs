//! End-to-end: WebSocket through Outpost (RFC 6455), with real client and
//! server libraries (tokio-tungstenite).

use futures_util::{SinkExt, StreamExt};
use outpost_tests::{Origin, Outpost, respond, simple_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A WebSocket origin that echoes every message with a prefix.
async fn echo_origin() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let reply = match message {
                        Message::Text(text) => Message::text(format!("echo: {text}")),
                        Message::Binary(bytes) => Message::binary(bytes),
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn config_for(url: &str) -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {url}}}]}}\nsites:\n  - hosts: [a.test]\n    origin: app\n"
    )
}

/// The upgrade reaches the origin, its 101 comes back, and messages flow
/// both ways until the client closes.
#[tokio::test]
async fn messages_pass_both_ways_through_the_tunnel() {
    let origin = echo_origin().await;
    let outpost = Outpost::start(&config_for(&origin), &[], None).await;
    let stream = TcpStream::connect(outpost.addr()).await.unwrap();
    let request = "ws://a.test/chat".into_client_request().unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade through Outpost");
    assert_eq!(response.status(), 101);
    for i in 0..20 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        assert_eq!(reply, Message::text(format!("echo: hello {i}")));
    }
    let big = vec![7u8; 256 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();
}

/// RFC 9110 §7.8: when the origin does not switch, its answer is an
/// ordinary response and the bytes after the request are the next request
/// on the same connection.
#[tokio::test]
async fn a_refused_upgrade_leaves_an_http_connection() {
    let origin = Origin::start(|seen| {
        if seen.uri.path() == "/ws" {
            respond(403, &[("cache-control", "no-store")], "no sockets here")
        } else {
            respond(200, &[("cache-control", "no-store")], "next")
        }
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["a.test"], ""), &[], None).await;
    let mut stream = TcpStream::connect(outpost.addr()).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
              GET /next HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("closed")
    .unwrap();
    let text = String::from_utf8_lossy(&out);
    let first = text.find("HTTP/1.1 403").expect("the refusal");
    let second = text
        .find("HTTP/1.1 200")
        .expect("the next request's answer");
    assert!(first < second, "{text}");
    assert!(text.ends_with("next"), "{text}");
    assert_eq!(origin.hits(), 2);
    // The origin saw the upgrade request's fields (it chose not to switch).
    let upgrade = &origin.seen()[0];
    assert_eq!(upgrade.headers["upgrade"], "websocket");
}

/// RFC 8441: a WebSocket over an HTTP/2 stream (extended CONNECT) reaches
/// an HTTP/1.1 WebSocket origin; frames pass both ways.
#[tokio::test]
async fn websocket_over_an_http2_stream() {
    let origin = echo_origin().await;
    let outpost = Outpost::start(&config_for(&origin), &[], None).await;
    let tcp = TcpStream::connect(outpost.addr()).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    // The server's SETTINGS arrive after the handshake (RFC 8441 §3).
    for _ in 0..500 {
        if client.is_extended_connect_protocol_enabled() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        client.is_extended_connect_protocol_enabled(),
        "the server offers extended CONNECT"
    );
    let mut request = http::Request::builder()
        .method("CONNECT")
        .uri("http://a.test/chat")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    let (response, mut outgoing) = client.send_request(request, false).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut incoming = response.into_body();

    // One masked text frame, "hi" (RFC 6455 §5.2, §5.3).
    let mask = [0x11, 0x22, 0x33, 0x44];
    let payload: Vec<u8> = b"hi"
        .iter()
        .zip(mask.iter().cycle())
        .map(|(b, m)| b ^ m)
        .collect();
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend_from_slice(&payload);
    outgoing.send_data(frame.into(), false).unwrap();

    let mut received = Vec::new();
    while received.len() < 2 + "echo: hi".len() {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), incoming.data())
            .await
            .expect("an echo in time")
            .expect("data")
            .unwrap();
        let _ = incoming.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received[0], 0x81, "an unmasked text frame");
    assert_eq!(usize::from(received[1]), "echo: hi".len());
    assert_eq!(&received[2..], b"echo: hi");
}

/// `protocol: auto` over TLS to an origin whose ALPN prefers h2: the
/// upgrade goes over HTTP/1.1 all the same (RFC 6455 needs it; HTTP/2
/// has no Upgrade), so the tunnel opens.
#[tokio::test]
async fn an_upgrade_to_an_origin_that_prefers_h2_goes_over_http1() {
    let (ca_cert, ca_key) = outpost_edge::tls::certificate_authority("Test CA").unwrap();
    let (cert, key) =
        outpost_edge::tls::signed_certificate(&["localhost"], &ca_cert, &ca_key).unwrap();
    let acceptor = std::sync::Arc::new(outpost_tests::tls_acceptor(
        &cert,
        &key,
        b"\x02h2\x08http/1.1",
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = tokio_boring::accept(&acceptor, stream).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(Message::Text(text))) = ws.next().await {
                    if ws
                        .send(Message::text(format!("tls: {text}")))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    let config = format!(
        "listen: [{{addr: 127.0.0.1:0}}]\nadmin: {{addr: 127.0.0.1:0}}\norigins:\n  app:\n    servers: [{{url: \"https://localhost:{port}\"}}]\n    tls: {{ca_file: ca.pem}}\nsites:\n  - hosts: [a.test]\n    origin: app\n"
    );
    let outpost = Outpost::start(&config, &[("ca.pem", &ca_cert)], None).await;
    let stream = TcpStream::connect(outpost.addr()).await.unwrap();
    let request = "ws://a.test/chat".into_client_request().unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("the upgrade through Outpost");
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("tls: hello")
    );
}
