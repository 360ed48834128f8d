//! When each request is meant to go out.
//!
//! Requests are numbered by one global ticket counter. In a closed loop a
//! request is due as soon as a stream is free. In an open loop request `k`
//! is due at `start + k / rate`, whatever happened to the ones before it;
//! its latency is counted from that due time, not from when it was actually
//! sent, so a stall that delays later requests shows up in their latency
//! instead of being hidden (the "coordinated omission" correction). A
//! stream that is idle and waits for a due time counts from when its timer
//! woke it instead: the timer's own lag (up to a millisecond) is the load
//! generator's, not the target's.

use std::time::{Duration, Instant};

/// The due time of every request, and when to stop.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    deadline: Instant,
    budget: u64,
    rate: Option<f64>,
}

/// What a worker should do with ticket `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send at this time (now or later) and count latency from it.
    At(Instant),
    /// Send now (closed loop): latency counts from the moment of sending.
    Now,
    /// The run is over: the budget is spent, the deadline has passed, or
    /// the request's due time is past the deadline.
    Done,
}

impl Schedule {
    /// A schedule starting at `start`, for at most `budget` requests and
    /// until `start + duration`; `rate` in requests per second (all workers
    /// together) makes it an open loop.
    pub fn new(start: Instant, duration: Duration, budget: u64, rate: Option<f64>) -> Schedule {
        Schedule {
            start,
            deadline: start + duration,
            budget,
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
        }
    }

    /// When the run began.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the run ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The due time of request `k` in an open loop, `None` in a closed one.
    pub fn due(&self, k: u64) -> Option<Instant> {
        let rate = self.rate?;
        // Seconds as f64 stay exact to the nanosecond well past any run we
        // accept (an hour at a million requests a second is 3.6e9 tickets).
        // A due time too far out to represent is past the deadline anyway.
        let at = Duration::try_from_secs_f64(k as f64 / rate)
            .ok()
            .and_then(|offset| self.start.checked_add(offset))
            .unwrap_or(self.deadline);
        Some(at)
    }

    /// What to do with ticket `k`, seen at time `now`.
    pub fn slot(&self, k: u64, now: Instant) -> Slot {
        if k >= self.budget {
            return Slot::Done;
        }
        if now >= self.deadline {
            // An open loop that fell behind does not run on past the
            // deadline to catch up: the requests it could not send are
            // left out (the report counts them as unsent).
            return Slot::Done;
        }
        match self.due(k) {
            Some(at) if at >= self.deadline => Slot::Done,
            Some(at) => Slot::At(at),
            None => Slot::Now,
        }
    }

    /// Requests the schedule will ask for at most: the budget, or fewer if
    /// an open loop's deadline comes first.
    pub fn expected(&self) -> u64 {
        match self.rate {
            Some(rate) => {
                let by_time = (self.deadline - self.start).as_secs_f64() * rate;
                self.budget.min(by_time.ceil() as u64)
            }
            None => self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_spaces_requests_evenly() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, Duration::from_secs(10), 1_000_000, Some(1000.0));
        assert_eq!(s.due(0), Some(t0));
        assert_eq!(s.due(1), Some(t0 + Duration::from_millis(1)));
        assert_eq!(s.due(1000), Some(t0 + Duration::from_secs(1)));
        assert_eq!(s.due(2500), Some(t0 + Duration::from_millis(2500)));
        // Due times never go backwards.
        let mut last = t0;
        for k in 0..5000 {
            let at = s.due(k).expect("open loop");
            assert!(at >= last);
            last = at;
        }
    }

    #[test]
    fn fractional_rates_keep_their_spacing() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, Duration::from_secs(60), 100, Some(3.0));
        let gap = s.due(3).expect("open") - s.due(0).expect("open");
        assert_eq!(gap, Duration::from_secs(1));
        let one = s.due(1).expect("open") - t0;
        assert!((one.as_secs_f64() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn open_loop_stops_at_deadline_or_budget() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, Duration::from_secs(2), 10_000, Some(100.0));
        assert_eq!(s.slot(199, t0), Slot::At(t0 + Duration::from_millis(1990)));
        assert_eq!(s.slot(200, t0), Slot::Done);
        assert_eq!(s.expected(), 200);
        // Behind schedule at the deadline: stop rather than catch up.
        assert_eq!(s.slot(150, t0 + Duration::from_secs(2)), Slot::Done);
        let small = Schedule::new(t0, Duration::from_secs(2), 50, Some(100.0));
        assert_eq!(small.slot(50, t0), Slot::Done);
        assert_eq!(small.expected(), 50);
    }

    #[test]
    fn closed_loop_runs_until_deadline_or_budget() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, Duration::from_secs(1), 3, None);
        assert_eq!(s.due(0), None);
        assert_eq!(s.slot(0, t0), Slot::Now);
        assert_eq!(s.slot(3, t0), Slot::Done);
        assert_eq!(s.slot(1, t0 + Duration::from_secs(1)), Slot::Done);
        assert_eq!(s.expected(), 3);
    }

    #[test]
    fn tiny_rates_do_not_overflow() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, Duration::from_secs(1), 10, Some(1e-300));
        assert_eq!(s.slot(0, t0), Slot::At(t0));
        assert_eq!(s.slot(1, t0), Slot::Done);
        assert_eq!(s.expected(), 1);
    }

    #[test]
    fn nonsense_rates_mean_closed_loop() {
        let t0 = Instant::now();
        for r in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let s = Schedule::new(t0, Duration::from_secs(1), 1, Some(r));
            assert_eq!(s.due(0), None);
            assert_eq!(s.slot(0, t0), Slot::Now);
        }
    }
}
