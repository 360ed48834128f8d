//! End-to-end: TLS termination with certificates chosen by SNI, and HTTP/2
//! negotiated by ALPN.

use boring::ssl::{SslConnector, SslMethod, SslVerifyMode};
use outpost_tests::{Origin, Outpost, access_log_lines, respond};

fn certificate(host: &str) -> (String, String) {
    outpost_edge::tls::self_signed(&[host]).expect("self-signed certificate")
}

#[tokio::test]
async fn sni_picks_the_certificate_and_h2_is_spoken_when_offered() {
    let origin =
        Origin::start(|_| respond(200, &[("cache-control", "max-age=300")], "secure")).await;
    let (a_cert, a_key) = certificate("a.test");
    let (b_cert, b_key) = certificate("b.test");
    let config = format!(
        "access_log: {{path: access.log, fields: [protocol, tls, tls_version]}}\n\
         listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: a.pem, key: a.key}}\n        - {{cert: b.pem, key: b.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\nsites:\n  - hosts: [a.test, b.test]\n    origin: app\n",
        origin.url()
    );
    let files = [
        ("a.pem", a_cert.as_str()),
        ("a.key", a_key.as_str()),
        ("b.pem", b_cert.as_str()),
        ("b.key", b_key.as_str()),
    ];
    let outpost = Outpost::start(&config, &files, None).await;

    for (sni, alpn, want_h2) in [
        ("b.test", &b"\x02h2\x08http/1.1"[..], true),
        ("a.test", &b"\x08http/1.1"[..], false),
    ] {
        let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        connector.set_alpn_protos(alpn).unwrap();
        let config = connector.build().configure().unwrap();
        let tcp = tokio::net::TcpStream::connect(outpost.addr())
            .await
            .unwrap();
        let tls = tokio_boring::connect(config, sni, tcp).await.unwrap();

        let peer = tls.ssl().peer_certificate().expect("peer certificate");
        let names: Vec<String> = peer
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_owned))
            .collect();
        assert_eq!(
            names,
            vec![sni.to_owned()],
            "SNI {sni} got the wrong certificate"
        );
        assert_eq!(tls.ssl().selected_alpn_protocol() == Some(b"h2"), want_h2);

        if want_h2 {
            let (mut client, conn) = h2::client::handshake(tls).await.unwrap();
            tokio::spawn(conn);
            let req = http::Request::get(format!("https://{sni}/s"))
                .body(())
                .unwrap();
            let (response, _) = client.send_request(req, true).unwrap();
            let response = response.await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), http::Version::HTTP_2);
            assert!(
                response.headers()["cache-status"]
                    .to_str()
                    .unwrap()
                    .starts_with("Outpost; fwd=miss")
            );
        } else {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = http::Request::get("/s")
                .header("host", sni)
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = sender.send_request(req).await.unwrap();
            assert_eq!(response.status(), 200);
            assert!(
                response.headers()["cache-status"]
                    .to_str()
                    .unwrap()
                    .starts_with("Outpost; fwd=miss")
            );
        }
    }
    // The access log names the protocol and the TLS version agreed.
    let lines = access_log_lines(&outpost.dir.path().join("access.log"), 2).await;
    for (line, protocol) in lines.iter().zip(["HTTP/2.0", "HTTP/1.1"]) {
        assert_eq!(line["protocol"], protocol, "{line}");
        assert_eq!(line["tls"], true, "{line}");
        assert_eq!(line["tls_version"], "TLSv1.3", "{line}");
    }
}

/// The names of the certificate presented for `sni`.
async fn presented_names(addr: std::net::SocketAddr, sni: &str) -> Vec<String> {
    let mut connector = SslConnector::builder(SslMethod::tls()).expect("connector");
    connector.set_verify(SslVerifyMode::NONE);
    let config = connector.build().configure().expect("configure");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio_boring::connect(config, sni, tcp)
        .await
        .expect("handshake");
    let peer = tls.ssl().peer_certificate().expect("peer certificate");
    peer.subject_alt_names()
        .expect("subject alt names")
        .iter()
        .filter_map(|n| n.dnsname().map(str::to_owned))
        .collect()
}

/// A reload loads the certificate files again: a renewed certificate is
/// presented from the next handshake on; a broken one is refused and the
/// old one stays.
#[tokio::test]
async fn certificates_are_reloaded_with_the_config() {
    let origin = Origin::start(|_| respond(200, &[], "secure")).await;
    let (old_cert, old_key) = certificate("old.test");
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: site.pem, key: site.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\nsites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.url()
    );
    let files = [
        ("site.pem", old_cert.as_str()),
        ("site.key", old_key.as_str()),
    ];
    let outpost = Outpost::start(&config, &files, Some("t")).await;
    assert_eq!(
        presented_names(outpost.addr(), "x.test").await,
        ["old.test"]
    );

    let (new_cert, new_key) = certificate("new.test");
    std::fs::write(outpost.dir.path().join("site.pem"), &new_cert).unwrap();
    std::fs::write(outpost.dir.path().join("site.key"), &new_key).unwrap();
    assert_eq!(outpost_tests::reload(outpost.admin, "t").await.status, 200);
    assert_eq!(
        presented_names(outpost.addr(), "x.test").await,
        ["new.test"]
    );

    std::fs::write(outpost.dir.path().join("site.pem"), "not a certificate").unwrap();
    let refused = outpost_tests::reload(outpost.admin, "t").await;
    assert_eq!(refused.status, 422);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("certificates"),
        "{:?}",
        refused.body
    );
    assert_eq!(
        presented_names(outpost.addr(), "x.test").await,
        ["new.test"]
    );
}

/// RFC 9110 §15.5.20: over a connection whose SNI chose one certificate,
/// a request for a host that another certificate serves gets 421; a host
/// the same (wildcard) certificate covers is served.
#[tokio::test]
async fn a_host_served_by_another_certificate_gets_421() {
    let origin = Origin::start(|_| respond(200, &[], "secure")).await;
    let (a_cert, a_key) = certificate("a.test");
    let (w_cert, w_key) = outpost_edge::tls::self_signed(&["*.w.test"]).expect("wildcard");
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: a.pem, key: a.key}}\n        - {{cert: w.pem, key: w.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\nsites:\n  - hosts: [\"*\"]\n    origin: app\n",
        origin.url()
    );
    let files = [
        ("a.pem", a_cert.as_str()),
        ("a.key", a_key.as_str()),
        ("w.pem", w_cert.as_str()),
        ("w.key", w_key.as_str()),
    ];
    let outpost = Outpost::start(&config, &files, None).await;
    for (sni, host, status) in [
        ("a.test", "a.test", 200),
        ("a.test", "x.w.test", 421),
        ("x.w.test", "a.test", 421),
        ("x.w.test", "y.w.test", 200),
        ("x.w.test", "X.W.TEST", 200),
    ] {
        let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        connector.set_alpn_protos(b"\x08http/1.1").unwrap();
        let config = connector.build().configure().unwrap();
        let tcp = tokio::net::TcpStream::connect(outpost.addr())
            .await
            .unwrap();
        let tls = tokio_boring::connect(config, sni, tcp).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", host)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), status, "SNI {sni}, Host {host}");
    }
}

/// TLS 1.2 and 1.3 only, with AEAD suites only (RFC 9325 §4.2).
#[tokio::test]
async fn old_protocols_and_weak_suites_are_refused() {
    use boring::ssl::SslVersion;
    let origin = Origin::start(|_| respond(200, &[], "secure")).await;
    let (cert, key) = certificate("a.test");
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: a.pem, key: a.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\nsites:\n  - hosts: [a.test]\n    origin: app\n",
        origin.url()
    );
    let outpost = Outpost::start(&config, &[("a.pem", &cert), ("a.key", &key)], None).await;
    let addr = outpost.addr();
    let attempt = |max: SslVersion, ciphers: Option<&'static str>| async move {
        let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
        connector.set_verify(SslVerifyMode::NONE);
        connector.set_max_proto_version(Some(max)).unwrap();
        if let Some(ciphers) = ciphers {
            connector.set_cipher_list(ciphers).unwrap();
        }
        let config = connector.build().configure().unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_boring::connect(config, "a.test", tcp)
            .await
            .map(|s| s.ssl().version2())
    };
    assert!(
        attempt(SslVersion::TLS1_1, None).await.is_err(),
        "TLS 1.1 was accepted"
    );
    assert!(
        attempt(
            SslVersion::TLS1_2,
            Some("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA")
        )
        .await
        .is_err(),
        "a CBC suite was accepted"
    );
    assert_eq!(
        attempt(SslVersion::TLS1_2, None).await.unwrap(),
        Some(SslVersion::TLS1_2)
    );
    assert_eq!(
        attempt(SslVersion::TLS1_3, None).await.unwrap(),
        Some(SslVersion::TLS1_3)
    );
}

/// A returning client resumes its TLS session (tickets); counted in
/// `outpost_tls_sessions_resumed_total`.
#[tokio::test]
async fn a_returning_client_resumes_its_session() {
    let origin = Origin::start(|_| respond(200, &[], "secure")).await;
    let (cert, key) = certificate("localhost");
    let config = format!(
        "listen:\n  - addr: 127.0.0.1:0\n    tls:\n      certificates:\n        - {{cert: l.pem, key: l.key}}\n\
         admin: {{addr: 127.0.0.1:0}}\norigins:\n  app: {{servers: [{{url: {}}}]}}\nsites:\n  - hosts: [localhost]\n    origin: app\n",
        origin.url()
    );
    let outpost = Outpost::start(&config, &[("l.pem", &cert), ("l.key", &key)], None).await;
    // hyper-boring's client keeps each host's session and offers it again;
    // with no pooling, every request is a new connection and handshake.
    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_boring::HttpsConnector::with_connector(http, connector).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build::<_, http_body_util::Empty<bytes::Bytes>>(https);
    for _ in 0..3 {
        let uri: http::Uri = format!("https://localhost:{}/", outpost.addr().port())
            .parse()
            .unwrap();
        let res = client
            .request(
                http::Request::get(uri)
                    .body(http_body_util::Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let _ = http_body_util::BodyExt::collect(res.into_body()).await;
    }
    let resumed = outpost_tests::metric(outpost.admin, "outpost_tls_sessions_resumed_total").await;
    assert!(resumed.is_some_and(|n| n >= 1.0), "resumed: {resumed:?}");
}
