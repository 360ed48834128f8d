//! What the fuzz targets in `fuzz/` drive, and nothing else: the parsers
//! that read what the network and the disk hand the cache, reached
//! without a [`crate::Cache`] around them. Hidden from the docs: no other
//! crate builds on this.
//!
//! - Cache-Control and the targeted fields: [`Directives`],
//!   [`storage_policy`] (which applies CDN-Cache-Control and the rule's
//!   overrides), [`Freshness`] and [`usable`];
//! - Vary: [`vary_names`], [`normalize_fields`], [`secondary`];
//! - the disk record codec, bytes in and bytes out: [`frame_record`],
//!   [`decode_record`], [`encode_entry`], [`encode_marker`],
//!   [`read_stored_record`], [`chunk_record`], [`chunk_payload`].

use std::io::Read;

use bytes::Bytes;

use crate::disk::DiskError;
use crate::disk::format::{self, Record};
use crate::entry::{Chunks, Entry};

pub use crate::disk::format::{Found, KIND_HEAD, KIND_MARKER, Marker};
pub use crate::freshness::{Directives, Freshness, Heuristic, Unusable, age_value, usable};
pub use crate::policy::{Built, storage_policy};
pub use crate::vary::{names as vary_names, normalize_fields, secondary};

/// `payload` framed as a record of `kind`: magic, version, kind, and a
/// checksum that holds, so that the decoder reads past the frame.
pub fn frame_record(kind: u8, payload: &[u8]) -> Vec<u8> {
    format::frame(kind, &[payload]).as_bytes().to_vec()
}

/// What a head or marker record (frame and checksum included) holds.
pub fn decode_record(record: &[u8]) -> Result<Found, DiskError> {
    format::decode(&Record::from_bytes(Bytes::copy_from_slice(record)))
}

/// The head record the disk tier writes for `entry`; None when it would
/// be larger than any record.
pub fn encode_entry(entry: &Entry) -> Option<Vec<u8>> {
    format::head(entry).map(|record| record.as_bytes().to_vec())
}

/// The record the disk tier writes for a Vary marker.
pub fn encode_marker(marker: &Marker) -> Option<Vec<u8>> {
    format::marker(marker).map(|record| record.as_bytes().to_vec())
}

/// A record as the store hands it back (its length, then its bytes).
pub fn read_stored_record(mut stored: impl Read) -> Option<Vec<u8>> {
    use foyer::Code;
    Record::decode(&mut stored)
        .ok()
        .map(|record| record.as_bytes().to_vec())
}

/// A chunk record: chunk `index` of the fill `fill`.
pub fn chunk_record(fill: u64, index: u32, bytes: &[u8]) -> Vec<u8> {
    format::chunk(fill, index, bytes).as_bytes().to_vec()
}

/// The bytes of chunk `index` of a body of `len` bytes written by the fill
/// `fill`, from its record; an error when the record is not that chunk.
pub fn chunk_payload(
    record: &[u8],
    primary: [u8; 32],
    fill: u64,
    len: u64,
    index: u64,
) -> Result<Bytes, DiskError> {
    let chunks = Chunks::new(primary, fill, len);
    format::chunk_bytes(
        &Record::from_bytes(Bytes::copy_from_slice(record)),
        &chunks,
        index,
    )
}
