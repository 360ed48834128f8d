//! The purge operations: marks in the index first (they hide what they
//! name at once, on every tier), then the memory the purged objects held
//! is freed, or soft-purged copies are stored in their place.

use std::sync::Arc;

use super::{PurgeIndex, Verdict, Write};
use crate::Cache;
use crate::key::CacheKey;
use crate::memory::{MemoryTier, Stored};

impl Cache {
    /// Purges URLs' keys, every variant of each; `soft` marks them stale
    /// instead. Returns the objects matched.
    pub fn purge_urls(&self, keys: &[CacheKey], soft: bool) -> usize {
        self.purge_urls_with(keys, soft, Write::Synced)
    }

    fn purge_urls_with(&self, keys: &[CacheKey], soft: bool, write: Write) -> usize {
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

    /// Purges every object that carries one of these tags and whose host
    /// one of `patterns` matches (names, or `*.` and a parent name).
    pub fn purge_tags_within(&self, tags: &[String], patterns: &[String], soft: bool) -> usize {
        self.drop_marked(self.purges.mark_tags_within(tags, patterns, soft), soft)
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
            if let Some(disk) = self.disk() {
                disk.forget_all();
            }
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
        let write = if stored { Write::Written } else { Write::Skip };
        self.purge_urls_with(std::slice::from_ref(key), false, write)
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

    /// Purge journal writes that failed since the start.
    pub fn journal_failures(&self) -> u64 {
        self.purges.journal_failures()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use outpost_config::QueryKey;

    use super::*;
    use crate::testing::*;
    use crate::{Lookup, PolicyOptions, SystemClock};

    /// A tag purge limited to hosts (what a scoped token may make) reaches
    /// the tagged objects of those hosts only, now and at later lookups.
    #[test]
    fn a_tag_purge_within_hosts_stays_within_them() {
        let (cache, _) = setup();
        for url in [
            "http://a.test/1",
            "http://x.a.test/2",
            "http://b.test:8080/3",
            "http://c.test/4",
        ] {
            store_tagged(&cache, url, "blue");
        }
        store_tagged(&cache, "http://x.a.test/5", "red");
        let within = ["*.a.test".to_owned(), "b.test".to_owned()];
        assert_eq!(cache.purge_tags_within(&["blue".into()], &within, false), 2);
        assert!(!is_fresh(&cache, "http://x.a.test/2"));
        assert!(!is_fresh(&cache, "http://b.test:8080/3"));
        // `*.a.test` is not `a.test`; other hosts and tags are untouched.
        for url in ["http://a.test/1", "http://c.test/4", "http://x.a.test/5"] {
            assert!(is_fresh(&cache, url), "{url}");
        }
        // A soft one leaves them stale; the mark holds for what is stored
        // under the tag before it and is judged at lookup.
        assert_eq!(
            cache.purge_tags_within(&["blue".into()], &["c.test".into()], true),
            1
        );
        assert!(is_stale(&cache, "http://c.test/4"));
        assert!(is_fresh(&cache, "http://a.test/1"));
        store_tagged(&cache, "http://x.a.test/2", "blue");
        assert!(
            is_fresh(&cache, "http://x.a.test/2"),
            "stored after the purge"
        );
    }

    /// Marks are judged by number: an entry stored before a host, tag,
    /// prefix or URL mark is judged by the mark (here one held out of the
    /// memory tier, as a disk entry or a fill in flight is), and one stored
    /// after the latest such mark is live without a look at any of them.
    #[test]
    fn targeted_marks_judge_older_entries_only() {
        use crate::purge::Verdict;
        let (cache, _) = setup();
        let before = store_tagged(&cache, "http://a.test/1", "red");
        let untouched = store_tagged(&cache, "http://b.test/2", "blue");
        cache.purges.mark_tags(&["red".into()], true);
        cache.purges.mark_hosts(&["c.test".into()], false);
        let after = store_tagged(&cache, "http://a.test/3", "red");
        assert_eq!(cache.purges.judge(&before), Verdict::Stale);
        assert_eq!(cache.purges.judge(&untouched), Verdict::Live);
        assert_eq!(cache.purges.judge(&after), Verdict::Live);
        cache.purges.mark_prefixes(&["a.test/".into()], false);
        assert_eq!(cache.purges.judge(&after), Verdict::Gone);
        assert_eq!(cache.purges.judge(&untouched), Verdict::Live);
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
            let storing = admitted(&cache, &key, &get(&[]), &res).unwrap();
            match purge {
                0 => drop(cache.purge(&key)),
                1 => drop(cache.purge_tags(&["t".into()], false)),
                _ => drop(cache.purge_everything(false)),
            }
            cache.insert(storing, Bytes::new());
            assert!(
                matches!(cache.lookup(&key, &get(&[])), Lookup::Miss),
                "purge {purge}"
            );
        }
    }

    #[test]
    fn purge_removes_and_memory_stays_within_capacity() {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60")]);
        for i in 0..100 {
            let k = CacheKey::from_url(&format!("http://example.com/{i}"), &QueryKey::All).unwrap();
            let storing = admitted(&cache, &k, &get(&[]), &res).unwrap();
            cache.insert(storing, Bytes::from(vec![0u8; 64 * 1024]));
        }
        let usage = cache.usage();
        assert!(usage.memory_bytes <= 1 << 20, "{usage:?}");
        assert!(usage.memory_objects < 100);
        let storing = admitted(&cache, &key(), &get(&[]), &res).unwrap();
        cache.insert(storing, Bytes::new());
        assert_eq!(cache.purge(&key()), 1);
        assert!(matches!(cache.lookup(&key(), &get(&[])), Lookup::Miss));
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
}
