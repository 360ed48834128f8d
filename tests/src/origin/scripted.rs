//! What every scripted origin shares: it listens on 127.0.0.1 port 0,
//! serves each connection on its own task, records the requests and
//! connections it gets, and stops (dropping every connection) when asked
//! or dropped. The kinds differ only in how a connection is served.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// What a scripted origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// The request's field `name` as text; empty when absent or not text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The record a scripted origin keeps, shared with its serving tasks.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    seen: Mutex<Vec<Seen>>,
    requests: AtomicUsize,
    /// Requests whose head arrived, answered or not yet.
    arrived: AtomicUsize,
    connections: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Recorder {
    /// Records a request; the number of requests before it.
    pub(crate) fn record(&self, seen: Seen) -> usize {
        self.seen.lock().expect("lock").push(seen);
        self.count()
    }

    /// Counts a request whose head arrived, before it is answered.
    pub(crate) fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a request not worth recording; the number before it.
    pub(crate) fn count(&self) -> usize {
        self.requests.fetch_add(1, Ordering::SeqCst)
    }

    fn track(&self, task: AbortHandle) {
        self.tasks.lock().expect("lock").push(task);
    }
}

/// A scripted origin listening on 127.0.0.1 port 0, recording what it
/// receives; `Kind` is how it serves ([`Origin`](super::Origin),
/// [`RawOrigin`](super::RawOrigin), [`H2Origin`](super::H2Origin)).
/// Dropping it stops it.
#[derive(Debug)]
pub struct Scripted<Kind> {
    pub addr: SocketAddr,
    recorder: Arc<Recorder>,
    kind: PhantomData<Kind>,
}

impl<Kind> Scripted<Kind> {
    /// Listens, and serves each connection it accepts with `serve` on a
    /// task of its own.
    pub(crate) async fn listen<F, Fut>(serve: F) -> Scripted<Kind>
    where
        F: Fn(TcpStream, Arc<Recorder>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let recorder = Arc::new(Recorder::default());
        let accepting = recorder.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepting.connections.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(serve(stream, accepting.clone()));
                accepting.track(task.abort_handle());
            }
        });
        recorder.track(accept.abort_handle());
        Scripted {
            addr,
            recorder,
            kind: PhantomData,
        }
    }

    /// Stops listening and drops every open connection, as a crashed
    /// origin would.
    pub fn stop(&self) {
        for task in self.recorder.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    /// Requests received so far: answered ([`Origin`](super::Origin)),
    /// whose head was read ([`RawOrigin`](super::RawOrigin)), or streams
    /// opened, refused ones included ([`H2Origin`](super::H2Origin)).
    pub fn hits(&self) -> usize {
        self.recorder.requests.load(Ordering::SeqCst)
    }

    /// Waits (bounded: 5 s) until `n` requests have arrived at an
    /// [`Origin`](super::Origin), answered or still held (by its `delay`):
    /// the moment a request is in flight. Panics if they do not.
    pub async fn await_arrivals(&self, n: usize) {
        for _ in 0..1000 {
            if self.recorder.arrived.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("{n} requests did not reach the origin");
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.recorder.connections.load(Ordering::SeqCst)
    }

    /// The last request received (a [`RawOrigin`](super::RawOrigin)
    /// records none).
    pub fn last(&self) -> Seen {
        self.recorder
            .seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("no request reached the origin")
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.recorder.seen.lock().expect("lock").clone()
    }

    /// `http://ADDR`, for a config.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl<Kind> Drop for Scripted<Kind> {
    fn drop(&mut self) {
        self.stop();
    }
}
