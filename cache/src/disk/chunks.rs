//! Bodies larger than one chunk: written chunk by chunk as they arrive
//! ([`ChunkWriter`]), under keys made from the URL's primary hash and the
//! fill's id so that two fills of one URL never mix, and read back one
//! chunk at a time, only those a range covers.

use bytes::{Bytes, BytesMut};

use super::DiskError;
use super::format;
use super::tier::{DiskKey, DiskTier};
use crate::entry::{CHUNK, Chunks};

/// Where chunk `index` of the fill `fill` of the URL `primary` lives.
fn chunk_key(primary: [u8; 32], fill: u64, index: u64) -> DiskKey {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&primary);
    hasher.update(b"\0chunks\0");
    hasher.update(&fill.to_le_bytes());
    DiskKey::chunk(
        *hasher.finalize().as_bytes(),
        u32::try_from(index + 1).unwrap_or(u32::MAX),
    )
}

/// Where chunk `index` of the body `chunks` names lives.
fn key(chunks: &Chunks, index: u64) -> DiskKey {
    chunk_key(chunks.primary(), chunks.fill(), index)
}

impl DiskTier {
    /// Whether every chunk of a body is in the store's index (no I/O): a
    /// chunk evicted, or never written, makes the object unusable.
    pub(crate) fn has_chunks(&self, chunks: &Chunks) -> bool {
        (0..chunks.count()).all(|index| self.holds(&key(chunks, index)))
    }

    /// Chunk `index` of a body, verified to be that fill's.
    pub(crate) async fn chunk(&self, chunks: &Chunks, index: u64) -> Result<Bytes, DiskError> {
        let record = self
            .get(&key(chunks, index))
            .await?
            .ok_or(DiskError::Missing)?;
        let checked = format::chunk_bytes(&record, chunks, index);
        if checked.is_err() {
            self.note_damaged();
        }
        checked
    }

    /// The bytes `start..=end` of a body held in chunks, read one chunk at
    /// a time as the stream is polled: only the chunks the range covers.
    pub fn stream(
        &self,
        chunks: Chunks,
        start: u64,
        end: u64,
    ) -> impl futures_util::Stream<Item = Result<Bytes, DiskError>> + Send + 'static {
        let tier = self.clone();
        let first = start / CHUNK as u64;
        futures_util::stream::unfold(Some(first), move |next| {
            let tier = tier.clone();
            async move {
                let index = next?;
                let base = index * CHUNK as u64;
                if base > end {
                    return None;
                }
                match tier.chunk(&chunks, index).await {
                    Ok(bytes) => {
                        let from = start.saturating_sub(base) as usize;
                        let to = ((end - base + 1) as usize).min(bytes.len());
                        let piece = bytes.slice(from.min(to)..to);
                        Some((Ok(piece), Some(index + 1)))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
    }

    /// A writer for the chunks of one fill of the URL `primary`.
    pub(crate) fn chunk_writer(&self, primary: [u8; 32]) -> ChunkWriter {
        ChunkWriter {
            tier: self.clone(),
            primary,
            fill: crate::id::unique_id(),
            index: 0,
            pending: BytesMut::new(),
        }
    }
}

/// Writes a body's chunks as it arrives; the head that names them is
/// written by whoever finishes the fill.
pub(crate) struct ChunkWriter {
    tier: DiskTier,
    primary: [u8; 32],
    fill: u64,
    index: u64,
    pending: BytesMut,
}

impl ChunkWriter {
    pub(crate) fn tier(&self) -> &DiskTier {
        &self.tier
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == CHUNK {
                self.write_pending();
            }
        }
    }

    fn write_pending(&mut self) {
        let key = chunk_key(self.primary, self.fill, self.index);
        let index = u32::try_from(self.index).unwrap_or(u32::MAX);
        let record = format::chunk(self.fill, index, &self.pending);
        self.pending.clear();
        self.index += 1;
        self.tier.put(key, record);
    }

    /// The body's chunks once it has ended with `len` bytes; when it fits
    /// one chunk nothing was written, and the body is returned to go in
    /// its head.
    pub(crate) fn finish(mut self, len: u64) -> Result<Chunks, Bytes> {
        if self.index == 0 && len <= CHUNK as u64 {
            return Err(self.pending.freeze());
        }
        if !self.pending.is_empty() {
            self.write_pending();
        }
        Ok(Chunks::new(self.primary, self.fill, len))
    }
}
