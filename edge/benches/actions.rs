//! A rule's edge actions on a hit: ten of them (three request fields set,
//! two removed, one added; three response fields set, one removed), with
//! fixed values and with two templates, against the same fields untouched.
//!
//!     cargo bench -p outpost-edge --bench actions

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use outpost_edge::bench::edits_for_bench;

const RULES: &str = r#"
listen: [{addr: 127.0.0.1:0}]
origins: {a: {servers: [{url: "http://127.0.0.1:1"}]}}
sites:
  - hosts: [example.com]
    origin: a
    rules:
      - match: { path_prefix: /fixed/ }
        request_headers:
          set: { X-Edge: outpost, X-Tier: gold, X-Zone: eu }
          remove: [Cookie, X-Debug]
          add: { X-Trace: edge }
        response_headers:
          set: { X-Frame-Options: DENY, X-Content-Type-Options: nosniff, Strict-Transport-Security: max-age=600 }
          remove: [X-Powered-By]
      - match: { path_prefix: /ruled/ }
        request_headers:
          set: { X-Edge: outpost, X-Tier: gold, X-Client: "{client}" }
          remove: [Cookie, X-Debug]
          add: { X-Trace: "{request_id}" }
        response_headers:
          set: { X-Frame-Options: DENY, X-Content-Type-Options: nosniff, Strict-Transport-Security: max-age=600 }
          remove: [X-Powered-By]
"#;

fn fields(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

fn actions(c: &mut Criterion) {
    let loaded = outpost_config::load_str(RULES, "bench.yaml", Path::new(".")).expect("config");
    let rules = &loaded.config.sites[0].rules;
    // What wrk sends, and what a stored 1 KiB answer carries to a hit.
    let request = fields(&[("host", "example.com")]);
    let mut response = fields(&[
        ("content-type", "text/plain"),
        ("etag", "\"5f3c-400\""),
        ("last-modified", "Wed, 02 Dec 2026 10:00:00 GMT"),
        ("cache-control", "max-age=3600"),
        ("date", "Wed, 02 Dec 2026 10:00:00 GMT"),
        ("content-length", "1024"),
    ]);
    response.reserve(8);
    c.bench_function("actions/none", |b| {
        b.iter(|| black_box((request.clone(), response.clone())))
    });
    for (name, rule) in [("fixed", &rules[0]), ("templates", &rules[1])] {
        let edit = edits_for_bench(rule).expect("the rule has actions");
        c.bench_function(&format!("actions/ten-{name}"), |b| {
            b.iter(|| {
                let (mut req, mut res) = (request.clone(), response.clone());
                edit(&mut req, &mut res);
                black_box((req, res))
            })
        });
    }
}

criterion_group!(benches, actions);
criterion_main!(benches);
