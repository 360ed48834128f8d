//! End-to-end: a rule's `slice` answers GETs from aligned slices, each
//! fetched with a range of its own, stored and coalesced on its own; purges
//! reach every slice, and a slice of another representation ends the
//! answer and invalidates the URL's slices.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use outpost_tests::{
    Origin, Outpost, get, purge, request, respond, respond_ranged, simple_config, try_request,
};

const SLICE: usize = 64 << 10;
/// Ten whole slices and a short last one.
const LEN: usize = 10 * SLICE + 1000;

/// The object: bytes that differ from slice to slice and from `seed` to seed.
fn object(seed: u8) -> &'static [u8] {
    let bytes: Vec<u8> = (0..LEN)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect();
    Box::leak(bytes.into_boxed_slice())
}

/// An origin serving the object by ranges; `changed` switches it to another
/// representation (another body and entity tag).
async fn setup() -> (Origin, Outpost, Arc<AtomicBool>, &'static [u8]) {
    let (first, second) = (object(0), object(0x5a));
    let changed = Arc::new(AtomicBool::new(false));
    let switch = changed.clone();
    let origin = Origin::start(move |seen| {
        let (etag, body) = if switch.load(Ordering::SeqCst) {
            ("\"v2\"", second)
        } else {
            ("\"v1\"", first)
        };
        respond_ranged(
            seen,
            &[
                ("cache-control", "max-age=300"),
                ("content-type", "video/mp4"),
                ("etag", etag),
                ("surrogate-key", "movies"),
            ],
            body,
        )
    })
    .await;
    let rules = "[{match: {path_prefix: /v/}, slice: 64KiB}]";
    let config = simple_config(&origin, &["example.com"], rules);
    let outpost = Outpost::start(&config, &[], Some("t")).await;
    (origin, outpost, changed, first)
}

async fn ranged(outpost: &Outpost, range: &str) -> outpost_tests::Got {
    request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v/movie.mp4",
        &[("range", range)],
        "",
    )
    .await
}

/// The ranges the origin was asked for, in order.
fn asked(origin: &Origin) -> Vec<String> {
    origin
        .seen()
        .iter()
        .map(|seen| seen.header("range").to_owned())
        .collect()
}

fn slice_range(index: usize) -> String {
    format!("bytes={}-{}", index * SLICE, (index + 1) * SLICE - 1)
}

/// A seek costs the slice it lands in; a later range inside stored slices
/// is a hit, and one that runs into the next slice fetches that one only.
#[tokio::test]
async fn a_seek_fetches_only_the_slices_it_lands_in() {
    let (origin, outpost, _, body) = setup().await;
    let start = 3 * SLICE + 100;
    let got = ranged(&outpost, &format!("bytes={start}-{}", start + 99)).await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, &body[start..start + 100]);
    assert_eq!(
        got.header("content-range"),
        format!("bytes {start}-{}/{LEN}", start + 99)
    );
    assert_eq!(got.header("etag"), "\"v1\"");
    assert_eq!(asked(&origin), [slice_range(3)]);

    // From the stored slice, or from its fill while the rest of it is
    // still arriving: either way the origin is not asked again.
    let got = ranged(&outpost, &format!("bytes={}-{}", 3 * SLICE, 4 * SLICE - 1)).await;
    assert_eq!(got.body, &body[3 * SLICE..4 * SLICE]);
    assert_eq!(origin.hits(), 1);

    let from = 4 * SLICE - 10;
    let got = ranged(&outpost, &format!("bytes={from}-{}", from + 19)).await;
    assert_eq!(got.body, &body[from..from + 20]);
    assert_eq!(asked(&origin), [slice_range(3), slice_range(4)]);
}

/// A whole GET streams every slice in order, and afterwards is a hit.
#[tokio::test]
async fn a_whole_get_is_served_from_slices() {
    let (origin, outpost, _, body) = setup().await;
    let got = get(outpost.addr(), "example.com", "/v/movie.mp4").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), LEN.to_string());
    assert!(got.body == body, "the object, byte for byte");
    let expected: Vec<String> = (0..=10).map(slice_range).collect();
    assert_eq!(asked(&origin), expected);
    let again = get(outpost.addr(), "example.com", "/v/movie.mp4").await;
    again.assert_hit();
    assert!(again.body == body);
    assert_eq!(origin.hits(), 11);
}

/// A suffix range needs the length: the first slice, then the last.
#[tokio::test]
async fn a_suffix_range_takes_the_first_slice_for_the_length() {
    let (origin, outpost, _, body) = setup().await;
    let got = ranged(&outpost, "bytes=-500").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, &body[LEN - 500..]);
    assert_eq!(
        got.header("content-range"),
        format!("bytes {}-{}/{LEN}", LEN - 500, LEN - 1)
    );
    assert_eq!(asked(&origin), [slice_range(0), slice_range(10)]);
}

/// RFC 9110 §13.1.5: an If-Range that does not match gets the whole object.
#[tokio::test]
async fn if_range_is_honoured() {
    let (_origin, outpost, _, body) = setup().await;
    let range = [("range", "bytes=10-19"), ("if-range", "\"v1\"")];
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v/movie.mp4",
        &range,
        "",
    )
    .await;
    assert_eq!(
        (got.status.as_u16(), got.body.as_ref()),
        (206, &body[10..20])
    );
    let range = [("range", "bytes=10-19"), ("if-range", "\"v0\"")];
    let got = request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v/movie.mp4",
        &range,
        "",
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.body == body);
}

/// Concurrent requests for one slice make one origin fetch of it.
#[tokio::test]
async fn concurrent_requests_for_a_slice_are_coalesced() {
    let (origin, outpost, _, body) = setup().await;
    let requests = (0..20).map(|i| {
        let addr = outpost.addr();
        async move {
            let from = 5 * SLICE + i * 1000;
            let range = format!("bytes={from}-{}", from + 999);
            let got = request(
                addr,
                "GET",
                "example.com",
                "/v/movie.mp4",
                &[("range", &range)],
                "",
            )
            .await;
            (from, got)
        }
    });
    for (from, got) in futures_util::future::join_all(requests).await {
        assert_eq!(got.body, &body[from..from + 1000]);
    }
    assert_eq!(asked(&origin), [slice_range(5)]);
}

/// Purges of the URL, a prefix, the host, a tag and everything reach
/// every slice.
#[tokio::test]
async fn purges_reach_every_slice() {
    let (origin, outpost, _, _) = setup().await;
    for (n, purged) in [
        r#"{"urls": ["http://example.com/v/movie.mp4"]}"#,
        r#"{"prefixes": ["example.com/v/"]}"#,
        r#"{"hosts": ["example.com"]}"#,
        r#"{"tags": ["movies"]}"#,
        r#"{"everything": true}"#,
    ]
    .into_iter()
    .enumerate()
    {
        get(outpost.addr(), "example.com", "/v/movie.mp4").await;
        assert_eq!(origin.hits(), 11 * (n + 1), "{purged}");
        get(outpost.addr(), "example.com", "/v/movie.mp4")
            .await
            .assert_hit();
        let done = purge(outpost.admin, Some("t"), purged).await;
        assert_eq!(done.status, 200, "{purged}");
    }
    get(outpost.addr(), "example.com", "/v/movie.mp4").await;
    assert_eq!(origin.hits(), 66);
}

/// A slice of another representation (the object changed at the origin)
/// ends the answer cut off, and invalidates the URL's slices: the next
/// request is answered whole from the new object.
#[tokio::test]
async fn a_slice_of_another_representation_invalidates_the_slices() {
    let (_origin, outpost, changed, _) = setup().await;
    ranged(&outpost, &slice_range(0)).await;
    changed.store(true, Ordering::SeqCst);
    let cut = try_request(
        outpost.addr(),
        "GET",
        "example.com",
        "/v/movie.mp4",
        &[("range", &format!("bytes=0-{}", 2 * SLICE - 1))],
        "",
    )
    .await;
    assert!(cut.is_err(), "the answer must not pass for whole: {cut:?}");
    let got = get(outpost.addr(), "example.com", "/v/movie.mp4").await;
    assert_eq!(got.header("etag"), "\"v2\"");
    assert!(got.body == object(0x5a));
}

/// An origin that ignores ranges sends the whole object for a slice: the
/// client still gets exactly its range, and nothing is stored as a slice.
#[tokio::test]
async fn an_origin_that_ignores_ranges_still_gets_the_clients_range_right() {
    let body = object(1);
    let origin = Origin::start(move |_| {
        respond(
            200,
            &[("cache-control", "max-age=300"), ("etag", "\"w\"")],
            body,
        )
    })
    .await;
    let rules = "[{match: {path_prefix: /v/}, slice: 64KiB}]";
    let outpost = Outpost::start(&simple_config(&origin, &["example.com"], rules), &[], None).await;
    let from = 2 * SLICE + 5;
    for _ in 0..2 {
        let got = ranged(&outpost, &format!("bytes={from}-{}", from + 9)).await;
        assert_eq!(got.status, 206);
        assert_eq!(got.body, &body[from..from + 10]);
        assert_eq!(
            got.header("content-range"),
            format!("bytes {from}-{}/{LEN}", from + 9)
        );
    }
    assert_eq!(origin.hits(), 2, "nothing was stored as a slice");
}

/// Hostile ranges (past any length, at the edge of 64 bits) get a plain
/// answer, never a failure of the node.
#[tokio::test]
async fn ranges_at_the_edge_of_64_bits_are_answered() {
    let (_origin, outpost, _, body) = setup().await;
    for range in [
        "bytes=18446744073709551615-",
        "bytes=18446744073709551614-18446744073709551615",
        "bytes=99999999999999999999-",
        "bytes=-18446744073709551615",
    ] {
        let got = ranged(&outpost, range).await;
        assert!(
            [200, 206, 416].contains(&got.status.as_u16()),
            "{range}: {}",
            got.status
        );
    }
    let got = ranged(&outpost, "bytes=0-9").await;
    assert_eq!(got.body, &body[..10], "the node still serves");
}
