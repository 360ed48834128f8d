//! Helpers the unit tests share: a cache on a manual clock, requests and
//! responses, and one-line stores and lookups.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{request, response};
use outpost_config::QueryKey;

use crate::{
    Cache, CacheKey, Entry, Lookup, ManualClock, NotStored, PendingEntry, PolicyOptions, StoreRules,
};

pub(crate) fn setup() -> (Cache, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let cache = Cache::new(1 << 20, PolicyOptions::default(), clock.clone());
    (cache, clock)
}

pub(crate) fn get(headers: &[(&str, &str)]) -> request::Parts {
    let mut b = request::Request::get("/x");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

pub(crate) fn ok(headers: &[(&str, &str)]) -> response::Parts {
    let mut b = response::Response::builder();
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

pub(crate) fn key() -> CacheKey {
    CacheKey::from_url("http://example.com/x", &QueryKey::All).unwrap()
}

/// Stores a 200 to a plain GET of `key()` with these header fields, now,
/// under the default rules.
pub(crate) fn store_now(cache: &Cache, headers: &[(&str, &str)]) -> Result<Arc<Entry>, NotStored> {
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

pub(crate) fn store_tagged(cache: &Cache, url: &str, tags: &str) -> PendingEntry {
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

pub(crate) fn is_fresh(cache: &Cache, url: &str) -> bool {
    let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
    matches!(cache.lookup(&key, &get(&[])), Lookup::Fresh(_))
}

pub(crate) fn is_stale(cache: &Cache, url: &str) -> bool {
    let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
    matches!(cache.lookup(&key, &get(&[])), Lookup::Stale(_))
}
