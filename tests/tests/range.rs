//! End-to-end: byte ranges (RFC 9110 §14) answered from cache, and range
//! requests on a miss that fetch and store the whole object.

use outpost_tests::{Origin, Outpost, get, request, respond, simple_config};

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

#[tokio::test]
async fn a_range_on_a_miss_fetches_the_whole_object_and_later_ranges_are_hits() {
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
    assert!(
        !origin.last().headers.contains_key("range"),
        "the whole object is fetched"
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
