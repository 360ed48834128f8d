//! Purges by URL, host, tag, prefix or everything, hard (gone) or soft
//! (stale, revalidated on next use).
//!
//! Every entry carries the sequence number it was given when its response
//! arrived. A purge takes the next number and records it as a mark on what
//! it names; an entry older than a mark that applies to it is gone (or
//! stale). Marks make a purge of any size take constant time, win against
//! fills that were in flight when the purge arrived, and are checked on
//! every lookup. Members of hosts and tags are indexed for counting and for
//! freeing their memory at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use crate::entry::Entry;

/// How long URL and prefix marks are kept: they only need to outlive the
/// fills that were in flight when they were made; older entries are gone.
const MARK_LIFETIME: Duration = Duration::from_secs(600);

/// The latest purges that apply to something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    pub hard: u64,
    pub soft: u64,
}

impl Marks {
    fn merge(&mut self, other: Marks) {
        self.hard = self.hard.max(other.hard);
        self.soft = self.soft.max(other.soft);
    }

    fn record(&mut self, seq: u64, soft: bool) {
        if soft {
            self.soft = self.soft.max(seq);
        } else {
            self.hard = self.hard.max(seq);
        }
    }
}

/// What the marks say of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Live,
    /// Soft-purged: usable only after revalidation.
    Stale,
    Gone,
}

#[derive(Debug, Default)]
struct Members {
    /// tag -> stored hash -> the entry's sequence number.
    tags: HashMap<String, HashMap<[u8; 32], u64>>,
    hosts: HashMap<String, HashMap<[u8; 32], u64>>,
    /// (host and path, stored hash) -> sequence number, sorted so that a
    /// prefix is a range.
    locations: std::collections::BTreeMap<(String, [u8; 32]), u64>,
}

#[derive(Debug)]
pub struct PurgeIndex {
    seq: AtomicU64,
    /// Purge everything, hard and soft: read on every lookup, so atomics.
    everything_hard: AtomicU64,
    everything_soft: AtomicU64,
    hosts: RwLock<HashMap<String, Marks>>,
    tags: RwLock<HashMap<String, Marks>>,
    /// host+path prefixes (no scheme) with their marks.
    prefixes: RwLock<Vec<(String, Marks, std::time::Instant)>>,
    /// URL purges by primary key hash.
    urls: moka::sync::Cache<[u8; 32], Marks>,
    members: Mutex<Members>,
}

impl Default for PurgeIndex {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(1),
            everything_hard: AtomicU64::new(0),
            everything_soft: AtomicU64::new(0),
            hosts: RwLock::default(),
            tags: RwLock::default(),
            prefixes: RwLock::default(),
            urls: moka::sync::Cache::builder()
                .time_to_live(MARK_LIFETIME)
                .max_capacity(1_000_000)
                .build(),
            members: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PurgeIndex {
    /// The next sequence number: for an arriving response, or a purge.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Judges an entry (stored under `hash`) against every mark that applies.
    pub fn judge(&self, entry: &Entry) -> Verdict {
        let mut marks = Marks {
            hard: self.everything_hard.load(Ordering::Acquire),
            soft: self.everything_soft.load(Ordering::Acquire),
        };
        if let Some(host) = self
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(entry.host())
        {
            marks.merge(*host);
        }
        if !entry.tags.is_empty() {
            let tags = self.tags.read().unwrap_or_else(|p| p.into_inner());
            for tag in &entry.tags {
                if let Some(tag) = tags.get(tag) {
                    marks.merge(*tag);
                }
            }
        }
        if let Some(url) = self.urls.get(&entry.primary) {
            marks.merge(url);
        }
        {
            let prefixes = self.prefixes.read().unwrap_or_else(|p| p.into_inner());
            if !prefixes.is_empty() {
                let location = entry.location();
                for (prefix, mark, _) in prefixes.iter() {
                    if location.starts_with(prefix.as_str()) {
                        marks.merge(*mark);
                    }
                }
            }
        }
        if marks.hard > entry.seq {
            Verdict::Gone
        } else if marks.soft > entry.seq {
            Verdict::Stale
        } else {
            Verdict::Live
        }
    }

    /// Indexes a stored entry under its host and tags.
    pub fn add(&self, hash: [u8; 32], entry: &Entry) {
        let mut members = lock(&self.members);
        members
            .hosts
            .entry(entry.host().to_owned())
            .or_default()
            .insert(hash, entry.seq);
        for tag in &entry.tags {
            members
                .tags
                .entry(tag.clone())
                .or_default()
                .insert(hash, entry.seq);
        }
        members
            .locations
            .insert((entry.location().to_owned(), hash), entry.seq);
    }

    /// Forgets a stored entry that left the cache (the one with `seq` only:
    /// a newer entry under the same hash stays indexed).
    pub fn remove(&self, hash: &[u8; 32], entry: &Entry) {
        let mut members = lock(&self.members);
        let drop_from = |map: &mut HashMap<String, HashMap<[u8; 32], u64>>, name: &str| {
            if let Some(set) = map.get_mut(name) {
                if set.get(hash) == Some(&entry.seq) {
                    set.remove(hash);
                }
                if set.is_empty() {
                    map.remove(name);
                }
            }
        };
        drop_from(&mut members.hosts, entry.host());
        for tag in &entry.tags {
            drop_from(&mut members.tags, tag);
        }
        let location = (entry.location().to_owned(), *hash);
        if members.locations.get(&location) == Some(&entry.seq) {
            members.locations.remove(&location);
        }
    }

    /// Marks a URL (its primary key hash).
    pub fn mark_url(&self, primary: [u8; 32], soft: bool) {
        let seq = self.next_seq();
        let mut marks = self.urls.get(&primary).unwrap_or_default();
        marks.record(seq, soft);
        self.urls.insert(primary, marks);
    }

    /// Marks hosts; returns the stored objects they hold and their hashes.
    pub fn mark_hosts(&self, hosts: &[String], soft: bool) -> Vec<[u8; 32]> {
        let seq = self.next_seq();
        let mut marks = self.hosts.write().unwrap_or_else(|p| p.into_inner());
        for host in hosts {
            marks.entry(host.clone()).or_default().record(seq, soft);
        }
        drop(marks);
        let members = lock(&self.members);
        hosts
            .iter()
            .filter_map(|h| members.hosts.get(h))
            .flat_map(|set| set.keys().copied())
            .collect()
    }

    /// Marks tags; returns the hashes of the stored objects that carry them.
    pub fn mark_tags(&self, tags: &[String], soft: bool) -> Vec<[u8; 32]> {
        let seq = self.next_seq();
        let mut marks = self.tags.write().unwrap_or_else(|p| p.into_inner());
        for tag in tags {
            marks.entry(tag.clone()).or_default().record(seq, soft);
        }
        drop(marks);
        let members = lock(&self.members);
        let mut hashes: Vec<[u8; 32]> = tags
            .iter()
            .filter_map(|t| members.tags.get(t))
            .flat_map(|set| set.keys().copied())
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    /// Marks host+path prefixes (no scheme); returns the hashes of the
    /// stored objects under them.
    pub fn mark_prefixes(&self, prefixes: &[String], soft: bool) -> Vec<[u8; 32]> {
        let seq = self.next_seq();
        let now = std::time::Instant::now();
        let mut list = self.prefixes.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|(_, _, at)| now.duration_since(*at) < MARK_LIFETIME);
        for prefix in prefixes {
            let mut marks = Marks::default();
            marks.record(seq, soft);
            list.push((prefix.clone(), marks, now));
        }
        drop(list);
        let members = lock(&self.members);
        let mut hashes = Vec::new();
        for prefix in prefixes {
            let start = (prefix.clone(), [0u8; 32]);
            hashes.extend(
                members
                    .locations
                    .range(start..)
                    .take_while(|((location, _), _)| location.starts_with(prefix.as_str()))
                    .map(|((_, hash), _)| *hash),
            );
        }
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    pub fn mark_everything(&self, soft: bool) {
        let seq = self.next_seq();
        let mark = if soft {
            &self.everything_soft
        } else {
            &self.everything_hard
        };
        mark.fetch_max(seq, Ordering::AcqRel);
    }
}
