//! Request coalescing: the first miss for a key fetches (the leader);
//! requests for the same key that arrive meanwhile (followers) wait for
//! its response head, and when it can be shared they read the body from
//! the first byte while it streams in. The cache decides who shares: the
//! leader shares what it stores ([`Leader::share`]), and a follower is
//! served only when the response's variant is its own ([`Fill::head_for`]).
//! A leader whose response cannot be shared, or that goes away before its
//! head, releases its followers to fetch on their own, and no follower
//! waits longer than its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most keys remembered as hit-for-pass at once.
const MAX_PASS_KEYS: usize = 100_000;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, response};
use tokio::sync::watch;

use crate::store::Storing;
use crate::vary::Variation;

/// Bodies up to this size stream to followers as they arrive; a larger
/// one would have to be held whole in memory for them, so its followers
/// wait for it to be stored instead, and read it from the cache.
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
    chunks: Vec<Bytes>,
    end: End,
}

/// One fetch in progress that others may join.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<State>,
    /// Bumped on every change; followers wait on it.
    changes: watch::Sender<u64>,
}

impl Fill {
    fn new() -> Self {
        let (changes, _) = watch::channel(0);
        Self {
            state: Mutex::new(State {
                head: Head::Pending,
                chunks: Vec::new(),
                end: End::Open,
            }),
            changes,
        }
    }

    fn failed(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).end == End::Failed
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
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
                match &self.state.lock().unwrap_or_else(|p| p.into_inner()).head {
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

    /// Waits up to `timeout` for the body to end: true when it was stored
    /// whole, false when it failed or took too long.
    pub async fn completed(&self, timeout: Duration) -> bool {
        let mut changes = self.changes.subscribe();
        let wait = async {
            loop {
                match self.state.lock().unwrap_or_else(|p| p.into_inner()).end {
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

    /// The body as a stream of frames from the first byte; it fails when
    /// the leader's body failed.
    pub fn body(
        self: &Arc<Self>,
    ) -> impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, FillFailed>> + Send + 'static
    {
        let changes = self.changes.subscribe();
        futures_util::stream::unfold(
            (self.clone(), 0usize, changes, false),
            |(fill, next, mut changes, done)| async move {
                if done {
                    return None;
                }
                loop {
                    {
                        let state = fill.state.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(chunk) = state.chunks.get(next) {
                            let frame = http_body::Frame::data(chunk.clone());
                            drop(state);
                            return Some((Ok(frame), (fill, next + 1, changes, false)));
                        }
                        match state.end {
                            End::Complete => return None,
                            End::Failed => {
                                drop(state);
                                return Some((Err(FillFailed), (fill, next, changes, true)));
                            }
                            End::Open => {}
                        }
                    }
                    if changes.changed().await.is_err() {
                        return Some((Err(FillFailed), (fill, next, changes, true)));
                    }
                }
            },
        )
    }
}

/// The body the followers were reading broke off at the origin.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the shared origin response broke off")]
pub struct FillFailed;

/// The fills in progress, by key hash.
#[derive(Debug, Default)]
pub struct Coalescer {
    fills: Mutex<HashMap<[u8; 32], Arc<Fill>>>,
    /// Keys whose last answer could not be shared, until when (hit-for-pass):
    /// requests for them fetch at once instead of queueing.
    pass: Mutex<HashMap<[u8; 32], Instant>>,
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
        Arc::new(Self::default())
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
        let fill = Arc::new(Fill::new());
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
    /// From the cache, once stored (the body is too large to hold for
    /// them): finish the writer once the body is stored.
    Stored(FillWriter),
    /// Not at all (the body's length is unknown): they fetch on their own.
    Alone,
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
    /// fields removed). A body of known length up to `STREAM_SHARE_MAX` (16 MiB)
    /// streams to them, a larger one is read from the cache once stored,
    /// and one of unknown length is not shared.
    pub fn share(self, storing: &Storing, head: &response::Parts) -> Sharing {
        match storing.expected() {
            Some(length) => self.share_at_most(storing, head, length),
            None => Sharing::Alone,
        }
    }

    /// [`Leader::share`] for a body whose length is not known but bounded
    /// (one the edge compresses as it streams: at most a little over the
    /// origin's length): it is shared as one of `at_most` bytes would be.
    pub fn share_at_most(self, storing: &Storing, head: &response::Parts, at_most: u64) -> Sharing {
        let length = at_most;
        let body = if length <= STREAM_SHARE_MAX {
            SharedBody::Streamed
        } else {
            SharedBody::Stored
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
    pub fn push(&self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.fill.update(|s| s.chunks.push(chunk));
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
        writer.push(Bytes::from_static(b"ab"));
        let Role::Follower(late) = coalescer.join([1; 32]) else {
            panic!("still in progress")
        };
        let reader = tokio::spawn(async move {
            assert!(late.head(Duration::from_secs(1)).await.is_some());
            late.body()
                .map(|f| f.unwrap().into_data().unwrap())
                .collect::<Vec<_>>()
                .await
                .concat()
        });
        writer.push(Bytes::from_static(b"cd"));
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
        writer.push(Bytes::from_static(b"partial"));
        drop(writer);
        let frames: Vec<_> = fill.body().collect().await;
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
    /// to the streaming bound streams to followers, a larger one is read
    /// from the cache once stored, one of unknown length is not shared
    /// (its followers fetch on their own, with no hit-for-pass).
    #[tokio::test]
    async fn the_length_decides_how_a_fill_is_shared() {
        let coalescer = Coalescer::new();
        for (length, expected) in [
            (Some(10), Some(SharedBody::Streamed)),
            (Some(STREAM_SHARE_MAX), Some(SharedBody::Streamed)),
            (Some(STREAM_SHARE_MAX + 1), Some(SharedBody::Stored)),
            (None, None),
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
            assert_eq!(head.as_ref().map(|h| h.body), expected, "{length:?}");
            match sharing {
                Sharing::Streamed(writer) | Sharing::Stored(writer) => writer.finish(),
                Sharing::Alone => {}
            }
            assert!(matches!(coalescer.join([6; 32]), Role::Leader(_)));
        }
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
