//! The record format: how heads, Vary markers and chunks are framed,
//! checksummed and encoded, and how they are read back. Nothing here does
//! I/O; the tier (`tier.rs`) stores and loads the records.
//!
//! ```text
//! "OPST" | format version (u16 LE) | kind (u8) | payload | blake3 of all before, first 16 bytes
//! ```
//!
//! - head (kind 1): meta length (u32 LE) | meta (postcard) | the body, when it fits in one chunk;
//! - marker (kind 2): a URL whose responses vary (postcard), then, when it
//!   has any, the secondary hashes of its variants (postcard; a reader
//!   that does not know them stops before them);
//! - chunk (kind 3): fill id (u64 LE) | index (u32 LE) | bytes.
//!
//! A head's meta is the on-disk representation of an [`Entry`]: both ways
//! of converting are here, and its bytes are pinned to `VERSION` by a test.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::DiskError;
use crate::entry::{Body, CHUNK, Chunks, Entry, StoredHeaders, Variant};
use crate::freshness::{Directives, Freshness};
use crate::policy::{StaleUse, StoreRules};

/// The format written; records of any other version read as misses.
const VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"OPST";
const SUM: usize = 16;
pub const KIND_HEAD: u8 = 1;
pub const KIND_MARKER: u8 = 2;
const KIND_CHUNK: u8 = 3;
/// No record is larger: a length past it is damage, not an allocation to make.
const MAX_RECORD: usize = 4 * CHUNK;

/// One framed record, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Record(Bytes);

impl Record {
    /// Bytes the record takes in the store.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// A record read from somewhere other than the store (the fuzz targets).
    pub(crate) fn from_bytes(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The record's bytes, frame and checksum included.
    pub(crate) fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl foyer::Code for Record {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        let len = u32::try_from(self.0.len()).unwrap_or(u32::MAX);
        writer
            .write_all(&len.to_le_bytes())
            .map_err(foyer::Error::io_error)?;
        writer.write_all(&self.0).map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let mut len = [0; 4];
        reader
            .read_exact(&mut len)
            .map_err(foyer::Error::io_error)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RECORD {
            return Err(foyer::Error::new(
                foyer::ErrorKind::OutOfRange,
                "record length past the largest record",
            ));
        }
        let mut bytes = vec![0; len];
        reader
            .read_exact(&mut bytes)
            .map_err(foyer::Error::io_error)?;
        Ok(Self(Bytes::from(bytes)))
    }

    fn estimated_size(&self) -> usize {
        4 + self.0.len()
    }
}

pub(crate) fn frame(kind: u8, parts: &[&[u8]]) -> Record {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = BytesMut::with_capacity(7 + len + SUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[kind]);
    for part in parts {
        out.extend_from_slice(part);
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..SUM]);
    Record(out.freeze())
}

/// The payload of a record of `kind`, once its frame and checksum are verified.
fn unframe(record: &Record, kind: u8) -> Result<Bytes, DiskError> {
    let bytes = &record.0;
    if bytes.len() < 7 + SUM {
        return Err(DiskError::Damaged("short record"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - SUM);
    if &blake3::hash(body).as_bytes()[..SUM] != sum {
        return Err(DiskError::Damaged("checksum"));
    }
    if &body[..4] != MAGIC {
        return Err(DiskError::Damaged("magic"));
    }
    if body[4..6] != VERSION.to_le_bytes() {
        return Err(DiskError::Damaged("format version"));
    }
    if body[6] != kind {
        return Err(DiskError::Damaged("record kind"));
    }
    Ok(bytes.slice(7..bytes.len() - SUM))
}

/// An object's head as stored: the on-disk representation of an [`Entry`]
/// (its body aside).
#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    freshness: Freshness,
    directives: Directives,
    stale: StaleUse,
    rules: StoreRules,
    /// For a Vary variant, its text and its marker's id; for any other
    /// entry, empty and 0.
    variant: String,
    marker: u64,
    seq: u64,
    tags: Vec<String>,
    primary: [u8; 32],
    chunks: Option<Chunks>,
}

/// A URL whose responses vary, as stored under its primary hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub key: String,
    pub id: u64,
    pub names: Vec<String>,
    pub cookies: Vec<String>,
    /// The secondary hashes of its variants, most recently stored last:
    /// after a restart they are listed before any is looked up again.
    #[serde(skip)]
    pub variants: Vec<[u8; 32]>,
}

impl Marker {
    /// The marker as memory holds it; a field name that is not one any
    /// more (a damaged record that still decoded) is left out.
    pub fn into_vary_marker(self) -> crate::vary::VaryMarker {
        let names = self
            .names
            .iter()
            .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        let marker = crate::vary::VaryMarker::with_id(self.key, self.id, names, self.cookies);
        for hash in self.variants {
            marker.remember(hash);
        }
        marker
    }

    /// A memory marker as written to disk, with its variants.
    pub fn of(marker: &crate::vary::VaryMarker) -> Marker {
        Marker {
            key: marker.key.clone(),
            id: marker.id,
            names: marker.names.iter().map(|n| n.to_string()).collect(),
            cookies: marker.cookies.clone(),
            variants: marker.variants(),
        }
    }
}

/// What a hash holds on disk.
#[derive(Debug)]
pub enum Found {
    /// An object; its body is in memory when it fits one chunk, otherwise
    /// on disk in the chunks the entry names.
    Object(Box<Entry>),
    Marker(Marker),
}

/// A head record for `entry`: its meta, and its body when that is held in
/// memory and not in chunks. None when the head cannot be encoded, or would
/// be larger than any record.
pub(crate) fn head(entry: &Entry) -> Option<Record> {
    let variant = entry.variant();
    let meta = Meta {
        key: entry.key().to_owned(),
        status: entry.status().as_u16(),
        headers: entry
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_vec()))
            .collect(),
        freshness: entry.freshness().clone(),
        directives: entry.directives().clone(),
        stale: entry.stale(),
        rules: *entry.rules(),
        variant: variant.map_or_else(String::new, |v| v.text.to_string()),
        marker: variant.map_or(0, |v| v.marker),
        seq: entry.seq(),
        tags: entry.tags().to_vec(),
        primary: *entry.primary(),
        chunks: entry.chunks().copied(),
    };
    let meta = postcard::to_stdvec(&meta).ok()?;
    let meta_len = u32::try_from(meta.len()).ok()?;
    let body: &[u8] = match entry.body() {
        Body::Memory(bytes) => bytes,
        Body::Disk(_) | Body::Both(..) => &[],
    };
    if 7 + 4 + meta.len() + body.len() + SUM > MAX_RECORD {
        return None;
    }
    Some(frame(KIND_HEAD, &[&meta_len.to_le_bytes(), &meta, body]))
}

/// A marker record; None when it would be larger than any record.
pub(crate) fn marker(marker: &Marker) -> Option<Record> {
    let mut payload = postcard::to_stdvec(marker).ok()?;
    if !marker.variants.is_empty() {
        payload.extend(postcard::to_stdvec(&marker.variants).ok()?);
    }
    (payload.len() + 7 + SUM <= MAX_RECORD).then(|| frame(KIND_MARKER, &[&payload]))
}

/// A chunk record: chunk `index` of the fill `fill`.
pub(crate) fn chunk(fill: u64, index: u32, bytes: &[u8]) -> Record {
    frame(
        KIND_CHUNK,
        &[&fill.to_le_bytes(), &index.to_le_bytes(), bytes],
    )
}

/// The bytes of a chunk record, verified to be chunk `index` of the body
/// `chunks` names (that fill's, and of the length that chunk must have).
pub(crate) fn chunk_bytes(
    record: &Record,
    chunks: &Chunks,
    index: u64,
) -> Result<Bytes, DiskError> {
    let payload = unframe(record, KIND_CHUNK)?;
    if payload.len() < 12 {
        return Err(DiskError::Damaged("short chunk"));
    }
    let fill = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
    let at = u32::from_le_bytes(payload[8..12].try_into().unwrap_or_default());
    let expected = if index + 1 == chunks.count() {
        chunks.len() - index * CHUNK as u64
    } else {
        CHUNK as u64
    };
    if fill != chunks.fill() || u64::from(at) != index || payload.len() as u64 - 12 != expected {
        return Err(DiskError::Damaged("chunk of another fill"));
    }
    Ok(payload.slice(12..))
}

/// What a head or marker record holds.
pub(crate) fn decode(record: &Record) -> Result<Found, DiskError> {
    if record.0.get(6) == Some(&KIND_MARKER) {
        let payload = unframe(record, KIND_MARKER)?;
        let (mut marker, variants): (Marker, _) =
            postcard::take_from_bytes(&payload).map_err(|_| DiskError::Damaged("marker"))?;
        if !variants.is_empty() {
            marker.variants = postcard::from_bytes(variants)
                .map_err(|_| DiskError::Damaged("marker variants"))?;
        }
        return Ok(Found::Marker(marker));
    }
    let payload = unframe(record, KIND_HEAD)?;
    if payload.len() < 4 {
        return Err(DiskError::Damaged("short head"));
    }
    let meta_len = u32::from_le_bytes(payload[..4].try_into().unwrap_or_default()) as usize;
    let meta_bytes = payload
        .get(4..4 + meta_len)
        .ok_or(DiskError::Damaged("head length"))?;
    let meta: Meta = postcard::from_bytes(meta_bytes).map_err(|_| DiskError::Damaged("head"))?;
    let body = payload.slice(4 + meta_len..);
    let body = match meta.chunks {
        None => Body::Memory(body),
        Some(chunks) if body.is_empty() => Body::Disk(Box::new(chunks)),
        Some(_) => return Err(DiskError::Damaged("head with both body and chunks")),
    };
    let mut fields = Vec::with_capacity(meta.headers.len());
    for (name, value) in meta.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| DiskError::Damaged("field name"))?;
        let value =
            HeaderValue::from_bytes(&value).map_err(|_| DiskError::Damaged("field value"))?;
        fields.push((name, value));
    }
    let variant = (meta.marker != 0).then(|| Variant {
        marker: meta.marker,
        text: meta.variant.into_boxed_str(),
    });
    Ok(Found::Object(Box::new(Entry {
        key: meta.key.into(),
        status: StatusCode::from_u16(meta.status).map_err(|_| DiskError::Damaged("status"))?,
        headers: StoredHeaders::from_fields(fields),
        body,
        freshness: meta.freshness,
        directives: meta.directives,
        stale: meta.stale,
        rules: meta.rules.shared(),
        variant,
        seq: meta.seq,
        tags: meta.tags,
        primary: meta.primary,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A marker's variants follow it in the record; a record written
    /// before they were (the marker alone) reads with none.
    #[test]
    fn a_marker_keeps_its_variants_and_an_older_one_reads_without() {
        let listed = Marker {
            key: "http://a.test/v".into(),
            id: 7,
            names: vec!["accept-language".into()],
            cookies: vec![],
            variants: vec![[1; 32], [2; 32]],
        };
        let Ok(Found::Marker(again)) = decode(&marker(&listed).unwrap()) else {
            panic!("a written marker does not read back");
        };
        assert_eq!(again.variants, listed.variants);
        assert_eq!((again.key.as_str(), again.id), ("http://a.test/v", 7));
        let older = frame(KIND_MARKER, &[&postcard::to_stdvec(&listed).unwrap()]);
        let Ok(Found::Marker(again)) = decode(&older) else {
            panic!("a marker without variants does not read");
        };
        assert!(again.variants.is_empty());
        assert_eq!(again.into_vary_marker().names, ["accept-language"]);
        let mut damaged = postcard::to_stdvec(&listed).unwrap();
        damaged.extend([5, 1, 2]);
        assert!(decode(&frame(KIND_MARKER, &[&damaged])).is_err());
    }

    #[test]
    fn frames_verify_and_refuse_damage() {
        let record = frame(KIND_CHUNK, &[b"abc", b"def"]);
        assert_eq!(&unframe(&record, KIND_CHUNK).unwrap()[..], b"abcdef");
        assert!(matches!(
            unframe(&record, KIND_HEAD),
            Err(DiskError::Damaged("record kind"))
        ));
        for at in 0..record.0.len() {
            let mut bytes = record.0.to_vec();
            bytes[at] ^= 0x40;
            assert!(
                unframe(&Record(Bytes::from(bytes)), KIND_CHUNK).is_err(),
                "a flipped bit at {at} went unnoticed"
            );
        }
        for len in 0..record.0.len() {
            assert!(unframe(&Record(record.0.slice(..len)), KIND_CHUNK).is_err());
        }
    }

    #[test]
    fn another_format_version_is_refused() {
        let mut bytes = frame(KIND_HEAD, &[b"x"]).0.to_vec();
        bytes[4] = 9;
        let body_len = bytes.len() - SUM;
        let sum = blake3::hash(&bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&sum.as_bytes()[..SUM]);
        assert!(matches!(
            unframe(&Record(Bytes::from(bytes)), KIND_HEAD),
            Err(DiskError::Damaged("format version"))
        ));
    }

    /// The bytes of a head are pinned: a change to what a head holds (its
    /// fields, or the types of freshness, directives and rules) fails this
    /// test, and must come with a new `VERSION` so that heads written in
    /// the old layout read as misses rather than as wrong values.
    #[test]
    fn the_head_format_is_pinned_to_its_version() {
        let meta = Meta {
            key: "http://a.test/x".into(),
            status: 200,
            headers: vec![("etag".into(), b"\"v1\"".to_vec())],
            freshness: Freshness {
                lifetime: std::time::Duration::from_secs(60),
                initial_age: std::time::Duration::from_secs(1),
                response_time: std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(1_800_000_000),
                heuristic: false,
            },
            directives: Directives::parse([&http::HeaderValue::from_static("max-age=60")]),
            stale: StaleUse {
                never: true,
                while_revalidate: Some(std::time::Duration::from_secs(5)),
                if_error: None,
            },
            rules: StoreRules::default(),
            variant: String::new(),
            marker: 7,
            seq: 9,
            tags: vec!["t".into()],
            primary: [3; 32],
            chunks: Some(Chunks::new([3; 32], 11, 300_000)),
        };
        let bytes = postcard::to_stdvec(&meta).expect("encode");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(VERSION, 1);
        assert_eq!(
            hex, PINNED_V1,
            "the head format changed: bump VERSION and re-pin"
        );
    }

    const PINNED_V1: &str = "0f687474703a2f2f612e746573742f78c80101046574616704227631223c00010080a4a7da06000001076d61782d61676501023630010105000000000001000000070901017403030303030303030303030303030303030303030303030303030303030303030103030303030303030303030303030303030303030303030303030303030303030be0a712";

    /// A head whose checksum holds may still carry any values: one with an
    /// initial age of 2^64 - 1 seconds (a seed of `fuzz/disk_record`, made
    /// from the pinned head) panicked with "overflow when adding
    /// durations" when its age was read; its age is now as large as a
    /// `Duration` goes, and the entry is stale.
    #[test]
    fn a_head_of_any_age_is_read_without_a_panic() {
        let chunks = Chunks::new([3; 32], 11, 300_000);
        let entry = Entry {
            key: "http://a.test/x".into(),
            status: StatusCode::OK,
            headers: StoredHeaders::default(),
            body: Body::Disk(Box::new(chunks)),
            freshness: Freshness {
                lifetime: std::time::Duration::from_secs(60),
                initial_age: std::time::Duration::from_secs(u64::MAX),
                response_time: std::time::UNIX_EPOCH,
                heuristic: false,
            },
            directives: Directives::default(),
            stale: StaleUse::default(),
            rules: StoreRules::default().shared(),
            variant: None,
            seq: 1,
            tags: Vec::new(),
            primary: [3; 32],
        };
        let record = head(&entry).expect("a head");
        let Ok(Found::Object(read)) = decode(&record) else {
            panic!("the head does not read back");
        };
        let now = std::time::SystemTime::now();
        assert_eq!(read.age(now), std::time::Duration::MAX);
        assert!(!read.freshness().is_fresh(now));
        assert_eq!(read.time_to_live(now), std::time::Duration::ZERO);
    }

    #[test]
    fn a_record_length_past_the_limit_is_refused_before_allocating() {
        use foyer::Code;
        let mut bytes: &[u8] = &u32::MAX.to_le_bytes();
        assert!(Record::decode(&mut bytes).is_err());
    }

    /// Property tests: entries and markers of any content through the
    /// codec, and any payload in a frame whose checksum holds.
    mod properties {
        use super::*;
        use crate::entry::Variant;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use std::time::{Duration, SystemTime, UNIX_EPOCH};

        fn entry() -> impl Strategy<Value = Entry> {
            let fields = vec(("[a-z][a-z0-9-]{0,8}", "[ -~]{0,16}"), 0..6);
            let body = prop_oneof![
                vec(any::<u8>(), 0..64).prop_map(|b| Body::Memory(Bytes::from(b))),
                (any::<u64>(), any::<u64>())
                    .prop_map(|(fill, len)| Body::Disk(Box::new(Chunks::new([1; 32], fill, len)))),
            ];
            let times = (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>());
            let variant = proptest::option::of((1..u64::MAX, "[ -~\n]{0,20}"));
            (
                ("[ -~]{0,30}", 100u16..1000, fields, body),
                (times, variant, any::<u64>(), vec("[ -~]{0,8}", 0..3)),
            )
                .prop_map(
                    |((key, status, fields, body), (times, variant, seq, tags))| {
                        let (lifetime, age, at, heuristic) = times;
                        let headers = fields.into_iter().filter_map(|(n, v): (String, String)| {
                            Some((
                                HeaderName::from_bytes(n.as_bytes()).ok()?,
                                HeaderValue::from_str(&v).ok()?,
                            ))
                        });
                        Entry {
                            key: key.into(),
                            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                            headers: StoredHeaders::from_fields(headers),
                            body,
                            freshness: Freshness {
                                lifetime: Duration::from_secs(lifetime.into()),
                                initial_age: Duration::from_millis(age.into()),
                                response_time: UNIX_EPOCH + Duration::from_secs(at.into()),
                                heuristic,
                            },
                            directives: Directives::parse([&HeaderValue::from_static(
                                "max-age=60, no-cache",
                            )]),
                            stale: StaleUse::default(),
                            rules: StoreRules::default().shared(),
                            variant: variant.map(|(marker, text)| Variant {
                                marker,
                                text: text.into(),
                            }),
                            seq,
                            tags,
                            primary: [9; 32],
                        }
                    },
                )
        }

        fn fields_of(entry: &Entry) -> Vec<(String, Vec<u8>)> {
            entry
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect()
        }

        proptest! {
            /// A head written and read back is the same entry, and writing
            /// it again gives the same bytes.
            #[test]
            fn heads_read_back_as_written(entry in entry()) {
                let Some(record) = head(&entry) else {
                    return Ok(());
                };
                let Ok(Found::Object(again)) = decode(&record) else {
                    panic!("a written head does not read back");
                };
                prop_assert_eq!(again.key(), entry.key());
                prop_assert_eq!(again.status(), entry.status());
                prop_assert_eq!(fields_of(&again), fields_of(&entry));
                prop_assert_eq!(again.freshness(), entry.freshness());
                prop_assert_eq!(again.resident_body(), entry.resident_body());
                prop_assert_eq!(again.chunks(), entry.chunks());
                prop_assert_eq!(again.variant(), entry.variant());
                prop_assert_eq!((again.seq(), again.tags()), (entry.seq(), entry.tags()));
                prop_assert_eq!(head(&again).map(|r| r.0), Some(record.0));
            }

            /// Any payload in a sound frame (a written one with bytes
            /// changed, or any bytes) reads as a head, a marker or damage;
            /// what reads is read at any time without a panic, and written
            /// again in its canonical form.
            #[test]
            fn any_payload_reads_or_is_damage(
                entry in entry(),
                changes in vec((any::<usize>(), any::<u8>()), 0..4),
                noise in vec(any::<u8>(), 0..64),
                as_marker in any::<bool>(),
            ) {
                let kind = if as_marker { KIND_MARKER } else { KIND_HEAD };
                let mut payload = match head(&entry) {
                    Some(record) if !as_marker => unframe(&record, KIND_HEAD).unwrap().to_vec(),
                    _ => noise,
                };
                for (at, byte) in changes {
                    if !payload.is_empty() {
                        let at = at % payload.len();
                        payload[at] = byte;
                    }
                }
                match decode(&frame(kind, &[&payload])) {
                    Ok(Found::Object(entry)) => {
                        for at in [UNIX_EPOCH, SystemTime::now()] {
                            let _ = (entry.age(at), entry.time_to_live(at), entry.staleness(at));
                        }
                        if let Some(record) = head(&entry) {
                            let Ok(Found::Object(again)) = decode(&record) else {
                                panic!("a written head does not read back");
                            };
                            prop_assert_eq!(head(&again).map(|r| r.0), Some(record.0));
                        }
                    }
                    Ok(Found::Marker(found)) => {
                        let record = marker(&found).unwrap();
                        let Ok(Found::Marker(again)) = decode(&record) else {
                            panic!("a written marker does not read back");
                        };
                        prop_assert_eq!((&again.key, again.id), (&found.key, found.id));
                        prop_assert_eq!((&again.names, &again.cookies), (&found.names, &found.cookies));
                        prop_assert_eq!(&again.variants, &found.variants);
                    }
                    Err(_) => {}
                }
            }
        }
    }
}
