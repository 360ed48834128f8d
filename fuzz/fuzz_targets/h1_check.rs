//! The strict HTTP/1 checker in front of hyper, fed a client's bytes.
//!
//! The input is what a client sends on one connection. Checked:
//! - no input panics, however it is cut into reads;
//! - how the bytes are cut into reads does not change whether the
//!   connection is refused, nor (when it is not) what hyper reads;
//! - what hyper reads is the client's bytes with nothing added and nothing
//!   changed, only empty lines before a request line dropped (RFC 9112
//!   §2.2), and, once a request is refused, the stand-in request hyper
//!   answers with 400 or 431 and nothing after it;
//! - an Upgrade's answer (101 or another status, chosen by the input)
//!   keeps all of that true.

#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_edge::fuzzing::{BAD_REQUEST, H1Checker, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let cuts = cut_points(data);
    let whole = run(data, &[]);
    let pieces = run(data, &cuts);
    assert_eq!(
        whole.closed, pieces.closed,
        "cutting the reads at {cuts:?} changed whether the connection is refused"
    );
    if !whole.closed {
        assert_eq!(
            whole.ready, pieces.ready,
            "cutting the reads at {cuts:?} changed what hyper reads"
        );
    }
    for outcome in [&whole, &pieces] {
        check_passed_bytes(data, outcome);
    }
});

/// What one connection came to.
struct Outcome {
    ready: Vec<u8>,
    closed: bool,
}

fn run(data: &[u8], cuts: &[usize]) -> Outcome {
    let mut checker = H1Checker::default();
    let mut ready = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        checker.feed(&data[start..cut]);
        ready.extend(checker.take_ready());
        start = cut;
    }
    // An Upgrade waiting for its answer: the last byte picks it.
    if !checker.awaits_head() && !checker.is_closed() && !checker.is_tunnel() {
        let answer: &[u8] = if data.last().is_some_and(|b| b % 2 == 0) {
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\n\r\n"
        };
        checker.answer_started(answer);
        ready.extend(checker.take_ready());
    }
    checker.end();
    ready.extend(checker.take_ready());
    assert_eq!(
        checker.is_closed(),
        checker.violation().is_some(),
        "refused without a reason, or a reason without a refusal"
    );
    Outcome {
        ready,
        closed: checker.is_closed(),
    }
}

/// Up to eight cut points, spread by a hash of the input, so that the
/// seeds stay plain requests.
fn cut_points(data: &[u8]) -> Vec<usize> {
    if data.len() < 2 {
        return Vec::new();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut cuts: Vec<usize> = (0..8)
        .map(|i| {
            let h = hash.rotate_left(i * 8) ^ (u64::from(i) << 32);
            1 + (h % (data.len() as u64 - 1)) as usize
        })
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// What hyper read is the input with empty lines dropped, then (when the
/// connection was refused) the stand-in request.
fn check_passed_bytes(data: &[u8], outcome: &Outcome) {
    let mut passed = outcome.ready.as_slice();
    if outcome.closed {
        // A head over the limit is replaced by a head start that hyper
        // answers with 431; anything else by a request it answers with 400.
        let mut too_large = b"GET / HTTP/1.1\r\nx: ".to_vec();
        too_large.resize(too_large.len() + MAX_HEAD + 1, b'a');
        passed = passed
            .strip_suffix(BAD_REQUEST)
            .or_else(|| passed.strip_suffix(too_large.as_slice()))
            .unwrap_or_else(|| panic!("a refused connection without its stand-in request"));
    }
    let (mut i, mut j) = (0, 0);
    while j < passed.len() {
        if i < data.len() && data[i] == passed[j] {
            i += 1;
            j += 1;
        } else if data[i..].starts_with(b"\r\n") {
            i += 2;
        } else {
            panic!(
                "hyper reads {:?} where the client sent {:?}",
                String::from_utf8_lossy(&passed[j..passed.len().min(j + 40)]),
                String::from_utf8_lossy(&data[i..data.len().min(i + 40)]),
            );
        }
    }
}
