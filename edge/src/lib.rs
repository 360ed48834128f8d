//! Outpost's edge: one process that wires the config, the cache, the origin
//! pools and the side API together and serves them on their sockets. The
//! modules follow a request's path through the process:
//!
//! - [`front`]: the front door. Accept loops and the drain (`listen`), TLS
//!   with the certificate chosen by SNI (`tls`), the strict HTTP/1 reader
//!   and the HTTP/2 flood guard in front of the protocol servers
//!   (`strict`), and interim responses on their way to clients (`interim`).
//! - [`proxy`]: one request from arrival to answer. Routing by host and
//!   path (`router`, `route`), the request as it travels (`exchange`),
//!   answers from the cache (`hit`), revalidation (`revalidate`), misses
//!   and coalescing (`fetch`, `storing`), requests the cache takes no part
//!   in (`pass`), WebSocket tunnels (`tunnel`), ranges (`range`), header
//!   rules between client and origin (`headers`), and the answers Outpost
//!   writes itself (`respond`).
//! - [`origin`]: the origin side. Pools with failover (`pool`), one server
//!   and its client (`server`), the ketama ring (`ring`), health (`health`),
//!   DNS and dialling (`resolve`), the HTTP/1.1 and HTTP/2 clients (`h1`,
//!   `h2`) and origin bodies with their time-outs (`body`).
//! - [`lifecycle`]: the process over time. Start-up (`start`), config
//!   generations (`generation`) and reload (`reload`), what `outpost
//!   check` verifies (`check`), the binary upgrade (`upgrade`), and the
//!   built-in demo (`demo`).
//! - [`fleet`]: this node among others on NATS JetStream: purges that reach
//!   every member, the replay of those missed while away, membership.
//! - [`observe`]: what the process says about itself: the access log
//!   (`access_log`) and metrics.
//!
//! - [`hooks`]: custom logic at the phases of a request, for a binary of
//!   one's own; [`cli`]: the `outpost` command as a function, which such a
//!   binary runs with its hooks.
//!
//! Dependencies point one way: `lifecycle` builds everything; `front` hands
//! requests to `proxy`; `proxy` asks `origin`; every room may count in
//! `observe`.

mod body;
pub mod cli;
mod fleet;
mod front;
pub mod hooks;
mod lifecycle;
mod observe;
mod origin;
mod proxy;

pub use lifecycle::check::{check, unresolved};
pub use lifecycle::demo;
pub use lifecycle::reload::{ConfigSource, tokens_from_env};
pub use lifecycle::start::{Running, StartError, start};
pub use lifecycle::upgrade::{self, Sockets};
pub use observe::store_error_counter;
pub use outpost_purge_api::Tokens;

/// Certificates made on the spot: the demo's, and the tests' own.
pub mod tls {
    pub use crate::front::tls::{TlsError, certificate_authority, self_signed, signed_certificate};
}

/// What the fuzz targets in `fuzz/` drive: the strict HTTP/1 checker and
/// Range evaluation, which the proxy's modules keep to themselves.
#[doc(hidden)]
pub mod fuzzing;

/// What the criterion benchmarks in `benches/` measure.
#[doc(hidden)]
pub mod bench {
    pub use crate::origin::ring::Ring;
    pub use crate::proxy::actions::edits_for_bench;
    pub use crate::proxy::headers::to_origin;
}
