//! Harness for end-to-end tests: starts the real `outpost` binary with a
//! config the test writes, origins the test scripts, small clients, and
//! load from the `outpost-loadtest` library. Everything binds 127.0.0.1
//! port 0 and lives in its own temp dir.
//!
//! Layout:
//!
//! - `outpost.rs`: [`Outpost`], the process: start, restart, upgrade,
//!   signals, the `ready` line, memory.
//! - `origin/`: scripted origins that record what reaches them, one type
//!   ([`Scripted`]) for what they share and a file per kind: [`Origin`]
//!   (hyper and a handler), [`RawOrigin`] (HTTP/1.1 by hand),
//!   [`H2Origin`] (HTTP/2 on the h2 crate); their TLS ([`tls_acceptor`]).
//! - `client.rs`: one request on a new connection ([`request`], [`get`],
//!   [`get_streamed`]) and its answer, [`Got`].
//! - `admin.rs`: the side API ([`purge`], [`reload`], [`stats`],
//!   [`explain`], [`metric`], [`await_metric`]).
//! - `config.rs`: configs for the common cases ([`simple_config`],
//!   [`pool_config`]).
//! - `load.rs`: traffic through `outpost-loadtest` ([`load_plan`],
//!   [`start_load`], [`await_progress`], [`assert_all_ok`]).
//! - `nats.rs`: a real `nats-server -js` for fleet tests ([`Nats`]).
//! - `browser.rs`: a headless Chromium over WebDriver ([`Browser`]).
//! - [`h2raw`]: HTTP/2 frames by hand, for what no client library sends.
//! - [`h3client`]: HTTP/3 over quinn and the h3 crate ([`h3client::H3Client`]).

pub mod h2raw;
pub mod h3client;

mod admin;
mod browser;
mod client;
mod config;
mod load;
mod nats;
mod origin;
mod outpost;

pub use crate::admin::{await_metric, explain, metric, metric_sum, purge, reload, stats};
pub use crate::browser::Browser;
pub use crate::client::{Got, get, get_streamed, request, tls_connect, try_request};
pub use crate::config::{pool_config, simple_config};
pub use crate::load::{assert_all_ok, await_progress, load_plan, start_load};
pub use crate::nats::Nats;
pub use crate::origin::{
    H2, H2Origin, H2Script, Hyper, Misbehaviour, Origin, OriginOptions, Raw, RawOrigin, Scripted,
    Seen, respond, respond_ranged, tls_acceptor,
};
pub use crate::outpost::{
    Outpost, SCOPED_TOKEN, SCOPED_TOKEN_ENV, Stopped, access_log_lines, example_bin, memory_kib,
    outpost_bin,
};
