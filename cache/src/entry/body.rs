//! Where an entry's body lives: in memory, on disk in chunks, or both.
//!
//! The disk tier reads and writes the chunks (`disk/chunks.rs`); an entry
//! only says where they are.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Bytes of body per chunk record; a body up to this size sits in its head.
pub const CHUNK: usize = 256 << 10;

/// Where an entry's body lives.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// In memory, not in chunks: a body of one chunk at most (in its head
    /// record too, with a disk tier), or any body without a disk tier.
    Memory(Bytes),
    /// On disk only, in chunks: read from there as it is sent.
    Disk(Box<Chunks>),
    /// In memory, and on disk in chunks: the same bytes.
    Both(Bytes, Box<Chunks>),
}

impl Body {
    /// The whole body, when it is in memory.
    pub(crate) fn bytes(&self) -> Option<&Bytes> {
        match self {
            Body::Memory(bytes) | Body::Both(bytes, _) => Some(bytes),
            Body::Disk(_) => None,
        }
    }

    /// Where the body lies on disk, when it is in chunks.
    pub(crate) fn chunks(&self) -> Option<&Chunks> {
        match self {
            Body::Disk(chunks) | Body::Both(_, chunks) => Some(chunks),
            Body::Memory(_) => None,
        }
    }

    /// Length of the body, wherever it is.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Memory(bytes) => bytes.len() as u64,
            Body::Disk(chunks) | Body::Both(_, chunks) => chunks.len,
        }
    }
}

/// Where an object's body lies on disk when it is larger than one chunk.
///
/// Its fields, in this order, are part of the disk tier's head format
/// (pinned in `disk/format.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks {
    /// The URL's primary hash.
    primary: [u8; 32],
    /// The fill that wrote them.
    fill: u64,
    /// Body length in bytes.
    len: u64,
}

impl Chunks {
    pub(crate) fn new(primary: [u8; 32], fill: u64, len: u64) -> Self {
        Self { primary, fill, len }
    }

    /// The URL's primary hash.
    pub(crate) fn primary(&self) -> [u8; 32] {
        self.primary
    }

    /// The fill that wrote them: chunks of another fill never match.
    pub(crate) fn fill(&self) -> u64 {
        self.fill
    }

    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty (never, for a body stored in chunks).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks hold the body.
    pub(crate) fn count(&self) -> u64 {
        self.len.div_ceil(CHUNK as u64)
    }
}
