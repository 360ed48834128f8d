//! Purges: the index of marks that decides what a purge hides and counts
//! what it names (`index.rs`), the journal that keeps the marks across
//! restarts (`journal.rs`), and the `Cache` operations that make them
//! (`ops.rs`).

mod index;
mod journal;
mod ops;

pub(crate) use index::{PurgeIndex, Verdict, Write};
