//! What the cache benchmarks share: storing a whole response, as the
//! proxy would after reading it from an origin.

use bytes::Bytes;
use outpost_cache::{Cache, CacheKey, Fetched, KeyFields, StoreRules};

/// Stores `body` under `key` as the answer to a plain GET, with the
/// response header fields `headers`.
pub fn store(cache: &Cache, key: &CacheKey, headers: &[(&str, &str)], body: Bytes) {
    let req = http::Request::get("/")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    let mut res = http::Response::builder();
    for (name, value) in headers {
        res = res.header(*name, *value);
    }
    let res = res.body(()).expect("response").into_parts().0;
    cache
        .store_whole(
            &Fetched::at(key, &req, &res, cache.now()),
            StoreRules::default(),
            &KeyFields::default(),
            body,
        )
        .expect("storable");
}
