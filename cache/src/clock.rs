//! Time as the cache sees it: the system clock in production, a clock that
//! tests move by hand.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The wall clock, read coarsely: to the kernel's last tick (a few
/// milliseconds), for a tenth of the cost of a precise read. Every time
/// the cache keeps or compares (ages, lifetimes, `Date`) counts whole
/// seconds, and a hit reads the clock several times.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        use nix::time::{ClockId, clock_gettime};
        let Ok(coarse) = clock_gettime(ClockId::CLOCK_REALTIME_COARSE) else {
            return SystemTime::now();
        };
        match (
            u64::try_from(coarse.tv_sec()),
            u32::try_from(coarse.tv_nsec()),
        ) {
            (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => {
                SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
            }
            // Before 1970: the precise clock says what it makes of that.
            _ => SystemTime::now(),
        }
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn new(start: SystemTime) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse clock is the wall clock to within a few ticks.
    #[test]
    fn the_coarse_clock_keeps_to_the_wall_clock() {
        let before = SystemTime::now();
        let coarse = SystemClock.now();
        let after = SystemTime::now();
        let tick = Duration::from_millis(50);
        assert!(
            coarse + tick >= before && coarse <= after + tick,
            "{coarse:?} outside {before:?}..{after:?}"
        );
    }
}
