//! Outpost's cache: keys, freshness policy and the tiered store.
//!
//! The cache knows nothing of sockets. The edge asks it for a [`Lookup`],
//! fetches from the origin when told to, and hands back what may be stored.

mod clock;
mod entry;
mod key;
mod memory;
mod policy;

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, request, response};
use http_cache_semantics::BeforeRequest;

pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::Entry;
pub use key::{CacheKey, KeyError, normalize_host};
pub use memory::MemoryTier;
pub use policy::{NotStored, PolicyOptions, StoreRules, storage_policy};

/// What the cache holds for a request.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh entry that answers the request as is.
    Fresh(Arc<Entry>),
    /// A stored entry that must be validated first; `revalidation` holds the
    /// request headers to send (with `If-None-Match` / `If-Modified-Since`).
    Stale {
        entry: Arc<Entry>,
        revalidation: HeaderMap,
    },
    /// An entry exists for the URL but its Vary fields differ.
    VaryMiss,
    Miss,
}

/// Sizes of the cache, for `/stats` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub memory_objects: u64,
    pub memory_bytes: u64,
}

pub struct Cache {
    memory: MemoryTier,
    clock: Arc<dyn Clock>,
    options: PolicyOptions,
}

impl Cache {
    pub fn new(memory_bytes: u64, options: PolicyOptions, clock: Arc<dyn Clock>) -> Self {
        Self {
            memory: MemoryTier::new(memory_bytes),
            clock,
            options,
        }
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn options(&self) -> PolicyOptions {
        self.options
    }

    /// Looks `key` up for the request `req`.
    pub fn lookup(&self, key: &CacheKey, req: &request::Parts) -> Lookup {
        let Some(entry) = self.memory.get(key.hash()) else {
            return Lookup::Miss;
        };
        if entry.key != key.text() {
            // A blake3 collision: never serve another URL's object.
            return Lookup::Miss;
        }
        match entry
            .policy
            .before_request(&policy::request_view(req), self.now())
        {
            BeforeRequest::Fresh(_) => Lookup::Fresh(entry),
            BeforeRequest::Stale { matches: false, .. } => Lookup::VaryMiss,
            BeforeRequest::Stale {
                request,
                matches: true,
            } => Lookup::Stale {
                entry,
                revalidation: request.headers,
            },
        }
    }

    /// Builds an entry for a complete response, or says why it must not be stored.
    pub fn prepare(
        &self,
        key: &CacheKey,
        req: &request::Parts,
        res: &response::Parts,
        response_time: SystemTime,
        rules: StoreRules,
    ) -> Result<PendingEntry, NotStored> {
        let policy = storage_policy(req, res, response_time, self.options, rules)?;
        Ok(PendingEntry {
            key: key.clone(),
            status: res.status,
            headers: res.headers.clone(),
            policy,
            rules,
        })
    }

    /// Stores a complete entry.
    pub fn insert(&self, pending: PendingEntry, body: Bytes) -> Arc<Entry> {
        let PendingEntry {
            key,
            status,
            headers,
            policy,
            rules,
        } = pending;
        let entry = Arc::new(Entry {
            key: key.text().to_owned(),
            status,
            headers,
            body,
            policy,
            rules,
        });
        self.memory.insert(*key.hash(), entry.clone());
        entry
    }

    /// Applies a `304 Not Modified` to a stored entry (RFC 9111 §4.3.4):
    /// the 304's header fields replace the stored ones, the body stays, and
    /// the freshness clock restarts. Returns the updated entry.
    pub fn refresh(
        &self,
        key: &CacheKey,
        stored: &Entry,
        req: &request::Parts,
        not_modified: &response::Parts,
        response_time: SystemTime,
    ) -> Arc<Entry> {
        let mut headers = stored.headers.clone();
        for name in not_modified.headers.keys() {
            if matches!(
                name.as_str(),
                "content-length" | "content-encoding" | "transfer-encoding" | "content-range"
            ) {
                continue;
            }
            headers.remove(name);
            for value in not_modified.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let policy = policy::build(
            req,
            stored.status,
            &headers,
            response_time,
            self.options,
            stored.rules,
        );
        let entry = Arc::new(Entry {
            key: stored.key.clone(),
            status: stored.status,
            headers,
            body: stored.body.clone(),
            policy,
            rules: stored.rules,
        });
        self.memory.insert(*key.hash(), entry.clone());
        entry
    }

    /// Removes every stored variant of `key`; true when something was removed.
    pub fn purge(&self, key: &CacheKey) -> bool {
        self.memory.remove(key.hash())
    }

    pub fn usage(&self) -> Usage {
        let (memory_objects, memory_bytes) = self.memory.usage();
        Usage {
            memory_objects,
            memory_bytes,
        }
    }
}

/// A response that may be stored once its body has arrived whole.
#[derive(Debug, Clone)]
pub struct PendingEntry {
    key: CacheKey,
    status: StatusCode,
    headers: HeaderMap,
    policy: http_cache_semantics::CachePolicy,
    rules: StoreRules,
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
        let cache = Cache::new(
            1 << 20,
            PolicyOptions {
                heuristic_fraction: 0.1,
            },
            clock.clone(),
        );
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
        CacheKey::from_url("http://example.com/x", QueryKey::Keep).unwrap()
    }

    #[test]
    fn fresh_then_stale_as_the_clock_moves() {
        let (cache, clock) = setup();
        let req = get(&[]);
        let res = ok(&[("cache-control", "max-age=60"), ("etag", "\"v1\"")]);
        let pending = cache
            .prepare(&key(), &req, &res, cache.now(), StoreRules::default())
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
            Lookup::Stale { revalidation, .. } => {
                assert_eq!(revalidation["if-none-match"], "\"v1\"")
            }
            other => panic!("expected stale, got {other:?}"),
        }
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
            .prepare(&key(), &req, &res, cache.now(), StoreRules::default())
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
        let refreshed = cache.refresh(&key(), &stored, &req, &not_modified, cache.now());
        assert_eq!(refreshed.body, Bytes::from_static(b"body"));
        assert_eq!(refreshed.headers["x-version"], "2");
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
    }

    #[test]
    fn request_no_cache_forces_revalidation() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60")]);
        let pending = cache
            .prepare(&key(), &get(&[]), &res, cache.now(), StoreRules::default())
            .unwrap();
        cache.insert(pending, Bytes::new());
        assert!(matches!(
            cache.lookup(&key(), &get(&[("cache-control", "no-cache")])),
            Lookup::Stale { .. }
        ));
    }

    #[test]
    fn vary_mismatch_is_reported() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "accept-language")]);
        let req = get(&[("accept-language", "en")]);
        let pending = cache
            .prepare(&key(), &req, &res, cache.now(), StoreRules::default())
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
            let k = CacheKey::from_url(&format!("http://example.com/{i}"), QueryKey::Keep).unwrap();
            let pending = cache
                .prepare(&k, &get(&[]), &res, cache.now(), StoreRules::default())
                .unwrap();
            cache.insert(pending, Bytes::from(vec![0u8; 64 * 1024]));
        }
        let usage = cache.usage();
        assert!(usage.memory_bytes <= 1 << 20, "{usage:?}");
        assert!(usage.memory_objects < 100);
        let pending = cache
            .prepare(&key(), &get(&[]), &res, cache.now(), StoreRules::default())
            .unwrap();
        cache.insert(pending, Bytes::new());
        assert!(cache.purge(&key()));
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Miss));
    }
}
