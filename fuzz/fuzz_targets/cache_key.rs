//! Cache keys: URL, host and path normalization (RFC 3986 §6.2.2, RFC 9110
//! §4.2.3) and the rule's query filter.
//!
//! The input is a URL on the first line and, on the second, how the rule
//! keys the query: `all`, `ignore`, `include a,b` or `exclude a,b`.
//! Checked:
//! - no input panics;
//! - normalization is idempotent: a key read back from its own text is the
//!   same key; a normalized path normalizes to itself; so does a host;
//! - a key built from parts reads back from its text as the same key;
//! - a normalized path has no dot segment, and none appears when an
//!   origin decodes its escapes once (other than `%2F`, which stays inside
//!   its segment).

#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_cache::{CacheKey, normalize_host, normalize_path};
use outpost_config::QueryKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (url, mode) = text.split_once('\n').unwrap_or((text, "all"));
    let query = query_key(mode);

    if let Ok(key) = CacheKey::from_url(url, &query) {
        let again = CacheKey::from_url(key.text(), &query)
            .unwrap_or_else(|e| panic!("the key text {:?} does not read: {e}", key.text()));
        assert_eq!(again, key, "{url:?} is not normalized in one pass");
        assert_eq!(key.hash(), blake3::hash(key.text().as_bytes()).as_bytes());
    }

    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path_and_query) = rest.split_at(split);
    for scheme in ["http", "https", scheme] {
        let once = normalize_host(scheme, host);
        assert_eq!(
            normalize_host(scheme, &once),
            once,
            "host {host:?} over {scheme}"
        );
    }
    let path = path_and_query.split(['?', '#']).next().unwrap_or_default();
    for path in [path, url] {
        if let Ok(normalized) = normalize_path(path) {
            assert_eq!(
                normalize_path(&normalized).as_ref(),
                Ok(&normalized),
                "{path:?}"
            );
            let decoded = decode_once(&normalized);
            assert!(
                !decoded.split('/').any(|s| s == "." || s == ".."),
                "{path:?} normalizes to {normalized:?}, which an origin reads as {decoded:?}"
            );
        }
    }

    // A key from parts, as the proxy builds it: the host as the request
    // names it, a normalized path and the query.
    let plain_host = !host.is_empty() && !host.contains(['/', '?', '#', '@']);
    if plain_host
        && let Ok(path) = normalize_path(if path.is_empty() { "/" } else { path })
        && !path.contains('#')
    {
        let target = match path_and_query.split_once('?') {
            Some((_, query)) if !query.contains('#') => format!("{path}?{query}"),
            _ => path,
        };
        // A host that is only a default port normalizes to nothing; the
        // proxy refuses such a Host before it builds a key.
        for scheme in ["http", "https"]
            .into_iter()
            .filter(|s| !normalize_host(s, host).is_empty())
        {
            let key = CacheKey::new(scheme, host, &target, &query);
            let again = CacheKey::from_url(key.text(), &query);
            assert_eq!(again.as_ref(), Ok(&key), "{scheme} {host:?} {target:?}");
        }
    }
});

fn query_key(mode: &str) -> QueryKey {
    let mode = mode.lines().next().unwrap_or_default();
    let names = |list: &str| list.split(',').map(|n| n.trim().to_owned()).collect();
    match mode.split_once(' ') {
        Some(("include", list)) => QueryKey::Include(names(list)),
        Some(("exclude", list)) => QueryKey::Exclude(names(list)),
        _ if mode == "ignore" => QueryKey::Ignore,
        _ => QueryKey::All,
    }
}

/// Every `%XX` escape decoded once, except `%2F` (a slash inside a
/// segment); bytes that are not UTF-8 are kept as escapes.
fn decode_once(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = path.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && byte != b'/'
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
