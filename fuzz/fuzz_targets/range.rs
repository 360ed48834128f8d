//! `Range` and `If-Range` (RFC 9110 §14.2, §13.1.5) against a stored
//! object of known length.
//!
//! The input is lines: the first is the object's length in bytes (a
//! decimal number, any u64); then header lines, `name: value`, where
//! `etag` and `last-modified` are the stored object's validators and any
//! other field is the request's. Checked:
//! - no input and no length panics;
//! - the ranges of a partial answer are sorted, each within the object,
//!   none overlapping or touching the next, at most 32 of them;
//! - several ranges never add up (with their part headers) to as much as
//!   the whole object;
//! - a length-0 object never gets a partial answer.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use outpost_edge::fuzzing::{Ranges, evaluate_range};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let len: u64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let mut request = HeaderMap::new();
    let mut stored = HeaderMap::new();
    for line in lines {
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
        if name == http::header::ETAG || name == http::header::LAST_MODIFIED {
            stored.append(name, value);
        } else {
            request.append(name, value);
        }
    }
    match evaluate_range(&request, len, &stored) {
        Ranges::Whole | Ranges::Unsatisfiable => {}
        Ranges::Partial(ranges) => {
            assert!(len > 0, "a partial answer of an empty object");
            assert!(
                !ranges.is_empty() && ranges.len() <= 32,
                "{} ranges",
                ranges.len()
            );
            for &(start, end) in &ranges {
                assert!(start <= end && end < len, "{start}-{end} of {len} bytes");
            }
            for pair in ranges.windows(2) {
                assert!(
                    pair[1].0 > pair[0].1.saturating_add(1),
                    "{:?} and {:?} overlap or touch",
                    pair[0],
                    pair[1]
                );
            }
            if ranges.len() > 1 {
                let bytes: u128 = ranges.iter().map(|(s, e)| u128::from(e - s) + 1).sum();
                assert!(bytes < u128::from(len), "{bytes} bytes in parts of {len}");
            }
        }
    }
});
