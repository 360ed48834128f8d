//! The body of `POST /purge`: JSON read into a purge request, the
//! prefixes, hosts and URLs in it normalized, and what a token scoped to
//! hosts may purge.
//!
//! The input is the request body. Checked:
//! - no input panics: reading, checking the scope, applying it to a cache;
//! - a request read and written again reads back the same (it travels
//!   that way to the rest of a fleet);
//! - prefix normalization is idempotent;
//! - the scheme variants of a URL are the same pair from either variant;
//! - scope: when a token scoped to `a.test` and `*.b.test` may make the
//!   purge, every key, prefix and host it purges is on one of those hosts.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use outpost_cache::{Cache, CacheKey, PolicyOptions, SystemClock};
use outpost_config::QueryKey;
use outpost_purge_api::fuzzing::{normalize_prefix, scheme_variants, scope_allows};
use outpost_purge_api::{KeyForUrl, PurgeRequest, Purger, UrlError};

fuzz_target!(|data: &[u8]| {
    let Ok(purge) = serde_json::from_slice::<PurgeRequest>(data) else {
        return;
    };
    let written = serde_json::to_vec(&purge).expect("a purge request is written");
    let again: PurgeRequest = serde_json::from_slice(&written).expect("a written purge reads back");
    assert_eq!(again, purge);

    let prefixes = purge.prefixes.iter().flatten();
    let hosts = purge.hosts.iter().flatten();
    for text in prefixes.chain(hosts) {
        if let Ok(prefix) = normalize_prefix(text) {
            assert_eq!(
                normalize_prefix(&prefix).ok().as_ref(),
                Some(&prefix),
                "{text:?} is not normalized in one pass"
            );
        }
    }
    for url in purge.urls.iter().flatten() {
        let variants = scheme_variants(url);
        assert_eq!(variants.first(), Some(url));
        // Schemes are case-insensitive (RFC 3986 §3.1): compared lower-case.
        let lower = |list: Vec<String>| {
            let mut list: Vec<String> = list.iter().map(|v| v.to_ascii_lowercase()).collect();
            list.sort();
            list
        };
        let set = lower(variants.clone());
        for variant in &variants {
            assert_eq!(lower(scheme_variants(variant)), set, "{url:?}");
        }
    }

    let allowed = vec!["a.test".to_owned(), "*.b.test".to_owned()];
    if scope_allows(&allowed, &purge) {
        check_in_scope(&purge);
    }

    let cache = Arc::new(Cache::new(
        1 << 20,
        PolicyOptions::default(),
        Arc::new(SystemClock),
    ));
    let key_for_url: Arc<KeyForUrl> =
        Arc::new(|url: &str| CacheKey::from_url(url, &QueryKey::All).map_err(UrlError::from));
    let _ = Purger::new(cache, key_for_url).apply(&purge);
});

/// Whether a host (port and trailing dots aside) is `a.test` or under `b.test`.
fn in_scope(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let name = host
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    name == "a.test" || (name.len() > ".b.test".len() && name.ends_with(".b.test"))
}

fn check_in_scope(purge: &PurgeRequest) {
    for url in purge.urls.iter().flatten() {
        for variant in scheme_variants(url) {
            if let Ok(key) = CacheKey::from_url(&variant, &QueryKey::All) {
                let rest = key.text().split_once("://").map_or("", |(_, rest)| rest);
                let host = rest.split(['/', '?']).next().unwrap_or_default();
                assert!(in_scope(host), "{url:?} purges {:?}", key.text());
            }
        }
    }
    for text in purge.prefixes.iter().flatten() {
        if let Ok(prefix) = normalize_prefix(text) {
            let host = prefix.split('/').next().unwrap_or_default();
            assert!(in_scope(host), "{text:?} purges {prefix:?}");
        }
    }
    // A host purge applies only to what normalizes to `host/`; anything
    // else refuses the whole purge.
    for text in purge.hosts.iter().flatten() {
        if let Ok(prefix) = normalize_prefix(text)
            && let Some(host) = prefix.strip_suffix('/')
            && !host.contains('/')
        {
            assert!(in_scope(host), "{text:?} purges host {host:?}");
        }
    }
}
