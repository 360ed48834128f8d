//! The disk tier's count of objects. The store keeps no count of its own,
//! so the tier keeps one: the store's hash of every object head it wrote,
//! with how many versions of it the store still holds. A write adds one;
//! the store's reclaimer, dropping a block, takes one away per record it
//! drops; a delete forgets the object. The set is saved beside the tier
//! every minute and when it closes, and every change between two saves is
//! appended to a log beside it as it happens (one write, no sync: what
//! the kernel holds survives a killed process), so the count read back
//! after a `kill -9` is the count before it.
//!
//! The snapshot: `OPCT`, version (u16 LE), the number of the last change
//! it holds (u64 LE), entries (u64 LE), then each entry's hash (u64 LE)
//! and versions (u16 LE), then the first 16 bytes of the blake3 of all
//! before. One that does not check is ignored. The log (`.log` beside
//! it): records of an operation (u8), a hash (u64 LE) and the change's
//! number (u64 LE); those a snapshot already holds, and a torn last one,
//! are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

const MAGIC: &[u8; 4] = b"OPCT";
const VERSION: u16 = 2;
const SUM: usize = 16;
/// Bytes of one log record.
const RECORD: usize = 17;

/// What a log record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Written = 1,
    Evicted = 2,
    Forget = 3,
    Clear = 4,
}

#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    state: Mutex<State>,
    /// Changed since the last snapshot.
    dirty: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    heads: HashMap<u64, u16>,
    /// The number of the last change.
    seq: u64,
    /// The log of changes since the snapshot (None when it cannot be
    /// opened: the count then holds until the next snapshot only).
    log: Option<std::fs::File>,
}

impl State {
    fn apply(&mut self, op: Op, hash: u64) -> bool {
        match op {
            Op::Written => {
                let versions = self.heads.entry(hash).or_default();
                *versions = versions.saturating_add(1);
                true
            }
            Op::Evicted => match self.heads.get_mut(&hash) {
                Some(versions) => {
                    *versions -= 1;
                    if *versions == 0 {
                        self.heads.remove(&hash);
                    }
                    true
                }
                None => false,
            },
            Op::Forget => self.heads.remove(&hash).is_some(),
            Op::Clear => {
                let changed = !self.heads.is_empty();
                self.heads.clear();
                changed
            }
        }
    }
}

impl Catalog {
    /// The catalog saved at `path`, with the changes logged since, or an
    /// empty one.
    pub fn load(path: &Path) -> Catalog {
        let (mut heads, mut seq) = std::fs::read(path)
            .ok()
            .and_then(|bytes| decode(&bytes))
            .unwrap_or_default();
        let log_path = log_path(path);
        let mut whole = 0;
        if let Ok(bytes) = std::fs::read(&log_path) {
            whole = bytes.len() - bytes.len() % RECORD;
            let mut state = State {
                heads: std::mem::take(&mut heads),
                seq,
                log: None,
            };
            for record in bytes.chunks_exact(RECORD) {
                let hash = u64::from_le_bytes(record[1..9].try_into().unwrap_or_default());
                let number = u64::from_le_bytes(record[9..].try_into().unwrap_or_default());
                let op = match record[0] {
                    1 => Op::Written,
                    2 => Op::Evicted,
                    3 => Op::Forget,
                    4 => Op::Clear,
                    _ => continue,
                };
                if number > state.seq {
                    state.apply(op, hash);
                    state.seq = number;
                }
            }
            (heads, seq) = (state.heads, state.seq);
        }
        // A torn last record is cut off, so that the next ones line up.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .and_then(|file| file.set_len(whole as u64).map(|()| file))
            .map_err(|e| tracing::warn!(path = %log_path.display(), error = %e, "the disk tier's catalog log cannot be opened; the object count may lag after a crash"))
            .ok();
        Catalog {
            path: path.to_owned(),
            state: Mutex::new(State { heads, seq, log }),
            // What the log held goes into the next snapshot.
            dirty: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Objects held.
    pub fn len(&self) -> u64 {
        self.lock().heads.len() as u64
    }

    fn change(&self, op: Op, hash: u64) {
        let mut state = self.lock();
        if state.apply(op, hash) {
            state.seq += 1;
            let mut record = [0u8; RECORD];
            record[0] = op as u8;
            record[1..9].copy_from_slice(&hash.to_le_bytes());
            record[9..].copy_from_slice(&state.seq.to_le_bytes());
            if let Some(log) = &mut state.log {
                use std::io::Write as _;
                if log.write_all(&record).is_err() {
                    state.log = None;
                }
            }
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// A version of the head with store hash `hash` was written.
    pub fn written(&self, hash: u64) {
        self.change(Op::Written, hash);
    }

    /// The store dropped a record with hash `hash` to make room.
    pub fn evicted(&self, hash: u64) {
        self.change(Op::Evicted, hash);
    }

    /// The object was deleted.
    pub fn forget(&self, hash: u64) {
        self.change(Op::Forget, hash);
    }

    /// Every object is gone (a hard purge of everything: what the store
    /// still holds is never served again, and is reclaimed in time).
    pub fn clear(&self) {
        self.change(Op::Clear, 0);
    }

    /// Writes the snapshot if anything changed since the last one, and
    /// empties the log it now holds.
    pub fn save(&self) -> std::io::Result<()> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let mut state = self.lock();
        let bytes = encode(&state.heads, state.seq);
        let fresh = self.path.with_extension("new");
        std::fs::write(&fresh, bytes)?;
        std::fs::rename(&fresh, &self.path)?;
        // A crash before this leaves records the snapshot holds: their
        // numbers are not above its own, and they are skipped.
        if let Some(log) = &mut state.log {
            log.set_len(0)?;
        }
        Ok(())
    }
}

fn log_path(path: &Path) -> PathBuf {
    path.with_extension("log")
}

fn encode(heads: &HashMap<u64, u16>, seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + heads.len() * 10 + SUM);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(heads.len() as u64).to_le_bytes());
    for (hash, versions) in heads {
        out.extend_from_slice(&hash.to_le_bytes());
        out.extend_from_slice(&versions.to_le_bytes());
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(&sum.as_bytes()[..SUM]);
    out
}

fn decode(bytes: &[u8]) -> Option<(HashMap<u64, u16>, u64)> {
    let (body, sum) = bytes.split_at(bytes.len().checked_sub(SUM)?);
    if &blake3::hash(body).as_bytes()[..SUM] != sum || body.get(..4)? != MAGIC {
        return None;
    }
    // Version 1 (before the log) has no change number: it holds none.
    let (seq, rest) = match u16::from_le_bytes(body.get(4..6)?.try_into().ok()?) {
        1 => (0, body.get(6..)?),
        VERSION => (
            u64::from_le_bytes(body.get(6..14)?.try_into().ok()?),
            body.get(14..)?,
        ),
        _ => return None,
    };
    let count = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let entries = rest.get(8..)?;
    if entries.len() as u64 != count.checked_mul(10)? {
        return None;
    }
    let heads = entries
        .chunks_exact(10)
        .filter_map(|e| {
            let hash = u64::from_le_bytes(e[..8].try_into().ok()?);
            let versions = u16::from_le_bytes(e[8..].try_into().ok()?);
            (versions > 0).then_some((hash, versions))
        })
        .collect();
    Some((heads, seq))
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

    /// After a killed process (no save since), the log gives the count
    /// back; a save folds it into the snapshot, and records the snapshot
    /// holds are not applied twice.
    #[test]
    fn the_log_keeps_the_count_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog");
        let catalog = Catalog::load(&path);
        for hash in 1..=5 {
            catalog.written(hash);
        }
        catalog.save().unwrap();
        catalog.written(6);
        catalog.forget(1);
        // Killed: no save, nothing dropped cleanly.
        std::mem::forget(catalog);
        let again = Catalog::load(&path);
        assert_eq!(again.len(), 5);
        // A log left beside a newer snapshot (a crash between the two
        // writes of a save) is not applied twice.
        let log = std::fs::read(log_path(&path)).unwrap();
        again.save().unwrap();
        std::fs::write(log_path(&path), &log).unwrap();
        assert_eq!(Catalog::load(&path).len(), 5);
        // A torn last record is skipped.
        let mut torn = log.clone();
        torn.extend_from_slice(&[1, 7, 7]);
        std::fs::write(log_path(&path), &torn).unwrap();
        assert_eq!(Catalog::load(&path).len(), 5);
        let cleared = Catalog::load(&path);
        cleared.clear();
        drop(cleared);
        assert_eq!(Catalog::load(&path).len(), 0);
    }

    /// A snapshot of the version before the log still reads.
    #[test]
    fn a_first_version_snapshot_still_reads() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC);
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&2u64.to_le_bytes());
        for hash in [10u64, 11] {
            v1.extend_from_slice(&hash.to_le_bytes());
            v1.extend_from_slice(&1u16.to_le_bytes());
        }
        let sum = blake3::hash(&v1);
        v1.extend_from_slice(&sum.as_bytes()[..SUM]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog");
        std::fs::write(&path, &v1).unwrap();
        let catalog = Catalog::load(&path);
        assert_eq!(catalog.len(), 2);
        catalog.written(12);
        drop(catalog);
        assert_eq!(Catalog::load(&path).len(), 3);
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
