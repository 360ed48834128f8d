//! End-to-end: compression at the edge. What the origin sends uncompressed
//! is compressed once per stored object (brotli, zstd, gzip), variants
//! collapse by the coding chosen, identity clients get a decoded copy, and
//! ranges, `no-transform` and encoded bodies are left alone. Bodies are
//! decoded here with other crates than the ones Outpost encodes with.

use std::io::Read;

use outpost_tests::{Got, Origin, Outpost, metric, request, respond, simple_config};

/// 48 KiB of text that compresses well but not trivially.
fn page() -> String {
    (0..2000)
        .map(|i| format!("line {i:05} of the page\n"))
        .collect::<String>()
}

fn decode(got: &Got) -> Vec<u8> {
    let body = &got.body[..];
    let mut out = Vec::new();
    match got.header("content-encoding") {
        "br" => {
            brotli_decompressor::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("a brotli body");
        }
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("a gzip body");
        }
        "zstd" => out = zstd::decode_all(body).expect("a zstd body"),
        "" => out = body.to_vec(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

async fn get_with(outpost: &Outpost, path: &str, headers: &[(&str, &str)]) -> Got {
    request(outpost.addr(), "GET", "example.com", path, headers, "").await
}

async fn start(origin: &Origin) -> Outpost {
    Outpost::start(&simple_config(origin, &["example.com"], ""), &[], None).await
}

fn page_origin()
-> impl Fn(&outpost_tests::Seen) -> http::Response<http_body_util::Full<bytes::Bytes>>
+ Send
+ Sync
+ 'static {
    |seen| {
        let cc = match seen.uri.path() {
            "/no-transform" => "max-age=300, no-transform",
            _ => "max-age=300",
        };
        let kind = match seen.uri.path() {
            "/logo.png" => "image/png",
            _ => "text/plain; charset=utf-8",
        };
        let body = match seen.uri.path() {
            "/small" => "tiny".to_owned(),
            _ => page(),
        };
        respond(
            200,
            &[
                ("cache-control", cc),
                ("content-type", kind),
                ("etag", "\"v1\""),
            ],
            body,
        )
    }
}

#[tokio::test]
async fn each_coding_round_trips_and_is_compressed_once_per_stored_object() {
    let origin = Origin::start(page_origin()).await;
    let outpost = start(&origin).await;
    let want = page().into_bytes();

    for (accept, coding) in [
        ("gzip, deflate, br", "br"),
        ("zstd", "zstd"),
        ("gzip;q=1, br;q=0.5", "gzip"),
        ("*", "br"),
        ("br;q=0, gzip;q=0, zstd;q=0", ""),
    ] {
        let got = get_with(&outpost, "/page", &[("accept-encoding", accept)]).await;
        assert_eq!(got.status, 200, "{accept}");
        assert_eq!(got.header("content-encoding"), coding, "{accept}");
        assert_eq!(decode(&got), want, "{accept}: not byte-exact");
        assert!(
            got.header("vary")
                .to_ascii_lowercase()
                .contains("accept-encoding"),
            "{accept}: {:?}",
            got.header("vary")
        );
        if !coding.is_empty() {
            // RFC 9110 §8.8.3: another body, a weak tag.
            assert_eq!(got.header("etag"), "W/\"v1\"", "{accept}");
            // The origin's length is gone; one of the encoded body may be sent.
            let length = got.header("content-length");
            assert!(
                length.is_empty() || length == got.body.len().to_string(),
                "{length}"
            );
            assert!(
                got.body.len() < want.len() / 3,
                "{accept}: {}",
                got.body.len()
            );
        }
    }
    // The origin was asked once per coding, with the one coding it would
    // be answered in; `*` took the brotli copy, and the client refusing
    // every coding a decoded one.
    assert_eq!(origin.hits(), 3);
    let asked: Vec<String> = origin
        .seen()
        .iter()
        .map(|s| s.headers["accept-encoding"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(asked, ["br", "zstd", "gzip"]);

    // Spellings that choose the same coding share its stored copy.
    for accept in ["br, gzip", "gzip, br, deflate", "BR;q=0.9, gzip;q=0.8"] {
        let got = get_with(&outpost, "/page", &[("accept-encoding", accept)]).await;
        got.assert_hit();
        assert_eq!(got.header("content-encoding"), "br", "{accept}");
        assert_eq!(decode(&got), want);
    }
    assert_eq!(origin.hits(), 3);
    for coding in ["br", "zstd", "gzip"] {
        let series = format!("outpost_compressed_responses_total{{encoding=\"{coding}\"}}");
        assert_eq!(metric(outpost.admin, &series).await, Some(1.0), "{coding}");
    }

    // A conditional request with the weak tag is answered 304 (weak
    // comparison, RFC 9110 §13.1.2).
    let got = get_with(
        &outpost,
        "/page",
        &[("accept-encoding", "br"), ("if-none-match", "W/\"v1\"")],
    )
    .await;
    assert_eq!(got.status, 304);
}

/// Concurrent misses collapse onto one fetch and one compression, though
/// the compressed length is unknown until the end.
#[tokio::test]
async fn concurrent_misses_share_one_fetch_and_one_compression() {
    let options = outpost_tests::OriginOptions {
        delay: Some(std::time::Duration::from_millis(300)),
        ..Default::default()
    };
    let origin = Origin::start_with(options, page_origin()).await;
    let outpost = start(&origin).await;
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let addr = outpost.addr();
            tokio::spawn(async move {
                request(
                    addr,
                    "GET",
                    "example.com",
                    "/page",
                    &[("accept-encoding", "gzip, br")],
                    "",
                )
                .await
            })
        })
        .collect();
    for client in clients {
        let got = client.await.unwrap();
        assert_eq!(got.header("content-encoding"), "br");
        assert_eq!(decode(&got), page().as_bytes());
    }
    assert_eq!(origin.hits(), 1);
    assert_eq!(
        metric(
            outpost.admin,
            "outpost_compressed_responses_total{encoding=\"br\"}"
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_client_accepting_no_coding_gets_a_decoded_copy() {
    let origin = Origin::start(page_origin()).await;
    let outpost = start(&origin).await;
    let got = get_with(&outpost, "/page", &[("accept-encoding", "gzip")]).await;
    assert_eq!(got.header("content-encoding"), "gzip");
    let got = get_with(&outpost, "/page", &[]).await;
    got.assert_hit();
    assert_eq!(got.header("content-encoding"), "");
    assert_eq!(got.body, page().as_bytes());
    assert_eq!(origin.hits(), 1);
    assert_eq!(
        metric(
            outpost.admin,
            "outpost_decompressed_responses_total{encoding=\"gzip\"}"
        )
        .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn ranges_no_transform_small_and_other_types_are_left_alone() {
    let origin = Origin::start(page_origin()).await;
    let outpost = start(&origin).await;
    let want = page().into_bytes();

    // A range is of the identity form, whatever the client accepts.
    let got = get_with(
        &outpost,
        "/page",
        &[("accept-encoding", "br"), ("range", "bytes=100-199")],
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.header("content-encoding"), "");
    assert_eq!(got.body, want[100..200]);
    // And a full request still gets its compressed copy.
    let got = get_with(&outpost, "/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("content-encoding"), "br");
    assert_eq!(decode(&got), want);

    for path in ["/no-transform", "/small", "/logo.png"] {
        let got = get_with(&outpost, path, &[("accept-encoding", "br, gzip")]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-encoding"), "", "{path}");
        assert_eq!(got.header("etag"), "\"v1\"", "{path}");
    }
}

/// RFC 9111 §4.3.4 updates a stored response with a 304's fields: the
/// origin's strong tag must not replace the weak one of a copy Outpost
/// compressed.
#[tokio::test]
async fn a_revalidated_compressed_copy_keeps_its_weak_tag() {
    let origin = Origin::start(|seen| {
        let headers = [
            ("cache-control", "max-age=0"),
            ("content-type", "text/plain"),
            ("etag", "\"v1\""),
        ];
        if seen.headers.contains_key("if-none-match") {
            respond(304, &headers, "")
        } else {
            respond(200, &headers, page())
        }
    })
    .await;
    let outpost = start(&origin).await;
    let got = get_with(&outpost, "/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("etag"), "W/\"v1\"");
    let got = get_with(&outpost, "/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.cache_status(), "Outpost; fwd=stale; fwd-status=304");
    assert_eq!(origin.last().headers["if-none-match"], "W/\"v1\"");
    assert_eq!(got.header("etag"), "W/\"v1\"");
    assert_eq!(got.header("content-encoding"), "br");
    assert_eq!(decode(&got), page().as_bytes());
    let got = get_with(&outpost, "/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("etag"), "W/\"v1\"");
}

#[tokio::test]
async fn a_body_the_origin_encoded_is_passed_as_it_is() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, page().as_bytes()).unwrap();
    let gzipped = bytes::Bytes::from(encoder.finish().unwrap());
    let origin = Origin::start(move |seen| {
        let accepts_gzip = seen
            .headers
            .get("accept-encoding")
            .is_some_and(|v| v == "gzip");
        if accepts_gzip {
            respond(
                200,
                &[
                    ("cache-control", "max-age=300"),
                    ("content-type", "text/plain"),
                    ("content-encoding", "gzip"),
                    ("vary", "Accept-Encoding"),
                ],
                gzipped.clone(),
            )
        } else {
            respond(
                200,
                &[
                    ("cache-control", "max-age=300"),
                    ("content-type", "text/plain"),
                ],
                page(),
            )
        }
    })
    .await;
    let outpost = start(&origin).await;
    let got = get_with(&outpost, "/page", &[("accept-encoding", "gzip;q=0.5")]).await;
    assert_eq!(got.header("content-encoding"), "gzip");
    assert_eq!(decode(&got), page().as_bytes());
    assert_eq!(
        metric(
            outpost.admin,
            "outpost_compressed_responses_total{encoding=\"gzip\"}"
        )
        .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_rule_may_turn_compression_off_and_so_may_the_file() {
    let origin = Origin::start(page_origin()).await;
    let rules = "\n      - match: {path_prefix: /raw/}\n        compress: false";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    let got = get_with(&outpost, "/raw/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("content-encoding"), "");
    // The origin saw what the client sent.
    assert_eq!(origin.last().headers["accept-encoding"], "br");
    let got = get_with(&outpost, "/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("content-encoding"), "br");

    let config = format!(
        "compression: {{enabled: false}}\n{}",
        simple_config(&origin, &["example.com"], "")
    );
    let outpost = Outpost::start(&config, &[], None).await;
    let got = get_with(&outpost, "/page", &[("accept-encoding", "br")]).await;
    assert_eq!(got.header("content-encoding"), "");
    assert_eq!(got.header("vary"), "");
}
