//! A stored body as a stream: a slice of memory, or the chunks on disk a
//! range covers, read one at a time as the stream is polled.

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::Cache;
use crate::disk::DiskError;
use crate::entry::{Body, Entry};
use crate::vary;

impl Cache {
    /// The bytes `start..=end` of an entry's body, from memory or, chunk by
    /// chunk, from disk. A chunk found damaged or gone ends the stream with
    /// an error (the client's response is cut off, never passed off as
    /// whole) and the object is dropped from disk.
    pub fn body(
        &self,
        entry: &Entry,
        start: u64,
        end: u64,
    ) -> BoxStream<'static, Result<Bytes, DiskError>> {
        match entry.body() {
            Body::Memory(bytes) | Body::Both(bytes, _) => {
                let len = bytes.len();
                let to = usize::try_from(end.saturating_add(1)).map_or(len, |e| e.min(len));
                let from = usize::try_from(start).map_or(to, |s| s.min(to));
                let piece = bytes.slice(from..to);
                futures_util::stream::once(async move { Ok(piece) }).boxed()
            }
            Body::Disk(chunks) => {
                // Chunks written by a disk tier this cache does not have
                // (an entry of another cache) are not there to read.
                let Some(disk) = self.disk.get() else {
                    return futures_util::stream::once(async { Err(DiskError::Missing) }).boxed();
                };
                let head = match entry.variant() {
                    // The entry's own key: a part's is not its URL's.
                    None => *blake3::hash(entry.key().as_bytes()).as_bytes(),
                    Some(variant) => vary::secondary_hash(entry.key(), &variant.text),
                };
                let tier = disk.clone();
                disk.stream(**chunks, start, end)
                    .inspect(move |piece| {
                        if piece.is_err() {
                            tier.delete(&head);
                        }
                    })
                    .boxed()
            }
        }
    }
}
