//! A load in flight, as its owner sees it: [`Load`] starts the workers on
//! the current Tokio runtime and ends with an [`Outcome`]; its
//! [`Progress`] shows the counters while it runs; [`Stopper`] raises the
//! stop signal from elsewhere (a Ctrl-C handler).

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::plan::Plan;
use crate::progress::{Live, Outcome, Over, Progress};
use crate::run::{self, Shared};

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
