//! Prefix marks: host+path prefixes (no scheme) with the latest purges of
//! each, sorted as bytes, so that recording n prefixes costs n log n and
//! finding the marks that cover a stored location costs a few ordered
//! look-ups, whatever the number of prefixes held.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

use super::index::Marks;

/// Prefixes and their marks.
#[derive(Debug, Default)]
pub(crate) struct PrefixMarks {
    marks: BTreeMap<Box<[u8]>, Marks>,
    /// How many were held after the last pruning of expired marks.
    after_prune: usize,
}

/// Prefixes recorded under one hold of the write lock: a large purge lets
/// lookups in between its batches.
pub(crate) const BATCH: usize = 2048;

impl PrefixMarks {
    pub(crate) fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    pub(crate) fn record(&mut self, prefix: &[u8], seq: u64, soft: bool) {
        match self.marks.get_mut(prefix) {
            Some(marks) => marks.record(seq, soft),
            None => {
                let mut marks = Marks::default();
                marks.record(seq, soft);
                self.marks.insert(prefix.into(), marks);
            }
        }
    }

    /// Forgets marks older than `lifetime` once the held marks have doubled
    /// since the last pruning, so that its linear cost is spread over the
    /// marks that made it due.
    pub(crate) fn prune_if_due(&mut self, expired: impl Fn(&Marks) -> bool) {
        if self.marks.len() < (2 * self.after_prune).max(1024) {
            return;
        }
        self.marks.retain(|_, marks| !expired(marks));
        self.after_prune = self.marks.len();
    }

    /// The marks of every held prefix of `location`, merged.
    ///
    /// Walks down from the greatest prefix at or below `location`: if it
    /// is a prefix of `location` its marks apply, and the next candidate is
    /// below it; if it is not, no held prefix longer than the bytes the two
    /// share can be a prefix of `location` (it would sort between them), so
    /// the search goes on with `location` cut to those bytes.
    pub(crate) fn covering(&self, location: &[u8]) -> Marks {
        let mut found = Marks::default();
        let mut rest = location;
        while let Some((prefix, marks)) = self
            .marks
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(rest)))
            .next_back()
        {
            let shared = common_prefix(prefix, rest);
            if shared == prefix.len() {
                found.merge(*marks);
                match shared.checked_sub(1) {
                    Some(shorter) => rest = &rest[..shorter],
                    None => break,
                }
            } else {
                rest = &rest[..shared];
            }
        }
        found
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whether marks made longer ago than `lifetime` are past keeping.
pub(crate) fn expired_after(lifetime: Duration) -> impl Fn(&Marks) -> bool {
    move |marks| super::index::past_retention(marks.hard.max(marks.soft), lifetime)
}

/// Sorts prefixes and drops those another one in the list already covers
/// (`a/` covers `a/b/`): what remains names each stored location once.
pub(crate) fn outermost(prefixes: &[String]) -> Vec<&str> {
    let mut sorted: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut kept: Vec<&str> = Vec::with_capacity(sorted.len());
    for prefix in sorted {
        if kept.last().is_none_or(|last| !prefix.starts_with(last)) {
            kept.push(prefix);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(held: &[(&str, u64)], location: &str) -> u64 {
        held.iter()
            .filter(|(p, _)| location.starts_with(p))
            .map(|(_, seq)| *seq)
            .max()
            .unwrap_or(0)
    }

    /// Every location over a small alphabet, against every set of prefixes
    /// drawn from a fixed list: the ordered walk finds exactly the marks a
    /// scan of all prefixes finds.
    #[test]
    fn covering_agrees_with_a_scan_of_every_prefix() {
        let pool = [
            "a", "a/", "a/b", "a/b/", "a/bc", "a/c", "ab", "b/", "b/a/c", "", "a/b/c/d",
        ];
        let alphabet = ['a', 'b', 'c', '/'];
        let mut locations = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = locations
                .iter()
                .flat_map(|l| alphabet.iter().map(move |c| format!("{l}{c}")))
                .collect();
            locations.extend(longer);
        }
        locations.sort();
        locations.dedup();
        for subset in 0u32..(1 << pool.len()) {
            if subset % 7 != 0 && subset.count_ones() > 3 {
                continue; // a sample of the larger sets keeps it quick
            }
            let held: Vec<(&str, u64)> = pool
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .map(|(i, p)| (*p, i as u64 + 1))
                .collect();
            let mut marks = PrefixMarks::default();
            for (prefix, seq) in &held {
                marks.record(prefix.as_bytes(), *seq, false);
            }
            for location in &locations {
                assert_eq!(
                    marks.covering(location.as_bytes()).hard,
                    naive(&held, location),
                    "{held:?} over {location:?}"
                );
            }
        }
    }

    #[test]
    fn soft_and_hard_marks_are_kept_apart() {
        let mut marks = PrefixMarks::default();
        marks.record(b"example.com/a/", 5, true);
        marks.record(b"example.com/", 3, false);
        let found = marks.covering(b"example.com/a/x");
        assert_eq!((found.hard, found.soft), (3, 5));
        assert_eq!(marks.covering(b"example.org/a/x"), Marks::default());
    }

    #[test]
    fn outermost_drops_covered_and_repeated_prefixes() {
        let given = ["a/b/", "a/", "c/", "a/b/c", "c/", "ab/"].map(String::from);
        assert_eq!(outermost(&given), vec!["a/", "ab/", "c/"]);
    }

    #[test]
    fn expired_marks_are_pruned_once_they_pile_up() {
        let mut marks = PrefixMarks::default();
        for i in 0..2000u64 {
            marks.record(format!("h/{i}").as_bytes(), i + 1, false);
        }
        marks.prune_if_due(|m| m.hard <= 1000);
        assert_eq!(marks.len(), 1000);
        // Not due again until they double.
        marks.prune_if_due(|_| true);
        assert_eq!(marks.len(), 1000);
    }
}
