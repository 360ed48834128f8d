//! What the workers count: latency histograms, status codes, Cache-Status
//! outcomes, errors by kind, bytes, connections, retries, short bodies by
//! content, and per-second buckets. Each worker keeps its own [`Tally`];
//! they are merged at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::cache_status::{self, CacheStatus};
use crate::client::{ErrorKind, Failure};
use crate::error::Error;

/// Highest latency the histograms hold, in microseconds (one hour); longer
/// values are clamped to it.
const MAX_MICROS: u64 = 3_600_000_000;
/// Distinct Cache-Status detail strings kept; more are counted as `(more)`.
const MAX_DETAILS: usize = 64;
/// Distinct bodies counted by content; more are counted as `(more)`.
const MAX_BODIES: usize = 64;
/// Where details and bodies beyond the limits are counted.
const MORE: &str = "(more)";

/// Responses and errors that finished in one second of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Responses (any status).
    pub responses: u64,
    /// Failed requests (not counting 5xx responses).
    pub errors: u64,
}

/// One worker's (or, merged, the whole run's) counts.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Microseconds from each request's due time to the end of its body.
    pub latency: Histogram<u64>,
    /// Microseconds from actually sending each request to the end of its
    /// body (equal to `latency` in a closed loop).
    pub service: Histogram<u64>,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Responses by Cache-Status outcome (`none` when absent).
    pub cache_outcomes: BTreeMap<String, u64>,
    /// Responses by Cache-Status detail.
    pub cache_details: BTreeMap<String, u64>,
    /// Failures by kind (5xx responses counted as `bad_status`).
    pub errors: BTreeMap<ErrorKind, u64>,
    /// The first message seen for each kind of failure.
    pub error_examples: BTreeMap<ErrorKind, String>,
    /// Body bytes received.
    pub bytes: u64,
    /// Connections opened, by protocol (`h1`, `h2`).
    pub connections: BTreeMap<&'static str, u64>,
    /// Requests sent a second time because the server had closed a
    /// kept-alive connection before any byte of their answer (only when
    /// the plan allows it; the second attempt is counted as any request).
    pub retried: u64,
    /// Bodies of answers by content (as text), when the plan samples
    /// bodies and they are no longer than its limit.
    pub bodies: BTreeMap<String, u64>,
    /// Completions per second of the run, from its start.
    pub per_second: Vec<Bucket>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Result<Tally, Error> {
        let hist = || Histogram::new_with_bounds(1, MAX_MICROS, 3).map_err(Error::Histogram);
        Ok(Tally {
            latency: hist()?,
            service: hist()?,
            statuses: BTreeMap::new(),
            cache_outcomes: BTreeMap::new(),
            cache_details: BTreeMap::new(),
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            bytes: 0,
            connections: BTreeMap::new(),
            retried: 0,
            bodies: BTreeMap::new(),
            per_second: Vec::new(),
        })
    }

    /// Counts one complete response.
    ///
    /// `latency` runs from the due time, `service` from the send; `at` is
    /// when it finished, measured from the start of the run.
    pub fn response(
        &mut self,
        status: u16,
        cache: Option<&str>,
        bytes: u64,
        latency: Duration,
        service: Duration,
        at: Duration,
    ) {
        self.latency.saturating_record(micros(latency));
        self.service.saturating_record(micros(service));
        *self.statuses.entry(status).or_default() += 1;
        match cache {
            Some(value) => {
                let CacheStatus { outcome, detail } = cache_status::parse(value);
                *self.cache_outcomes.entry(outcome).or_default() += 1;
                count_bounded(&mut self.cache_details, detail, MAX_DETAILS);
            }
            None => {
                *self
                    .cache_outcomes
                    .entry(cache_status::NONE.into())
                    .or_default() += 1
            }
        }
        if status >= 500 {
            self.count_error(ErrorKind::BadStatus, || format!("status {status}"));
        }
        self.bytes += bytes;
        self.bucket(at).responses += 1;
    }

    /// Counts one failed request that finished (or gave up) at `at`.
    pub fn failure(&mut self, failure: Failure, at: Duration) {
        self.count_error(failure.kind, || failure.message);
        self.bucket(at).errors += 1;
    }

    /// Counts a connection opened with protocol `label`.
    pub fn connection(&mut self, label: &'static str) {
        *self.connections.entry(label).or_default() += 1;
    }

    /// Counts a request sent again on a new connection.
    pub fn retry(&mut self) {
        self.retried += 1;
    }

    /// Counts the body of an answer by its content.
    pub fn body(&mut self, body: &[u8]) {
        let text = String::from_utf8_lossy(body).into_owned();
        count_bounded(&mut self.bodies, text, MAX_BODIES);
    }

    fn count_error(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        *self.errors.entry(kind).or_default() += 1;
        self.error_examples.entry(kind).or_insert_with(message);
    }

    fn bucket(&mut self, at: Duration) -> &mut Bucket {
        let i = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(3600);
        if self.per_second.len() <= i {
            self.per_second.resize(i + 1, Bucket::default());
        }
        &mut self.per_second[i]
    }

    /// Responses counted.
    pub fn responses(&self) -> u64 {
        self.latency.len()
    }

    /// Failed requests counted, not counting 5xx responses.
    pub fn failures(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(k, _)| **k != ErrorKind::BadStatus)
            .map(|(_, n)| n)
            .sum()
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: Tally) -> Result<(), Error> {
        self.latency.add(&other.latency).map_err(Error::Merge)?;
        self.service.add(&other.service).map_err(Error::Merge)?;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.cache_outcomes {
            *self.cache_outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.cache_details {
            *self.cache_details.entry(k).or_default() += v;
        }
        for (k, v) in other.bodies {
            *self.bodies.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in other.error_examples {
            self.error_examples.entry(k).or_insert(v);
        }
        for (k, v) in other.connections {
            *self.connections.entry(k).or_default() += v;
        }
        self.bytes += other.bytes;
        self.retried += other.retried;
        if self.per_second.len() < other.per_second.len() {
            self.per_second
                .resize(other.per_second.len(), Bucket::default());
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(other.per_second) {
            mine.responses += theirs.responses;
            mine.errors += theirs.errors;
        }
        Ok(())
    }
}

/// Counts `key` in `map`, or under `(more)` once `map` holds `limit`
/// distinct keys.
fn count_bounded(map: &mut BTreeMap<String, u64>, key: String, limit: usize) {
    let key = if map.len() < limit || map.contains_key(&key) {
        key
    } else {
        MORE.to_owned()
    };
    *map.entry(key).or_default() += 1;
}

/// A duration in whole microseconds, at least 1 (the histogram's floor).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn responses_and_failures_are_counted_apart() -> Result<(), Error> {
        let mut t = Tally::new()?;
        t.response(200, Some("Outpost; hit; ttl=5"), 10, MS, MS, Duration::ZERO);
        t.response(200, Some("Outpost; fwd=miss; stored"), 10, MS, MS, MS);
        t.response(503, None, 0, MS, MS, Duration::from_millis(1500));
        t.failure(
            Failure::new(ErrorKind::Timeout, "slow"),
            Duration::from_secs(2),
        );
        assert_eq!(t.responses(), 3);
        assert_eq!(t.failures(), 1);
        assert_eq!(t.errors[&ErrorKind::BadStatus], 1);
        assert_eq!(t.statuses[&200], 2);
        assert_eq!(t.cache_outcomes["hit"], 1);
        assert_eq!(t.cache_outcomes["miss"], 1);
        assert_eq!(t.cache_outcomes["none"], 1);
        assert_eq!(t.cache_details["fwd=miss; stored"], 1);
        assert_eq!(t.bytes, 20);
        assert_eq!(
            t.per_second,
            [
                Bucket {
                    responses: 2,
                    errors: 0
                },
                Bucket {
                    responses: 1,
                    errors: 0
                },
                Bucket {
                    responses: 0,
                    errors: 1
                },
            ]
        );
        Ok(())
    }

    #[test]
    fn merge_adds_everything() -> Result<(), Error> {
        let mut a = Tally::new()?;
        let mut b = Tally::new()?;
        a.response(200, None, 1, MS, MS, Duration::ZERO);
        b.response(200, None, 2, 2 * MS, MS, Duration::from_secs(3));
        b.failure(Failure::new(ErrorKind::Reset, "gone"), Duration::ZERO);
        b.connection("h2");
        a.merge(b)?;
        assert_eq!(a.responses(), 2);
        assert_eq!(a.bytes, 3);
        assert_eq!(a.per_second.len(), 4);
        assert_eq!(
            a.per_second[0],
            Bucket {
                responses: 1,
                errors: 1
            }
        );
        assert_eq!(a.connections["h2"], 1);
        assert_eq!(a.error_examples[&ErrorKind::Reset], "gone");
        Ok(())
    }

    #[test]
    fn bodies_and_retries_are_counted_and_merged() -> Result<(), Error> {
        let mut a = Tally::new()?;
        let mut b = Tally::new()?;
        a.body(b"A");
        b.body(b"A");
        b.body(b"B");
        b.retry();
        a.merge(b)?;
        assert_eq!(a.bodies["A"], 2);
        assert_eq!(a.bodies["B"], 1);
        assert_eq!(a.retried, 1);
        for n in 0..2 * MAX_BODIES {
            a.body(n.to_string().as_bytes());
        }
        assert_eq!(a.bodies.len(), MAX_BODIES + 1);
        assert!(a.bodies[MORE] > 0);
        Ok(())
    }

    #[test]
    fn extreme_durations_are_clamped() -> Result<(), Error> {
        let mut t = Tally::new()?;
        t.response(200, None, 0, Duration::ZERO, Duration::MAX, Duration::MAX);
        assert_eq!(t.latency.min(), 1);
        assert!(t.service.max() >= MAX_MICROS);
        assert_eq!(t.per_second.len(), 3601);
        Ok(())
    }
}
