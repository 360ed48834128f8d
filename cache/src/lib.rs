//! Outpost's cache: keys, freshness policy and the tiered store.
//!
//! The cache knows nothing of sockets. The edge asks it for a [`Lookup`],
//! fetches from the origin when told to, and hands back what may be stored.

mod catalog;
mod clock;
mod coalesce;
mod date;
mod disk;
mod entry;
mod freshness;
mod journal;
mod key;
mod memory;
mod occupancy;
mod policy;
mod purge;
mod vary;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode, request, response};

pub use clock::{Clock, ManualClock, SystemClock};
pub use coalesce::{
    Coalescer, Fill, FillFailed, FillWriter, Leader, Role, STREAM_SHARE_MAX, SharedBody, SharedHead,
};
pub use date::parse_http_date;
pub use disk::{CHUNK, Chunks, DiskError, DiskStats, DiskTier, note_store_error};
use disk::{ChunkWriter, Found};
pub use entry::{Entry, StoredHeaders};
use freshness::Unusable;
pub use freshness::{Directives, Freshness, Heuristic};
pub use key::{CacheKey, KeyError, PathError, normalize_host, normalize_path};
pub use memory::{MemoryTier, Stored};
pub use policy::{
    NotStored, PolicyOptions, StaleUse, StoreRules, has_explicit_freshness, storage_policy,
};
pub use purge::{PurgeIndex, RETENTION, Verdict};
use vary::VaryMarker;
pub use vary::{KeyFields, MAX_VARIANTS};

/// What the cache holds for a request.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh entry that answers the request as is.
    Fresh(Arc<Entry>),
    /// A stored entry that must be validated with the origin before use.
    Stale(Arc<Entry>),
    /// A fresh entry that the request's own directives refuse (no-cache,
    /// max-age, min-fresh): validated before use, `fwd=request`.
    Refused(Arc<Entry>),
    /// An entry exists for the URL but its Vary fields differ.
    VaryMiss,
    Miss,
}

/// With a disk tier, larger objects live on disk only and stream from there:
/// memory holds many small objects rather than a few large ones, and a
/// large fill never holds its whole body in memory.
const MEMORY_OBJECT_MAX_WITH_DISK: usize = 16 << 20;

/// A random id (for fills and Vary markers): unique across processes and
/// restarts whatever the clock does.
pub fn unique_id() -> u64 {
    let mut bytes = [0u8; 8];
    match rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()) {
        Ok(8) => u64::from_le_bytes(bytes),
        // Not expected on Linux; a counter from the clock is the fallback.
        _ => {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            purge::next_after_now(&NEXT)
        }
    }
}

/// Sizes of the cache, for `/stats` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    /// Objects evicted from the memory tier for room, since the start.
    pub memory_evictions: u64,
    /// Lookups the memory tier answered, and those it did not, since the start.
    pub memory_hits: u64,
    pub memory_misses: u64,
    /// The disk tier, once open.
    pub disk: Option<DiskUsage>,
    /// Whether a disk tier is configured but not open yet (a successor
    /// waiting for its predecessor to close it, or a disk without room).
    pub disk_pending: bool,
    /// Disk faults since the start: reads and writes that failed, and
    /// failures to open the tier.
    pub disk_faults: u64,
}

/// The disk tier's counts since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub capacity: u64,
    /// Objects held (the tier's own count; see `catalog.rs`).
    pub objects: u64,
    /// Bytes of blocks holding records.
    pub bytes: u64,
    /// Records (heads and chunks) evicted to make room.
    pub evictions: u64,
    pub hits: u64,
    pub misses: u64,
    /// Records found damaged or incomplete (and dropped).
    pub damaged: u64,
    /// Reads that failed.
    pub errors: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
}

pub struct Cache {
    memory: MemoryTier,
    memory_hits: AtomicU64,
    memory_misses: AtomicU64,
    /// Set for a cache built to have a disk tier.
    tiered: bool,
    /// The largest body the memory tier keeps.
    memory_limit: usize,
    /// The disk tier, once it is open (a successor in a binary upgrade
    /// opens it only when its predecessor has closed it).
    disk: std::sync::OnceLock<DiskTier>,
    purges: Arc<PurgeIndex>,
    clock: Arc<dyn Clock>,
    /// Swapped whole by a config reload.
    options: arc_swap::ArcSwap<PolicyOptions>,
}

impl Cache {
    pub fn new(memory_bytes: u64, options: PolicyOptions, clock: Arc<dyn Clock>) -> Self {
        Self::build(memory_bytes, PurgeIndex::default(), options, clock, false)
    }

    /// A cache that will have a disk tier below memory: purges are kept
    /// for it from the start, and journaled once it is attached.
    pub fn tiered(memory_bytes: u64, options: PolicyOptions, clock: Arc<dyn Clock>) -> Self {
        Self::build(memory_bytes, PurgeIndex::durable(), options, clock, true)
    }

    /// A cache with a disk tier below memory.
    pub fn with_disk(
        memory_bytes: u64,
        disk: DiskTier,
        options: PolicyOptions,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let cache = Self::tiered(memory_bytes, options, clock);
        cache.attach_disk(disk)?;
        Ok(cache)
    }

    /// Puts the disk tier below memory. The purges journaled beside its
    /// files apply from now on, and the purges made before are journaled.
    pub fn attach_disk(&self, disk: DiskTier) -> std::io::Result<()> {
        self.purges.attach_journal(&disk.path().join("purges"))?;
        self.disk
            .set(disk)
            .map_err(|_| std::io::Error::other("a disk tier is already attached"))
    }

    fn build(
        memory_bytes: u64,
        purges: PurgeIndex,
        options: PolicyOptions,
        clock: Arc<dyn Clock>,
        tiered: bool,
    ) -> Self {
        let purges = Arc::new(purges);
        Self {
            memory: MemoryTier::new(memory_bytes, purges.clone()),
            memory_hits: AtomicU64::new(0),
            memory_misses: AtomicU64::new(0),
            tiered,
            memory_limit: usize::try_from(memory_bytes.min(u64::from(u32::MAX / 2)))
                .unwrap_or(usize::MAX),
            disk: std::sync::OnceLock::new(),
            purges,
            clock,
            options: arc_swap::ArcSwap::from_pointee(options),
        }
    }

    /// The largest body the memory tier keeps.
    fn memory_object_max(&self) -> usize {
        if self.disk.get().is_some() {
            self.memory_limit.min(MEMORY_OBJECT_MAX_WITH_DISK)
        } else {
            self.memory_limit
        }
    }

    /// Whether a disk tier is configured but not open yet.
    pub fn disk_pending(&self) -> bool {
        self.tiered && self.disk.get().is_none()
    }

    pub fn disk(&self) -> Option<&DiskTier> {
        self.disk.get()
    }

    /// Writes what the disk tier has queued and closes it.
    pub async fn close(&self) {
        if let Some(disk) = self.disk.get()
            && let Err(e) = disk.close().await
        {
            tracing::warn!(error = %e, "closing the disk tier");
        }
    }

    /// The storage options of a reloaded config; they apply from the next
    /// response stored. Entries already stored keep what they were stored with.
    pub fn set_options(&self, options: PolicyOptions) {
        self.options.store(Arc::new(options));
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// Looks `key` up for the request `req`, in memory.
    pub fn lookup(&self, key: &CacheKey, req: &request::Parts) -> Lookup {
        let found = self.lookup_memory(key, req);
        let counter = match found {
            Lookup::Miss | Lookup::VaryMiss => &self.memory_misses,
            _ => &self.memory_hits,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        found
    }

    fn lookup_memory(&self, key: &CacheKey, req: &request::Parts) -> Lookup {
        let mut hash = *key.hash();
        let entry = match self.memory.get(key.hash()) {
            None => return Lookup::Miss,
            Some(Stored::Object(entry)) => entry,
            Some(Stored::Variants(marker)) => {
                if marker.key != key.text() {
                    return Lookup::Miss;
                }
                let secondary = vary::secondary(&marker.names, &marker.cookies, &req.headers);
                hash = vary::secondary_hash(key.text(), &secondary);
                match self.memory.get(&hash) {
                    Some(Stored::Object(entry))
                        if entry.marker == marker.id && entry.variant == secondary =>
                    {
                        entry
                    }
                    _ => return Lookup::VaryMiss,
                }
            }
        };
        if &*entry.key != key.text() {
            // A blake3 collision: never serve another URL's object.
            return Lookup::Miss;
        }
        match self.purges.judge(&entry) {
            Verdict::Gone => {
                self.memory.remove(&hash);
                Lookup::Miss
            }
            Verdict::Stale => Lookup::Stale(entry),
            Verdict::Live => self.assess(entry, req),
        }
    }

    /// Whether a stored entry, live by the purge marks, answers `req`.
    fn assess(&self, entry: Arc<Entry>, req: &request::Parts) -> Lookup {
        // RFC 9111 §3.5: an authenticated request is answered from a shared
        // entry only when the response allowed it.
        if req.headers.contains_key(http::header::AUTHORIZATION)
            && !policy::allows_authorized(
                &entry.headers.get_all("cache-control").collect::<Vec<_>>(),
            )
        {
            return Lookup::Miss;
        }
        match freshness::usable(
            &entry.freshness,
            &entry.directives,
            entry.stale.never,
            &req.headers,
            self.now(),
        ) {
            Ok(()) => Lookup::Fresh(entry),
            Err(Unusable::Request) => Lookup::Refused(entry),
            Err(Unusable::Stale) => Lookup::Stale(entry),
        }
    }

    /// Looks `key` up in memory, then on disk. An object found on disk is
    /// promoted to memory when its body fits there.
    pub async fn lookup_tiered(&self, key: &CacheKey, req: &request::Parts) -> Lookup {
        let found = self.lookup(key, req);
        match (self.disk.get(), &found) {
            (Some(disk), Lookup::Miss | Lookup::VaryMiss) => {
                match self.lookup_disk(disk, key, req).await {
                    Lookup::Miss => found,
                    on_disk => on_disk,
                }
            }
            _ => found,
        }
    }

    async fn lookup_disk(&self, disk: &DiskTier, key: &CacheKey, req: &request::Parts) -> Lookup {
        let marker = match self.memory.get(key.hash()) {
            Some(Stored::Variants(marker)) if marker.key == key.text() => Some(marker),
            // In memory and refused there (another URL, purged, private).
            Some(_) => return Lookup::Miss,
            None => None,
        };
        let (marker, primary_found) = match marker {
            Some(marker) => (Some(marker), None),
            None => match disk.load(key.hash()).await {
                Ok(Some(Found::Marker(stored))) if stored.key == key.text() => {
                    let names = stored
                        .names
                        .iter()
                        .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
                        .collect();
                    let marker = Arc::new(VaryMarker::with_id(
                        stored.key,
                        stored.id,
                        names,
                        stored.cookies,
                    ));
                    // A fill may have stored a newer marker (or object) meanwhile.
                    match self
                        .memory
                        .insert_if_absent(*key.hash(), Stored::Variants(marker))
                    {
                        Stored::Variants(marker) if marker.key == key.text() => {
                            (Some(marker), None)
                        }
                        _ => return Lookup::Miss,
                    }
                }
                Ok(Some(Found::Object(entry))) => (None, Some(entry)),
                _ => return Lookup::Miss,
            },
        };
        let (hash, entry) = match (marker, primary_found) {
            (_, Some(entry)) => (*key.hash(), entry),
            (Some(marker), None) => {
                let secondary = vary::secondary(&marker.names, &marker.cookies, &req.headers);
                let hash = vary::secondary_hash(key.text(), &secondary);
                match disk.load(&hash).await {
                    Ok(Some(Found::Object(entry)))
                        if entry.marker == marker.id && entry.variant == secondary =>
                    {
                        for dropped in marker.remember(hash) {
                            self.memory.remove(&dropped);
                        }
                        (hash, entry)
                    }
                    _ => return Lookup::VaryMiss,
                }
            }
            (None, None) => return Lookup::Miss,
        };
        if &*entry.key != key.text() {
            return Lookup::Miss;
        }
        let verdict = self.purges.judge(&entry);
        if verdict == Verdict::Gone || self.purges.past_retention(&entry) {
            disk.delete(&hash);
            return Lookup::Miss;
        }
        let Some(entry) = self.promote(disk, *entry).await else {
            disk.delete(&hash);
            return Lookup::Miss;
        };
        let entry = Arc::new(entry);
        // Unless a fill stored a newer response under the hash meanwhile.
        if entry.resident()
            && entry.body.len() <= self.memory_object_max()
            && self.memory.insert_unless_newer(hash, entry.clone())
        {
            self.purges.add(hash, &entry);
        }
        match verdict {
            Verdict::Stale => Lookup::Stale(entry),
            _ => self.assess(entry, req),
        }
    }

    /// The bytes `start..=end` of an entry's body, from memory or, chunk by
    /// chunk, from disk. A chunk found damaged or gone ends the stream with
    /// an error (the client's response is cut off, never passed off as
    /// whole) and the object is dropped from disk.
    pub fn body(
        &self,
        entry: &Entry,
        start: u64,
        end: u64,
    ) -> futures_util::stream::BoxStream<'static, Result<Bytes, DiskError>> {
        use futures_util::StreamExt;
        match (
            entry.resident(),
            entry.chunks.as_deref().copied(),
            self.disk.get(),
        ) {
            (false, Some(chunks), Some(disk)) => {
                let head = if entry.marker == 0 {
                    entry.primary
                } else {
                    vary::secondary_hash(&entry.key, &entry.variant)
                };
                let tier = disk.clone();
                disk.stream(chunks, start, end)
                    .inspect(move |piece| {
                        if piece.is_err() {
                            tier.delete(&head);
                        }
                    })
                    .boxed()
            }
            (false, _, _) => futures_util::stream::once(async { Err(DiskError::Missing) }).boxed(),
            (true, _, _) => {
                let len = entry.body.len();
                let to = usize::try_from(end.saturating_add(1)).map_or(len, |e| e.min(len));
                let from = usize::try_from(start).map_or(to, |s| s.min(to));
                let piece = entry.body.slice(from..to);
                futures_util::stream::once(async move { Ok(piece) }).boxed()
            }
        }
    }

    /// An entry read from disk with its body read in whole when it is small
    /// enough for memory; None when a chunk is damaged or gone.
    async fn promote(&self, disk: &DiskTier, mut entry: Entry) -> Option<Entry> {
        let Some(chunks) = entry.chunks.as_deref().copied() else {
            return Some(entry);
        };
        if !disk.has_chunks(&chunks) {
            return None;
        }
        if chunks.len > self.memory_object_max() as u64 {
            return Some(entry);
        }
        let mut body = BytesMut::with_capacity(usize::try_from(chunks.len).ok()?);
        for index in 0..chunks.len.div_ceil(CHUNK as u64) {
            body.extend_from_slice(&disk.chunk(&chunks, index).await.ok()?);
        }
        entry.body = body.freeze();
        Some(entry)
    }

    /// Builds an entry for a complete response, or says why it must not be
    /// stored. `request_time` is when the request went to the origin and
    /// `response_time` when its answer arrived (RFC 9111 §4.2.3).
    pub fn prepare(
        &self,
        key: &CacheKey,
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        rules: StoreRules,
    ) -> Result<PendingEntry, NotStored> {
        let mut res = res.clone();
        clamp_age(&mut res.headers);
        // RFC 9111 §4.1: `Vary: *` never matches a later request.
        let names = vary::names(&res.headers).ok_or(NotStored::Headers)?;
        let options = self.options.load();
        let built = storage_policy(req, &res, response_time, &options, rules)?;
        let freshness = Freshness::compute(
            res.status,
            &built.view,
            request_time,
            response_time,
            options.heuristic(),
        );
        let directives = Directives::from_headers(&built.view);
        // RFC 9111 §5.2.2.7: a shared cache does not store the fields a
        // qualified `private` names.
        for field in &built.private {
            res.headers.remove(field.as_str());
        }
        let variant = if names.is_empty() {
            String::new()
        } else {
            vary::secondary(&names, &[], &req.headers)
        };
        let tags = self.tags_of(&res.headers);
        Ok(PendingEntry {
            key: key.clone(),
            status: res.status,
            headers: StoredHeaders::from_map(&res.headers),
            freshness,
            directives,
            stale: built.stale,
            rules,
            vary: names,
            cookies: Vec::new(),
            variant,
            seq: self.purges.next_seq(),
            tags,
        })
    }

    /// The tags a response carries in the configured tag headers, split on
    /// commas and white space (Surrogate-Key and Cache-Tag both fit).
    fn tags_of(&self, headers: &HeaderMap) -> Vec<String> {
        let mut tags: Vec<String> = self
            .options
            .load()
            .tag_headers
            .iter()
            .flat_map(|name| headers.get_all(name))
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(|c: char| c == ',' || c.is_whitespace()))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        tags.sort_unstable();
        tags.dedup();
        tags.shrink_to_fit();
        tags
    }

    /// Stores a complete entry: under the URL's key, or as one variant of it.
    pub fn insert(&self, pending: PendingEntry, body: Bytes) -> Arc<Entry> {
        let chunks = match self.disk.get() {
            Some(disk) if body.len() > CHUNK => {
                let mut writer = disk.chunk_writer(*pending.key.hash());
                writer.push(&body);
                writer.finish(body.len() as u64).ok()
            }
            _ => None,
        };
        self.commit(pending, body, chunks)
    }

    /// Begins storing a response whose body is still to arrive: feed it
    /// with [`Storing::push`], then hand it to [`Cache::finish`]. Bodies up
    /// to `limit` bytes are stored: in memory when they fit there, and on
    /// disk, chunk by chunk as they arrive, when there is a disk tier.
    pub fn storing(&self, pending: PendingEntry, expected: Option<u64>, limit: u64) -> Storing {
        let memory_limit = self.memory_object_max();
        let copy = (expected.is_none_or(|n| n <= memory_limit as u64)).then(|| {
            let capacity = expected.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            BytesMut::with_capacity(capacity.min(memory_limit))
        });
        let chunks = self
            .disk
            .get()
            .map(|disk| disk.chunk_writer(*pending.key.hash()));
        Storing {
            pending,
            copy,
            chunks,
            len: 0,
            limit,
            memory_limit,
        }
    }

    /// Stores a response whose body has ended cleanly.
    pub fn finish(&self, storing: Storing) -> Option<Arc<Entry>> {
        let Storing {
            pending,
            copy,
            chunks,
            len,
            ..
        } = storing;
        let (body, chunks) = match (copy, chunks.map(|w| w.finish(len))) {
            (Some(copy), Some(Ok(chunks))) => (copy.freeze(), Some(chunks)),
            (Some(copy), _) => (copy.freeze(), None),
            (None, Some(Ok(chunks))) => (Bytes::new(), Some(chunks)),
            (None, Some(Err(inline))) => (inline, None),
            (None, None) => return None,
        };
        Some(self.commit(pending, body, chunks))
    }

    /// Stores an entry whose body is `body` (or, with `chunks`, on disk and
    /// perhaps in `body` too) in memory when it fits, and on disk.
    fn commit(&self, pending: PendingEntry, body: Bytes, chunks: Option<Chunks>) -> Arc<Entry> {
        let PendingEntry {
            key,
            status,
            headers,
            freshness,
            directives,
            stale,
            rules,
            vary,
            cookies,
            variant,
            seq,
            tags,
        } = pending;
        let mut entry = Entry {
            key: key.text().into(),
            status,
            headers,
            body,
            freshness,
            directives: directives.for_entry(),
            stale,
            rules: rules.shared(),
            variant,
            marker: 0,
            seq,
            tags,
            primary: *key.hash(),
            chunks: chunks.map(Box::new),
        };
        // A purge that arrived while this response was on its way wins.
        if self.purges.judge(&entry) == Verdict::Gone {
            return Arc::new(entry);
        }
        let hash = if vary.is_empty() && cookies.is_empty() {
            *key.hash()
        } else {
            let marker = match self.memory.get(key.hash()) {
                Some(Stored::Variants(marker))
                    if marker.key == key.text()
                        && marker.names == vary
                        && marker.cookies == cookies =>
                {
                    marker
                }
                _ => {
                    let marker = Arc::new(VaryMarker::new(key.text().to_owned(), vary, cookies));
                    self.memory
                        .insert(*key.hash(), Stored::Variants(marker.clone()));
                    if let Some(disk) = self.disk.get() {
                        disk.put_marker(
                            *key.hash(),
                            &disk::Marker {
                                key: marker.key.clone(),
                                id: marker.id,
                                names: marker.names.iter().map(|n| n.to_string()).collect(),
                                cookies: marker.cookies.clone(),
                            },
                        );
                    }
                    marker
                }
            };
            entry.marker = marker.id;
            let hash = vary::secondary_hash(key.text(), &entry.variant);
            for dropped in marker.remember(hash) {
                self.memory.remove(&dropped);
            }
            hash
        };
        let entry = Arc::new(entry);
        if entry.resident() && entry.body.len() <= self.memory_object_max() {
            self.store(hash, entry.clone());
        }
        if let Some(disk) = self.disk.get() {
            // Written after its chunks; should the store have dropped one
            // (its queue full), the object reads as a miss.
            disk.put_object(hash, &entry, &entry.body);
        }
        entry
    }

    /// Applies a `304 Not Modified` to a stored entry (RFC 9111 §4.3.4):
    /// the 304's header fields replace the stored ones, the body stays, and
    /// the freshness clock restarts. Returns None when the 304 names another
    /// representation than the one stored (a different entity tag), which
    /// must then not be updated. The caller removes hop-by-hop fields first.
    pub fn refresh(
        &self,
        key: &CacheKey,
        stored: &Entry,
        req: &request::Parts,
        not_modified: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Option<Arc<Entry>> {
        let etag = |v: Option<&http::HeaderValue>| {
            v.and_then(|v| v.to_str().ok())
                .map(|t| t.trim().trim_start_matches("W/").to_owned())
        };
        if let Some(new) = etag(not_modified.headers.get(http::header::ETAG))
            && etag(stored.headers.get("etag").as_ref()).as_deref() != Some(new.as_str())
        {
            return None;
        }
        let mut headers = stored.headers.to_map(not_modified.headers.len());
        for name in not_modified.headers.keys() {
            let skip = matches!(
                name.as_str(),
                "content-length"
                    | "content-encoding"
                    | "transfer-encoding"
                    | "content-range"
                    | "vary"
            ) || (name == http::header::SET_COOKIE && !stored.rules.share_set_cookie);
            if skip {
                continue;
            }
            headers.remove(name);
            for value in not_modified.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        clamp_age(&mut headers);
        let options = self.options.load();
        let built = policy::build(
            req,
            stored.status,
            &headers,
            response_time,
            &options,
            *stored.rules,
        );
        for field in &built.private {
            headers.remove(field.as_str());
        }
        let freshness = Freshness::compute(
            stored.status,
            &built.view,
            request_time,
            response_time,
            options.heuristic(),
        );
        let entry = Arc::new(Entry {
            key: stored.key.clone(),
            status: stored.status,
            headers: StoredHeaders::from_map(&headers),
            body: stored.body.clone(),
            freshness,
            directives: Directives::from_headers(&built.view).for_entry(),
            stale: built.stale,
            rules: stored.rules.clone(),
            variant: stored.variant.clone(),
            marker: stored.marker,
            seq: self.purges.next_seq(),
            tags: stored.tags.clone(),
            primary: stored.primary,
            chunks: stored.chunks.clone(),
        });
        let hash = if entry.marker == 0 {
            *key.hash()
        } else {
            vary::secondary_hash(key.text(), &entry.variant)
        };
        if entry.resident() && entry.body.len() <= self.memory_object_max() {
            self.store(hash, entry.clone());
        }
        if let Some(disk) = self.disk.get() {
            // The body's chunks stay; only the head changes.
            if entry.chunks.is_some() || entry.body.len() <= CHUNK {
                disk.put_object(hash, &entry, &entry.body);
            }
        }
        Some(entry)
    }

    /// Puts an object in memory and in the purge index.
    fn store(&self, hash: [u8; 32], entry: Arc<Entry>) {
        self.purges.add(hash, &entry);
        self.memory.insert(hash, Stored::Object(entry));
    }

    /// Removes objects by hash; many are removed on a thread of their own,
    /// the purge marks already keep them from being served.
    ///
    /// Only what the purge condemned goes: an object stored under the same
    /// hash after the purge (a fresh fill) is left alone, however late the
    /// removal runs.
    ///
    /// The marks already hide these objects; only their memory is left to
    /// free. A large purge frees it on a thread of its own, 256 objects at
    /// a time with a millisecond's pause after each batch, so that it does
    /// not crowd out the lookups serving hits meanwhile (their p99 stays
    /// within 2x of idle: `cargo bench -p outpost-cache --bench purge_hits`).
    fn remove_all(&self, hashes: Vec<[u8; 32]>) {
        const INLINE: usize = 1024;
        const BATCH: usize = 256;
        let remove = |memory: &MemoryTier, purges: &PurgeIndex, batch: &[[u8; 32]]| {
            for hash in batch {
                memory.remove_if(hash, |stored| match stored {
                    Stored::Object(entry) => purges.judge(entry) == Verdict::Gone,
                    Stored::Variants(_) => false,
                });
            }
            // The tier's bookkeeping for these removals is done here, not
            // by the lookups serving hits meanwhile.
            memory.maintain();
        };
        if hashes.len() <= INLINE {
            remove(&self.memory, &self.purges, &hashes);
            return;
        }
        let (memory, purges) = (self.memory.clone(), self.purges.clone());
        std::thread::spawn(move || {
            for batch in hashes.chunks(BATCH) {
                remove(&memory, &purges, batch);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
    }

    /// Purges URLs' keys, every variant of each; `soft` marks them stale
    /// instead. Returns the objects matched.
    pub fn purge_urls(&self, keys: &[CacheKey], soft: bool) -> usize {
        self.purge_urls_with(keys, soft, purge::Write::Synced)
    }

    fn purge_urls_with(&self, keys: &[CacheKey], soft: bool, write: purge::Write) -> usize {
        let primaries: Vec<[u8; 32]> = keys.iter().map(|key| *key.hash()).collect();
        self.purges.mark_urls(&primaries, soft, write);
        let mut matched = 0;
        for key in keys {
            let hashes: Vec<[u8; 32]> = match self.memory.get(key.hash()) {
                None => Vec::new(),
                Some(Stored::Object(_)) => vec![*key.hash()],
                Some(Stored::Variants(marker)) => marker.variants(),
            };
            for hash in hashes {
                let Some(Stored::Object(entry)) = self.memory.get(&hash) else {
                    continue;
                };
                matched += 1;
                if soft {
                    self.store(hash, Arc::new(entry.soft_purged()));
                } else {
                    self.memory.remove(&hash);
                }
            }
            if !soft {
                self.memory.remove(key.hash());
                if let Some(disk) = self.disk.get() {
                    // Variants on disk are kept from use by the URL's mark.
                    disk.delete(key.hash());
                }
            }
        }
        matched
    }

    /// Purges every object of these hosts (normalized, with any non-default port).
    pub fn purge_hosts(&self, hosts: &[String], soft: bool) -> usize {
        self.drop_marked(self.purges.mark_hosts(hosts, soft), soft)
    }

    /// Purges every object that carries one of these tags.
    pub fn purge_tags(&self, tags: &[String], soft: bool) -> usize {
        self.drop_marked(self.purges.mark_tags(tags, soft), soft)
    }

    /// After a host or tag mark, whose marks never expire: a hard purge
    /// frees the objects' memory, a soft one leaves them to the mark.
    /// Returns the objects matched.
    fn drop_marked(&self, hashes: Vec<[u8; 32]>, soft: bool) -> usize {
        let matched = hashes.len();
        if !soft {
            self.remove_all(hashes);
        }
        matched
    }

    /// Purges every object whose host and path start with one of these
    /// prefixes (`example.com/static/`).
    pub fn purge_prefixes(&self, prefixes: &[String], soft: bool) -> usize {
        let hashes = self.purges.mark_prefixes(prefixes, soft);
        let matched = hashes.len();
        if soft {
            // Prefix marks expire; the entries themselves must carry the staleness.
            for hash in hashes {
                if let Some(Stored::Object(entry)) = self.memory.get(&hash) {
                    self.store(hash, Arc::new(entry.soft_purged()));
                }
            }
        } else {
            self.remove_all(hashes);
        }
        matched
    }

    /// Purges everything, in constant time.
    pub fn purge_everything(&self, soft: bool) -> usize {
        let matched = usize::try_from(self.memory.usage().0).unwrap_or(usize::MAX);
        self.purges.mark_everything(soft);
        if !soft {
            self.memory.clear();
        }
        matched
    }

    /// Removes the object stored for `key`, every Vary variant of it
    /// included; returns how many objects were removed.
    pub fn purge(&self, key: &CacheKey) -> usize {
        self.purge_urls(std::slice::from_ref(key), false)
    }

    /// An unsafe request's invalidation of `key` (RFC 9111 §4.4): as a
    /// purge, but written to the journal without waiting for the disk, and
    /// not at all when nothing is stored for the URL, so that requests to
    /// URLs never stored cost neither a write nor a lasting mark.
    pub fn invalidate(&self, key: &CacheKey) -> usize {
        let stored = self.memory.get(key.hash()).is_some()
            || self
                .disk
                .get()
                .is_some_and(|disk| disk.may_contain(key.hash()));
        let write = if stored {
            purge::Write::Written
        } else {
            purge::Write::Skip
        };
        self.purge_urls_with(std::slice::from_ref(key), false, write)
    }

    /// Purge journal writes that failed since the start.
    pub fn journal_failures(&self) -> u64 {
        self.purges.journal_failures()
    }

    /// Objects in the memory tier, as last counted: cheap enough to poll,
    /// where [`Cache::usage`] first runs the tier's pending bookkeeping.
    pub fn objects_estimate(&self) -> u64 {
        self.memory.objects_estimate()
    }

    pub fn usage(&self) -> Usage {
        let (memory_objects, memory_bytes) = self.memory.usage();
        let disk = self.disk.get().map(|disk| {
            let stats = disk.stats();
            let count = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            let (bytes_written, bytes_read) = disk.io_bytes();
            let (bytes, evictions) = disk.occupancy();
            DiskUsage {
                capacity: disk.capacity(),
                objects: disk.objects(),
                bytes,
                evictions,
                hits: count(&stats.hits),
                misses: count(&stats.misses),
                damaged: count(&stats.damaged),
                errors: count(&stats.errors) + disk::store_errors(),
                bytes_written,
                bytes_read,
            }
        });
        Usage {
            memory_objects,
            memory_bytes,
            memory_evictions: self.memory.evictions(),
            memory_hits: self.memory_hits.load(std::sync::atomic::Ordering::Relaxed),
            memory_misses: self
                .memory_misses
                .load(std::sync::atomic::Ordering::Relaxed),
            disk_pending: self.disk_pending(),
            disk_faults: disk.map_or(disk::store_errors(), |d| d.errors),
            disk,
        }
    }
}

impl PendingEntry {
    /// The Vary secondary text of this response's request ("" when it does not vary).
    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// Adds the request fields a rule keys on: they make variants as Vary
    /// does. `request` is the request the response answers.
    pub fn with_key_fields(mut self, fields: &KeyFields, request: &HeaderMap) -> Self {
        if fields.is_empty() {
            return self;
        }
        self.vary.extend(fields.headers.iter().cloned());
        self.vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        self.vary.dedup();
        self.cookies = fields.cookies.clone();
        self.variant = vary::secondary(&self.vary, &self.cookies, request);
        self
    }
}

/// The Vary secondary text `request` would have for a response with
/// `response` headers under a rule keying on `fields`; None for `Vary: *`.
pub fn variant_of(response: &HeaderMap, fields: &KeyFields, request: &HeaderMap) -> Option<String> {
    let mut names = vary::names(response)?;
    names.extend(fields.headers.iter().cloned());
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    if names.is_empty() && fields.cookies.is_empty() {
        return Some(String::new());
    }
    Some(vary::secondary(&names, &fields.cookies, request))
}

/// Leaves `Age` as one number of at most 2^31 seconds (RFC 9111 §1.2.2),
/// the first member of a list (§5.1), so that age arithmetic can never
/// overflow; a value that is not a number is dropped.
fn clamp_age(headers: &mut HeaderMap) {
    match freshness::age_value(headers) {
        Some(age) => {
            headers.insert(http::header::AGE, http::HeaderValue::from(age));
        }
        None => {
            headers.remove(http::header::AGE);
        }
    }
}

/// A response being stored as its body arrives.
pub struct Storing {
    pending: PendingEntry,
    /// The body so far, while it fits the memory tier.
    copy: Option<BytesMut>,
    /// The body's chunks on their way to disk.
    chunks: Option<ChunkWriter>,
    len: u64,
    limit: u64,
    memory_limit: usize,
}

impl Storing {
    /// Adds the next bytes of the body; false once nothing will be stored
    /// (the body grew past the limit, or past memory without a disk tier).
    pub fn push(&mut self, data: &[u8]) -> bool {
        self.len += data.len() as u64;
        if self.len > self.limit {
            self.copy = None;
            self.chunks = None;
            return false;
        }
        if let Some(copy) = &mut self.copy {
            if self.len > self.memory_limit as u64 {
                self.copy = None;
            } else {
                copy.extend_from_slice(data);
            }
        }
        if let Some(chunks) = &mut self.chunks {
            chunks.push(data);
        }
        self.copy.is_some() || self.chunks.is_some()
    }

    /// Once the body has run ahead of the disk, a future to wait on before
    /// reading more of it.
    pub fn backlog(&mut self) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        self.chunks.as_ref()?.tier().backlog()
    }
}

/// A response that may be stored once its body has arrived whole.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    key: CacheKey,
    status: StatusCode,
    headers: StoredHeaders,
    freshness: Freshness,
    directives: Directives,
    stale: StaleUse,
    rules: StoreRules,
    /// The fields the response varies on (empty when it does not).
    vary: Vec<http::HeaderName>,
    /// Cookies the rule adds to the key.
    cookies: Vec<String>,
    seq: u64,
    tags: Vec<String>,
    variant: String,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outpost_config::QueryKey;

    use super::*;

    fn setup() -> (Cache, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        ));
        let cache = Cache::new(1 << 20, PolicyOptions::default(), clock.clone());
        (cache, clock)
    }

    fn get(headers: &[(&str, &str)]) -> request::Parts {
        let mut b = request::Request::get("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ok(headers: &[(&str, &str)]) -> response::Parts {
        let mut b = response::Response::builder();
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn key() -> CacheKey {
        CacheKey::from_url("http://example.com/x", &QueryKey::All).unwrap()
    }

    #[test]
    fn fresh_then_stale_as_the_clock_moves() {
        let (cache, clock) = setup();
        let req = get(&[]);
        let res = ok(&[("cache-control", "max-age=60"), ("etag", "\"v1\"")]);
        let pending = cache
            .prepare(
                &key(),
                &req,
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        cache.insert(pending, Bytes::from_static(b"hello"));
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
        clock.advance(Duration::from_secs(30));
        match cache.lookup(&key(), &req) {
            Lookup::Fresh(entry) => assert_eq!(entry.age(cache.now()), Duration::from_secs(30)),
            other => panic!("expected fresh, got {other:?}"),
        }
        clock.advance(Duration::from_secs(31));
        match cache.lookup(&key(), &req) {
            Lookup::Stale(entry) => assert_eq!(entry.headers.get("etag").unwrap(), "\"v1\""),
            other => panic!("expected stale, got {other:?}"),
        }
    }

    /// RFC 5861 §4: stale-if-error allows a stale entry while its staleness
    /// is within the window; RFC 9111 §5.2.2.2 and §5.2.2.8: never past
    /// must-revalidate or proxy-revalidate.
    #[test]
    fn stale_if_error_holds_for_its_window_only() {
        let (cache, clock) = setup();
        let store = |cc: &str| {
            let pending = cache
                .prepare(
                    &key(),
                    &get(&[]),
                    &ok(&[("cache-control", cc)]),
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .unwrap();
            cache.insert(pending, Bytes::new())
        };
        let entry = store("max-age=10, stale-if-error=30");
        assert!(
            entry.stale_if_error(cache.now()),
            "fresh is usable on error too"
        );
        clock.advance(Duration::from_secs(35));
        assert!(entry.stale_if_error(cache.now()), "25 s stale, within 30");
        clock.advance(Duration::from_secs(10));
        assert!(!entry.stale_if_error(cache.now()), "35 s stale, past 30");
        let strict = store("max-age=10, stale-if-error=30, must-revalidate");
        clock.advance(Duration::from_secs(11));
        assert!(!strict.stale_if_error(cache.now()));
        let plain = store("max-age=10");
        clock.advance(Duration::from_secs(11));
        assert!(!plain.stale_if_error(cache.now()));
    }

    /// Stores a 200 to a plain GET of `key()` with these header fields, now,
    /// under the default rules.
    fn store_now(cache: &Cache, headers: &[(&str, &str)]) -> Result<Arc<Entry>, NotStored> {
        cache
            .prepare(
                &key(),
                &get(&[]),
                &ok(headers),
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .map(|p| cache.insert(p, Bytes::new()))
    }

    /// RFC 9213 §2.1: the first targeted field present replaces
    /// Cache-Control and Expires for this cache.
    #[test]
    fn cdn_cache_control_takes_precedence() {
        let (cache, _) = setup();
        let ttl = |headers: &[(&str, &str)]| {
            store_now(&cache, headers).map(|entry| entry.time_to_live(cache.now()).as_secs())
        };
        assert_eq!(
            ttl(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600")
            ]),
            Ok(600)
        );
        assert!(
            ttl(&[
                ("cache-control", "max-age=600"),
                ("cdn-cache-control", "no-store")
            ])
            .is_err()
        );
        assert_eq!(
            ttl(&[
                ("cache-control", "max-age=5"),
                ("surrogate-control", "max-age=60")
            ]),
            Ok(60)
        );
        assert_eq!(
            ttl(&[
                ("cdn-cache-control", "max-age=10"),
                ("surrogate-control", "max-age=60")
            ]),
            Ok(10),
            "list order decides"
        );
        assert_eq!(
            ttl(&[("cache-control", "max-age=5"), ("cdn-cache-control", " ")]),
            Ok(5),
            "empty value ignored"
        );
    }

    /// RFC 9111 §5.2.2.7: a qualified `private` keeps the fields it names
    /// out of the shared copy and lets the rest be stored, Set-Cookie
    /// included; an unqualified one keeps the response out.
    #[test]
    fn a_qualified_private_stores_the_rest() {
        let (cache, _) = setup();
        let stored = |headers: &[(&str, &str)]| store_now(&cache, headers);
        let entry = stored(&[
            (
                "cache-control",
                "max-age=90, private=\"Set-Cookie, x-user\"",
            ),
            ("set-cookie", "session=1"),
            ("x-user", "ann"),
            ("x-kept", "yes"),
        ])
        .expect("stored");
        assert_eq!(entry.time_to_live(cache.now()).as_secs(), 90);
        assert!(!entry.headers.contains_key("set-cookie"));
        assert!(!entry.headers.contains_key("x-user"));
        assert_eq!(entry.headers.get("x-kept").unwrap(), "yes");
        assert!(stored(&[("cache-control", "max-age=90, private")]).is_err());
        assert!(
            stored(&[
                ("cache-control", "max-age=90, private=\"x-user\""),
                ("set-cookie", "a=1")
            ])
            .is_err(),
            "Set-Cookie not named: the default keeps the response out"
        );
    }

    /// RFC 9213 §2.1: a targeted field is a Structured Field Dictionary. One
    /// that does not parse is ignored, as if absent; a directive whose value
    /// has the wrong type is ignored; lines are joined before parsing.
    #[test]
    fn targeted_fields_are_structured_dictionaries() {
        let (cache, _) = setup();
        let ttl = |headers: &[(&str, &str)]| {
            store_now(&cache, headers).map(|entry| entry.time_to_live(cache.now()).as_secs())
        };
        for broken in [
            "max-age=600, &&&&&",
            "max-age =600",
            "max-age= 600",
            "max-age=600;",
        ] {
            assert!(
                ttl(&[("cache-control", "no-store"), ("cdn-cache-control", broken)]).is_err(),
                "{broken:?} does not parse, so Cache-Control decides"
            );
            assert_eq!(
                ttl(&[
                    ("cache-control", "max-age=7"),
                    ("cdn-cache-control", broken)
                ]),
                Ok(7),
                "{broken:?}"
            );
        }
        // The field parses; its max-age is a String, so it is ignored, and
        // Cache-Control is not consulted.
        assert_eq!(
            ttl(&[
                ("cache-control", "max-age=7"),
                ("cdn-cache-control", "max-age=\"600\"")
            ]),
            Ok(0)
        );
        assert_eq!(
            ttl(&[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "public"),
                ("cdn-cache-control", "max-age=90")
            ]),
            Ok(90),
            "two lines, one dictionary"
        );
        assert_eq!(
            ttl(&[("cdn-cache-control", "max-age=90;a=1, must-revalidate")]),
            Ok(90),
            "parameters are ignored"
        );
        assert!(
            ttl(&[("cdn-cache-control", "max-age=90, private=(\"x-user\")")]).is_ok(),
            "a qualified private keeps the rest storable"
        );
    }

    #[test]
    fn a_304_refreshes_headers_and_keeps_the_body() {
        let (cache, clock) = setup();
        let req = get(&[]);
        let res = ok(&[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("x-version", "1"),
        ]);
        let pending = cache
            .prepare(
                &key(),
                &req,
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        let stored = cache.insert(pending, Bytes::from_static(b"body"));
        clock.advance(Duration::from_secs(20));
        let not_modified = response::Response::builder()
            .status(304)
            .header("etag", "\"v1\"")
            .header("x-version", "2")
            .header("cache-control", "max-age=100")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let refreshed = cache
            .refresh(
                &key(),
                &stored,
                &req,
                &not_modified,
                cache.now(),
                cache.now(),
            )
            .unwrap();
        assert_eq!(refreshed.body, Bytes::from_static(b"body"));
        assert_eq!(refreshed.headers.get("x-version").unwrap(), "2");
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
    }

    #[test]
    fn request_no_cache_forces_revalidation() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60")]);
        let pending = cache
            .prepare(
                &key(),
                &get(&[]),
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        cache.insert(pending, Bytes::new());
        assert!(matches!(
            cache.lookup(&key(), &get(&[("cache-control", "no-cache")])),
            Lookup::Refused(_)
        ));
    }

    /// RFC 9111 §4.1: variants of one URL are stored side by side, and a
    /// purge of the URL removes them all.
    #[test]
    fn variants_live_side_by_side_and_purge_together() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")]);
        for encoding in ["gzip", "br", "identity"] {
            let req = get(&[("accept-encoding", encoding)]);
            let pending = cache
                .prepare(
                    &key(),
                    &req,
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .unwrap();
            cache.insert(pending, Bytes::from(encoding));
        }
        for encoding in ["gzip", "br", "identity"] {
            match cache.lookup(&key(), &get(&[("accept-encoding", encoding)])) {
                Lookup::Fresh(entry) => assert_eq!(entry.body, encoding),
                other => panic!("{encoding}: {other:?}"),
            }
        }
        assert!(matches!(
            cache.lookup(&key(), &get(&[("accept-encoding", "  gzip ")])),
            Lookup::Fresh(_)
        ));
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::VaryMiss));
        assert_eq!(cache.purge(&key()), 3);
        assert!(matches!(
            cache.lookup(&key(), &get(&[("accept-encoding", "gzip")])),
            Lookup::Miss
        ));
    }

    #[test]
    fn vary_star_is_never_stored_and_variants_are_bounded() {
        let (cache, _) = setup();
        let star = ok(&[("cache-control", "max-age=60"), ("vary", "*")]);
        assert!(
            cache
                .prepare(
                    &key(),
                    &get(&[]),
                    &star,
                    cache.now(),
                    cache.now(),
                    StoreRules::default()
                )
                .is_err()
        );
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "x-v")]);
        for i in 0..MAX_VARIANTS + 5 {
            let req = get(&[("x-v", &i.to_string())]);
            let pending = cache
                .prepare(
                    &key(),
                    &req,
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .unwrap();
            cache.insert(pending, Bytes::new());
        }
        assert!(
            matches!(
                cache.lookup(&key(), &get(&[("x-v", "0")])),
                Lookup::VaryMiss
            ),
            "the oldest variant was dropped"
        );
        assert!(matches!(
            cache.lookup(&key(), &get(&[("x-v", "36")])),
            Lookup::Fresh(_)
        ));
        assert_eq!(cache.purge(&key()), MAX_VARIANTS);
    }

    /// RFC 9111 §3: a final status with explicit freshness may be stored,
    /// whatever its code; without it, only heuristically cacheable codes.
    #[test]
    fn which_status_codes_are_stored() {
        let (cache, _) = setup();
        let stored = |status: u16, cc: &str| {
            let mut res = ok(&[("cache-control", cc)]);
            res.status = StatusCode::from_u16(status).unwrap();
            cache
                .prepare(
                    &key(),
                    &get(&[]),
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .is_ok()
        };
        assert!(stored(500, "max-age=60"));
        assert!(stored(302, "max-age=60"));
        // RFC 9111 §3: `public` makes any final status storable (and
        // §4.2.2 lets it have a heuristic lifetime).
        assert!(stored(500, "public"));
        assert!(stored(599, "public"));
        assert!(
            !stored(599, "must-revalidate"),
            "nothing that allows storing"
        );
        assert!(
            !stored(206, "max-age=60"),
            "partial content is not stored whole"
        );
        assert!(
            !stored(418, "max-age=60, must-understand"),
            "must-understand and an unknown code"
        );
        assert!(!stored(200, "no-store"));
        // RFC 9111 §5.2.2.3: must-understand overrides no-store for a code
        // this cache understands, and only then.
        assert!(stored(200, "max-age=60, no-store, must-understand"));
        assert!(stored(302, "max-age=60, no-store, must-understand"));
        assert!(!stored(418, "max-age=60, no-store, must-understand"));
        assert!(!stored(206, "max-age=60, no-store, must-understand"));
    }

    fn store_tagged(cache: &Cache, url: &str, tags: &str) -> PendingEntry {
        let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
        let res = ok(&[("cache-control", "max-age=60"), ("surrogate-key", tags)]);
        let pending = cache
            .prepare(
                &key,
                &get(&[]),
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        cache.insert(pending.clone(), Bytes::new());
        pending
    }

    fn is_fresh(cache: &Cache, url: &str) -> bool {
        let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
        matches!(cache.lookup(&key, &get(&[])), Lookup::Fresh(_))
    }

    fn is_stale(cache: &Cache, url: &str) -> bool {
        let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
        matches!(cache.lookup(&key, &get(&[])), Lookup::Stale(_))
    }

    #[test]
    fn purges_by_tag_host_prefix_and_everything() {
        let (cache, _) = setup();
        store_tagged(&cache, "http://a.test/p/1", "red blue");
        store_tagged(&cache, "http://a.test/p/2", "blue");
        store_tagged(&cache, "http://a.test/q/3", "green");
        store_tagged(&cache, "http://b.test/p/4", "green");
        assert_eq!(cache.purge_tags(&["blue".into()], false), 2);
        assert!(!is_fresh(&cache, "http://a.test/p/1") && !is_fresh(&cache, "http://a.test/p/2"));
        assert!(is_fresh(&cache, "http://a.test/q/3"));
        assert_eq!(cache.purge_prefixes(&["a.test/q/".into()], false), 1);
        assert!(!is_fresh(&cache, "http://a.test/q/3"));
        assert!(is_fresh(&cache, "http://b.test/p/4"));
        assert_eq!(cache.purge_hosts(&["b.test".into()], false), 1);
        assert!(!is_fresh(&cache, "http://b.test/p/4"));
        store_tagged(&cache, "http://c.test/x", "");
        assert_eq!(cache.purge_everything(false), 1);
        assert!(!is_fresh(&cache, "http://c.test/x"));
        store_tagged(&cache, "http://c.test/x", "");
        assert!(
            is_fresh(&cache, "http://c.test/x"),
            "what is stored after a purge stays"
        );
    }

    /// A soft purge leaves the object, stale: the next use revalidates.
    #[test]
    fn soft_purges_mark_stale() {
        let (cache, _) = setup();
        for url in [
            "http://a.test/1",
            "http://a.test/2",
            "http://a.test/3",
            "http://b.test/4",
        ] {
            store_tagged(&cache, url, "t");
        }
        let key = CacheKey::from_url("http://a.test/1", &QueryKey::All).unwrap();
        assert_eq!(cache.purge_urls(&[key], true), 1);
        assert!(is_stale(&cache, "http://a.test/1"));
        assert_eq!(cache.purge_prefixes(&["a.test/2".into()], true), 1);
        assert!(is_stale(&cache, "http://a.test/2"));
        assert!(is_fresh(&cache, "http://a.test/3"));
        assert_eq!(cache.purge_tags(&["t".into()], true), 4);
        assert!(is_stale(&cache, "http://a.test/3") && is_stale(&cache, "http://b.test/4"));
    }

    /// A purge that arrives while a response is on its way wins: the fill
    /// that started before it is not stored.
    #[test]
    fn a_purge_wins_over_a_fill_in_flight() {
        let (cache, _) = setup();
        let key = CacheKey::from_url("http://a.test/race", &QueryKey::All).unwrap();
        let res = ok(&[("cache-control", "max-age=60"), ("surrogate-key", "t")]);
        for purge in 0..3 {
            let pending = cache
                .prepare(
                    &key,
                    &get(&[]),
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .unwrap();
            match purge {
                0 => drop(cache.purge(&key)),
                1 => drop(cache.purge_tags(&["t".into()], false)),
                _ => drop(cache.purge_everything(false)),
            }
            cache.insert(pending, Bytes::new());
            assert!(
                matches!(cache.lookup(&key, &get(&[])), Lookup::Miss),
                "purge {purge}"
            );
        }
    }

    #[test]
    fn vary_mismatch_is_reported() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "accept-language")]);
        let req = get(&[("accept-language", "en")]);
        let pending = cache
            .prepare(
                &key(),
                &req,
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        cache.insert(pending, Bytes::new());
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
        assert!(matches!(
            cache.lookup(&key(), &get(&[("accept-language", "fr")])),
            Lookup::VaryMiss
        ));
    }

    #[test]
    fn purge_removes_and_memory_stays_within_capacity() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60")]);
        for i in 0..100 {
            let k = CacheKey::from_url(&format!("http://example.com/{i}"), &QueryKey::All).unwrap();
            let pending = cache
                .prepare(
                    &k,
                    &get(&[]),
                    &res,
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .unwrap();
            cache.insert(pending, Bytes::from(vec![0u8; 64 * 1024]));
        }
        let usage = cache.usage();
        assert!(usage.memory_bytes <= 1 << 20, "{usage:?}");
        assert!(usage.memory_objects < 100);
        let pending = cache
            .prepare(
                &key(),
                &get(&[]),
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        cache.insert(pending, Bytes::new());
        assert_eq!(cache.purge(&key()), 1);
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Miss));
    }

    /// RFC 9111 §1.2.2: an Age past 2^31 is taken as 2^31, never an overflow.
    #[test]
    fn a_huge_age_is_capped_not_a_panic() {
        let (cache, clock) = setup();
        let res = ok(&[
            ("cache-control", "max-age=60"),
            ("age", "18446744073709551615"),
        ]);
        let pending = cache
            .prepare(
                &key(),
                &get(&[]),
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        let entry = cache.insert(pending, Bytes::new());
        assert_eq!(entry.headers.get("age").unwrap(), "2147483648");
        clock.advance(Duration::from_secs(1));
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Stale(_)));
        assert!(entry.age(cache.now()) >= Duration::from_secs(1 << 31));
    }

    /// RFC 9111 §3.5: a rule's TTL does not make an authenticated response shareable.
    #[test]
    fn a_rule_ttl_never_shares_an_authenticated_response() {
        let (cache, _) = setup();
        let rules = StoreRules {
            ttl: Some(Duration::from_secs(300)),
            ..StoreRules::default()
        };
        let auth = get(&[("authorization", "Bearer alice")]);
        assert!(
            cache
                .prepare(&key(), &auth, &ok(&[]), cache.now(), cache.now(), rules)
                .is_err()
        );
        let public = ok(&[("cache-control", "public")]);
        assert!(
            cache
                .prepare(&key(), &auth, &public, cache.now(), cache.now(), rules)
                .is_ok()
        );
    }

    #[test]
    fn an_authenticated_request_misses_an_anonymous_entry() {
        let (cache, _) = setup();
        let pending = cache
            .prepare(
                &key(),
                &get(&[]),
                &ok(&[("cache-control", "max-age=60")]),
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        cache.insert(pending, Bytes::new());
        assert!(matches!(
            cache.lookup(&key(), &get(&[("authorization", "Bearer x")])),
            Lookup::Miss
        ));
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Fresh(_)));
    }

    /// RFC 9111 §4.3.4: a 304 for another entity tag updates nothing, and a
    /// 304's Set-Cookie is never merged into a shared entry.
    #[test]
    fn a_304_updates_only_the_representation_it_names_and_never_its_cookies() {
        let (cache, _) = setup();
        let req = get(&[]);
        let res = ok(&[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        let pending = cache
            .prepare(
                &key(),
                &req,
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        let stored = cache.insert(pending, Bytes::from_static(b"v1"));
        let other = response::Response::builder()
            .status(304)
            .header("etag", "\"v2\"")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(
            cache
                .refresh(&key(), &stored, &req, &other, cache.now(), cache.now())
                .is_none()
        );
        let same = response::Response::builder()
            .status(304)
            .header("etag", "W/\"v1\"")
            .header("set-cookie", "session=alice")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let refreshed = cache
            .refresh(&key(), &stored, &req, &same, cache.now(), cache.now())
            .unwrap();
        assert!(!refreshed.headers.contains_key("set-cookie"));
    }

    #[test]
    fn the_stored_request_keeps_no_credentials() {
        let (cache, _) = setup();
        let req = get(&[
            ("cookie", "session=secret"),
            ("accept-language", "en"),
            ("authorization", "Bearer t"),
        ]);
        let res = ok(&[
            ("cache-control", "public, max-age=60"),
            ("vary", "Accept-Language"),
        ]);
        let pending = cache
            .prepare(
                &key(),
                &req,
                &res,
                cache.now(),
                cache.now(),
                StoreRules::default(),
            )
            .unwrap();
        let entry = cache.insert(pending, Bytes::new());
        let debug = format!("{entry:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("Bearer t"),
            "{debug}"
        );
        assert!(matches!(
            cache.lookup(
                &key(),
                &get(&[("accept-language", "en"), ("authorization", "Bearer u")])
            ),
            Lookup::Fresh(_)
        ));
    }

    /// A large hard purge removes its objects on a thread of its own; an
    /// object stored again under one of their keys meanwhile (a fill that
    /// began after the purge) is not among them.
    #[test]
    fn a_late_removal_spares_an_object_stored_after_the_purge() {
        let cache = Cache::new(64 << 20, PolicyOptions::default(), Arc::new(SystemClock));
        let urls: Vec<String> = (0..2_000).map(|i| format!("http://a.test/{i}")).collect();
        for url in &urls {
            store_tagged(&cache, url, "t");
        }
        assert_eq!(cache.purge_tags(&["t".into()], false), 2_000);
        store_tagged(&cache, &urls[1_500], "t");
        for _ in 0..500 {
            if cache.usage().memory_objects == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(cache.usage().memory_objects, 1);
        assert!(is_fresh(&cache, &urls[1_500]));
        assert!(!is_fresh(&cache, &urls[1_499]));
    }

    /// Objects pushed out for room are counted; purged ones are not.
    #[test]
    fn evictions_for_room_are_counted() {
        let cache = Cache::new(64 * 1024, PolicyOptions::default(), Arc::new(SystemClock));
        for i in 0..200 {
            store_tagged(&cache, &format!("http://a.test/{i}"), "t");
        }
        let usage = cache.usage();
        assert!(usage.memory_evictions > 0, "{usage:?}");
        assert_eq!(
            usage.memory_evictions + usage.memory_objects,
            200,
            "every object is either held or evicted"
        );
        let before = usage.memory_evictions;
        cache.purge_tags(&["t".into()], false);
        assert_eq!(cache.usage().memory_evictions, before);
    }
}
