//! Request coalescing: the first miss for a key fetches (the leader);
//! requests for the same key that arrive meanwhile (followers) wait for
//! its response head, and when it can be shared they read the body from
//! the first byte while it streams in, whether its length is known or not.
//! The cache decides who shares: the leader shares what it stores
//! ([`Leader::share`]), and a follower is served only when the response's
//! variant is its own ([`Fill::head_for`]). A leader whose response cannot
//! be shared, or that goes away before its head, releases its followers to
//! fetch on their own, and no follower waits longer than its timeout.
//!
//! A streamed fill holds at most a window of body bytes
//! ([`STREAM_SHARE_MAX`]) that its slowest reader has not read yet: past
//! it, the bytes every reader has read are let go, and the fill waits for
//! the slowest reader rather than grow. A follower that arrives after the
//! first bytes were let go reads the body from the cache once it is stored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most keys remembered as hit-for-pass at once.
const MAX_PASS_KEYS: usize = 100_000;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderMap, StatusCode, response};
use tokio::sync::{Notify, watch};

use crate::store::Storing;
use crate::vary::Variation;

/// Bodies of known length up to this size stream to followers as they
/// arrive; a larger one is stored at the origin's pace, its followers
/// waiting for it to be stored and reading it from the cache. It is also
/// the window of a streamed fill: the most bytes it holds that a reader
/// has not read yet.
pub(crate) const STREAM_SHARE_MAX: u64 = 16 << 20;

/// What a shared fill's followers receive first: the head the leader's
/// client gets, and how the body comes.
#[derive(Debug, Clone)]
pub struct SharedHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// How followers get the body.
    pub body: SharedBody,
    /// What the leader's variant is made of: a follower whose request
    /// selects another variant is not served this response.
    variation: Variation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedBody {
    /// From the fill, from the first byte, as it streams in.
    Streamed,
    /// From the cache, once the fill has stored it.
    Stored,
}

#[derive(Debug, Clone)]
enum Head {
    Pending,
    Shared(Arc<SharedHead>),
    NotShared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Open,
    Complete,
    Failed,
}

#[derive(Debug)]
struct State {
    head: Head,
    /// The body's pieces not let go yet; the first is piece number `base`.
    chunks: VecDeque<Bytes>,
    base: usize,
    /// Bytes in `chunks`.
    held: u64,
    end: End,
    /// The number of the next piece each reader reads (None: a free slot).
    readers: Vec<Option<usize>>,
    /// The writer waits for the slowest reader to move on.
    writer_waiting: bool,
}

impl State {
    /// Lets go of the pieces every reader has read; the first pieces are
    /// then gone for good, and no reader can start from the first byte.
    fn release_read(&mut self) {
        let slowest = self
            .readers
            .iter()
            .flatten()
            .min()
            .copied()
            .unwrap_or(self.base + self.chunks.len());
        while self.base < slowest
            && let Some(chunk) = self.chunks.pop_front()
        {
            self.held -= chunk.len() as u64;
            self.base += 1;
        }
    }
}

/// One fetch in progress that others may join.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<State>,
    /// Bumped on every change; followers wait on it.
    changes: watch::Sender<u64>,
    /// A reader moved on or left while the writer waited for it.
    moved: Notify,
    /// The most unread bytes held (see [`STREAM_SHARE_MAX`]).
    window: u64,
}

impl Fill {
    fn new(window: u64) -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            state: Mutex::new(State {
                head: Head::Pending,
                chunks: VecDeque::new(),
                base: 0,
                held: 0,
                end: End::Open,
                readers: Vec::new(),
                writer_waiting: false,
            }),
            changes,
            moved: Notify::new(),
            window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failed(&self) -> bool {
        self.lock().end == End::Failed
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits up to `timeout` for the leader's head, for a follower whose
    /// request carries `request`'s fields: None when the leader declined to
    /// share, went away, or took too long, or when its response is another
    /// variant than the one `request` selects (RFC 9111 §4.1).
    pub async fn head_for(
        &self,
        request: &HeaderMap,
        timeout: Duration,
    ) -> Option<Arc<SharedHead>> {
        self.head(timeout)
            .await
            .filter(|head| head.variation.matches(request))
    }

    /// Waits up to `timeout` for the leader's head, whatever its variant.
    async fn head(&self, timeout: Duration) -> Option<Arc<SharedHead>> {
        let mut changes = self.changes.subscribe();
        let wait = async {
            loop {
                match &self.lock().head {
                    Head::Shared(head) => return Some(head.clone()),
                    Head::NotShared => return None,
                    Head::Pending => {}
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Waits up to `timeout` for the body to end: true when it ended
    /// cleanly (and was stored, if it could be), false when it failed or
    /// took too long.
    pub async fn completed(&self, timeout: Duration) -> bool {
        let mut changes = self.changes.subscribe();
        let wait = async {
            loop {
                match self.lock().end {
                    End::Complete => return true,
                    End::Failed => return false,
                    End::Open => {}
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// The body as a stream of frames from the first byte, or None when
    /// the first bytes were let go already (the body is longer than the
    /// window and every reader has read past them). The stream fails when
    /// the leader's body failed.
    pub fn reader(self: &Arc<Self>) -> Option<FillBody> {
        self.attach(true)
    }

    /// A reader from the first piece still held; None when `from_start`
    /// and that is not the first piece of the body.
    fn attach(self: &Arc<Self>, from_start: bool) -> Option<FillBody> {
        let mut state = self.lock();
        if from_start && state.base > 0 {
            return None;
        }
        let first = state.base;
        let slot = match state.readers.iter().position(Option::is_none) {
            Some(free) => {
                state.readers[free] = Some(first);
                free
            }
            None => {
                state.readers.push(Some(first));
                state.readers.len() - 1
            }
        };
        drop(state);
        Some(self.stream(slot, first))
    }

    /// The stream of the reader in `slot`, from piece `first`.
    fn stream(self: &Arc<Self>, slot: usize, first: usize) -> FillBody {
        let reader = Reader {
            fill: self.clone(),
            slot,
        };
        let changes = self.changes.subscribe();
        let stream = futures_util::stream::unfold(
            (reader, first, changes, false),
            |(reader, next, mut changes, done)| async move {
                if done {
                    return None;
                }
                loop {
                    {
                        let mut state = reader.fill.lock();
                        if let Some(chunk) = next
                            .checked_sub(state.base)
                            .and_then(|at| state.chunks.get(at))
                        {
                            let frame = http_body::Frame::data(chunk.clone());
                            state.readers[reader.slot] = Some(next + 1);
                            reader.wake_writer(&mut state);
                            drop(state);
                            return Some((Ok(frame), (reader, next + 1, changes, false)));
                        }
                        match state.end {
                            End::Complete => return None,
                            End::Failed => {
                                drop(state);
                                return Some((Err(FillFailed), (reader, next, changes, true)));
                            }
                            End::Open => {}
                        }
                    }
                    if changes.changed().await.is_err() {
                        return Some((Err(FillFailed), (reader, next, changes, true)));
                    }
                }
            },
        );
        Box::pin(stream)
    }
}

/// A fill's body as one reader reads it.
pub type FillBody = BoxStream<'static, Result<http_body::Frame<Bytes>, FillFailed>>;

/// One reader's place in a fill; gone, it holds nothing back.
struct Reader {
    fill: Arc<Fill>,
    slot: usize,
}

impl Reader {
    fn wake_writer(&self, state: &mut State) {
        if state.writer_waiting {
            state.writer_waiting = false;
            self.fill.moved.notify_one();
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = self.fill.lock();
        state.readers[self.slot] = None;
        self.wake_writer(&mut state);
    }
}

/// The body the followers were reading broke off at the origin.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the shared origin response broke off")]
pub struct FillFailed;

/// The fills in progress, by key hash.
#[derive(Debug)]
pub struct Coalescer {
    fills: Mutex<HashMap<[u8; 32], Arc<Fill>>>,
    /// Keys whose last answer could not be shared, until when (hit-for-pass):
    /// requests for them fetch at once instead of queueing.
    pass: Mutex<HashMap<[u8; 32], Instant>>,
    /// Each streamed fill's window (see [`STREAM_SHARE_MAX`]).
    window: u64,
}

/// What a request is for its key.
pub enum Role {
    Leader(Leader),
    Follower(Arc<Fill>),
    /// The key's answers are known not to be shareable: fetch alone.
    Pass,
}

impl Coalescer {
    pub fn new() -> Arc<Self> {
        Self::with_window(STREAM_SHARE_MAX)
    }

    /// A coalescer whose streamed fills hold at most `window` unread bytes.
    pub fn with_window(window: u64) -> Arc<Self> {
        Arc::new(Self {
            fills: Mutex::default(),
            pass: Mutex::default(),
            window,
        })
    }

    /// Leads the fetch of `key`, or follows the one in progress.
    pub fn join(self: &Arc<Self>, key: [u8; 32]) -> Role {
        {
            let mut pass = self.pass.lock().unwrap_or_else(|p| p.into_inner());
            match pass.get(&key) {
                Some(until) if *until > Instant::now() => return Role::Pass,
                Some(_) => {
                    pass.remove(&key);
                }
                None => {}
            }
        }
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fill) = fills.get(&key)
            && !fill.failed()
        {
            return Role::Follower(fill.clone());
        }
        let fill = Arc::new(Fill::new(self.window));
        fills.insert(key, fill.clone());
        Role::Leader(Leader {
            coalescer: self.clone(),
            key,
            fill,
            settled: false,
        })
    }

    fn forget(&self, key: &[u8; 32], fill: &Arc<Fill>) {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        if fills.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            fills.remove(key);
        }
    }
}

/// How a leader's followers get the response it stores.
#[derive(Debug)]
pub enum Sharing {
    /// From the fill, as the body streams in: push every piece of the body
    /// to the writer, and finish it once the body is stored.
    Streamed(FillWriter),
    /// From the cache, once stored (a body of known length too large to
    /// stream at the pace of its slowest reader): finish the writer once
    /// the body is stored.
    Stored(FillWriter),
}

/// The right and duty to settle a fill: share its response or decline.
/// Dropped unsettled, it declines.
#[derive(Debug)]
pub struct Leader {
    coalescer: Arc<Coalescer>,
    key: [u8; 32],
    fill: Arc<Fill>,
    settled: bool,
}

impl Leader {
    /// The followers fetch on their own.
    pub fn decline(mut self) {
        self.settle_declined();
    }

    /// The answer cannot be shared (uncacheable, too large): the followers
    /// fetch on their own, and so does every request for the key during
    /// `remember` rather than queueing behind a fetch (hit-for-pass).
    pub fn decline_for(mut self, remember: Duration) {
        let mut pass = self
            .coalescer
            .pass
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Bounded: an attacker cycling keys cannot grow it without end.
        if pass.len() >= MAX_PASS_KEYS {
            let now = Instant::now();
            pass.retain(|_, until| *until > now);
        }
        if pass.len() < MAX_PASS_KEYS {
            pass.insert(self.key, Instant::now() + remember);
        }
        drop(pass);
        self.settle_declined();
    }

    fn settle_declined(&mut self) {
        if !self.settled {
            self.settled = true;
            self.fill.update(|s| s.head = Head::NotShared);
            self.coalescer.forget(&self.key, &self.fill);
        }
    }

    /// Shares a response being stored with the requests collapsed onto
    /// this fill: `head` is the head the leader's client gets (hop-by-hop
    /// fields removed). A body of unknown length, or of a known length up
    /// to `STREAM_SHARE_MAX` (16 MiB), streams to them; a larger one is
    /// read from the cache once stored.
    pub fn share(self, storing: &Storing, head: &response::Parts) -> Sharing {
        self.share_at_most(storing, head, storing.expected())
    }

    /// [`Leader::share`] for a body whose length is not known but may be
    /// bounded (one the edge compresses as it streams: at most a little
    /// over the origin's length): it is shared as one of `at_most` bytes
    /// would be, or as one of unknown length.
    pub fn share_at_most(
        self,
        storing: &Storing,
        head: &response::Parts,
        at_most: Option<u64>,
    ) -> Sharing {
        let body = match at_most {
            Some(length) if length > STREAM_SHARE_MAX => SharedBody::Stored,
            _ => SharedBody::Streamed,
        };
        let writer = self.publish(SharedHead {
            status: head.status,
            headers: head.headers.clone(),
            body,
            variation: storing.variation().clone(),
        });
        match body {
            SharedBody::Streamed => Sharing::Streamed(writer),
            SharedBody::Stored => Sharing::Stored(writer),
        }
    }

    /// Publishes the head; the returned writer feeds the body.
    fn publish(mut self, head: SharedHead) -> FillWriter {
        self.settled = true;
        self.fill.update(|s| s.head = Head::Shared(Arc::new(head)));
        FillWriter {
            coalescer: self.coalescer.clone(),
            key: self.key,
            fill: self.fill.clone(),
            ended: false,
        }
    }

    pub fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.settle_declined();
    }
}

/// Feeds a shared fill. Dropped before `finish`, the body fails.
#[derive(Debug)]
pub struct FillWriter {
    coalescer: Arc<Coalescer>,
    key: [u8; 32],
    fill: Arc<Fill>,
    ended: bool,
}

impl FillWriter {
    /// Adds a piece of the body, once the fill has room for it: the bytes
    /// its slowest reader has not read stay within the window.
    pub async fn push(&self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        let fill = &self.fill;
        loop {
            let moved = fill.moved.notified();
            tokio::pin!(moved);
            // Registered before the check: a reader that moves after it
            // is heard.
            moved.as_mut().enable();
            {
                let mut state = fill.lock();
                if state.held + chunk.len() as u64 > fill.window {
                    state.release_read();
                }
                if state.held == 0 || state.held + chunk.len() as u64 <= fill.window {
                    state.held += chunk.len() as u64;
                    state.chunks.push_back(chunk);
                    drop(state);
                    fill.changes.send_modify(|n| *n = n.wrapping_add(1));
                    return;
                }
                state.writer_waiting = true;
            }
            moved.await;
        }
    }

    /// The body ended cleanly. Call after the entry is in the cache, so
    /// that a request arriving now finds it there.
    pub fn finish(mut self) {
        self.end(End::Complete);
    }

    fn end(&mut self, end: End) {
        if !self.ended {
            self.ended = true;
            // Forgotten before anyone hears the end: a client that learns
            // of a failure and asks again must start a new fetch, not join
            // the failed one.
            self.coalescer.forget(&self.key, &self.fill);
            self.fill.update(|s| s.end = end);
        }
    }

    pub fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }

    /// The leader's client's reader: taken before the first push, it
    /// reads from the first byte (never None: any first piece will do).
    pub fn reader(&self) -> Option<FillBody> {
        self.fill.attach(false)
    }
}

impl Drop for FillWriter {
    fn drop(&mut self) {
        self.end(End::Failed);
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;
    use crate::testing::*;
    use crate::{Fetched, KeyFields, StoreRules};

    fn head() -> SharedHead {
        SharedHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: SharedBody::Streamed,
            variation: Variation::default(),
        }
    }

    /// A follower of a fill whose body it reads from the cache learns when
    /// the body is stored, and when it failed.
    #[tokio::test]
    async fn followers_of_a_stored_body_hear_of_its_end() {
        let coalescer = Coalescer::new();
        for complete in [true, false] {
            let Role::Leader(leader) = coalescer.join([3; 32]) else {
                panic!("first is the leader")
            };
            let Role::Follower(fill) = coalescer.join([3; 32]) else {
                panic!("second follows")
            };
            let writer = leader.publish(SharedHead {
                body: SharedBody::Stored,
                ..head()
            });
            let waiting = tokio::spawn(async move { fill.completed(Duration::from_secs(5)).await });
            if complete {
                writer.finish();
            } else {
                drop(writer);
            }
            assert_eq!(waiting.await.unwrap(), complete);
        }
    }

    /// Once a fill has failed, whoever asks next leads a new fetch; by
    /// then the failed fill is no longer found.
    #[tokio::test]
    async fn a_request_after_a_failure_leads_a_new_fetch() {
        let coalescer = Coalescer::new();
        let Role::Leader(leader) = coalescer.join([9; 32]) else {
            panic!("first is the leader")
        };
        let writer = leader.publish(head());
        let fill = writer.fill().clone();
        let mut changes = fill.changes.subscribe();
        drop(writer);
        changes.changed().await.expect("the failure is announced");
        assert!(fill.failed());
        assert!(matches!(coalescer.join([9; 32]), Role::Leader(_)));
    }

    #[tokio::test]
    async fn followers_read_the_whole_body_from_the_first_byte() {
        let coalescer = Coalescer::new();
        let Role::Leader(leader) = coalescer.join([1; 32]) else {
            panic!("first is the leader")
        };
        let Role::Follower(early) = coalescer.join([1; 32]) else {
            panic!("second follows")
        };
        let writer = leader.publish(head());
        writer.push(Bytes::from_static(b"ab")).await;
        let Role::Follower(late) = coalescer.join([1; 32]) else {
            panic!("still in progress")
        };
        let reader = tokio::spawn(async move {
            assert!(late.head(Duration::from_secs(1)).await.is_some());
            read_all(late.reader().expect("the first bytes are held")).await
        });
        writer.push(Bytes::from_static(b"cd")).await;
        writer.finish();
        assert_eq!(reader.await.unwrap(), b"abcd");
        assert!(early.head(Duration::from_secs(1)).await.is_some());
        assert!(
            matches!(coalescer.join([1; 32]), Role::Leader(_)),
            "a finished fill is forgotten"
        );
    }

    #[tokio::test]
    async fn a_declining_or_vanishing_leader_releases_followers() {
        let coalescer = Coalescer::new();
        let Role::Leader(leader) = coalescer.join([2; 32]) else {
            panic!()
        };
        let Role::Follower(follower) = coalescer.join([2; 32]) else {
            panic!()
        };
        drop(leader);
        assert!(follower.head(Duration::from_secs(1)).await.is_none());
        let Role::Leader(_slow) = coalescer.join([3; 32]) else {
            panic!()
        };
        let Role::Follower(waiting) = coalescer.join([3; 32]) else {
            panic!()
        };
        assert!(
            waiting.head(Duration::from_millis(20)).await.is_none(),
            "the timeout bounds the wait"
        );
    }

    #[tokio::test]
    async fn an_unshareable_answer_is_remembered_for_a_while() {
        let coalescer = Coalescer::new();
        let Role::Leader(leader) = coalescer.join([5; 32]) else {
            panic!()
        };
        leader.decline_for(Duration::from_millis(50));
        assert!(matches!(coalescer.join([5; 32]), Role::Pass));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(coalescer.join([5; 32]), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_broken_body_fails_for_followers() {
        let coalescer = Coalescer::new();
        let Role::Leader(leader) = coalescer.join([4; 32]) else {
            panic!()
        };
        let writer = leader.publish(head());
        let fill = writer.fill().clone();
        writer.push(Bytes::from_static(b"partial")).await;
        drop(writer);
        let frames: Vec<_> = fill.reader().expect("held").collect().await;
        assert_eq!(frames.len(), 2);
        assert!(frames[1].is_err());
    }

    /// Admits a 200 that varies on Accept-Language, answering a request
    /// in `language`, under a rule keying on the `lang` cookie.
    fn storing(language: &str, length: Option<u64>) -> (crate::Cache, Storing, response::Parts) {
        let (cache, _) = setup();
        let res = ok(&[("cache-control", "max-age=60"), ("vary", "accept-language")]);
        let req = get(&[("accept-language", language), ("cookie", "lang=x")]);
        let fields = KeyFields {
            headers: Vec::new(),
            cookies: vec!["lang".to_owned()],
        };
        let fetched = Fetched {
            key: &key(),
            request: &req,
            response: &res,
            request_time: cache.now(),
            response_time: cache.now(),
        };
        let storing = cache
            .admit(&fetched, StoreRules::default(), &fields, length, u64::MAX)
            .expect("admitted");
        (cache, storing, res)
    }

    /// The cache decides how a fill is shared: a body of known length up
    /// to the streaming bound, or of unknown length, streams to followers;
    /// a larger one is read from the cache once stored.
    #[tokio::test]
    async fn the_length_decides_how_a_fill_is_shared() {
        let coalescer = Coalescer::new();
        for (length, expected) in [
            (Some(10), SharedBody::Streamed),
            (Some(STREAM_SHARE_MAX), SharedBody::Streamed),
            (Some(STREAM_SHARE_MAX + 1), SharedBody::Stored),
            (None, SharedBody::Streamed),
        ] {
            let (_cache, storing, res) = storing("en", length);
            let Role::Leader(leader) = coalescer.join([6; 32]) else {
                panic!("first is the leader")
            };
            let Role::Follower(fill) = coalescer.join([6; 32]) else {
                panic!("second follows")
            };
            let sharing = leader.share(&storing, &res);
            let request = get(&[("accept-language", "en"), ("cookie", "lang=x")]);
            let head = fill
                .head_for(&request.headers, Duration::from_secs(1))
                .await;
            assert_eq!(head.map(|h| h.body), Some(expected), "{length:?}");
            let (Sharing::Streamed(writer) | Sharing::Stored(writer)) = sharing;
            writer.finish();
            assert!(matches!(coalescer.join([6; 32]), Role::Leader(_)));
        }
    }

    async fn read_all(body: FillBody) -> Vec<u8> {
        body.map(|f| f.expect("no failure").into_data().expect("data"))
            .collect::<Vec<_>>()
            .await
            .concat()
    }

    /// A streamed fill holds at most its window of bytes its slowest
    /// reader has not read: the writer waits for that reader, a reader
    /// that goes away holds nothing back, and once the first bytes are let
    /// go a late follower is told to read the cache instead.
    #[tokio::test]
    async fn a_streamed_fill_holds_at_most_its_window() {
        let coalescer = Coalescer::with_window(4);
        let Role::Leader(leader) = coalescer.join([8; 32]) else {
            panic!("first is the leader")
        };
        let writer = leader.publish(head());
        let fill = writer.fill().clone();
        let mut slow = writer.reader().expect("the leader's reader");
        let fast = fill.reader().expect("nothing let go yet");
        let fast = tokio::spawn(read_all(fast));
        writer.push(Bytes::from_static(b"ab")).await;
        writer.push(Bytes::from_static(b"cd")).await;
        // Four bytes unread by `slow`: the next piece waits for it.
        let held = |fill: &Fill| fill.lock().held;
        let pushing = tokio::spawn(async move {
            writer.push(Bytes::from_static(b"ef")).await;
            writer
        });
        tokio::task::yield_now().await;
        assert!(
            !pushing.is_finished(),
            "the writer waits for the slowest reader"
        );
        assert!(fill.lock().writer_waiting);
        assert_eq!(held(&fill), 4);
        let first = slow.next().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "ab");
        let writer = pushing.await.unwrap();
        assert_eq!(
            held(&fill),
            4,
            "\"ab\" let go once read by all, \"ef\" taken"
        );
        assert!(fill.reader().is_none(), "the first bytes are gone");
        let Role::Follower(late) = coalescer.join([8; 32]) else {
            panic!("still in progress")
        };
        assert!(late.reader().is_none());
        // A reader that goes away holds nothing back.
        drop(slow);
        for piece in [&b"gh"[..], b"ij", b"kl"] {
            writer.push(Bytes::from_static(piece)).await;
        }
        writer.finish();
        assert_eq!(fast.await.unwrap(), b"abcdefghijkl");
        assert!(held(&fill) <= 4);
    }

    /// RFC 9111 §4.1: a follower is served the leader's response only when
    /// its request selects the same variant: the same values of the Vary
    /// fields and of the rule's key fields and cookies.
    #[tokio::test]
    async fn a_follower_of_another_variant_is_not_served() {
        let coalescer = Coalescer::new();
        let (_cache, storing, res) = storing("en, de;q=0.5", Some(2));
        let Role::Leader(leader) = coalescer.join([7; 32]) else {
            panic!("first is the leader")
        };
        let Role::Follower(fill) = coalescer.join([7; 32]) else {
            panic!("second follows")
        };
        let Sharing::Streamed(writer) = leader.share(&storing, &res) else {
            panic!("a short body streams")
        };
        let wait = Duration::from_secs(1);
        let asks = |language: &str, cookie: &str| {
            get(&[("accept-language", language), ("cookie", cookie)]).headers
        };
        assert!(
            fill.head_for(&asks("DE;q=0.5,en", "lang=x"), wait)
                .await
                .is_some()
        );
        assert!(fill.head_for(&asks("fr", "lang=x"), wait).await.is_none());
        assert!(
            fill.head_for(&asks("en, de;q=0.5", "lang=y"), wait)
                .await
                .is_none()
        );
        assert!(fill.head_for(&get(&[]).headers, wait).await.is_none());
        writer.finish();
    }
}
