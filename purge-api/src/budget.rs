//! The purge budget: each token may do so much purge work, counted in the
//! items a purge names (URLs, prefixes, hosts, tags; everything counts as
//! many), refilled at a steady rate. Every token has a bucket of its own,
//! so a tenant that spends its budget slows no one else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::purge::PurgeRequest;

/// How much purge work a token may do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PurgeBudget {
    /// Items a token may name at once, and the most one purge may name.
    pub burst: u64,
    /// Items added back to each token's budget every second.
    pub per_second: u64,
}

impl Default for PurgeBudget {
    fn default() -> Self {
        Self {
            burst: 100_000,
            per_second: 10_000,
        }
    }
}

/// What a purge of everything counts as: constant work here, but it sends
/// every request after it to the origins.
pub(crate) const EVERYTHING_ITEMS: u64 = 10_000;

impl PurgeRequest {
    /// The work this purge asks for, in items.
    pub(crate) fn items(&self) -> u64 {
        let listed = [&self.urls, &self.prefixes, &self.hosts, &self.tags]
            .into_iter()
            .flatten()
            .map(|list| list.len() as u64)
            .sum::<u64>();
        let everything = if self.everything == Some(true) {
            EVERYTHING_ITEMS
        } else {
            0
        };
        listed + everything
    }
}

/// Why a purge was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The token's budget is spent for now: it holds enough again after this.
    Wait(Duration),
    /// The purge names more than any budget holds: it must be split.
    TooLarge { items: u64, burst: u64 },
}

/// One bucket per token (by the token's hash).
#[derive(Debug)]
pub(crate) struct Budgets {
    limit: Mutex<(PurgeBudget, HashMap<[u8; 32], Bucket>)>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    items: f64,
    at: Instant,
}

impl Budgets {
    pub(crate) fn new(limit: PurgeBudget) -> Self {
        Self {
            limit: Mutex::new((limit, HashMap::new())),
        }
    }

    /// Changes the limit; buckets keep what they hold, up to the new burst.
    pub(crate) fn set(&self, limit: PurgeBudget) {
        let mut held = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = limit;
    }

    /// Takes `items` from `token`'s bucket, or says how long to wait.
    pub(crate) fn take(&self, token: [u8; 32], items: u64, now: Instant) -> Result<(), Refused> {
        let mut held = self.limit.lock().unwrap_or_else(|p| p.into_inner());
        let (limit, buckets) = &mut *held;
        if items > limit.burst {
            return Err(Refused::TooLarge {
                items,
                burst: limit.burst,
            });
        }
        let burst = limit.burst as f64;
        let rate = limit.per_second as f64;
        let bucket = buckets.entry(token).or_insert(Bucket {
            items: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.items = (bucket.items + elapsed * rate).min(burst);
        bucket.at = now;
        let wanted = items as f64;
        if bucket.items >= wanted {
            bucket.items -= wanted;
            return Ok(());
        }
        let missing = wanted - bucket.items;
        let wait = if rate > 0.0 {
            Duration::from_secs_f64((missing / rate).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        };
        Err(Refused::Wait(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    fn budgets() -> Budgets {
        Budgets::new(PurgeBudget {
            burst: 100,
            per_second: 10,
        })
    }

    #[test]
    fn work_is_counted_in_items_not_requests() {
        let purge = PurgeRequest {
            urls: Some(vec!["http://a/1".into(), "http://a/2".into()]),
            prefixes: Some(vec!["a/x/".into()]),
            tags: Some(vec!["t".into()]),
            ..PurgeRequest::default()
        };
        assert_eq!(purge.items(), 4);
        assert_eq!(PurgeRequest::everything().items(), EVERYTHING_ITEMS);
        let budgets = budgets();
        let now = Instant::now();
        assert_eq!(budgets.take(A, 60, now), Ok(()));
        assert_eq!(budgets.take(A, 40, now), Ok(()));
        assert_eq!(
            budgets.take(A, 1, now),
            Err(Refused::Wait(Duration::from_millis(100)))
        );
    }

    #[test]
    fn one_tokens_spending_leaves_the_others_budget_alone() {
        let budgets = budgets();
        let now = Instant::now();
        assert_eq!(budgets.take(A, 100, now), Ok(()));
        assert!(budgets.take(A, 1, now).is_err());
        assert_eq!(budgets.take(B, 100, now), Ok(()));
    }

    #[test]
    fn the_budget_refills_at_its_rate_up_to_the_burst() {
        let budgets = budgets();
        let start = Instant::now();
        assert_eq!(budgets.take(A, 100, start), Ok(()));
        let later = start + Duration::from_secs(3);
        assert_eq!(budgets.take(A, 30, later), Ok(()));
        assert!(budgets.take(A, 1, later).is_err());
        let much_later = later + Duration::from_secs(3600);
        assert_eq!(budgets.take(A, 100, much_later), Ok(()));
    }

    #[test]
    fn a_purge_larger_than_the_burst_is_refused_whatever_is_held() {
        let budgets = budgets();
        assert_eq!(
            budgets.take(A, 101, Instant::now()),
            Err(Refused::TooLarge {
                items: 101,
                burst: 100
            })
        );
    }
}
