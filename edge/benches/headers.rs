//! Header work on every miss and bypass: preparing a client's request
//! fields for the origin (hop-by-hop fields out, X-Forwarded-*, Host, Via).
//!
//!     cargo bench -p outpost-edge --bench headers

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Version};
use outpost_edge::bench::to_origin;

fn request_fields() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/140.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive, x-trace"),
        ("x-trace", "1"),
        ("cookie", "session=0123456789abcdef; theme=dark"),
        ("x-forwarded-for", "203.0.113.9"),
    ] {
        headers.append(name, HeaderValue::from_static(value));
    }
    headers
}

fn headers(c: &mut Criterion) {
    let fields = request_fields();
    let client = "198.51.100.7".parse().expect("address");
    c.bench_function("headers/to-origin", |b| {
        b.iter(|| {
            let mut headers = fields.clone();
            to_origin(&mut headers, client, true, "example.com", Version::HTTP_11);
            black_box(headers)
        })
    });
}

criterion_group!(benches, headers);
criterion_main!(benches);
