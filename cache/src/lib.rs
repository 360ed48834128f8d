//! Outpost's cache: keys, freshness policy and the tiered store.
//!
//! The cache knows nothing of sockets. The edge asks it for a [`Lookup`],
//! fetches from the origin when told to, and hands back what may be stored.

mod clock;
mod coalesce;
mod entry;
mod freshness;
mod key;
mod memory;
mod policy;
mod purge;
mod vary;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, request, response};

pub use clock::{Clock, ManualClock, SystemClock};
pub use coalesce::{Coalescer, Fill, FillFailed, FillWriter, Leader, Role, SharedHead};
pub use entry::Entry;
use freshness::Unusable;
pub use freshness::{Directives, Freshness, Heuristic};
pub use key::{CacheKey, KeyError, PathError, normalize_host, normalize_path};
pub use memory::{MemoryTier, Stored};
pub use policy::{NotStored, PolicyOptions, StaleUse, StoreRules, storage_policy};
pub use purge::{PurgeIndex, Verdict};
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

/// Sizes of the cache, for `/stats` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
    /// Objects evicted from the memory tier for room, since the start.
    pub memory_evictions: u64,
}

pub struct Cache {
    memory: MemoryTier,
    purges: Arc<PurgeIndex>,
    clock: Arc<dyn Clock>,
    /// Swapped whole by a config reload.
    options: arc_swap::ArcSwap<PolicyOptions>,
}

impl Cache {
    pub fn new(memory_bytes: u64, options: PolicyOptions, clock: Arc<dyn Clock>) -> Self {
        let purges = Arc::new(PurgeIndex::default());
        Self {
            memory: MemoryTier::new(memory_bytes, purges.clone()),
            purges,
            clock,
            options: arc_swap::ArcSwap::from_pointee(options),
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

    /// Looks `key` up for the request `req`.
    pub fn lookup(&self, key: &CacheKey, req: &request::Parts) -> Lookup {
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
        if entry.key != key.text() {
            // A blake3 collision: never serve another URL's object.
            return Lookup::Miss;
        }
        match self.purges.judge(&entry) {
            Verdict::Gone => {
                self.memory.remove(&hash);
                return Lookup::Miss;
            }
            Verdict::Stale => return Lookup::Stale(entry),
            Verdict::Live => {}
        }
        // RFC 9111 §3.5: an authenticated request is answered from a shared
        // entry only when the response allowed it.
        if req.headers.contains_key(http::header::AUTHORIZATION)
            && !policy::allows_authorized(&entry.headers)
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
        for field in directives.fields("private").unwrap_or_default() {
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
            headers: detached(&res.headers),
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
        tags
    }

    /// Stores a complete entry: under the URL's key, or as one variant of it.
    pub fn insert(&self, pending: PendingEntry, body: Bytes) -> Arc<Entry> {
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
            key: key.text().to_owned(),
            status,
            headers,
            body,
            freshness,
            directives,
            stale,
            rules,
            variant,
            marker: 0,
            seq,
            tags,
            primary: *key.hash(),
        };
        // A purge that arrived while this response was on its way wins.
        if self.purges.judge(&entry) == Verdict::Gone {
            return Arc::new(entry);
        }
        if vary.is_empty() && cookies.is_empty() {
            let entry = Arc::new(entry);
            self.store(*key.hash(), entry.clone());
            return entry;
        }
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
                marker
            }
        };
        entry.marker = marker.id;
        let hash = vary::secondary_hash(key.text(), &entry.variant);
        let entry = Arc::new(entry);
        self.store(hash, entry.clone());
        for dropped in marker.remember(hash) {
            self.memory.remove(&dropped);
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
        let etag = |h: &HeaderMap| {
            h.get(http::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(|t| t.trim().trim_start_matches("W/").to_owned())
        };
        if let Some(new) = etag(&not_modified.headers)
            && etag(&stored.headers).as_deref() != Some(new.as_str())
        {
            return None;
        }
        let mut headers = stored.headers.clone();
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
            stored.rules,
        );
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
            headers: detached(&headers),
            body: stored.body.clone(),
            freshness,
            directives: Directives::from_headers(&built.view),
            stale: built.stale,
            rules: stored.rules,
            variant: stored.variant.clone(),
            marker: stored.marker,
            seq: self.purges.next_seq(),
            tags: stored.tags.clone(),
            primary: stored.primary,
        });
        let hash = if entry.marker == 0 {
            *key.hash()
        } else {
            vary::secondary_hash(key.text(), &entry.variant)
        };
        self.store(hash, entry.clone());
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
        let mut matched = 0;
        for key in keys {
            self.purges.mark_url(*key.hash(), soft);
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

    /// Objects in the memory tier, as last counted: cheap enough to poll,
    /// where [`Cache::usage`] first runs the tier's pending bookkeeping.
    pub fn objects_estimate(&self) -> u64 {
        self.memory.objects_estimate()
    }

    pub fn usage(&self) -> Usage {
        let (memory_objects, memory_bytes) = self.memory.usage();
        Usage {
            memory_objects,
            memory_bytes,
            memory_evictions: self.memory.evictions(),
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

/// A copy of `headers` that owns its values. Values parsed off the wire
/// are slices of the connection's read buffer; kept in an entry they would
/// hold that whole buffer (kilobytes) in memory for the entry's life.
fn detached(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut owned =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        copy.append(name.clone(), owned);
    }
    copy
}

/// Caps `Age` at 2^31 seconds (RFC 9111 §1.2.2) so that age arithmetic can
/// never overflow; a value that is not a number is dropped.
fn clamp_age(headers: &mut HeaderMap) {
    const MAX_AGE: u64 = 1 << 31;
    let Some(value) = headers.get(http::header::AGE) else {
        return;
    };
    let text = value.to_str().unwrap_or_default().trim();
    if !text.bytes().all(|b| b.is_ascii_digit()) || text.is_empty() {
        headers.remove(http::header::AGE);
        return;
    }
    let age = text.parse::<u64>().unwrap_or(MAX_AGE).min(MAX_AGE);
    headers.insert(http::header::AGE, http::HeaderValue::from(age));
}

/// A response that may be stored once its body has arrived whole.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    key: CacheKey,
    status: StatusCode,
    headers: HeaderMap,
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
            Lookup::Stale(entry) => assert_eq!(entry.headers["etag"], "\"v1\""),
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

    /// RFC 9213 §2.1: the first targeted field present replaces
    /// Cache-Control and Expires for this cache.
    #[test]
    fn cdn_cache_control_takes_precedence() {
        let (cache, _) = setup();
        let ttl = |headers: &[(&str, &str)]| {
            cache
                .prepare(
                    &key(),
                    &get(&[]),
                    &ok(headers),
                    cache.now(),
                    cache.now(),
                    StoreRules::default(),
                )
                .map(|p| {
                    let entry = cache.insert(p, Bytes::new());
                    entry.time_to_live(cache.now()).as_secs()
                })
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
        assert_eq!(refreshed.headers["x-version"], "2");
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
        assert!(!stored(500, "public"), "no explicit freshness");
        assert!(
            !stored(206, "max-age=60"),
            "partial content is not stored whole"
        );
        assert!(
            !stored(418, "max-age=60, must-understand"),
            "must-understand and an unknown code"
        );
        assert!(!stored(200, "no-store"));
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
        assert_eq!(entry.headers["age"], "2147483648");
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
