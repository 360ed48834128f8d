//! The purge index: marks by URL, host, tag, prefix or everything, hard
//! (gone) or soft (stale, revalidated on next use).
//!
//! Every entry carries the sequence number it was given when its response
//! arrived. A purge takes the next number and records it as a mark on what
//! it names; an entry older than a mark that applies to it is gone (or
//! stale). Marks make a purge of any size take constant time, win against
//! fills that were in flight when the purge arrived, and are checked on
//! every lookup. Members of tags, and every stored location (host and
//! path, sorted, so that a host or a prefix is a range), are indexed for
//! counting and for freeing their memory at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::journal::{Journal, Kind, Mark};
use super::prefixes::{self, PrefixMarks};
use crate::entry::Entry;
use crate::id::{next_after_now, now_micros};

/// How long URL and prefix marks are kept when every tier is in memory:
/// they only need to outlive the fills that were in flight when they were
/// made; the older entries they name are removed at once.
const MARK_LIFETIME: Duration = Duration::from_secs(600);

/// With a disk tier, whose objects cannot be listed and removed at once,
/// URL and prefix marks are kept this long, and an object stored longer
/// ago than this (and not revalidated since) is no longer served.
pub const RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How a URL mark is written to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Synced before the purge returns (a purge asked for on the side API).
    Synced,
    /// Written, not waited for (an unsafe request's invalidation).
    Written,
    /// Kept in memory only (nothing was stored for the URL).
    Skip,
}

/// Sequence numbers (microseconds) between two watermarks in the journal.
const WATERMARK_STEP: u64 = 10_000_000;

/// Marks made before the journal is attached, kept at most.
const MAX_UNJOURNALED: usize = 100_000;

/// URL marks held in memory at most; the journal keeps them all.
const MAX_URL_MARKS: u64 = 1_000_000;

/// The latest purges that apply to something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    pub hard: u64,
    pub soft: u64,
}

impl Marks {
    pub(crate) fn merge(&mut self, other: Marks) {
        self.hard = self.hard.max(other.hard);
        self.soft = self.soft.max(other.soft);
    }

    /// What these marks say of an entry numbered `seq`.
    fn verdict(self, seq: u64) -> Verdict {
        if self.hard > seq {
            Verdict::Gone
        } else if self.soft > seq {
            Verdict::Stale
        } else {
            Verdict::Live
        }
    }

    pub(crate) fn record(&mut self, seq: u64, soft: bool) {
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

/// A stored object under a tag: its sequence number and host.
type Tagged = (u64, Arc<str>);

#[derive(Debug, Default)]
struct Members {
    /// tag -> the stored objects that carry it.
    tags: HashMap<String, HashMap<[u8; 32], Tagged>>,
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
    /// The latest mark by URL, host, tag or prefix: an entry stored after
    /// it (most of them, most of the time) is judged by the two marks
    /// above alone, without a look at the maps below.
    latest_targeted: AtomicU64,
    hosts: RwLock<HashMap<String, Marks>>,
    tags: RwLock<HashMap<String, Marks>>,
    /// Tag purges limited to hosts: host pattern (a name, or `*.` and a
    /// parent name) -> tag -> marks.
    scoped_tags: RwLock<HashMap<String, HashMap<String, Marks>>>,
    /// Host+path prefixes (no scheme) with their marks.
    prefixes: RwLock<PrefixMarks>,
    /// URL purges by primary key hash.
    urls: moka::sync::Cache<[u8; 32], Marks>,
    members: Mutex<Members>,
    /// How long URL and prefix marks are kept.
    lifetime: Duration,
    /// Whether marks must outlive the process (there is, or will be, a disk tier).
    durable: bool,
    /// Where they are written, once the disk tier is open.
    journal: std::sync::OnceLock<Journal>,
    /// Marks made before the journal was attached, written when it is.
    unjournaled: Mutex<Vec<Mark>>,
    /// The last watermark written.
    watermark: AtomicU64,
    /// Journal writes that failed.
    failures: AtomicU64,
}

impl Default for PurgeIndex {
    fn default() -> Self {
        Self::with_lifetime(MARK_LIFETIME, false)
    }
}

/// Serving an entry stored longer ago than the marks are kept could serve
/// what a forgotten mark purged.
pub(super) fn past_retention(seq: u64, lifetime: Duration) -> bool {
    now_micros().saturating_sub(seq) > u64::try_from(lifetime.as_micros()).unwrap_or(u64::MAX)
}

impl PurgeIndex {
    fn with_lifetime(lifetime: Duration, durable: bool) -> Self {
        Self {
            seq: AtomicU64::new(now_micros()),
            everything_hard: AtomicU64::new(0),
            everything_soft: AtomicU64::new(0),
            latest_targeted: AtomicU64::new(0),
            hosts: RwLock::default(),
            tags: RwLock::default(),
            scoped_tags: RwLock::default(),
            prefixes: RwLock::default(),
            urls: moka::sync::Cache::builder()
                .time_to_live(lifetime)
                .max_capacity(MAX_URL_MARKS)
                .build(),
            members: Mutex::default(),
            lifetime,
            durable,
            journal: std::sync::OnceLock::new(),
            unjournaled: Mutex::default(),
            watermark: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// An index for a cache with a disk tier: its marks are journaled once
    /// [`PurgeIndex::attach_journal`] names the file.
    pub fn durable() -> Self {
        Self::with_lifetime(RETENTION, true)
    }

    /// Starts journaling to the file at `path`: the marks recorded there
    /// before apply, and those made so far are added to it.
    pub fn attach_journal(&self, path: &std::path::Path) -> std::io::Result<()> {
        let everything_hard = std::cell::OnceCell::new();
        let (journal, marks) = Journal::open(path, |mark, all| {
            // Marks older than a hard purge of everything no longer matter.
            let everything_hard = *everything_hard.get_or_init(|| {
                all.iter()
                    .filter(|m| m.kind == Kind::Everything && !m.soft)
                    .map(|m| m.seq)
                    .max()
                    .unwrap_or(0)
            });
            mark.seq < everything_hard
                || (matches!(mark.kind, Kind::Url | Kind::Prefix)
                    && past_retention(mark.seq, RETENTION))
        })?;
        for mark in &marks {
            self.seq.fetch_max(mark.seq, Ordering::Relaxed);
            self.apply(mark);
        }
        // No number given from now on is below one given before: past the
        // last watermark (which covers what was given after it was written).
        if let Some(watermark) = marks
            .iter()
            .filter(|m| m.kind == Kind::Watermark)
            .map(|m| m.seq)
            .max()
        {
            self.seq.fetch_max(watermark, Ordering::Relaxed);
        }
        let mut unjournaled = lock(&self.unjournaled);
        journal.append(&unjournaled, true)?;
        unjournaled.clear();
        self.journal
            .set(journal)
            .map_err(|_| std::io::Error::other("a purge journal is already attached"))
    }

    /// Applies a mark read back from the journal.
    fn apply(&self, mark: &Mark) {
        if !matches!(mark.kind, Kind::Everything | Kind::Watermark) {
            self.latest_targeted.fetch_max(mark.seq, Ordering::AcqRel);
        }
        let name = String::from_utf8_lossy(&mark.name).into_owned();
        match mark.kind {
            Kind::Everything => {
                let target = if mark.soft {
                    &self.everything_soft
                } else {
                    &self.everything_hard
                };
                target.fetch_max(mark.seq, Ordering::AcqRel);
            }
            Kind::Host => write(&self.hosts)
                .entry(name)
                .or_default()
                .record(mark.seq, mark.soft),
            Kind::Tag => write(&self.tags)
                .entry(name)
                .or_default()
                .record(mark.seq, mark.soft),
            Kind::Prefix => self.record_prefixes(&[mark.name.as_slice()], mark.seq, mark.soft),
            Kind::ScopedTag => {
                if let Some((pattern, tag)) = name.split_once('\0') {
                    write(&self.scoped_tags)
                        .entry(pattern.to_owned())
                        .or_default()
                        .entry(tag.to_owned())
                        .or_default()
                        .record(mark.seq, mark.soft);
                }
            }
            Kind::Watermark => {}
            Kind::Url => {
                if let Ok(primary) = <[u8; 32]>::try_from(mark.name.as_slice()) {
                    let mut marks = self.urls.get(&primary).unwrap_or_default();
                    marks.record(mark.seq, mark.soft);
                    self.urls.insert(primary, marks);
                }
            }
        }
    }

    /// Writes marks to the journal, when there is one.
    fn journal(&self, seq: u64, soft: bool, kind: Kind, names: &[&[u8]]) {
        self.journal_with(seq, soft, kind, names, Write::Synced);
    }

    fn journal_with(&self, seq: u64, soft: bool, kind: Kind, names: &[&[u8]], write: Write) {
        if !self.durable || write == Write::Skip {
            return;
        }
        let marks: Vec<Mark> = names
            .iter()
            .map(|name| Mark {
                seq,
                soft,
                kind,
                name: name.to_vec(),
            })
            .collect();
        let journal = {
            let mut unjournaled = lock(&self.unjournaled);
            match self.journal.get() {
                Some(journal) => journal,
                None => {
                    if unjournaled.len() + marks.len() > MAX_UNJOURNALED {
                        // Too many to keep: one soft purge of everything
                        // stands for them (every entry is revalidated).
                        unjournaled.retain(|m| m.kind != Kind::Url);
                        unjournaled.push(Mark {
                            seq,
                            soft: true,
                            kind: Kind::Everything,
                            name: Vec::new(),
                        });
                    } else {
                        unjournaled.extend(marks);
                    }
                    return;
                }
            }
        };
        if let Err(e) = journal.append(&marks, write == Write::Synced) {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %journal.path().display(), error = %e, "the purge journal could not be written; this purge will not outlive a restart");
        }
    }

    /// Records prefix marks a batch at a time, so that lookups wait at
    /// most for one batch.
    fn record_prefixes(&self, prefixes: &[&[u8]], seq: u64, soft: bool) {
        let expired = prefixes::expired_after(self.lifetime);
        for batch in prefixes.chunks(prefixes::BATCH) {
            let mut marks = write(&self.prefixes);
            marks.prune_if_due(&expired);
            for prefix in batch {
                marks.record(prefix, seq, soft);
            }
        }
    }
}

/// A scoped tag mark's name in the journal: the host pattern, a NUL (in no
/// host name) and the tag.
fn scoped_name(pattern: &str, tag: &str) -> Vec<u8> {
    let mut name = Vec::with_capacity(pattern.len() + 1 + tag.len());
    name.extend_from_slice(pattern.as_bytes());
    name.push(0);
    name.extend_from_slice(tag.as_bytes());
    name
}

/// The host patterns that match an entry's host (its name without a port):
/// the name itself and `*.` with each parent name (`a.b.example` gives
/// `a.b.example`, `*.b.example`, `*.example`).
fn patterns_for(host: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    // An IPv6 literal (`[::1]:8080`) is itself and has no parent names.
    let literal = host.starts_with('[');
    let name = if literal {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    };
    let parents = name
        .match_indices('.')
        .filter(move |_| !literal)
        .map(move |(at, _)| std::borrow::Cow::Owned(format!("*.{}", &name[at + 1..])));
    std::iter::once(std::borrow::Cow::Borrowed(name)).chain(parents)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PurgeIndex {
    /// The next sequence number: for an arriving response, or a purge.
    pub fn next_seq(&self) -> u64 {
        let seq = next_after_now(&self.seq);
        if seq > self.watermark.load(Ordering::Relaxed) {
            self.raise_watermark(seq);
        }
        seq
    }

    /// The number of a purge by URL, host, tag or prefix, made known to
    /// lookups before the mark itself is recorded (so that no lookup after
    /// the purge returns skips it).
    fn next_targeted_seq(&self) -> u64 {
        let seq = self.next_seq();
        self.latest_targeted.fetch_max(seq, Ordering::AcqRel);
        seq
    }

    /// Records in the journal (unsynced) that numbers up to `seq` plus a
    /// step have been given, so that after a restart on a clock set back
    /// the numbers still go on from above them.
    fn raise_watermark(&self, seq: u64) {
        let Some(journal) = self.journal.get() else {
            return;
        };
        let mark = seq + WATERMARK_STEP;
        let previous = self.watermark.fetch_max(mark, Ordering::AcqRel);
        if previous >= seq {
            return; // another thread raised it
        }
        let line = Mark {
            seq: mark,
            soft: false,
            kind: Kind::Watermark,
            name: Vec::new(),
        };
        if let Err(e) = journal.append(&[line], false) {
            tracing::warn!(error = %e, "the purge journal's watermark could not be written");
        }
    }

    /// Whether an entry read from disk was stored longer ago than URL and
    /// prefix marks are kept, so that a forgotten mark may have applied to
    /// it. (Entries in memory need no such check: those purges remove or
    /// re-store them at once.)
    pub fn past_retention(&self, entry: &Entry) -> bool {
        self.durable && past_retention(entry.seq(), self.lifetime)
    }

    /// Judges an entry (stored under `hash`) against every mark that applies.
    pub fn judge(&self, entry: &Entry) -> Verdict {
        let mut marks = Marks {
            hard: self.everything_hard.load(Ordering::Acquire),
            soft: self.everything_soft.load(Ordering::Acquire),
        };
        // A mark applies to entries older than itself only.
        if entry.seq() >= self.latest_targeted.load(Ordering::Acquire) {
            return marks.verdict(entry.seq());
        }
        if let Some(host) = self
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(entry.host())
        {
            marks.merge(*host);
        }
        if !entry.tags().is_empty() {
            let tags = self.tags.read().unwrap_or_else(|p| p.into_inner());
            for tag in entry.tags() {
                if let Some(tag) = tags.get(tag) {
                    marks.merge(*tag);
                }
            }
            drop(tags);
            let scoped = self.scoped_tags.read().unwrap_or_else(|p| p.into_inner());
            if !scoped.is_empty() {
                for pattern in patterns_for(entry.host()) {
                    if let Some(by_tag) = scoped.get(pattern.as_ref()) {
                        for tag in entry.tags() {
                            if let Some(tag) = by_tag.get(tag) {
                                marks.merge(*tag);
                            }
                        }
                    }
                }
            }
        }
        if let Some(url) = self.urls.get(entry.primary()) {
            marks.merge(url);
        }
        {
            let prefixes = self.prefixes.read().unwrap_or_else(|p| p.into_inner());
            if !prefixes.is_empty() {
                marks.merge(prefixes.covering(entry.location().as_bytes()));
            }
        }
        marks.verdict(entry.seq())
    }

    /// Indexes a stored entry under its host and tags.
    pub fn add(&self, hash: [u8; 32], entry: &Entry) {
        let mut members = lock(&self.members);
        if !entry.tags().is_empty() {
            let host: Arc<str> = Arc::from(entry.host());
            for tag in entry.tags() {
                members
                    .tags
                    .entry(tag.clone())
                    .or_default()
                    .insert(hash, (entry.seq(), host.clone()));
            }
        }
        members
            .locations
            .insert((entry.location().to_owned(), hash), entry.seq());
    }

    /// Forgets a stored entry that left the cache (the one with `seq` only:
    /// a newer entry under the same hash stays indexed).
    pub fn remove(&self, hash: &[u8; 32], entry: &Entry) {
        let mut members = lock(&self.members);
        for tag in entry.tags() {
            if let Some(set) = members.tags.get_mut(tag.as_str()) {
                if set.get(hash).is_some_and(|(seq, _)| *seq == entry.seq()) {
                    set.remove(hash);
                }
                if set.is_empty() {
                    members.tags.remove(tag.as_str());
                }
            }
        }
        let location = (entry.location().to_owned(), *hash);
        if members.locations.get(&location) == Some(&entry.seq()) {
            members.locations.remove(&location);
        }
    }

    /// Marks a URL (its primary key hash).
    /// Marks URLs (their primary key hashes), in one journal write.
    pub fn mark_urls(&self, primaries: &[[u8; 32]], soft: bool, write: Write) {
        let seq = self.next_targeted_seq();
        let names: Vec<&[u8]> = primaries.iter().map(|p| p.as_slice()).collect();
        self.journal_with(seq, soft, Kind::Url, &names, write);
        for primary in primaries {
            let mut marks = self.urls.get(primary).unwrap_or_default();
            marks.record(seq, soft);
            self.urls.insert(*primary, marks);
        }
    }

    /// Journal writes that failed since the start: the purges they carried
    /// hold now but may not outlive a restart.
    pub fn journal_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Marks hosts; returns the stored objects they hold and their hashes.
    pub fn mark_hosts(&self, hosts: &[String], soft: bool) -> Vec<[u8; 32]> {
        let seq = self.next_targeted_seq();
        let names: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).collect();
        self.journal(seq, soft, Kind::Host, &names);
        let mut marks = self.hosts.write().unwrap_or_else(|p| p.into_inner());
        for host in hosts {
            marks.entry(host.clone()).or_default().record(seq, soft);
        }
        drop(marks);
        // A host's objects are the locations that begin with it and a '/'
        // or '?' (or nothing) after it.
        let members = lock(&self.members);
        let mut hashes = Vec::new();
        for host in hosts {
            hashes.extend(
                members
                    .locations
                    .range((host.clone(), [0u8; 32])..)
                    .take_while(|((location, _), _)| location.starts_with(host.as_str()))
                    .filter(|((location, _), _)| {
                        location.split(['/', '?']).next() == Some(host.as_str())
                    })
                    .map(|((_, hash), _)| *hash),
            );
        }
        hashes
    }

    /// Marks tags; returns the hashes of the stored objects that carry them.
    pub fn mark_tags(&self, tags: &[String], soft: bool) -> Vec<[u8; 32]> {
        let seq = self.next_targeted_seq();
        let names: Vec<&[u8]> = tags.iter().map(|t| t.as_bytes()).collect();
        self.journal(seq, soft, Kind::Tag, &names);
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

    /// Marks tags on the hosts `patterns` match only (names, or `*.` and a
    /// parent name, lower case): the purge a token scoped to those hosts
    /// may make. Returns the hashes of the stored objects it reaches.
    pub fn mark_tags_within(
        &self,
        tags: &[String],
        patterns: &[String],
        soft: bool,
    ) -> Vec<[u8; 32]> {
        let seq = self.next_targeted_seq();
        let names: Vec<Vec<u8>> = patterns
            .iter()
            .flat_map(|p| tags.iter().map(move |t| scoped_name(p, t)))
            .collect();
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        self.journal(seq, soft, Kind::ScopedTag, &refs);
        let mut marks = write(&self.scoped_tags);
        for pattern in patterns {
            let by_tag = marks.entry(pattern.clone()).or_default();
            for tag in tags {
                by_tag.entry(tag.clone()).or_default().record(seq, soft);
            }
        }
        drop(marks);
        let members = lock(&self.members);
        let mut hashes: Vec<[u8; 32]> = tags
            .iter()
            .filter_map(|t| members.tags.get(t))
            .flat_map(|set| set.iter())
            .filter(|(_, (_, host))| {
                patterns_for(host).any(|candidate| patterns.iter().any(|p| *p == candidate))
            })
            .map(|(hash, _)| *hash)
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    /// Marks host+path prefixes (no scheme); returns the hashes of the
    /// stored objects under them.
    pub fn mark_prefixes(&self, prefixes: &[String], soft: bool) -> Vec<[u8; 32]> {
        let seq = self.next_targeted_seq();
        let names: Vec<&[u8]> = prefixes.iter().map(|p| p.as_bytes()).collect();
        self.journal(seq, soft, Kind::Prefix, &names);
        self.record_prefixes(&names, seq, soft);
        // Each stored location is found once, under the outermost prefix
        // that covers it; stores wait at most for one batch of scans.
        let mut hashes = Vec::new();
        for batch in prefixes::outermost(prefixes).chunks(prefixes::BATCH) {
            let members = lock(&self.members);
            for prefix in batch {
                let start = ((*prefix).to_owned(), [0u8; 32]);
                hashes.extend(
                    members
                        .locations
                        .range(start..)
                        .take_while(|((location, _), _)| location.starts_with(prefix))
                        .map(|((_, hash), _)| *hash),
                );
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }

    pub fn mark_everything(&self, soft: bool) {
        let seq = self.next_seq();
        self.journal(seq, soft, Kind::Everything, &[&[]]);
        let mark = if soft {
            &self.everything_soft
        } else {
            &self.everything_hard
        };
        mark.fetch_max(seq, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_host_is_matched_by_itself_and_its_parents_patterns() {
        let all = |host| {
            patterns_for(host)
                .map(|p| p.into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            all("a.b.example:8080"),
            ["a.b.example", "*.b.example", "*.example"]
        );
        assert_eq!(all("localhost"), ["localhost"]);
        assert_eq!(all("[::1]:8080"), ["[::1]"]);
        assert_eq!(all("192.0.2.1"), ["192.0.2.1", "*.0.2.1", "*.2.1", "*.1"]);
    }

    /// A scoped tag mark is journaled and read back as itself.
    #[test]
    fn scoped_tag_marks_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purges");
        let first = PurgeIndex::durable();
        first.attach_journal(&path).unwrap();
        first.mark_tags_within(&["red".into()], &["*.a.test".into(), "b.test".into()], true);
        drop(first);
        let second = PurgeIndex::durable();
        second.attach_journal(&path).unwrap();
        let scoped = second.scoped_tags.read().unwrap();
        assert_eq!(scoped.len(), 2);
        assert!(scoped["*.a.test"]["red"].soft > 0);
        assert_eq!(scoped["b.test"]["red"].hard, 0);
    }

    /// Numbers given after a restart are above the last watermark, so a
    /// clock set back meanwhile cannot give a purge a number below the
    /// entries stored before it.
    #[test]
    fn sequence_numbers_go_on_above_the_journals_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purges");
        let first = PurgeIndex::durable();
        first.attach_journal(&path).unwrap();
        let given = first.next_seq();
        drop(first);
        let second = PurgeIndex::durable();
        second.attach_journal(&path).unwrap();
        assert!(second.next_seq() > given + WATERMARK_STEP);
    }
}
