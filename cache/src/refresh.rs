//! Freshening a stored response: a `304 Not Modified` (or a 200 to a HEAD
//! sent to revalidate) replaces its header fields and restarts its
//! freshness clock, and the body stays where it is.

use std::sync::Arc;

use crate::Cache;
use crate::entry::{Body, CHUNK, Entry, StoredHeaders};
use crate::etag::EntityTag;
use crate::fetched::Fetched;
use crate::freshness::{Directives, Freshness};
use crate::policy;
use crate::store::clamp_age;
use crate::vary;

impl Cache {
    /// Applies a `304 Not Modified` to a stored entry (RFC 9111 §4.3.4):
    /// the 304's header fields replace the stored ones, the body stays, and
    /// the freshness clock restarts. Returns None when the 304 names another
    /// representation than the one stored (a different entity tag), which
    /// must then not be updated. The caller removes hop-by-hop fields first.
    pub(crate) fn refresh(&self, stored: &Entry, fetched: &Fetched<'_>) -> Option<Arc<Entry>> {
        let Fetched {
            key,
            request: req,
            response: not_modified,
            request_time,
            response_time,
        } = *fetched;
        // The same opaque tag, as bytes (a weak one names its
        // representation as well as a strong one does here).
        let held = stored.headers().get("etag");
        if let Some(new) = not_modified.headers.get(http::header::ETAG)
            && !EntityTag::of(new)
                .zip(held.as_ref().and_then(EntityTag::of))
                .is_some_and(|(new, held)| new.weak_eq(&held))
        {
            return None;
        }
        let mut headers = stored.headers().to_map(not_modified.headers.len());
        for name in not_modified.headers.keys() {
            let skip = matches!(
                name.as_str(),
                "content-length"
                    | "content-encoding"
                    | "transfer-encoding"
                    | "content-range"
                    | "vary"
            ) || (name == http::header::SET_COOKIE && !stored.rules().share_set_cookie);
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
            stored.status(),
            &headers,
            response_time,
            &options,
            *stored.rules(),
        );
        for field in &built.private {
            headers.remove(field.as_str());
        }
        let freshness = Freshness::compute(
            stored.status(),
            &built.view,
            request_time,
            response_time,
            options.heuristic(),
        );
        let entry = Arc::new(stored.refreshed(
            StoredHeaders::from_map(&headers),
            freshness,
            Directives::from_headers(&built.view).for_entry(),
            built.stale,
            self.purges.next_seq(),
        ));
        let hash = match entry.variant() {
            None => *key.hash(),
            Some(variant) => vary::secondary_hash(key.text(), &variant.text),
        };
        self.keep(hash, &entry);
        Some(entry)
    }

    /// Stores a freshened entry under `hash`: in memory when its body is
    /// there and fits, and its head on disk.
    pub(crate) fn keep(&self, hash: [u8; 32], entry: &Arc<Entry>) {
        if entry
            .resident_body()
            .is_some_and(|body| body.len() <= self.memory_object_max())
        {
            self.store(hash, entry.clone());
        }
        if let Some(disk) = self.disk.get() {
            // The body's chunks stay; only the head changes. A body held
            // only in memory is written with its head when it fits one chunk.
            let fits = match entry.body() {
                Body::Memory(bytes) => bytes.len() <= CHUNK,
                Body::Disk(_) | Body::Both(..) => true,
            };
            if fits {
                disk.put_object(hash, entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use crate::testing::*;
    use http::response;

    use crate::Lookup;

    #[test]
    fn a_304_refreshes_headers_and_keeps_the_body() {
        let (cache, clock) = setup();
        let req = get(&[]);
        let res = ok(&[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("x-version", "1"),
        ]);
        let storing = admitted(&cache, &key(), &req, &res).unwrap();
        let stored = cache.insert(storing, Bytes::from_static(b"body"));
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
            .refresh(&stored, &fetched(&cache, &key(), &req, &not_modified))
            .unwrap();
        assert_eq!(
            refreshed.resident_body(),
            Some(&Bytes::from_static(b"body"))
        );
        assert_eq!(refreshed.headers().get("x-version").unwrap(), "2");
        assert!(matches!(cache.lookup(&key(), &req), Lookup::Fresh(_)));
    }

    /// RFC 9111 §4.3.4: a 304 for another entity tag updates nothing, and a
    /// 304's Set-Cookie is never merged into a shared entry.
    #[test]
    fn a_304_updates_only_the_representation_it_names_and_never_its_cookies() {
        let (cache, _) = setup();
        let req = get(&[]);
        let res = ok(&[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        let storing = admitted(&cache, &key(), &req, &res).unwrap();
        let stored = cache.insert(storing, Bytes::from_static(b"v1"));
        let other = response::Response::builder()
            .status(304)
            .header("etag", "\"v2\"")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(
            cache
                .refresh(&stored, &fetched(&cache, &key(), &req, &other))
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
            .refresh(&stored, &fetched(&cache, &key(), &req, &same))
            .unwrap();
        assert!(!refreshed.headers().contains_key("set-cookie"));
    }
}
