//! A server's health: the verdict of active checks (rise and fall
//! thresholds) and passive ejection after failures on live traffic, with a
//! cool-down that doubles while the failures go on.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_config::Eject;

/// Milliseconds on a monotonic clock that starts with the process.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub struct Health {
    /// The last verdict of the active checks (true without checks).
    active_ok: AtomicBool,
    check_run: AtomicU32,
    /// Failures on live traffic since the last success.
    failures: AtomicU32,
    /// Ejections since the last success, for the back-off.
    ejections: AtomicU32,
    /// Out of rotation until this instant (`now_ms`).
    ejected_until: AtomicU64,
    /// Ejections since the process started (for the status page).
    ejected_total: AtomicU64,
    /// Time to a response head, microseconds, a moving average (1/8 of
    /// each new sample); 0 before the first.
    latency_us: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            active_ok: AtomicBool::new(true),
            check_run: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejected_total: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// Takes over another record's state: a reload rebuilds the pools, and
    /// a server that was down before it is still down after it. The
    /// verdict of active checks carries over only when checks still run.
    pub fn inherit(&self, other: &Health, checked: bool) {
        let copy32 = |to: &AtomicU32, from: &AtomicU32| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        if checked {
            self.active_ok
                .store(other.active_ok.load(Ordering::Relaxed), Ordering::Relaxed);
            copy32(&self.check_run, &other.check_run);
        }
        copy32(&self.failures, &other.failures);
        copy32(&self.ejections, &other.ejections);
        for (to, from) in [
            (&self.ejected_until, &other.ejected_until),
            (&self.ejected_total, &other.ejected_total),
            (&self.latency_us, &other.latency_us),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// A response head arrived `after` the request was sent.
    pub fn record_latency(&self, after: Duration) {
        let sample = u64::try_from(after.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .latency_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    // Integer steps toward the sample, never stuck short of it.
                    let step = (sample.abs_diff(old) / 8).max(1);
                    if sample > old {
                        old.saturating_add(step)
                    } else {
                        old.saturating_sub(step).max(1)
                    }
                })
            });
    }

    /// The moving average of the time to a response head; None before
    /// the first response.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// Ejections since the process started.
    pub fn ejections(&self) -> u64 {
        self.ejected_total.load(Ordering::Relaxed)
    }

    /// Whether the server takes traffic now.
    pub fn is_available(&self) -> bool {
        self.active_ok.load(Ordering::Relaxed) && !self.is_ejected()
    }

    pub fn passes_checks(&self) -> bool {
        self.active_ok.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        now_ms() < self.ejected_until.load(Ordering::Relaxed)
    }

    /// Time left in the current ejection.
    pub fn ejected_for(&self) -> Duration {
        Duration::from_millis(
            self.ejected_until
                .load(Ordering::Relaxed)
                .saturating_sub(now_ms()),
        )
    }

    /// A request was answered (not 5xx).
    pub fn record_success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.ejections.store(0, Ordering::Relaxed);
    }

    /// A connect failure or a 5xx answer. Returns true when this failure ejected the server.
    pub fn record_failure(&self, eject: &Eject) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if eject.consecutive_failures == 0
            || failures < eject.consecutive_failures
            || self.is_ejected()
        {
            return false;
        }
        self.failures.store(0, Ordering::Relaxed);
        let round = self.ejections.fetch_add(1, Ordering::Relaxed);
        let factor = 1u32.checked_shl(round.min(20)).unwrap_or(u32::MAX);
        let cooldown = eject
            .cooldown
            .get()
            .saturating_mul(factor)
            .min(eject.max_cooldown.get());
        let until =
            now_ms().saturating_add(u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
        self.ejected_total.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// One active check result; returns the new verdict when it changed.
    pub fn record_check(&self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let was_ok = self.active_ok.load(Ordering::Relaxed);
        if ok == was_ok {
            self.check_run.store(0, Ordering::Relaxed);
            return None;
        }
        let run = self.check_run.fetch_add(1, Ordering::Relaxed) + 1;
        if run >= if ok { rise } else { fall } {
            self.check_run.store(0, Ordering::Relaxed);
            self.active_ok.store(ok, Ordering::Relaxed);
            if ok {
                // A server the checks bring back starts with a clean slate.
                self.ejected_until.store(0, Ordering::Relaxed);
                self.record_success();
            }
            return Some(ok);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use outpost_config::Span;

    use super::*;

    fn eject(failures: u32) -> Eject {
        Eject {
            consecutive_failures: failures,
            cooldown: Span(Duration::from_secs(10)),
            max_cooldown: Span(Duration::from_secs(25)),
        }
    }

    #[test]
    fn consecutive_failures_eject_with_a_growing_cooldown() {
        let health = Health::default();
        let rules = eject(3);
        assert!(!health.record_failure(&rules));
        assert!(!health.record_failure(&rules));
        assert!(health.record_failure(&rules));
        assert!(!health.is_available());
        let first = health.ejected_for();
        assert!(
            first > Duration::from_secs(9) && first <= Duration::from_secs(10),
            "{first:?}"
        );
        // The next ejection (once this one is over) doubles, capped at max.
        health.ejected_until.store(0, Ordering::Relaxed);
        for _ in 0..3 {
            health.record_failure(&rules);
        }
        assert!(health.ejected_for() > Duration::from_secs(19));
        health.ejected_until.store(0, Ordering::Relaxed);
        for _ in 0..3 {
            health.record_failure(&rules);
        }
        assert!(health.ejected_for() <= Duration::from_secs(25));
    }

    #[test]
    fn a_success_resets_the_count() {
        let health = Health::default();
        let rules = eject(2);
        health.record_failure(&rules);
        health.record_success();
        assert!(!health.record_failure(&rules));
        assert!(health.is_available());
        assert!(
            !Health::default().record_failure(&eject(0)),
            "0 turns ejection off"
        );
    }

    #[test]
    fn checks_need_rise_and_fall_in_a_row() {
        let health = Health::default();
        assert_eq!(health.record_check(false, 2, 2), None);
        assert_eq!(
            health.record_check(true, 2, 2),
            None,
            "a success breaks the run of failures"
        );
        assert_eq!(health.record_check(false, 2, 2), None);
        assert_eq!(health.record_check(false, 2, 2), Some(false));
        assert!(!health.is_available());
        assert_eq!(health.record_check(true, 2, 2), None);
        assert_eq!(health.record_check(true, 2, 2), Some(true));
        assert!(health.is_available());
    }
}
