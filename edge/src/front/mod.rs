//! The front door: listening sockets and TLS, the checks and guards in
//! front of the protocol servers, and the HTTP/1.1 and HTTP/2 servers that
//! turn client connections into requests for the proxy.

use std::sync::Arc;

use crate::proxy::Proxy;

mod date;
pub(crate) mod drain;
mod flood;
mod h1;
pub(crate) mod h1_check;
mod h2;
pub(crate) mod h3;
pub(crate) mod interim;
pub(crate) mod listen;
pub(crate) mod metrics;
mod sniff;
mod strict;
pub(crate) mod tls;

/// What the front door takes from the config generation serving now: each
/// request takes the proxy current when it arrives and keeps it to its
/// end, each TLS handshake the listener's acceptor current at accept.
pub(crate) trait Serving: Send + Sync {
    fn proxy(&self) -> Arc<Proxy>;
    /// The TLS acceptor of the listener at `index` in the config, if it
    /// speaks TLS.
    fn acceptor(&self, index: usize) -> Option<Arc<tls::Tls>>;
}

/// The generation serving now, as the front door sees it.
pub(crate) type Live = Arc<dyn Serving>;
