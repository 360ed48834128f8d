//! The tier: a foyer `HybridCache` used for its disk part only, on an
//! `FsDevice` in the tier's directory, with a lock file that keeps two
//! processes from opening one tier, and the counts kept for `/stats`.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, Load, RecoverMode,
};

use super::DiskError;
use super::catalog::Catalog;
use super::format::{self, Found, Marker, Record};
use super::occupancy::{CountEvictions, Occupancy};
use crate::entry::Entry;

/// How often the catalog (the count of objects) is saved.
const CATALOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The store's own hash of a key, as its reclaimer reports it.
fn store_hash(key: &DiskKey) -> u64 {
    use std::hash::BuildHasher;
    foyer::DefaultHasher::default().hash_one(key)
}

/// A body may run this far ahead of the disk: the store drops what is
/// queued beyond its limit, so a fill waits for the disk here.
const FLUSH_EVERY: usize = 4 << 20;
/// The longest a fill waits for the store before going on.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Where a record lives in the store: an object's (or marker's) hash with
/// part 0, or a chunk's derived hash with its index from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct DiskKey {
    hash: [u8; 32],
    part: u32,
}

impl DiskKey {
    /// Where an object's head (or a URL's Vary marker) lives.
    pub(super) fn head(hash: [u8; 32]) -> Self {
        Self { hash, part: 0 }
    }

    /// Where chunk `part - 1` of a fill lives, under the fill's derived hash.
    pub(super) fn chunk(hash: [u8; 32], part: u32) -> Self {
        Self { hash, part }
    }
}

impl foyer::Code for DiskKey {
    fn encode(&self, writer: &mut impl Write) -> foyer::Result<()> {
        writer
            .write_all(&self.hash)
            .map_err(foyer::Error::io_error)?;
        writer
            .write_all(&self.part.to_le_bytes())
            .map_err(foyer::Error::io_error)
    }

    fn decode(reader: &mut impl Read) -> foyer::Result<Self> {
        let mut hash = [0; 32];
        let mut part = [0; 4];
        reader
            .read_exact(&mut hash)
            .map_err(foyer::Error::io_error)?;
        reader
            .read_exact(&mut part)
            .map_err(foyer::Error::io_error)?;
        Ok(Self {
            hash,
            part: u32::from_le_bytes(part),
        })
    }

    fn estimated_size(&self) -> usize {
        36
    }
}

/// Errors the store reported on its own threads (writes that failed: a
/// full or failing disk). It only logs them, so the binary's log
/// subscriber counts them here.
static STORE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Counts an error the store logged.
pub fn note_store_error() {
    STORE_ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// Errors the store logged, since the start.
pub(crate) fn store_errors() -> u64 {
    STORE_ERRORS.load(Ordering::Relaxed)
}

/// Counts kept for metrics and `/stats`.
#[derive(Debug, Default)]
pub(crate) struct DiskStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Records found damaged, of another format, or incomplete.
    pub damaged: AtomicU64,
    /// Reads the store failed.
    pub errors: AtomicU64,
}

#[derive(Clone)]
pub struct DiskTier {
    inner: Arc<Inner>,
}

struct Inner {
    path: std::path::PathBuf,
    /// Set when the store broke (one of its tasks panicked): the tier is
    /// then left alone, and memory and the origins serve.
    failed: std::sync::atomic::AtomicBool,
    occupancy: Arc<Occupancy>,
    catalog: Arc<Catalog>,
    /// Bytes handed to the store since it opened, and of those, how many
    /// it is known to have written.
    enqueued: AtomicU64,
    written: AtomicU64,
    /// The tier's lock file, held locked while the tier is open: two
    /// processes never write one tier.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    store: HybridCache<DiskKey, Record>,
    stats: DiskStats,
    capacity: u64,
}

impl DiskTier {
    /// Opens (or creates) the tier in directory `path`, holding at most
    /// `capacity` bytes; objects written before are recovered. Fails with
    /// [`DiskError::Busy`] while another process has the tier open.
    pub async fn open(path: &Path, capacity: u64) -> Result<Self, DiskError> {
        Self::open_locked(path, capacity, false).await
    }

    /// Opens the tier once the process that has it open closes it (a
    /// predecessor handing over in a binary upgrade).
    pub async fn open_when_free(path: &Path, capacity: u64) -> Result<Self, DiskError> {
        Self::open_locked(path, capacity, true).await
    }

    async fn open_locked(path: &Path, capacity: u64, wait: bool) -> Result<Self, DiskError> {
        let err = |source| DiskError::Open {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(path).map_err(|e| err(foyer::Error::io_error(e)))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("lock"))
            .map_err(|e| err(foyer::Error::io_error(e)))?;
        // Tried again and again rather than blocked on, so that a process
        // waiting for the tier can still exit.
        loop {
            use rustix::fs::{FlockOperation, flock};
            match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK && wait => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    return Err(DiskError::Busy(path.display().to_string()));
                }
                Err(e) => return Err(err(foyer::Error::io_error(e.into()))),
            }
        }
        // Not enough room: said at once, without building (and recovering)
        // the store only to fail to reserve its space.
        if !room_for(path, capacity).unwrap_or(true) {
            return Err(DiskError::NoSpace {
                path: path.display().to_string(),
                bytes: capacity,
            });
        }
        let capacity_usize = usize::try_from(capacity).unwrap_or(usize::MAX);
        // Blocks are the store's unit of eviction: enough of them that
        // evicting one drops little, and each holds several chunks.
        let block = (capacity_usize / 64).clamp(1 << 20, 16 << 20);
        let device = FsDeviceBuilder::new(path)
            .with_capacity(capacity_usize)
            .build()
            .map_err(err)?;
        let occupancy = Arc::new(Occupancy::default());
        let catalog = Arc::new(Catalog::load(&path.join("catalog")));
        let engine = BlockEngineConfig::new(device)
            .with_block_size(block)
            .with_tombstone_log(true)
            .with_reinsertion_filter(
                foyer::StorageFilter::new()
                    .with_condition(CountEvictions(occupancy.clone(), catalog.clone())),
            );
        let store = HybridCacheBuilder::new()
            .with_name("outpost-disk")
            .with_metrics_registry(Box::new(super::occupancy::Registry(occupancy.clone())))
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            // Records are written to disk only (phantom): this memory part
            // of the store holds nothing for long.
            .memory(1 << 20)
            .with_weighter(|_key: &DiskKey, record: &Record| record.len())
            .storage()
            .with_io_engine_config(foyer::PsyncIoEngineConfig::new())
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .build()
            .await
            .map_err(err)?;
        // The space is taken now, so that a disk filling up later never
        // fails a write (the store does not survive failed writes).
        if let Err(e) = reserve(path) {
            let _ = tokio::spawn(async move { store.close().await }).await;
            return Err(
                if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
                    DiskError::NoSpace {
                        path: path.display().to_string(),
                        bytes: capacity,
                    }
                } else {
                    err(foyer::Error::io_error(e))
                },
            );
        }
        let tier = Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                failed: std::sync::atomic::AtomicBool::new(false),
                occupancy,
                catalog,
                enqueued: AtomicU64::new(0),
                written: AtomicU64::new(0),
                lock: std::sync::Mutex::new(Some(lock)),
                store,
                stats: DiskStats::default(),
                capacity,
            }),
        };
        // The catalog is saved every minute while the tier is open.
        let open = Arc::downgrade(&tier.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CATALOG_EVERY).await;
                let Some(inner) = open.upgrade() else { return };
                if inner
                    .lock
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_none()
                {
                    return; // closed
                }
                if let Err(e) = inner.catalog.save() {
                    tracing::warn!(error = %e, "saving the disk tier's catalog");
                }
            }
        });
        Ok(tier)
    }

    /// Writes what is queued, closes the store and lets another process
    /// open the tier.
    pub async fn close(&self) -> Result<(), DiskError> {
        let store = self.inner.store.clone();
        let closed = match tokio::spawn(async move { store.close().await }).await {
            Ok(closed) => closed.map_err(DiskError::Read),
            Err(_) => Err(DiskError::Failed),
        };
        if let Err(e) = self.inner.catalog.save() {
            tracing::warn!(error = %e, "saving the disk tier's catalog");
        }
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        closed
    }

    pub(crate) fn stats(&self) -> &DiskStats {
        &self.inner.stats
    }

    /// The directory the tier's files are in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Objects held, as the tier's catalog counts them.
    pub(crate) fn objects(&self) -> u64 {
        self.inner.catalog.len()
    }

    /// Bytes of the store's blocks that hold records (live or not yet
    /// reclaimed), and the records evicted to make room since the start.
    pub(crate) fn occupancy(&self) -> (u64, u64) {
        (self.inner.occupancy.bytes(), self.inner.occupancy.evicted())
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Bytes written to and read from the device since the start.
    pub fn io_bytes(&self) -> (u64, u64) {
        let statistics = self.inner.store.statistics();
        (
            statistics.disk_write_bytes() as u64,
            statistics.disk_read_bytes() as u64,
        )
    }

    /// Once enough has been handed to the store since it was last waited
    /// for, a future that resolves when the store has written it: a fill
    /// waits on it before reading more of its body.
    ///
    /// Every fill that finds the backlog over the limit waits, so that many
    /// fills at once cannot overrun the store's queue between them; a wait
    /// that takes too long (the store reclaiming blocks without pause) lets
    /// the fill go on rather than stall its client.
    pub(crate) fn backlog(&self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        let target = self.inner.enqueued.load(Ordering::Acquire);
        let written = self.inner.written.load(Ordering::Acquire);
        if target.saturating_sub(written) < FLUSH_EVERY as u64 {
            return None;
        }
        let tier = self.clone();
        Some(Box::pin(async move {
            let store = tier.inner.store.clone();
            let waited =
                tokio::time::timeout(BACKLOG_WAIT, async move { store.storage().wait().await })
                    .await;
            if waited.is_ok() {
                tier.inner.written.fetch_max(target, Ordering::AcqRel);
            }
        }))
    }

    /// Counts a record found damaged, of another format, or incomplete.
    pub(super) fn note_damaged(&self) {
        self.inner.stats.damaged.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands a record to the store.
    pub(super) fn put(&self, key: DiskKey, record: Record) {
        if self.inner.failed.load(Ordering::Relaxed) {
            return;
        }
        self.inner
            .enqueued
            .fetch_add(record.len() as u64, Ordering::AcqRel);
        // Not admitted (the store's queue is full) is dropped: a head whose
        // chunks were dropped reads as a miss.
        let _ = self.inner.store.storage_writer(key).force().insert(record);
    }

    /// The record under `key`, read on a task of its own.
    pub(super) async fn get(&self, key: &DiskKey) -> Result<Option<Record>, DiskError> {
        if self.inner.failed.load(Ordering::Relaxed) {
            return Err(DiskError::Failed);
        }
        // On a task of its own: should the store panic, the request it
        // served goes on to the origin.
        let (store, key) = (self.inner.store.clone(), *key);
        let loaded = tokio::spawn(async move {
            match store.storage().load(&key).await {
                Ok(Load::Entry { value, .. }) => Ok(Some(value)),
                Ok(Load::Piece { piece, .. }) => Ok(Some(piece.value().clone())),
                Ok(Load::Miss | Load::Throttled) => Ok(None),
                Err(e) => Err(DiskError::Read(e)),
            }
        })
        .await;
        let loaded = loaded.unwrap_or_else(|_| {
            tracing::error!("the disk tier's store failed; serving without it");
            self.inner.failed.store(true, Ordering::Relaxed);
            Err(DiskError::Failed)
        });
        if loaded.is_err() {
            self.inner.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        loaded
    }

    /// Whether the store's index may hold something under `hash` (no I/O).
    pub(crate) fn may_contain(&self, hash: &[u8; 32]) -> bool {
        self.holds(&DiskKey::head(*hash))
    }

    /// Whether the store's index may hold `key` (no I/O).
    pub(super) fn holds(&self, key: &DiskKey) -> bool {
        self.inner.store.storage().may_contains(key)
    }

    /// After a hard purge of everything: nothing the store holds is served
    /// again (the purge mark sees to that), so none of it counts as held;
    /// the store reclaims it in time.
    pub(crate) fn forget_all(&self) {
        self.inner.catalog.clear();
    }

    /// Deletes what is stored under `hash` (an object or a marker).
    pub(crate) fn delete(&self, hash: &[u8; 32]) {
        let key = DiskKey::head(*hash);
        self.inner.catalog.forget(store_hash(&key));
        self.inner.store.storage().delete(&key);
    }

    /// Writes an object's head under `hash`, with its body when that is
    /// held in memory and not in chunks.
    pub(crate) fn put_object(&self, hash: [u8; 32], entry: &Entry) {
        let Some(record) = format::head(entry) else {
            return;
        };
        let key = DiskKey::head(hash);
        self.inner.catalog.written(store_hash(&key));
        self.put(key, record);
    }

    /// Writes a URL's Vary marker under its primary hash.
    pub(crate) fn put_marker(&self, primary: [u8; 32], marker: &Marker) {
        if let Some(record) = format::marker(marker) {
            self.put(DiskKey::head(primary), record);
        }
    }

    /// What `hash` holds; a damaged record is deleted and reads as None.
    pub(crate) async fn load(&self, hash: &[u8; 32]) -> Result<Option<Found>, DiskError> {
        let key = DiskKey::head(*hash);
        let Some(record) = self.get(&key).await? else {
            self.inner.stats.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match format::decode(&record) {
            Ok(found) => {
                self.inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(found))
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropping a damaged disk record");
                self.note_damaged();
                self.delete(hash);
                Ok(None)
            }
        }
    }
}

/// Whether the file system has room for a tier of `capacity` bytes in
/// `dir`, counting what the tier's files there already hold.
fn room_for(dir: &Path, capacity: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let stat = rustix::fs::statvfs(dir)?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    let mut held = 0u64;
    for file in store_files(dir)? {
        held += file?.metadata()?.blocks() * 512;
    }
    Ok(free.saturating_add(held) >= capacity)
}

/// The store's files in `dir` (foyer names them `foyer-…`).
fn store_files(
    dir: &Path,
) -> std::io::Result<impl Iterator<Item = std::io::Result<std::fs::DirEntry>>> {
    Ok(std::fs::read_dir(dir)?.filter(|entry| {
        entry.as_ref().map_or(true, |entry| {
            entry.file_name().to_string_lossy().starts_with("foyer")
                && entry.file_type().is_ok_and(|t| t.is_file())
        })
    }))
}

/// Allocates the store's files in full (they are created sparse).
fn reserve(dir: &Path) -> std::io::Result<()> {
    for entry in store_files(dir)? {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(entry?.path())?;
        let len = file.metadata()?.len();
        match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len) {
            // A file system that cannot reserve space: the tier works, but
            // a disk that fills up can fail its writes.
            Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
                tracing::warn!(path = %dir.display(), "the file system cannot reserve the disk tier's space");
                return Ok(());
            }
            other => other?,
        }
    }
    Ok(())
}
