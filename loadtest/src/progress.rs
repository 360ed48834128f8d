//! What a run counts as it goes and what it measured: the live counters
//! the workers bump ([`Progress`] reads them and wakes whoever waits on
//! them), and the [`Outcome`] a run ends with.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::pacing::Schedule;
use crate::tally::Tally;

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Everything counted.
    pub tally: Tally,
    /// From the start to the last worker's end.
    pub elapsed: Duration,
    /// Whether the run was stopped early by the stop signal.
    pub interrupted: bool,
    /// Requests the schedule would ask for: the budget, or in an open
    /// loop fewer if the deadline comes first.
    pub expected: u64,
}

impl fmt::Display for Outcome {
    /// One line: responses by status, failures by kind with the first
    /// message of each, retries, bodies counted, and the time taken.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        write!(
            f,
            "{} responses {:?}, {} failed",
            t.responses(),
            t.statuses,
            t.failures()
        )?;
        for (kind, n) in &t.errors {
            write!(f, "; {n} {}", kind.as_str())?;
            if let Some(first) = t.error_examples.get(kind) {
                write!(f, " (first: {first})")?;
            }
        }
        if t.retried > 0 {
            write!(f, "; {} retried", t.retried)?;
        }
        if !t.bodies.is_empty() {
            write!(f, "; bodies {:?}", t.bodies)?;
        }
        write!(f, "; in {:.2?}", self.elapsed)?;
        if self.interrupted {
            f.write_str(", stopped")?;
        }
        Ok(())
    }
}

/// A snapshot of a running load's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent (or being sent) so far.
    pub sent: u64,
    /// Complete answers so far, whatever their status.
    pub responses: u64,
    /// Requests that got no complete answer so far.
    pub failures: u64,
}

/// Counters the workers bump and watchers read; watchers are woken on
/// every request sent while they wait, and when the run ends.
#[derive(Debug, Default)]
pub(crate) struct Live {
    sent: AtomicU64,
    responses: AtomicU64,
    failures: AtomicU64,
    /// Tasks in [`Progress::sent_at_least`]: only then is anyone woken.
    watchers: AtomicUsize,
    changed: Notify,
    over: AtomicBool,
}

impl Live {
    /// Counts a request going out, and wakes the watchers.
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.watchers.load(Ordering::SeqCst) > 0 {
            self.changed.notify_waiters();
        }
    }

    /// Counts a complete answer.
    pub(crate) fn answered(&self) {
        self.responses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request without a complete answer.
    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Marks the run over when dropped (however the run task ends), and wakes
/// the watchers so that none waits for requests that will never be sent.
pub(crate) struct Over(pub(crate) Arc<Live>);

impl Drop for Over {
    fn drop(&mut self) {
        self.0.over.store(true, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// One task waiting in [`Progress::sent_at_least`], counted while it waits.
struct Watching<'a>(&'a Live);

impl<'a> Watching<'a> {
    fn new(live: &'a Live) -> Watching<'a> {
        live.watchers.fetch_add(1, Ordering::SeqCst);
        Watching(live)
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The counters of a running load, for a progress bar or a test that
/// waits for traffic; cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    pub(crate) live: Arc<Live>,
    pub(crate) schedule: Schedule,
}

impl Progress {
    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            sent: self.live.sent.load(Ordering::SeqCst),
            responses: self.live.responses.load(Ordering::Relaxed),
            failures: self.live.failures.load(Ordering::Relaxed),
        }
    }

    /// Requests sent (or being sent) so far.
    pub fn sent(&self) -> u64 {
        self.live.sent.load(Ordering::SeqCst)
    }

    /// Waits until at least `total` requests have been sent in all: true
    /// then, false if the run ended first. Woken by each request sent, not
    /// by a timer; bound the wait with `tokio::time::timeout`.
    pub async fn sent_at_least(&self, total: u64) -> bool {
        let live = &*self.live;
        let _watching = Watching::new(live);
        loop {
            // Registered before the counter is read: a request sent in
            // between wakes this future.
            let changed = live.changed.notified();
            if live.sent.load(Ordering::SeqCst) >= total {
                return true;
            }
            if live.over.load(Ordering::SeqCst) {
                return live.sent.load(Ordering::SeqCst) >= total;
            }
            changed.await;
        }
    }

    /// Whether the run has ended.
    pub fn is_over(&self) -> bool {
        self.live.over.load(Ordering::SeqCst)
    }

    /// Requests the schedule asks for at most.
    pub fn expected(&self) -> u64 {
        self.schedule.expected()
    }

    /// When the run ends at the latest.
    pub fn deadline(&self) -> Instant {
        self.schedule.deadline()
    }
}
