//! The origin side: pools of servers, how one is chosen (ring, balance,
//! health), and the clients that speak HTTP/1.1 and HTTP/2 to them.

pub(crate) mod body;
pub(crate) mod error;
pub(crate) mod h1;
pub(crate) mod h2;
pub(crate) mod health;
pub(crate) mod interim;
pub(crate) mod metrics;
pub(crate) mod pool;
pub(crate) mod resolve;
pub(crate) mod response;
pub(crate) mod ring;
pub(crate) mod server;
