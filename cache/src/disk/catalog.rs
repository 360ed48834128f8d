//! The disk tier's count of objects. The store keeps no count of its own,
//! so the tier keeps one: the store's hash of every object head it wrote,
//! with how many versions of it the store still holds. A write adds one;
//! the store's reclaimer, dropping a block, takes one away per record it
//! drops; a delete forgets the object. The set is saved beside the tier
//! every minute and when it closes, and read back when it opens: after an
//! unclean stop the count misses at most the last minute's changes.
//!
//! The snapshot: `OPCT`, version (u16 LE), entries (u64 LE), then each
//! entry's hash (u64 LE) and versions (u16 LE), then the first 16 bytes
//! of the blake3 of all before. One that does not check is ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const MAGIC: &[u8; 4] = b"OPCT";
const VERSION: u16 = 1;
const SUM: usize = 16;

#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    heads: Mutex<HashMap<u64, u16>>,
    /// Changed since the last snapshot.
    dirty: AtomicBool,
}

impl Catalog {
    /// The catalog saved at `path`, or an empty one.
    pub fn load(path: &Path) -> Catalog {
        let heads = std::fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        Catalog {
            path: path.to_owned(),
            heads: Mutex::new(heads),
            dirty: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u16>> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Objects held.
    pub fn len(&self) -> u64 {
        self.lock().len() as u64
    }

    /// A version of the head with store hash `hash` was written.
    pub fn written(&self, hash: u64) {
        let mut heads = self.lock();
        let versions = heads.entry(hash).or_default();
        *versions = versions.saturating_add(1);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The store dropped a record with hash `hash` to make room.
    pub fn evicted(&self, hash: u64) {
        let mut heads = self.lock();
        if let Some(versions) = heads.get_mut(&hash) {
            *versions -= 1;
            if *versions == 0 {
                heads.remove(&hash);
            }
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// The object was deleted.
    pub fn forget(&self, hash: u64) {
        if self.lock().remove(&hash).is_some() {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the snapshot if anything changed since the last one.
    pub fn save(&self) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = encode(&self.lock());
        let fresh = self.path.with_extension("new");
        std::fs::write(&fresh, bytes)?;
        std::fs::rename(&fresh, &self.path)
    }
}

fn encode(heads: &HashMap<u64, u16>) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + heads.len() * 10 + SUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(heads.len() as u64).to_le_bytes());
    for (hash, versions) in heads {
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&versions.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..SUM]);
    out
}

fn decode(bytes: &[u8]) -> Option<HashMap<u64, u16>> {
    let (body, sum) = bytes.split_at(bytes.len().checked_sub(SUM)?);
    if &blake3::hash(body).as_bytes()[..SUM] != sum
        || body.get(..4)? != MAGIC
        || body.get(4..6)? != VERSION.to_le_bytes()
    {
        return None;
    }
    let count = u64::from_le_bytes(body.get(6..14)?.try_into().ok()?);
    let entries = body.get(14..)?;
    if entries.len() as u64 != count.checked_mul(10)? {
        return None;
    }
    Some(
        entries
            .chunks_exact(10)
            .filter_map(|e| {
                let hash = u64::from_le_bytes(e[..8].try_into().ok()?);
                let versions = u16::from_le_bytes(e[8..].try_into().ok()?);
                (versions > 0).then_some((hash, versions))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_versions_and_survives_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog");
        let catalog = Catalog::load(&path);
        catalog.written(1);
        catalog.written(1); // rewritten: two versions on disk
        catalog.written(2);
        catalog.written(3);
        catalog.evicted(1); // the old version reclaimed
        catalog.evicted(99); // a chunk, or something never counted
        catalog.forget(3);
        assert_eq!(catalog.len(), 2);
        catalog.save().unwrap();
        let again = Catalog::load(&path);
        assert_eq!(again.len(), 2);
        again.evicted(1);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn a_damaged_snapshot_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog");
        let catalog = Catalog::load(&path);
        catalog.written(5);
        catalog.save().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[15] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(Catalog::load(&path).len(), 0);
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert_eq!(Catalog::load(&path).len(), 0);
    }
}
