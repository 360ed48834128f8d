//! End-to-end: byte ranges (RFC 9110 §14) answered from cache; a range
//! on a miss asked of the origin as it is, and partial content stored,
//! reused, grown and completed (RFC 9111 §3.3, §3.4).

use outpost_tests::{Origin, Outpost, get, purge, request, respond, respond_ranged, simple_config};

const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyz";

async fn setup() -> (Origin, Outpost) {
    let origin = Origin::start(|_| {
        respond(
            200,
            &[
                ("cache-control", "max-age=300"),
                ("etag", "\"r1\""),
                ("content-type", "text/plain"),
            ],
            BODY,
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    (origin, outpost)
}

/// An origin that ignores Range answers whole: the whole object is
/// stored, the client gets its range of it, and later ranges are hits.
#[tokio::test]
async fn a_whole_answer_to_a_range_is_stored_and_later_ranges_are_hits() {
    let (origin, outpost) = setup().await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/r",
        &[("range", "bytes=2-5")],
        "",
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, "2345");
    assert_eq!(got.header("content-range"), "bytes 2-5/36");
    assert_eq!(
        origin.last().header("range"),
        "bytes=2-5",
        "one range is asked as it is"
    );

    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/r",
        &[("range", "bytes=-3")],
        "",
    )
    .await;
    assert_eq!((got.status.as_u16(), got.body.as_ref()), (206, &b"xyz"[..]));
    got.assert_hit();
    assert_eq!(get(outpost.addr(), "example.com", "/r").await.body, BODY);
    assert_eq!(origin.hits(), 1);
}

const TEXT: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

async fn ranged_setup(etag: &'static str) -> (Origin, Outpost) {
    let origin = Origin::start(move |seen| {
        let mut headers = vec![
            ("cache-control", "max-age=300"),
            ("content-type", "text/plain"),
        ];
        if !etag.is_empty() {
            headers.push(("etag", etag));
        }
        respond_ranged(seen, &headers, TEXT)
    })
    .await;
    let config = simple_config(&origin, &["example.com"], "");
    let outpost = Outpost::start(&config, &[], Some("t")).await;
    (origin, outpost)
}

async fn ranged(outpost: &Outpost, path: &str, range: &str) -> outpost_tests::Got {
    request(
        outpost.addr(),
        "GET",
        "example.com",
        path,
        &[("range", range)],
        "",
    )
    .await
}

/// RFC 9111 §3.3: a 206 is stored as a piece, and ranges inside it are
/// answered from it (the suite's `partial-store-partial-reuse-*`).
#[tokio::test]
async fn a_stored_piece_answers_the_ranges_inside_it() {
    let (origin, outpost) = ranged_setup("\"p1\"").await;
    let got = ranged(&outpost, "/p", "bytes=10-19").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, "abcdefghij");
    assert_eq!(got.header("content-range"), "bytes 10-19/36");
    assert_eq!(origin.last().header("range"), "bytes=10-19");
    for (range, body, content_range) in [
        ("bytes=12-14", "cde", "bytes 12-14/36"),
        ("bytes=15-", "fghijklmnopqrstuvwxyz", ""),
        ("bytes=10-19", "abcdefghij", "bytes 10-19/36"),
    ] {
        let got = ranged(&outpost, "/p", range).await;
        assert_eq!(got.status, 206, "{range}");
        if content_range.is_empty() {
            // Past the piece's end: asked of the origin.
            assert_eq!(origin.last().header("range"), "bytes=15-");
        } else {
            got.assert_hit();
            assert_eq!(got.header("content-range"), content_range);
        }
        assert_eq!(got.body, body, "{range}");
    }
    // A suffix inside the piece that just grew to the end.
    let got = ranged(&outpost, "/p", "bytes=-2").await;
    got.assert_hit();
    assert_eq!(got.body, "yz");
    // An If-Range that no longer holds is never answered from the piece.
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/p",
        &[("range", "bytes=12-14"), ("if-range", "\"p0\"")],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, TEXT);
}

/// RFC 9111 §3.4: a piece that the next range continues grows by it (same
/// strong tag), and pieces that add up to the whole are the whole object.
#[tokio::test]
async fn pieces_that_add_up_become_the_whole_object() {
    let (origin, outpost) = ranged_setup("\"p1\"").await;
    assert_eq!(ranged(&outpost, "/g", "bytes=0-9").await.body, "0123456789");
    assert_eq!(
        ranged(&outpost, "/g", "bytes=5-19").await.body,
        "56789abcdefghij"
    );
    assert_eq!(origin.hits(), 2);
    ranged(&outpost, "/g", "bytes=0-19").await.assert_hit();
    let got = ranged(&outpost, "/g", "bytes=20-").await;
    assert_eq!(got.body, "klmnopqrstuvwxyz");
    assert_eq!(origin.hits(), 3);
    let got = get(outpost.addr(), "example.com", "/g").await;
    got.assert_hit();
    assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, TEXT));
    assert_eq!(got.header("content-length"), "36");
}

/// A whole request for a URL whose piece starts at byte 0 asks the origin
/// for the rest only, with If-Range, and stores the whole (the suite's
/// `partial-store-partial-complete`).
#[tokio::test]
async fn a_whole_request_completes_a_piece_with_the_rest() {
    let (origin, outpost) = ranged_setup("\"p1\"").await;
    ranged(&outpost, "/c", "bytes=0-9").await;
    let got = get(outpost.addr(), "example.com", "/c").await;
    assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, TEXT));
    let asked = origin.last();
    assert_eq!(asked.header("range"), "bytes=10-");
    assert_eq!(asked.header("if-range"), "\"p1\"");
    get(outpost.addr(), "example.com", "/c").await.assert_hit();
    assert_eq!(origin.hits(), 2);
}

/// Without a strong tag, pieces are never combined (RFC 9111 §3.4): the
/// rest is asked for, and when it comes as a 206 the whole is fetched.
#[tokio::test]
async fn pieces_without_a_strong_tag_are_not_combined() {
    let (origin, outpost) = ranged_setup("").await;
    ranged(&outpost, "/w", "bytes=0-9").await;
    let got = get(outpost.addr(), "example.com", "/w").await;
    assert_eq!((got.status.as_u16(), got.body.as_ref()), (200, TEXT));
    let seen = origin.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("range"), "bytes=10-");
    assert_eq!(seen[1].header("if-range"), "");
    assert_eq!(seen[2].header("range"), "");
    get(outpost.addr(), "example.com", "/w").await.assert_hit();
}

/// A purge of the URL reaches its piece.
#[tokio::test]
async fn a_purge_of_the_url_reaches_its_piece() {
    let (origin, outpost) = ranged_setup("\"p1\"").await;
    ranged(&outpost, "/x", "bytes=3-5").await;
    ranged(&outpost, "/x", "bytes=3-5").await.assert_hit();
    let done = purge(
        outpost.admin,
        Some("t"),
        r#"{"urls": ["http://example.com/x"]}"#,
    )
    .await;
    assert_eq!(done.status, 200);
    let got = ranged(&outpost, "/x", "bytes=3-5").await;
    assert_eq!(got.body, "345");
    assert_eq!(origin.hits(), 2);
}

#[tokio::test]
async fn several_ranges_are_a_multipart_answer() {
    // Large enough that two parts and their headers stay smaller than the whole.
    let big = BODY.repeat(30);
    let origin = Origin::start(move |_| {
        respond(
            200,
            &[
                ("cache-control", "max-age=300"),
                ("content-type", "text/plain"),
            ],
            big.clone(),
        )
    })
    .await;
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], ""), &[], None).await;
    get(outpost.addr(), "example.com", "/m").await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/m",
        &[("range", "bytes=0-1,30-31")],
        "",
    )
    .await;
    assert_eq!(got.status, 206);
    let content_type = got.header("content-type").to_owned();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .expect("multipart");
    let body = String::from_utf8(got.body.to_vec()).unwrap();
    let first = format!(
        "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/1080\r\n\r\n01\r\n"
    );
    assert!(body.contains(&first), "{body}");
    assert!(
        body.contains("Content-Range: bytes 30-31/1080\r\n\r\nuv\r\n"),
        "{body}"
    );
    assert!(body.ends_with(&format!("--{boundary}--\r\n")), "{body}");
}

/// RFC 9110 §15.5.17: no range overlaps the object.
#[tokio::test]
async fn an_unsatisfiable_range_is_416_with_the_length() {
    let (_origin, outpost) = setup().await;
    get(outpost.addr(), "example.com", "/u").await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/u",
        &[("range", "bytes=100-200")],
        "",
    )
    .await;
    assert_eq!(got.status, 416);
    assert_eq!(got.header("content-range"), "bytes */36");
}

/// RFC 9110 §13.1.5: a failed If-Range gets the whole object.
#[tokio::test]
async fn if_range_that_does_not_match_gets_the_whole_object() {
    let (_origin, outpost) = setup().await;
    get(outpost.addr(), "example.com", "/i").await;
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/i",
        &[("range", "bytes=0-3"), ("if-range", "\"other\"")],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, BODY);
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/i",
        &[("range", "bytes=0-3"), ("if-range", "\"r1\"")],
        "",
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (206, &b"0123"[..])
    );
}

/// Many small ranges never make an answer larger than the object.
#[tokio::test]
async fn many_small_ranges_get_the_whole_object() {
    let (_origin, outpost) = setup().await;
    get(outpost.addr(), "example.com", "/s").await;
    let ranges: Vec<String> = (0..10).map(|i| format!("{}-{}", i * 3, i * 3)).collect();
    let header = format!("bytes={}", ranges.join(","));
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/s",
        &[("range", header.as_str())],
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, BODY);
}

/// An object that shrank below the held piece: the rest is unsatisfiable
/// (416), and the client, who asked for no range, gets the whole object
/// as it is now.
#[tokio::test]
async fn a_whole_request_after_the_object_shrank_gets_the_new_object() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let shrunk = Arc::new(AtomicBool::new(false));
    let switch = shrunk.clone();
    let origin = Origin::start(move |seen| {
        let body: &'static [u8] = if switch.load(Ordering::SeqCst) {
            b"short"
        } else {
            TEXT
        };
        respond_ranged(
            seen,
            &[("cache-control", "max-age=300"), ("etag", "\"s\"")],
            body,
        )
    })
    .await;
    let config = simple_config(&origin, &["example.com"], "");
    let outpost = Outpost::start(&config, &[], None).await;
    ranged(&outpost, "/s", "bytes=0-9").await;
    shrunk.store(true, std::sync::atomic::Ordering::SeqCst);
    let got = get(outpost.addr(), "example.com", "/s").await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (200, &b"short"[..])
    );
    assert_eq!(
        origin.last().header("range"),
        "",
        "fetched whole after the 416"
    );
}
