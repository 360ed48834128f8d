//! The progress bar on stderr while the load runs: requests done out of
//! those expected, the current rate, errors and time left. Hidden with
//! `--quiet` and whenever stderr is not a terminal.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outpost_loadtest::Progress;
use tokio::task::JoinHandle;

const TICK: Duration = Duration::from_millis(200);

/// A running progress bar; [`Bar::finish`] clears it.
pub struct Bar {
    bar: ProgressBar,
    ticker: Option<JoinHandle<()>>,
}

impl Bar {
    /// Starts drawing the load's `progress` (unless `quiet` or stderr is
    /// not a terminal).
    pub fn start(quiet: bool, progress: Progress) -> Bar {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            // indicatif hides this target by itself when stderr is no tty.
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(progress.expected()), target);
        if bar.is_hidden() {
            return Bar { bar, ticker: None };
        }
        if let Ok(style) = ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30.cyan/blue}] {human_pos}/{human_len} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let ticker = tokio::spawn(tick(bar.clone(), progress));
        Bar {
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

async fn tick(bar: ProgressBar, progress: Progress) {
    let mut last = (Instant::now(), 0u64);
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let counts = progress.counts();
        let (done, errors) = (counts.responses, counts.failures);
        let now = Instant::now();
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-3);
        let rate = (done + errors).saturating_sub(last.1) as f64 / dt;
        last = (now, done + errors);
        let left = progress.deadline().saturating_duration_since(now);
        bar.set_position(done + errors);
        bar.set_message(format!(
            "{rate:.0} req/s, {errors} errors, {:.0}s left",
            left.as_secs_f64()
        ));
    }
}
