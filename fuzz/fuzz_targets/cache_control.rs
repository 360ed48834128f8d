//! Cache-Control and the targeted fields (CDN-Cache-Control,
//! Surrogate-Control) as the cache reads a response, and the request
//! directives that decide whether a stored response is used.
//!
//! The input is header lines, `name: value`, of a response; a line that
//! starts with `> ` is a field of the request instead. Pseudo-lines set
//! the rest: `:status: 404`, `:ttl: 60`, `:default-ttl: 60`,
//! `:ignore-origin`, `:share-cookies`. Checked:
//! - no input panics: parsing, storage policy, freshness, use;
//! - the directives written back as one Cache-Control value read back as
//!   the same directives (parse, render, parse), and the value is a valid
//!   field value;
//! - rendering without a directive is the same as rendering what remains;
//! - delta-seconds never exceed 2^31 (RFC 9111 §1.2.2);
//! - a rule's TTL is the lifetime of what is stored under it, whatever the
//!   origin's Cache-Control says (the rule replaces max-age and s-maxage).

#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use outpost_cache::fuzzing::{Directives, Freshness, storage_policy, usable};
use outpost_cache::{PolicyOptions, StoreRules};

const MAX_DELTA: u64 = 1 << 31;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let input = Input::read(text);
    check_directives(&Directives::from_headers(&input.response));
    check_directives(&Directives::from_headers(&input.request));
    check_policy(&input);
});

struct Input {
    status: StatusCode,
    response: HeaderMap,
    request: HeaderMap,
    rules: StoreRules,
}

impl Input {
    fn read(text: &str) -> Input {
        let mut input = Input {
            status: StatusCode::OK,
            response: HeaderMap::new(),
            request: HeaderMap::new(),
            rules: StoreRules::default(),
        };
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let seconds = |v: &str| v.trim().parse().ok().map(Duration::from_secs);
            if let Some(code) = line.strip_prefix(":status:") {
                if let Some(status) = code
                    .trim()
                    .parse()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                {
                    input.status = status;
                }
            } else if let Some(ttl) = line.strip_prefix(":ttl:") {
                input.rules.ttl = seconds(ttl);
            } else if let Some(ttl) = line.strip_prefix(":default-ttl:") {
                input.rules.default_ttl = seconds(ttl);
            } else if line == ":ignore-origin" {
                input.rules.respect_origin = false;
            } else if line == ":share-cookies" {
                input.rules.share_set_cookie = true;
            } else if let Some(field) = line.strip_prefix("> ") {
                append(&mut input.request, field);
            } else {
                append(&mut input.response, line);
            }
        }
        input
    }
}

fn append(headers: &mut HeaderMap, line: &str) {
    let Some((name, value)) = line.split_once(':') else {
        return;
    };
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.trim().as_bytes()),
        HeaderValue::from_str(value.trim_start()),
    ) {
        headers.append(name, value);
    }
}

fn check_directives(directives: &Directives) {
    // No directive has an empty name, so this is every directive.
    let rendered = directives.without("");
    let value = HeaderValue::from_str(&rendered)
        .unwrap_or_else(|_| panic!("rendered directives {rendered:?} are not a field value"));
    let again = Directives::parse([&value]);
    assert_eq!(
        &again, directives,
        "directives rendered as {rendered:?} read back differently"
    );
    for name in [
        "max-age",
        "s-maxage",
        "stale-while-revalidate",
        "stale-if-error",
        "min-fresh",
        "max-stale",
    ] {
        if let Some(Ok(seconds)) = directives.seconds(name) {
            assert!(seconds <= MAX_DELTA, "{name}={seconds}");
        }
        let _ = directives.fields(name);
        // Rendering without one directive is rendering what remains.
        let without = directives.without(name);
        if let Ok(value) = HeaderValue::from_str(&without) {
            let rest = Directives::parse([&value]);
            assert!(!rest.has(name), "{name} is still in {without:?}");
            assert_eq!(rest.without(""), without);
        }
    }
    for name in ["no-cache", "private"] {
        if let Some(fields) = directives.fields(name) {
            assert!(
                fields
                    .iter()
                    .all(|f| !f.is_empty() && f.to_ascii_lowercase() == *f)
            );
        }
    }
}

fn check_policy(input: &Input) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let options = PolicyOptions::default();
    let mut request = http::Request::new(()).into_parts().0;
    request.uri = http::Uri::from_static("http://a.test/x");
    request.headers = input.request.clone();
    let mut response = http::Response::new(()).into_parts().0;
    response.status = input.status;
    response.headers = input.response.clone();

    let freshness =
        Freshness::compute(input.status, &input.response, now, now, options.heuristic());
    let directives = Directives::from_headers(&input.response);
    for later in [0, 1, 3600, u64::from(u32::MAX)] {
        let at = now + Duration::from_secs(later);
        let _ = freshness.is_fresh(at);
        let _ = freshness.time_to_live(at);
        let _ = freshness.staleness(at);
        let _ = usable(&freshness, &directives, false, &input.request, at);
        let _ = usable(&freshness, &directives, true, &input.request, at);
    }

    let Ok(built) = storage_policy(&request, &response, now, &options, input.rules) else {
        return;
    };
    let lifetime =
        Freshness::compute(input.status, &built.view, now, now, options.heuristic()).lifetime;
    let rules = input.rules;
    let expected = if !rules.respect_origin {
        Some(rules.ttl.or(rules.default_ttl).unwrap_or_default())
    } else {
        rules.ttl
    };
    if let Some(ttl) = expected {
        // Directives count whole seconds.
        let ttl = Duration::from_secs(ttl.as_secs().min(MAX_DELTA));
        assert_eq!(
            lifetime, ttl,
            "the rule's TTL is not the lifetime; the view is {:?}",
            built.view
        );
    }
}
