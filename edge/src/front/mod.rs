//! The front door: listening sockets, TLS, and the checks and servers that
//! turn client connections into requests for the proxy.

pub(crate) mod interim;
pub(crate) mod listen;
pub(crate) mod strict;
pub(crate) mod tls;
