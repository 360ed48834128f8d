//! The engine under a [`Load`](crate::Load): connections × streams workers
//! take request numbers (tickets) from one counter, wait for each request's
//! due time (open loop) or go at once (closed loop), send it, read the
//! body, and count the outcome. The run ends when the tickets or the time
//! run out, or when the stop signal is raised.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, watch};

use crate::client::{self, Connector, ErrorKind, Failure, Sender};
use crate::error::Error;
use crate::pacing::{Schedule, Slot};
use crate::plan::Plan;
use crate::progress::{Live, Outcome};
use crate::tally::Tally;
use crate::urls::{Choice, UrlSet};

/// A pause after a failed connect, so a target that is down is not
/// hammered in a tight loop (each attempt still uses up a request).
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What all workers share.
pub(crate) struct Shared {
    pub(crate) schedule: Schedule,
    pub(crate) live: Arc<Live>,
    pub(crate) stop: watch::Receiver<bool>,
    tickets: AtomicU64,
    connector: Connector,
    urls: UrlSet,
    seed: u64,
    timeout: Duration,
    keep_alive: bool,
    retry_unanswered: bool,
    body_sample: usize,
}

impl Shared {
    /// Everything the workers of `plan` need, on a schedule that starts
    /// now. Sets up TLS for an https target.
    pub(crate) fn new(
        plan: &Plan,
        live: Arc<Live>,
        stop: watch::Receiver<bool>,
    ) -> Result<Shared, Error> {
        let connector = Connector::new(Arc::new(plan.target().clone()))?;
        let schedule = Schedule::new(
            Instant::now(),
            plan.duration(),
            plan.requests(),
            plan.rate(),
        );
        Ok(Shared {
            schedule,
            live,
            stop,
            tickets: AtomicU64::new(0),
            connector,
            urls: plan.urls().clone(),
            seed: plan.seed(),
            timeout: plan.timeout(),
            keep_alive: plan.keep_alive(),
            retry_unanswered: plan.retry_unanswered(),
            body_sample: plan.body_sample(),
        })
    }
}

/// One connection, shared by its streams; reopened when it breaks.
#[derive(Default)]
struct ConnSlot {
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    sender: Option<Sender>,
    /// Bumped on every new connection, so a worker whose request failed
    /// drops only the connection it used, not a newer one.
    generation: u64,
}

/// Which connection one exchange ran on.
#[derive(Default)]
struct Attempt {
    /// Its generation, once there was one.
    generation: Option<u64>,
    /// Whether it was open before this exchange (kept alive).
    reused: bool,
}

/// A complete response.
struct Answer {
    status: u16,
    cache: Option<String>,
    bytes: u64,
    body: Option<Vec<u8>>,
    sent: Instant,
}

/// Runs `connections` × `streams` workers until the schedule says done or
/// the stop signal is raised, and adds up what they counted.
pub(crate) async fn run(
    shared: Arc<Shared>,
    connections: usize,
    streams: usize,
) -> Result<Outcome, Error> {
    let mut workers = Vec::with_capacity(connections * streams);
    for _ in 0..connections {
        let slot = Arc::new(ConnSlot::default());
        for _ in 0..streams {
            let id = workers.len();
            workers.push(tokio::spawn(worker(shared.clone(), slot.clone(), id)));
        }
    }
    let mut tally = Tally::new()?;
    for w in workers {
        tally.merge(w.await.map_err(Error::Worker)??)?;
    }
    Ok(Outcome {
        tally,
        elapsed: shared.schedule.start().elapsed(),
        interrupted: *shared.stop.borrow(),
        expected: shared.schedule.expected(),
    })
}

/// One stream: takes tickets until the schedule says done.
async fn worker(shared: Arc<Shared>, slot: Arc<ConnSlot>, id: usize) -> Result<Tally, Error> {
    let mut tally = Tally::new()?;
    let mut picker = shared.urls.picker(shared.seed, id)?;
    let mut stop = shared.stop.clone();
    let start = shared.schedule.start();
    loop {
        if *stop.borrow() {
            break;
        }
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let due = match shared.schedule.slot(ticket, now) {
            Slot::Done => break,
            Slot::Now => now,
            // Behind schedule (this stream was busy when the request fell
            // due): latency counts from the due time, so the stall shows.
            Slot::At(at) if at <= now => at,
            // Ahead of it: wait. The timer wakes up to a millisecond late;
            // that lag is the generator's own, so count from the wake-up.
            Slot::At(at) => {
                if !pause_until(at, &mut stop).await {
                    break;
                }
                Instant::now()
            }
        };
        let choice = picker.choose(ticket);
        shared.live.sent();
        let mut attempt = Attempt::default();
        let result = tokio::time::timeout(shared.timeout, async {
            match exchange(&shared, &slot, &choice, &mut attempt, &mut tally).await {
                Err(failure) if failure.unanswered && attempt.reused && shared.retry_unanswered => {
                    tally.retry();
                    slot.forget(attempt.generation).await;
                    exchange(&shared, &slot, &choice, &mut attempt, &mut tally).await
                }
                other => other,
            }
        })
        .await;
        let end = Instant::now();
        let at = end.saturating_duration_since(start);
        let failure = match result {
            Ok(Ok(answer)) => {
                tally.response(
                    answer.status,
                    answer.cache.as_deref(),
                    answer.bytes,
                    end.saturating_duration_since(due),
                    end.saturating_duration_since(answer.sent),
                    at,
                );
                if let Some(body) = answer.body {
                    tally.body(&body);
                }
                shared.live.answered();
                continue;
            }
            Ok(Err(failure)) => failure,
            Err(_) => Failure::new(
                ErrorKind::Timeout,
                format!("no complete answer within {:?}", shared.timeout),
            ),
        };
        let kind = failure.kind;
        slot.forget(attempt.generation).await;
        tally.failure(failure, at);
        shared.live.failed();
        if matches!(kind, ErrorKind::Connect | ErrorKind::Tls)
            && !pause_until(Instant::now() + CONNECT_BACKOFF, &mut stop).await
        {
            break;
        }
    }
    Ok(tally)
}

/// Sleeps until `at`; false if the stop signal came first.
async fn pause_until(at: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(at.into()) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// One request on the slot's connection (opening it first if needed, or
/// always without keep-alive), and its whole body. `attempt` learns which
/// connection it ran on.
async fn exchange(
    shared: &Shared,
    slot: &ConnSlot,
    choice: &Choice<'_>,
    attempt: &mut Attempt,
    tally: &mut Tally,
) -> Result<Answer, Failure> {
    let mut state = slot.state.lock().await;
    if !shared.keep_alive {
        state.sender = None;
    }
    attempt.reused = true;
    if state.sender.as_ref().is_none_or(Sender::is_closed) {
        state.sender = None;
        attempt.reused = false;
        let sender = shared.connector.connect().await?;
        tally.connection(sender.label());
        state.sender = Some(sender);
        state.generation += 1;
    }
    attempt.generation = Some(state.generation);
    let h2 = matches!(state.sender, Some(Sender::H2(_) | Sender::H3(_)));
    let request = shared.connector.request(h2, &choice.path, choice.host)?;
    let (sent, response) = match state.sender.as_mut() {
        None => return Err(Failure::new(ErrorKind::Other, "no connection")),
        Some(Sender::H3(s)) => {
            // Streams share the connection: let go of the slot at once.
            let s = s.clone();
            drop(state);
            let (parts, _) = request.into_parts();
            let got =
                crate::h3::exchange(&s, http::Request::from_parts(parts, ()), shared.body_sample)
                    .await?;
            return Ok(Answer {
                status: got.status,
                cache: got.cache,
                bytes: got.bytes,
                body: got.body,
                sent: got.sent,
            });
        }
        Some(Sender::H2(s)) => {
            // Streams share the connection: let go of the slot at once.
            let mut s = s.clone();
            drop(state);
            s.ready().await.map_err(|e| Failure::from_hyper(&e))?;
            let sent = Instant::now();
            let response = s.send_request(request).await;
            (sent, response.map_err(|e| Failure::from_hyper(&e)))
        }
        Some(Sender::H1(s)) => {
            // Wait for the previous exchange on this connection to end,
            // queue this one, then let the next stream queue behind it.
            s.ready().await.map_err(|e| Failure::before_answer(&e))?;
            let sent = Instant::now();
            let pending = s.send_request(request);
            drop(state);
            (sent, pending.await.map_err(|e| Failure::before_answer(&e)))
        }
    };
    let response = response?;
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-status")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (bytes, body) = client::drain(response.into_body(), shared.body_sample).await?;
    Ok(Answer {
        status,
        cache,
        bytes,
        body,
        sent,
    })
}

impl ConnSlot {
    /// After a failure on connection `generation`: an HTTP/1.1 connection
    /// is dropped (its state is unknown); an HTTP/2 one is kept unless
    /// closed, since a failed stream leaves the others alone.
    async fn forget(&self, generation: Option<u64>) {
        let Some(generation) = generation else { return };
        let mut state = self.state.lock().await;
        if state.generation != generation {
            return;
        }
        let drop_it = match &state.sender {
            Some(Sender::H1(_)) => true,
            Some(s @ (Sender::H2(_) | Sender::H3(_))) => s.is_closed(),
            None => false,
        };
        if drop_it {
            state.sender = None;
        }
    }
}
