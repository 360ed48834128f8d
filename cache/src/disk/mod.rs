//! The disk tier: objects kept in a foyer block store, so that the cache
//! survives restarts.
//!
//! An object is a head record and, when its body is larger than one chunk,
//! chunk records. Every record is framed and checksummed by us, whatever
//! the store below does (`format.rs`). Chunks are written before their
//! head, under keys made from the URL's primary hash and the fill's id, so
//! two fills of one URL never mix (`chunks.rs`). A record that is damaged,
//! of another format, or whose chunks are missing or belong to another
//! fill reads as a miss, and its head is deleted.
//!
//! - `format.rs`: record framing, the head, marker and chunk records, decoding;
//! - `tier.rs`: the foyer store: open and close, put, load, delete, counts, backlog;
//! - `chunks.rs`: chunk keys, the writer a fill feeds, chunk reads and range streams;
//! - `catalog.rs`: the count of objects held, kept across restarts;
//! - `occupancy.rs`: the store's bytes held and records evicted, from its metrics.

mod catalog;
mod chunks;
pub(crate) mod format;
mod occupancy;
mod tier;

pub(crate) use chunks::ChunkWriter;
pub(crate) use format::{Found, Marker};
pub(crate) use tier::store_errors;
pub use tier::{DiskTier, note_store_error};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk tier at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: foyer::Error,
    },
    #[error("disk tier at {0} is in use by another process")]
    Busy(String),
    #[error("disk tier at {path}: not enough free space to reserve {bytes} bytes")]
    NoSpace { path: String, bytes: u64 },
    #[error("the disk tier failed and is no longer used")]
    Failed,
    #[error("disk tier read failed: {0}")]
    Read(#[from] foyer::Error),
    #[error("a stored record is damaged ({0})")]
    Damaged(&'static str),
    #[error("a chunk of the object is no longer stored")]
    Missing,
}
