//! Purges: the index of marks that decides what a purge hides and counts
//! what it names (`index.rs`), the journal that keeps the marks across
//! restarts (`journal.rs`), the prefix marks sorted for look-ups that do
//! not grow with their number (`prefixes.rs`), and the `Cache` operations that make them
//! (`ops.rs`).

mod index;
mod journal;
mod ops;
mod prefixes;

pub(crate) use index::{PurgeIndex, Verdict, Write};
