//! Lookups: memory first, then disk (the Vary marker, then the variant);
//! what is found is judged against the purge marks and the request, and
//! an object found on disk is promoted to memory when its body fits there.

use std::sync::Arc;

use bytes::BytesMut;
use http::request;

use crate::Cache;
use crate::disk::{DiskTier, Found};
use crate::entry::Entry;
use crate::freshness::{self, Unusable};
use crate::key::CacheKey;
use crate::memory::Stored;
use crate::policy;
use crate::purge::Verdict;
use crate::vary;

/// Why the cache is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// For a request: what is found on disk moves up to memory.
    Serving,
    /// For `/explain`: nothing moves.
    Inspecting,
}

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

impl Cache {
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
                    Some(Stored::Object(entry)) if entry.is_variant(marker.id, &secondary) => entry,
                    _ => return Lookup::VaryMiss,
                }
            }
        };
        if entry.key() != key.text() {
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
                &entry.headers().get_all("cache-control").collect::<Vec<_>>(),
            )
        {
            return Lookup::Miss;
        }
        match freshness::usable(
            entry.freshness(),
            entry.directives(),
            entry.stale().never,
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
        if self.disk.get().is_none() || !matches!(found, Lookup::Miss | Lookup::VaryMiss) {
            return found;
        }
        // Boxed: a memory hit's future (the request's, an HTTP/2
        // stream's whole task) does not carry the disk read's room.
        Box::pin(self.lookup_below(found, key, req, Reading::Serving)).await
    }

    /// As [`Cache::lookup_tiered`], for `/explain`, which asks what a
    /// request would get: not counted in the memory tier's hits and
    /// misses, and what is found on disk stays there.
    pub async fn lookup_uncounted(&self, key: &CacheKey, req: &request::Parts) -> Lookup {
        let found = self.lookup_memory(key, req);
        self.lookup_below(found, key, req, Reading::Inspecting)
            .await
    }

    /// What memory `found` for `key`, or else what the disk tier holds.
    async fn lookup_below(
        &self,
        found: Lookup,
        key: &CacheKey,
        req: &request::Parts,
        reading: Reading,
    ) -> Lookup {
        match (self.disk.get(), &found) {
            (Some(disk), Lookup::Miss | Lookup::VaryMiss) => {
                match self.lookup_disk(disk, key, req, reading).await {
                    Lookup::Miss => found,
                    on_disk => on_disk,
                }
            }
            _ => found,
        }
    }

    async fn lookup_disk(
        &self,
        disk: &DiskTier,
        key: &CacheKey,
        req: &request::Parts,
        reading: Reading,
    ) -> Lookup {
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
                    let marker = Arc::new(stored.into_vary_marker());
                    if reading == Reading::Inspecting {
                        (Some(marker), None)
                    } else {
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
                    Ok(Some(Found::Object(entry))) if entry.is_variant(marker.id, &secondary) => {
                        if reading == Reading::Serving {
                            for dropped in marker.remember(hash) {
                                self.memory.remove(&dropped);
                            }
                        }
                        (hash, entry)
                    }
                    _ => return Lookup::VaryMiss,
                }
            }
            (None, None) => return Lookup::Miss,
        };
        if entry.key() != key.text() {
            return Lookup::Miss;
        }
        let verdict = self.purges.judge(&entry);
        if verdict == Verdict::Gone || self.purges.past_retention(&entry) {
            disk.delete(&hash);
            return Lookup::Miss;
        }
        let entry = match reading {
            // Read as it is, and left on disk alone.
            Reading::Inspecting => Arc::new(*entry),
            Reading::Serving => {
                let Some(entry) = self.promote(disk, *entry).await else {
                    disk.delete(&hash);
                    return Lookup::Miss;
                };
                let entry = Arc::new(entry);
                // Unless a fill stored a newer response under the hash meanwhile.
                if entry
                    .resident_body()
                    .is_some_and(|body| body.len() <= self.memory_object_max())
                    && self.memory.insert_unless_newer(hash, entry.clone())
                {
                    self.purges.add(hash, &entry);
                }
                entry
            }
        };
        match verdict {
            Verdict::Stale => Lookup::Stale(entry),
            _ => self.assess(entry, req),
        }
    }

    /// An entry read from disk with its body read in whole when it is small
    /// enough for memory; None when a chunk is damaged or gone.
    async fn promote(&self, disk: &DiskTier, entry: Entry) -> Option<Entry> {
        let Some(chunks) = entry.chunks().copied() else {
            return Some(entry);
        };
        if !disk.has_chunks(&chunks) {
            return None;
        }
        if chunks.len() > self.memory_object_max() as u64 {
            return Some(entry);
        }
        let mut body = BytesMut::with_capacity(usize::try_from(chunks.len()).ok()?);
        for index in 0..chunks.count() {
            body.extend_from_slice(&disk.chunk(&chunks, index).await.ok()?);
        }
        Some(entry.with_body_in_memory(body.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::testing::*;

    #[test]
    fn fresh_then_stale_as_the_clock_moves() {
        let (cache, clock) = setup();
        let req = get(&[]);
        let res = ok(&[("cache-control", "max-age=60"), ("etag", "\"v1\"")]);
        let storing = admitted(&cache, &key(), &req, &res).unwrap();
        cache.insert(storing, Bytes::from_static(b"hello"));
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
        clock.advance(Duration::from_secs(30));
        match cache.lookup(&key(), &req) {
            Lookup::Fresh(entry) => assert_eq!(entry.age(cache.now()), Duration::from_secs(30)),
            other => panic!("expected fresh, got {other:?}"),
        }
        clock.advance(Duration::from_secs(31));
        match cache.lookup(&key(), &req) {
            Lookup::Stale(entry) => assert_eq!(entry.headers().get("etag").unwrap(), "\"v1\""),
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
            let storing =
                admitted(&cache, &key(), &get(&[]), &ok(&[("cache-control", cc)])).unwrap();
            cache.insert(storing, Bytes::new())
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

    #[test]
    fn request_no_cache_forces_revalidation() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60")]);
        let storing = admitted(&cache, &key(), &get(&[]), &res).unwrap();
        cache.insert(storing, Bytes::new());
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
            let storing = admitted(&cache, &key(), &req, &res).unwrap();
            cache.insert(storing, Bytes::from(encoding));
        }
        for encoding in ["gzip", "br", "identity"] {
            match cache.lookup(&key(), &get(&[("accept-encoding", encoding)])) {
                Lookup::Fresh(entry) => {
                    assert_eq!(entry.resident_body(), Some(&Bytes::from(encoding)))
                }
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
    fn vary_mismatch_is_reported() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "accept-language")]);
        let req = get(&[("accept-language", "en")]);
        let storing = admitted(&cache, &key(), &req, &res).unwrap();
        cache.insert(storing, Bytes::new());
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
        assert!(matches!(
            cache.lookup(&key(), &get(&[("accept-language", "fr")])),
            Lookup::VaryMiss
        ));
    }

    #[test]
    fn an_authenticated_request_misses_an_anonymous_entry() {
        let (cache, _) = setup();
        let storing = admitted(
            &cache,
            &key(),
            &get(&[]),
            &ok(&[("cache-control", "max-age=60")]),
        )
        .unwrap();
        cache.insert(storing, Bytes::new());
        assert!(matches!(
            cache.lookup(&key(), &get(&[("authorization", "Bearer x")])),
            Lookup::Miss
        ));
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Fresh(_)));
    }
}
