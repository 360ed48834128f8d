//! Traffic during a test, from the `outpost-loadtest` library: a plan
//! against one of Outpost's listeners as the tests that keep load going
//! across a reload or an upgrade need it, a bounded wait for progress (an
//! event: each request sent wakes it), and the check that every request
//! was answered 200.

use std::net::SocketAddr;
use std::time::Duration;

use outpost_loadtest::{Load, Outcome, Plan, PlanBuilder};

/// Longest a test waits for a load to make progress.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Bodies this short are counted by content (they name the origin).
const BODY_SAMPLE: usize = 32;

/// A plan for HTTP/1.1 clients sending `GET path` with `Host: host` to
/// `addr`. A request the server closed its kept-alive connection on
/// before any byte of the answer is sent again on a new connection, as
/// RFC 9112 §9.3.1 allows for an idempotent request, and counted in
/// `tally.retried`; bodies up to 32 bytes are counted by content in
/// `tally.bodies`. The caller sets connections, requests and time.
pub fn load_plan(addr: SocketAddr, host: &str, path: &str) -> PlanBuilder {
    Plan::builder(format!("http://{addr}{path}"))
        .host(host)
        .retry_unanswered(true)
        .sample_bodies(BODY_SAMPLE)
}

/// Checks `plan` and starts it.
pub async fn start_load(plan: PlanBuilder) -> Load {
    let plan = plan.build().await.expect("load plan");
    Load::start(&plan).expect("start load")
}

/// Waits (bounded: 10 s) until at least `n` more requests have gone out.
pub async fn await_progress(load: &Load, n: u64) {
    let progress = load.progress();
    let target = progress.sent() + n;
    let reached = tokio::time::timeout(PROGRESS_TIMEOUT, progress.sent_at_least(target)).await;
    assert_eq!(
        reached,
        Ok(true),
        "the load made no progress: {:?}",
        progress.counts()
    );
}

/// Panics unless every request was answered 200, and there was one.
#[track_caller]
pub fn assert_all_ok(outcome: &Outcome) {
    let t = &outcome.tally;
    let not_ok: u64 = t
        .statuses
        .iter()
        .filter(|(status, _)| **status != 200)
        .map(|(_, n)| n)
        .sum();
    assert!(
        t.failures() == 0 && not_ok == 0 && t.responses() > 0,
        "load saw failures: {outcome}"
    );
}
