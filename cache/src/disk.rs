//! The disk tier: objects kept in a foyer block store, so that the cache
//! survives restarts.
//!
//! An object is a head record and, when its body is larger than one chunk,
//! chunk records. Every record is framed and checksummed here, whatever the
//! store below does:
//!
//! ```text
//! "OPST" | format version (u16 LE) | kind (u8) | payload | blake3 of all before, first 16 bytes
//! ```
//!
//! - head (kind 1): meta length (u32 LE) | meta (postcard) | the body, when it fits in one chunk;
//! - marker (kind 2): a URL whose responses vary (postcard);
//! - chunk (kind 3): fill id (u64 LE) | index (u32 LE) | bytes.
//!
//! Chunks are written before their head, under keys made from the URL's
//! primary hash and the fill's id, so two fills of one URL never mix. A
//! record that is damaged, of another format, or whose chunks are missing
//! or belong to another fill reads as a miss, and its head is deleted.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy, Load, RecoverMode,
};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::entry::Entry;
use crate::freshness::{Directives, Freshness};
use crate::occupancy::{CountEvictions, Occupancy};

/// How often the catalog (the count of objects) is saved.
const CATALOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The store's own hash of a key, as its reclaimer reports it.
fn store_hash(key: &DiskKey) -> u64 {
    use std::hash::BuildHasher;
    foyer::DefaultHasher::default().hash_one(key)
}
use crate::policy::{StaleUse, StoreRules};

/// Bytes of body per chunk record; a body up to this size sits in its head.
pub const CHUNK: usize = 256 << 10;
/// The format written; records of any other version read as misses.
const VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"OPST";
const SUM: usize = 16;
const KIND_HEAD: u8 = 1;
const KIND_MARKER: u8 = 2;
const KIND_CHUNK: u8 = 3;
/// No record is larger: a length past it is damage, not an allocation to make.
const MAX_RECORD: usize = 4 * CHUNK;

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

/// Where a record lives in the store: an object's (or marker's) hash with
/// part 0, or a chunk's derived hash with its index from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DiskKey {
    hash: [u8; 32],
    part: u32,
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

/// One framed record, as stored.
#[derive(Debug, Clone)]
pub struct Record(Bytes);

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

fn frame(kind: u8, parts: &[&[u8]]) -> Record {
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

/// Where an object's body lies on disk when it is larger than one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks {
    /// The URL's primary hash.
    pub primary: [u8; 32],
    /// The fill that wrote them.
    pub fill: u64,
    /// Body length in bytes.
    pub len: u64,
}

impl Chunks {
    fn count(&self) -> u64 {
        self.len.div_ceil(CHUNK as u64)
    }

    fn key(&self, index: u64) -> DiskKey {
        chunk_key(self.primary, self.fill, index)
    }
}

fn chunk_key(primary: [u8; 32], fill: u64, index: u64) -> DiskKey {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&primary);
    hasher.update(b"\0chunks\0");
    hasher.update(&fill.to_le_bytes());
    DiskKey {
        hash: *hasher.finalize().as_bytes(),
        part: u32::try_from(index + 1).unwrap_or(u32::MAX),
    }
}

/// An object's head as stored.
#[derive(Serialize, Deserialize)]
struct Meta {
    key: String,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    freshness: Freshness,
    directives: Directives,
    stale: StaleUse,
    rules: StoreRules,
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
}

/// What a hash holds on disk.
#[derive(Debug)]
pub enum Found {
    /// An object; its body is in `body` when it fits one chunk, otherwise in
    /// the chunks `entry.chunks` names.
    Object(Box<Entry>),
    Marker(Marker),
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
pub fn store_errors() -> u64 {
    STORE_ERRORS.load(Ordering::Relaxed)
}

/// Counts kept for metrics and `/stats`.
#[derive(Debug, Default)]
pub struct DiskStats {
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
            .with_metrics_registry(Box::new(crate::occupancy::Registry(occupancy.clone())))
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            // Records are written to disk only (phantom): this memory part
            // of the store holds nothing for long.
            .memory(1 << 20)
            .with_weighter(|_key: &DiskKey, record: &Record| record.0.len())
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

    pub fn stats(&self) -> &DiskStats {
        &self.inner.stats
    }

    /// The directory the tier's files are in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Objects held, as the tier's catalog counts them.
    pub fn objects(&self) -> u64 {
        self.inner.catalog.len()
    }

    /// Bytes of the store's blocks that hold records (live or not yet
    /// reclaimed), and the records evicted to make room since the start.
    pub fn occupancy(&self) -> (u64, u64) {
        (self.inner.occupancy.bytes(), self.inner.occupancy.evicted())
    }

    pub fn capacity(&self) -> u64 {
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
    pub fn backlog(&self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
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

    fn put(&self, key: DiskKey, record: Record) {
        if self.inner.failed.load(Ordering::Relaxed) {
            return;
        }
        self.inner
            .enqueued
            .fetch_add(record.0.len() as u64, Ordering::AcqRel);
        // Not admitted (the store's queue is full) is dropped: a head whose
        // chunks were dropped reads as a miss.
        let _ = self.inner.store.storage_writer(key).force().insert(record);
    }

    async fn get(&self, key: &DiskKey) -> Result<Option<Record>, DiskError> {
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
    pub fn may_contain(&self, hash: &[u8; 32]) -> bool {
        self.inner.store.storage().may_contains(&DiskKey {
            hash: *hash,
            part: 0,
        })
    }

    /// Deletes what is stored under `hash` (an object or a marker).
    pub fn delete(&self, hash: &[u8; 32]) {
        let key = DiskKey {
            hash: *hash,
            part: 0,
        };
        self.inner.catalog.forget(store_hash(&key));
        self.inner.store.storage().delete(&key);
    }

    /// Writes an object's head under `hash`; `body` is its body when it fits
    /// one chunk (and `entry.chunks` is None).
    pub fn put_object(&self, hash: [u8; 32], entry: &Entry, body: &[u8]) {
        let meta = Meta {
            key: entry.key.to_string(),
            status: entry.status.as_u16(),
            headers: entry
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_vec()))
                .collect(),
            freshness: entry.freshness.clone(),
            directives: entry.directives.clone(),
            stale: entry.stale,
            rules: *entry.rules,
            variant: entry.variant.clone(),
            marker: entry.marker,
            seq: entry.seq,
            tags: entry.tags.clone(),
            primary: entry.primary,
            chunks: entry.chunks.as_deref().copied(),
        };
        let Ok(meta) = postcard::to_stdvec(&meta) else {
            return;
        };
        let Ok(meta_len) = u32::try_from(meta.len()) else {
            return;
        };
        let body = if entry.chunks.is_some() {
            &[][..]
        } else {
            body
        };
        if 7 + 4 + meta.len() + body.len() + SUM > MAX_RECORD {
            return;
        }
        let record = frame(KIND_HEAD, &[&meta_len.to_le_bytes(), &meta, body]);
        let key = DiskKey { hash, part: 0 };
        self.inner.catalog.written(store_hash(&key));
        self.put(key, record);
    }

    /// Whether every chunk of a body is in the store's index (no I/O): a
    /// chunk evicted, or never written, makes the object unusable.
    pub fn has_chunks(&self, chunks: &Chunks) -> bool {
        let storage = self.inner.store.storage();
        (0..chunks.count()).all(|index| storage.may_contains(&chunks.key(index)))
    }

    /// Writes a URL's Vary marker under its primary hash.
    pub fn put_marker(&self, primary: [u8; 32], marker: &Marker) {
        if let Ok(payload) = postcard::to_stdvec(marker)
            && payload.len() + 7 + SUM <= MAX_RECORD
        {
            self.put(
                DiskKey {
                    hash: primary,
                    part: 0,
                },
                frame(KIND_MARKER, &[&payload]),
            );
        }
    }

    /// What `hash` holds; a damaged record is deleted and reads as None.
    pub async fn load(&self, hash: &[u8; 32]) -> Result<Option<Found>, DiskError> {
        let key = DiskKey {
            hash: *hash,
            part: 0,
        };
        let Some(record) = self.get(&key).await? else {
            self.inner.stats.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        match decode(&record) {
            Ok(found) => {
                self.inner.stats.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(found))
            }
            Err(e) => {
                tracing::warn!(error = %e, "dropping a damaged disk record");
                self.inner.stats.damaged.fetch_add(1, Ordering::Relaxed);
                self.delete(hash);
                Ok(None)
            }
        }
    }

    /// Chunk `index` of a body, verified to be that fill's.
    pub async fn chunk(&self, chunks: &Chunks, index: u64) -> Result<Bytes, DiskError> {
        let record = self
            .get(&chunks.key(index))
            .await?
            .ok_or(DiskError::Missing)?;
        let checked = unframe(&record, KIND_CHUNK).and_then(|payload| {
            if payload.len() < 12 {
                return Err(DiskError::Damaged("short chunk"));
            }
            let fill = u64::from_le_bytes(payload[..8].try_into().unwrap_or_default());
            let at = u32::from_le_bytes(payload[8..12].try_into().unwrap_or_default());
            let expected = if index + 1 == chunks.count() {
                chunks.len - index * CHUNK as u64
            } else {
                CHUNK as u64
            };
            if fill != chunks.fill
                || u64::from(at) != index
                || payload.len() as u64 - 12 != expected
            {
                return Err(DiskError::Damaged("chunk of another fill"));
            }
            Ok(payload.slice(12..))
        });
        if checked.is_err() {
            self.inner.stats.damaged.fetch_add(1, Ordering::Relaxed);
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
    pub fn chunk_writer(&self, primary: [u8; 32]) -> ChunkWriter {
        ChunkWriter {
            tier: self.clone(),
            primary,
            fill: crate::unique_id(),
            index: 0,
            pending: BytesMut::new(),
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

fn decode(record: &Record) -> Result<Found, DiskError> {
    if record.0.get(6) == Some(&KIND_MARKER) {
        let payload = unframe(record, KIND_MARKER)?;
        let marker: Marker =
            postcard::from_bytes(&payload).map_err(|_| DiskError::Damaged("marker"))?;
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
    if meta.chunks.is_some() && !body.is_empty() {
        return Err(DiskError::Damaged("head with both body and chunks"));
    }
    let mut fields = Vec::with_capacity(meta.headers.len());
    for (name, value) in meta.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| DiskError::Damaged("field name"))?;
        let value =
            HeaderValue::from_bytes(&value).map_err(|_| DiskError::Damaged("field value"))?;
        fields.push((name, value));
    }
    let headers = crate::entry::StoredHeaders::from_fields(fields);
    Ok(Found::Object(Box::new(Entry {
        key: meta.key.into(),
        status: StatusCode::from_u16(meta.status).map_err(|_| DiskError::Damaged("status"))?,
        headers,
        body,
        freshness: meta.freshness,
        directives: meta.directives,
        stale: meta.stale,
        rules: meta.rules.shared(),
        variant: meta.variant,
        marker: meta.marker,
        seq: meta.seq,
        tags: meta.tags,
        primary: meta.primary,
        chunks: meta.chunks.map(Box::new),
    })))
}

/// Writes a body's chunks as it arrives; the head that names them is
/// written by whoever finishes the fill.
pub struct ChunkWriter {
    tier: DiskTier,
    primary: [u8; 32],
    fill: u64,
    index: u64,
    pending: BytesMut,
}

/// A body may run this far ahead of the disk: the store drops what is
/// queued beyond its limit, so a fill waits for the disk here.
const FLUSH_EVERY: usize = 4 << 20;
/// The longest a fill waits for the store before going on.
const BACKLOG_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl ChunkWriter {
    pub fn tier(&self) -> &DiskTier {
        &self.tier
    }

    pub fn push(&mut self, mut data: &[u8]) {
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
        let record = frame(
            KIND_CHUNK,
            &[
                &self.fill.to_le_bytes(),
                &index.to_le_bytes(),
                &self.pending,
            ],
        );
        self.pending.clear();
        self.index += 1;
        self.tier.put(key, record);
    }

    /// The body's chunks once it has ended with `len` bytes; when it fits
    /// one chunk nothing was written, and the body is returned to go in
    /// its head.
    pub fn finish(mut self, len: u64) -> Result<Chunks, Bytes> {
        if self.index == 0 && len <= CHUNK as u64 {
            return Err(self.pending.freeze());
        }
        if !self.pending.is_empty() {
            self.write_pending();
        }
        Ok(Chunks {
            primary: self.primary,
            fill: self.fill,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            chunks: Some(Chunks {
                primary: [3; 32],
                fill: 11,
                len: 300_000,
            }),
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

    #[test]
    fn a_record_length_past_the_limit_is_refused_before_allocating() {
        use foyer::Code;
        let mut bytes: &[u8] = &u32::MAX.to_le_bytes();
        assert!(Record::decode(&mut bytes).is_err());
    }
}
