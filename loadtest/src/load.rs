//! A load in flight, as its owner sees it: [`Load`] starts the workers on
//! the current Tokio runtime and ends with an [`Outcome`]; [`Progress`]
//! shows the counters while it runs and wakes whoever waits for them;
//! [`Stopper`] raises the stop signal from elsewhere (a Ctrl-C handler).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::pacing::Schedule;
use crate::plan::Plan;
use crate::run::{self, Shared};
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
struct Over(Arc<Live>);

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
    live: Arc<Live>,
    schedule: Schedule,
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

/// Raises a load's stop signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    /// Asks the workers to stop: each finishes the request it has in
    /// flight and sends no other.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A running load: bounded by its [`Plan`] in requests and time, stopped
/// early by [`Load::finish`] (or when dropped).
///
/// ```no_run
/// # async fn example() -> Result<(), outpost_loadtest::Error> {
/// use std::time::Duration;
/// use outpost_loadtest::{Load, Plan};
///
/// let plan = Plan::builder("http://127.0.0.1:8080/live")
///     .host("example.com")
///     .connections(4)
///     .requests(10_000)
///     .duration(Duration::from_secs(30))
///     .build()
///     .await?;
/// let load = Load::start(&plan)?;
/// load.progress().sent_at_least(100).await;
/// let outcome = load.finish().await?;
/// assert_eq!(outcome.tally.failures(), 0, "{outcome}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Load {
    progress: Progress,
    stop: StopOnDrop,
    task: JoinHandle<Result<Outcome, Error>>,
}

/// Stops the load when the [`Load`] is dropped unwaited for.
#[derive(Debug)]
struct StopOnDrop(Stopper);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Load {
    /// Starts `plan`'s workers on the current Tokio runtime (call it from
    /// within one). Fails only if TLS cannot be set up.
    pub fn start(plan: &Plan) -> Result<Load, Error> {
        let live = Arc::new(Live::default());
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(plan, live.clone(), stop_rx)?);
        let progress = Progress {
            live: live.clone(),
            schedule: shared.schedule,
        };
        let (connections, streams) = (plan.connections(), plan.streams());
        let task = tokio::spawn(async move {
            let _over = Over(live);
            run::run(shared, connections, streams).await
        });
        Ok(Load {
            progress,
            stop: StopOnDrop(Stopper(stop)),
            task,
        })
    }

    /// The counters, to read or wait on while the load runs.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// A handle that stops this load from elsewhere.
    pub fn stopper(&self) -> Stopper {
        self.stop.0.clone()
    }

    /// Waits for the load to end by itself (its requests or its time run
    /// out, or a [`Stopper`] stops it) and adds up what it saw.
    pub async fn wait(self) -> Result<Outcome, Error> {
        let Load { task, stop, .. } = self;
        let outcome = task.await;
        // Held until the end, so that waiting does not stop the load.
        drop(stop);
        outcome.map_err(Error::Worker)?
    }

    /// Stops the load (requests in flight finish) and adds up what it saw.
    pub async fn finish(self) -> Result<Outcome, Error> {
        self.stop.0.stop();
        self.wait().await
    }
}
