//! Scripted origins on 127.0.0.1 port 0, each recording what reaches it.
//!
//! One type, [`Scripted`], holds what the three kinds share: the address,
//! the accept loop, the record of requests and connections, and stopping
//! (`scripted.rs`). What differs is how each connection is served:
//!
//! - [`Origin`] (`handler.rs`): hyper's server, a handler the test writes
//!   answering each request; HTTP/1.1 or HTTP/2, plain or TLS, slow if
//!   asked. The usual origin.
//! - [`RawOrigin`] (`raw.rs`): HTTP/1.1 written by hand on TCP, for the
//!   failures hyper would not produce on purpose ([`Misbehaviour`]).
//! - [`H2Origin`] (`http2.rs`): HTTP/2 on the h2 crate, for what hyper's
//!   server cannot send: interim responses and refused streams
//!   ([`H2Script`]).
//!
//! `tls.rs` makes their TLS acceptors.

mod handler;
mod http2;
mod raw;
mod scripted;
mod tls;

pub use self::handler::{Hyper, Origin, OriginOptions, respond, respond_ranged};
pub use self::http2::{H2, H2Origin, H2Script};
pub use self::raw::{Misbehaviour, Raw, RawOrigin};
pub use self::scripted::{Scripted, Seen};
pub use self::tls::tls_acceptor;
