//! Interim (1xx) responses from the origin on their way to the client
//! (RFC 9110 §15.2: a proxy forwards the 1xx responses it did not ask for).
//!
//! Each request's handler gets an [`InterimSink`] for the origin side to
//! fill, and its place is closed (dropping whatever was not sent) before
//! its final answer goes out. What is forwarded is the same on every
//! protocol ([`forwardable`]), and so are the bounds ([`Allowance`]):
//! 16 heads and 64 KiB per request, 256 KiB per connection. How they are
//! written differs:
//! - HTTP/1.1: hyper's server cannot send them, so the connection's
//!   [`H1Queue`] holds them as encoded heads, and the strict connection
//!   wrapper ([`crate::front::strict::Strict`]) writes them where hyper's
//!   output is between messages (everything it wrote has been flushed).
//! - HTTP/2: the stream's task sends them with h2's `send_informational`
//!   (see [`crate::front::h2`]).
//! - HTTP/3: the request's task sends them as HEADERS frames before the
//!   final answer's (see [`crate::front::h3`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::origin::interim::InterimSink;

/// Interim heads forwarded for one request at most, and their bytes: an
/// origin cannot grow a slow client's queue without end.
pub(crate) const MAX_HEADS: usize = 16;
const MAX_BYTES: usize = 64 << 10;
/// All the interim bytes waiting on one connection (HTTP/2 multiplexes).
const MAX_CONNECTION_BYTES: usize = 256 << 10;

/// The interim responses a client is sent: informational, but not 100 (an
/// answer to an expectation of ours, not the client's) nor 101 (a final
/// answer for a tunnel); hop-by-hop fields stay behind.
pub(crate) fn forwardable(status: StatusCode, headers: &HeaderMap) -> Option<HeaderMap> {
    if !status.is_informational() || matches!(status.as_u16(), 100 | 101) {
        return None;
    }
    let mut headers = headers.clone();
    crate::proxy::headers::strip_hop_by_hop(&mut headers);
    Some(headers)
}

/// Roughly what a header block costs, for the interim bounds: each field's
/// bytes and HPACK's and QPACK's 32 per entry.
pub(crate) fn block_size(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum::<usize>()
        + 32
}

/// A request's sink for the origin's interim answers, and what it lets
/// through ([`forwardable`], [`MAX_HEADS`] waiting at most) for the
/// HTTP/2 and HTTP/3 servers to send on the request's stream.
pub(crate) fn channel() -> (InterimSink, InterimHeads) {
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let heads = InterimHeads(waiting.clone());
    let sink = InterimSink::new(move |status, headers| {
        let Some(headers) = forwardable(status, headers) else {
            return;
        };
        let woken = {
            let mut waiting = lock(&waiting);
            if waiting.heads.len() >= MAX_HEADS {
                return;
            }
            waiting.heads.push_back((status, headers));
            waiting.waker.take()
        };
        if let Some(waker) = woken {
            waker.wake();
        }
    });
    (sink, heads)
}

/// A request's forwardable interim heads, in the order they came, until
/// its stream takes them. Made empty: no room is taken until a head comes
/// (most requests never see one), where a channel set its slots aside for
/// every request. It never reports an end: the request's final answer is
/// what ends the wait.
pub(crate) struct InterimHeads(Arc<Mutex<Waiting>>);

#[derive(Default)]
struct Waiting {
    heads: VecDeque<(StatusCode, HeaderMap)>,
    waker: Option<Waker>,
}

fn lock(waiting: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InterimHeads {
    /// The next head, or a wake-up when one comes.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<(StatusCode, HeaderMap)> {
        let mut waiting = lock(&self.0);
        if let Some(head) = waiting.heads.pop_front() {
            return Poll::Ready(head);
        }
        if !waiting
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            waiting.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// The next head, when one comes.
    pub(crate) async fn recv(&mut self) -> (StatusCode, HeaderMap) {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next head, if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<(StatusCode, HeaderMap)> {
        lock(&self.0).heads.pop_front()
    }
}

/// A connection's count of the interim bytes waiting to be written.
#[derive(Clone, Default)]
pub(crate) struct Budget(Arc<AtomicUsize>);

/// One request's share of its connection's budget: what it has forwarded,
/// given back to the connection when the request's place closes.
pub(crate) struct Allowance {
    budget: Budget,
    heads: usize,
    bytes: usize,
}

impl Allowance {
    pub(crate) fn new(budget: &Budget) -> Self {
        Self {
            budget: budget.clone(),
            heads: 0,
            bytes: 0,
        }
    }

    /// Takes `len` more bytes for one more head; false (and nothing taken)
    /// past any bound.
    pub(crate) fn admit(&mut self, len: usize) -> bool {
        if self.heads >= MAX_HEADS || self.bytes + len > MAX_BYTES {
            return false;
        }
        let taken = self
            .budget
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + len <= MAX_CONNECTION_BYTES).then_some(used + len)
            });
        if taken.is_err() {
            return false;
        }
        self.heads += 1;
        self.bytes += len;
        true
    }
}

impl Drop for Allowance {
    fn drop(&mut self) {
        self.budget.0.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// An HTTP/1.1 connection's interim heads, encoded, for the request being
/// answered (one at a time).
#[derive(Clone, Default)]
pub(crate) struct H1Queue(Arc<Queue>);

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    /// Set while heads are queued: the connection's reads and writes look
    /// at this alone otherwise.
    queued: AtomicBool,
    /// The connection's task, woken to write them.
    waker: futures_util::task::AtomicWaker,
    budget: Budget,
}

#[derive(Default)]
struct State {
    heads: VecDeque<Bytes>,
    /// The request being answered: its count, and what it may still send.
    open: Option<(u64, Allowance)>,
    /// The last request count given.
    last: u64,
}

/// A request's place in its connection's queue, closed when dropped: when
/// the final answer is ready, or when the request is given up.
pub(crate) struct Opened {
    queue: H1Queue,
    request: u64,
}

impl Opened {
    /// The sink the origin's interim responses go into.
    pub(crate) fn sink(&self) -> InterimSink {
        let queue = self.queue.clone();
        let request = self.request;
        InterimSink::new(move |status, headers| queue.send(request, status, headers))
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if state.open.as_ref().is_some_and(|(r, _)| *r == self.request) {
            state.open = None;
            state.heads.clear();
            self.queue.0.queued.store(false, Ordering::Release);
        }
    }
}

impl H1Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request is being answered (the only one: the last one's place is
    /// closed).
    pub(crate) fn open(&self) -> Opened {
        let mut state = self.lock();
        state.last += 1;
        let request = state.last;
        state.heads.clear();
        state.open = Some((request, Allowance::new(&self.0.budget)));
        self.0.queued.store(false, Ordering::Release);
        Opened {
            queue: self.clone(),
            request,
        }
    }

    /// Queues an origin's interim response for `request`, if it is still
    /// being answered and the response is one to forward.
    fn send(&self, request: u64, status: StatusCode, headers: &HeaderMap) {
        let Some(headers) = forwardable(status, headers) else {
            return;
        };
        let head = h1_head(status, &headers);
        let mut state = self.lock();
        let Some((open, allowance)) = state.open.as_mut() else {
            return;
        };
        if *open != request || !allowance.admit(head.len()) {
            return;
        }
        state.heads.push_back(head);
        self.0.queued.store(true, Ordering::Release);
        drop(state);
        self.0.waker.wake();
    }

    /// Whether anything waits to be written.
    pub(crate) fn pending(&self) -> bool {
        self.0.queued.load(Ordering::Acquire)
    }

    /// The connection's task, to be woken when something is queued.
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.0.waker.register(waker);
    }

    /// The next head to write, if any.
    pub(crate) fn next(&self) -> Option<Bytes> {
        if !self.pending() {
            return None;
        }
        let mut state = self.lock();
        let head = state.heads.pop_front();
        if state.heads.is_empty() {
            self.0.queued.store(false, Ordering::Release);
        }
        head
    }
}

/// An interim response as an HTTP/1.1 client is sent it.
fn h1_head(status: StatusCode, headers: &HeaderMap) -> Bytes {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Interim")
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Bytes::from(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("link", "</a.css>; rel=preload".parse().unwrap());
        headers.insert("connection", "x-hop".parse().unwrap());
        headers.insert("x-hop", "1".parse().unwrap());
        headers
    }

    #[test]
    fn http1_heads_are_queued_for_the_open_request_only() {
        let conn = H1Queue::default();
        let first = conn.open();
        first.sink().send(StatusCode::EARLY_HINTS, &hints());
        // 100 and 101 are the proxy's own business.
        first.sink().send(StatusCode::CONTINUE, &hints());
        first.sink().send(StatusCode::SWITCHING_PROTOCOLS, &hints());
        let late = first.sink();
        let head = conn.next().expect("one head");
        assert_eq!(
            &head[..],
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
        );
        assert!(conn.next().is_none());
        drop(first);
        // A head from an exchange already answered is dropped.
        late.send(StatusCode::EARLY_HINTS, &hints());
        assert!(conn.next().is_none());
        let second = conn.open();
        for _ in 0..MAX_HEADS + 5 {
            second.sink().send(StatusCode::EARLY_HINTS, &hints());
        }
        let mut count = 0;
        while conn.next().is_some() {
            count += 1;
        }
        assert_eq!(count, MAX_HEADS, "at most {MAX_HEADS} heads per request");
    }

    /// The heads a request's stream takes: forwardable ones only, in
    /// order, at most MAX_HEADS waiting, and a waiting stream is woken
    /// when one comes.
    #[test]
    fn a_streams_heads_come_in_order_bounded_and_wake_it() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;

        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);

        let (sink, mut heads) = channel();
        assert!(heads.poll_recv(&mut cx).is_pending());
        sink.send(StatusCode::CONTINUE, &hints());
        assert_eq!(woken.0.load(Ordering::SeqCst), 0, "a 100 is not forwarded");
        sink.send(StatusCode::EARLY_HINTS, &hints());
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        for _ in 0..MAX_HEADS + 4 {
            sink.send(StatusCode::EARLY_HINTS, &hints());
        }
        let mut taken = 0;
        while let Poll::Ready((status, headers)) = heads.poll_recv(&mut cx) {
            assert_eq!(status, StatusCode::EARLY_HINTS);
            assert!(headers.contains_key("link"));
            assert!(
                !headers.contains_key("x-hop"),
                "hop-by-hop fields stay behind"
            );
            taken += 1;
        }
        assert_eq!(taken, MAX_HEADS);
        assert!(heads.try_recv().is_none());
        sink.send(StatusCode::EARLY_HINTS, &hints());
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            2,
            "woken again once waiting"
        );
        assert!(heads.try_recv().is_some());
    }

    /// Requests share their connection's budget while their places are
    /// open, and give their part back when they close.
    #[test]
    fn the_connection_budget_is_shared_and_given_back() {
        let budget = Budget::default();
        let head = 15_000;
        let mut open: Vec<Allowance> = (0..40).map(|_| Allowance::new(&budget)).collect();
        let admitted = open
            .iter_mut()
            .filter_map(|a| a.admit(head).then_some(()))
            .count();
        assert_eq!(admitted, MAX_CONNECTION_BYTES / head);
        assert!(!Allowance::new(&budget).admit(head));
        open.clear();
        assert!(Allowance::new(&budget).admit(head));
        let mut one = Allowance::new(&budget);
        assert!(one.admit(MAX_BYTES));
        assert!(!one.admit(1), "at most {MAX_BYTES} bytes per request");
    }
}
