//! The progress bar on stderr while the load runs: requests done out of
//! those expected, the current rate, errors and time left. Hidden with
//! `--quiet` and whenever stderr is not a terminal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;

use crate::pacing::Schedule;
use crate::run::Live;

const TICK: Duration = Duration::from_millis(200);

/// A running progress bar; [`Progress::finish`] clears it.
pub struct Progress {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing (unless `quiet` or stderr is not a terminal).
    pub fn start(quiet: bool, schedule: Schedule, live: Arc<Live>) -> Progress {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            // indicatif hides this target by itself when stderr is no tty.
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(schedule.expected()), target);
        if bar.is_hidden() {
            return Progress { bar, ticker: None };
        }
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30.cyan/blue}] {human_pos}/{human_len} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let ticker = tokio::spawn(tick(bar.clone(), schedule, live));
        Progress {
            bar,
            ticker: Some(ticker),
        }
    }

    /// Stops the ticker and clears the bar.
    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

async fn tick(bar: ProgressBar, schedule: Schedule, live: Arc<Live>) {
    let mut last = (Instant::now(), 0u64);
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let done = live.responses.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = (done + errors).saturating_sub(last.1) as f64 / dt;
        last = (now, done + errors);
        let left = schedule.deadline().saturating_duration_since(now);
        bar.set_position(done + errors);
        bar.set_message(format!(
            "{rate:.0} req/s, {errors} errors, {:.0}s left",
            left.as_secs_f64()
        ));
    }
}
