//! The drain a graceful shutdown runs: stop accepting, ask every
//! connection to finish (GOAWAY on HTTP/2, `Connection: close` on
//! HTTP/1.1), and wait for them, up to the grace period.
//!
//! Two ways to stop: a successor took the sockets over (it accepts from
//! them now, so this process only lets go), or the process is shutting
//! down (the sockets close, so that new clients are refused at once
//! rather than queued where no one accepts, and the side API goes on
//! answering, `/readyz` with 503, until the process exits).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

/// How long a draining connection keeps answering (with `Connection:
/// close`) before it is asked to finish.
pub(crate) const DRAIN_LINGER: Duration = Duration::from_secs(1);

/// Why the accept loops stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Not stopping.
    Serving,
    /// A successor serves on the same sockets.
    HandedOver,
    /// The process ends; no one else accepts on its sockets.
    ShuttingDown,
}

/// Shared by every accept loop and connection: the stop signal and the
/// count of connections still open.
#[derive(Clone)]
pub(crate) struct Drain {
    stop: watch::Receiver<Stop>,
    live: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

/// Starts a drain.
pub(crate) struct DrainHandle {
    stop: watch::Sender<Stop>,
    drain: Drain,
}

impl DrainHandle {
    pub(crate) fn new() -> Self {
        let (stop, rx) = watch::channel(Stop::Serving);
        Self {
            stop,
            drain: Drain {
                stop: rx,
                live: Arc::new(AtomicUsize::new(0)),
                idle: Arc::new(Notify::new()),
            },
        }
    }

    pub(crate) fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Stops every accept loop, asks every connection to finish, and waits
    /// up to `grace` for them. Returns the connections still open then.
    pub(crate) async fn run(&self, grace: Duration, why: Stop) -> usize {
        let _ = self.stop.send(why);
        let live = &self.drain.live;
        let wait = async {
            while live.load(Ordering::SeqCst) > 0 {
                let idle = self.drain.idle.notified();
                if live.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        live.load(Ordering::SeqCst)
    }
}

impl Default for DrainHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// Resolves once the drain has started, with why.
    pub(crate) async fn stopped(&mut self) -> Stop {
        match self.stop.wait_for(|stop| *stop != Stop::Serving).await {
            Ok(why) => *why,
            // The handle is gone: nothing will serve on.
            Err(_) => Stop::ShuttingDown,
        }
    }

    /// Counts a connection open until the returned guard drops.
    pub(crate) fn open(&self) -> OpenConnection {
        self.live.fetch_add(1, Ordering::SeqCst);
        OpenConnection {
            live: self.live.clone(),
            idle: self.idle.clone(),
        }
    }
}

pub(crate) struct OpenConnection {
    live: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        if self.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// Serves one connection until it ends, or asks it to finish once the
/// drain starts and then lets it.
///
/// An HTTP/1.1 client may be sending its next request on an idle
/// keep-alive connection just as the server closes it, and that request
/// is lost (RFC 9112 §9.6). So a draining connection first lingers: for
/// up to [`DRAIN_LINGER`] each response it sends carries `Connection:
/// close` (`closing`), and the client closes once it has its answer. Only
/// then is the connection asked to finish (`finish`: GOAWAY on h2;
/// HTTP/1.1 closes if idle).
pub(crate) async fn serve<C, E>(
    connection: C,
    finish: impl FnOnce(Pin<&mut C>),
    mut drain: Drain,
    closing: &AtomicBool,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = drain.stopped() => {
            closing.store(true, Ordering::SeqCst);
            tokio::select! {
                result = connection.as_mut() => result,
                () = tokio::time::sleep(DRAIN_LINGER) => {
                    finish(connection.as_mut());
                    connection.await
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
