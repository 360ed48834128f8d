//! The disk tier's record decoder: heads, Vary markers and chunks, as the
//! store hands them back after a restart or a torn write.
//!
//! The first byte of the input says what the rest is: `0` a whole record
//! (frame and checksum included), `1` the payload of a head record and `2`
//! that of a marker (framed here with a checksum that holds, so that the
//! decoder reads past the frame), `3` a record as the store keeps it (its
//! length first), `4` a chunk (fill, index and length in the first 20
//! bytes). Checked:
//! - no input panics: decoding, nor reading the decoded entry (its age,
//!   freshness and headers at any time);
//! - a decoded record that is written again reads back as the same entry
//!   or marker, and writing that gives the same bytes (one pass reaches
//!   the canonical form);
//! - a chunk reads back as written, and only as the chunk it is.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use outpost_cache::Entry;
use outpost_cache::fuzzing::{
    Found, KIND_HEAD, KIND_MARKER, chunk_payload, chunk_record, decode_record, encode_entry,
    encode_marker, frame_record, read_stored_record,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let record = match mode % 5 {
        0 => rest.to_vec(),
        1 => frame_record(KIND_HEAD, rest),
        2 => frame_record(KIND_MARKER, rest),
        3 => match read_stored_record(rest) {
            Some(record) => record,
            None => return,
        },
        _ => return check_chunk(rest),
    };
    match decode_record(&record) {
        Ok(Found::Object(entry)) => check_entry(&entry),
        Ok(Found::Marker(marker)) => {
            let written = encode_marker(&marker).expect("a marker read back is written again");
            let Ok(Found::Marker(again)) = decode_record(&written) else {
                panic!("a written marker does not read back");
            };
            assert_eq!(
                (&again.key, again.id, &again.names, &again.cookies),
                (&marker.key, marker.id, &marker.names, &marker.cookies)
            );
            assert_eq!(encode_marker(&again).as_ref(), Some(&written));
        }
        Err(_) => {}
    }
});

fn check_entry(entry: &Entry) {
    // Reading the entry at any time, as lookups and answers do.
    let now = SystemTime::now();
    let times = [
        UNIX_EPOCH,
        now,
        entry.freshness().response_time,
        now.checked_add(Duration::from_secs(u64::from(u32::MAX)))
            .unwrap_or(now),
    ];
    for at in times {
        let _ = entry.age(at);
        let _ = entry.staleness(at);
        let _ = entry.time_to_live(at);
        let _ = entry.freshness().is_fresh(at);
        let _ = entry.stale_while_revalidate(at);
    }
    let _ = entry.headers().to_map(0);
    let _ = entry.unvalidated_fields();
    let _ = (entry.host(), entry.location(), entry.body_len());

    let Some(written) = encode_entry(entry) else {
        return;
    };
    let Ok(Found::Object(again)) = decode_record(&written) else {
        panic!("a written head does not read back");
    };
    assert_eq!(again.key(), entry.key());
    assert_eq!(again.status(), entry.status());
    assert_eq!(again.freshness(), entry.freshness());
    assert_eq!(again.resident_body(), entry.resident_body());
    assert_eq!(again.chunks(), entry.chunks());
    let fields = |e: &Entry| -> Vec<(String, Vec<u8>)> {
        e.headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_vec()))
            .collect()
    };
    assert_eq!(fields(&again), fields(entry));
    assert_eq!(
        encode_entry(&again).as_ref(),
        Some(&written),
        "not canonical after one pass"
    );
}

fn check_chunk(rest: &[u8]) {
    if rest.len() < 20 {
        return;
    }
    let fill = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default());
    let index = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(rest[12..20].try_into().unwrap_or_default());
    let bytes = &rest[20..];
    let primary = [7; 32];
    // The input read as a chunk record of its own: never a panic.
    let _ = chunk_payload(bytes, primary, fill, len, u64::from(index));
    // A chunk written reads back as itself, when it is the last chunk of a
    // body of its length, and as nothing else.
    let record = chunk_record(fill, index, bytes);
    let body_len = u64::from(index) * (256 << 10) + bytes.len() as u64;
    if !bytes.is_empty() && bytes.len() <= 256 << 10 {
        let read = chunk_payload(&record, primary, fill, body_len, u64::from(index));
        assert_eq!(read.as_deref().ok(), Some(bytes));
        assert!(
            chunk_payload(
                &record,
                primary,
                fill.wrapping_add(1),
                body_len,
                u64::from(index)
            )
            .is_err()
        );
        assert!(chunk_payload(&record, primary, fill, body_len, u64::from(index) + 1).is_err());
    }
    let _ = chunk_payload(&record, primary, fill, len, u64::from(index));
}
