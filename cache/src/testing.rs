//! Helpers the unit tests share: a cache on a manual clock, requests and
//! responses, and one-line stores and lookups.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{request, response};
use outpost_config::QueryKey;

use crate::{
    Cache, CacheKey, Entry, Fetched, KeyFields, Lookup, ManualClock, NotStored, PolicyOptions,
    StoreRules, Storing,
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

/// `res` answering `req` for `key`, sent and received now.
pub(crate) fn fetched<'a>(
    cache: &Cache,
    key: &'a CacheKey,
    req: &'a request::Parts,
    res: &'a response::Parts,
) -> Fetched<'a> {
    Fetched::at(key, req, res, cache.now())
}

/// [`Cache::admit`] of `res` answering `req`, now, under the default
/// rules, with no key fields and no size limit.
pub(crate) fn admitted(
    cache: &Cache,
    key: &CacheKey,
    req: &request::Parts,
    res: &response::Parts,
) -> Result<Storing, NotStored> {
    cache.admit(
        &fetched(cache, key, req, res),
        StoreRules::default(),
        &KeyFields::default(),
        None,
        u64::MAX,
    )
}

/// Stores a 200 to a plain GET of `key()` with these header fields, now,
/// under the default rules.
pub(crate) fn store_now(cache: &Cache, headers: &[(&str, &str)]) -> Result<Arc<Entry>, NotStored> {
    admitted(cache, &key(), &get(&[]), &ok(headers)).map(|s| cache.insert(s, Bytes::new()))
}

pub(crate) fn store_tagged(cache: &Cache, url: &str, tags: &str) -> Arc<Entry> {
    let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
    let res = ok(&[("cache-control", "max-age=60"), ("surrogate-key", tags)]);
    let storing = admitted(cache, &key, &get(&[]), &res).unwrap();
    cache.insert(storing, Bytes::new())
}

pub(crate) fn is_fresh(cache: &Cache, url: &str) -> bool {
    let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
    matches!(cache.lookup(&key, &get(&[])), Lookup::Fresh(_))
}

pub(crate) fn is_stale(cache: &Cache, url: &str) -> bool {
    let key = CacheKey::from_url(url, &QueryKey::All).unwrap();
    matches!(cache.lookup(&key, &get(&[])), Lookup::Stale(_))
}
