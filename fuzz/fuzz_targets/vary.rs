//! Vary (RFC 9111 §4.1): the field names a response varies on, and the
//! normalized values of a request's fields that pick its variant.
//!
//! The input is header lines, `name: value`: `vary` lines are the
//! response's, every other line the request's. Checked:
//! - no input panics;
//! - the names are lower-case, sorted and without duplicates, and reading
//!   them back from one `Vary` line gives the same names;
//! - normalizing the request's fields is idempotent, and changes no
//!   variant: the secondary key of the normalized request is the
//!   secondary key of the request (the stored request is kept normalized).

#![no_main]

use http::header::VARY;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use outpost_cache::fuzzing::{normalize_fields, secondary, vary_names};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut response = HeaderMap::new();
    let mut request = HeaderMap::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim_start()),
        ) else {
            continue;
        };
        if name == VARY {
            response.append(name, value);
        } else {
            request.append(name, value);
        }
    }

    let Some(names) = vary_names(&response) else {
        // `Vary: *`: no request matches, nothing more to read.
        return;
    };
    for pair in names.windows(2) {
        assert!(
            pair[0].as_str() < pair[1].as_str(),
            "names not sorted: {names:?}"
        );
    }
    let joined: Vec<&str> = names.iter().map(HeaderName::as_str).collect();
    if let Ok(value) = HeaderValue::from_str(&joined.join(", ")) {
        let mut again = HeaderMap::new();
        again.insert(VARY, value);
        assert_eq!(vary_names(&again).as_ref(), Some(&names));
    }

    // Every request field counts, so that normalization meets them all.
    let mut every: Vec<HeaderName> = request.keys().cloned().collect();
    every.extend(names.iter().cloned());
    every.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    every.dedup();
    // A rule's key cookies are read from the request as it came, never
    // from a normalized one: they are not part of this comparison.
    let cookies = ["lang".to_owned(), "session".to_owned()];
    let _ = secondary(&names, &cookies, &request);

    let mut once = request.clone();
    normalize_fields(&mut once, &every);
    let mut twice = once.clone();
    normalize_fields(&mut twice, &every);
    assert_eq!(once, twice, "normalizing twice changed the fields");
    for list in [&names, &every] {
        assert_eq!(
            secondary(list, &[], &request),
            secondary(list, &[], &once),
            "normalizing the request changed its variant"
        );
    }
});
