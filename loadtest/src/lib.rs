//! `outpost-loadtest` as a library: bounded HTTP load against a loopback
//! target, the engine of the `outpost-loadtest` binary and of the
//! end-to-end tests that keep traffic going across a reload or an upgrade.
//!
//! A [`Plan`] (from [`Plan::builder`]) says what to hit and how hard:
//! a loopback URL and Host, connections × streams, a request budget and a
//! time budget (both always bounded), closed loop or a fixed rate, a
//! per-request timeout. [`Load::start`] runs it on the current Tokio
//! runtime; [`Load::progress`] shows the requests sent so far and wakes a
//! waiter as they go out; [`Load::finish`] stops it, [`Load::wait`] lets it
//! run out, and both give an [`Outcome`] whose [`Tally`] holds latency
//! histograms, statuses, `Cache-Status` outcomes, failures by
//! [`ErrorKind`] with the first message of each, retries and, if asked,
//! short bodies by content.
//!
//! Layout: `bounds.rs` (the limits and defaults), `plan.rs` (settings
//! checked against them), `target.rs` (the
//! loopback-only URL), `urls.rs` (URL sets and key distributions),
//! `pacing.rs` (due times), `client.rs` (connections, TLS, error kinds),
//! `h3.rs` (HTTP/3 over quinn and the h3 crate),
//! `run.rs` (the workers), `load.rs` (the handle), `progress.rs` (the
//! counters as it runs, and the outcome),
//! `tally.rs` and [`cache_status`] (counting), `error.rs` (why a plan is
//! refused or a run cannot start).
//!
//! The binary adds the command line, the progress bar, CPU and memory
//! figures from `/proc`, the text and JSON report and the SVG chart
//! (`src/bin/outpost-loadtest/`).

mod bounds;
pub mod cache_status;
mod client;
mod error;
mod h3;
mod load;
mod pacing;
mod plan;
mod progress;
mod run;
mod tally;
mod target;
mod urls;

pub use crate::client::{ErrorKind, Failure};
pub use crate::error::Error;
pub use crate::load::{Load, Stopper};
pub use crate::plan::{
    DEFAULT_CONNECTIONS, DEFAULT_DURATION, DEFAULT_REQUESTS, DEFAULT_TIMEOUT, MAX_BODY_SAMPLE,
    MAX_DURATION, MAX_REQUESTS, MAX_WORKERS, Plan, PlanBuilder,
};
pub use crate::progress::{Counts, Outcome, Progress};
pub use crate::tally::{Bucket, Tally};
pub use crate::target::{Protocol, Scheme, Target, is_loopback};
pub use crate::urls::{Choice, Entry, Pick, Source, UrlSet};
