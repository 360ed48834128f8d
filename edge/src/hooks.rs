//! Hooks for those who build their own binary on Outpost: a [`Hooks`]
//! value is called at five points of every request, each with a default
//! that does nothing, so that custom logic (an authentication check, a
//! header computed from a database, a key that knows device classes, log
//! lines shipped elsewhere) joins the request path and everything else
//! (the config file, the cache, purges, reloads, upgrades) stays as it is.
//! [`crate::cli::main`] runs the `outpost` command with them.
//!
//! The phases, in a request's order:
//!
//! 1. [`Hooks::request`]: the client's request, routed to a site, before
//!    the rule's edge actions and the cache; it may answer the request
//!    itself. Async: it may ask another service.
//! 2. [`Hooks::cache_key`]: a value that joins the cache key as a variant
//!    of the URL, exactly as a `key.headers` value does (so a purge of the
//!    URL reaches every variant).
//! 3. [`Hooks::origin_request`]: the head sent to an origin (a miss, a
//!    revalidation, a request the cache takes no part in).
//! 4. [`Hooks::response`]: the answer's head as the client will get it,
//!    from the cache or the origin or Outpost itself.
//! 5. [`Hooks::log`]: the request's access-log fields once its body is
//!    out (or the client went away); called whether or not the file has
//!    an `access_log`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use http::{Response, request, response};

/// What is known of a request besides its head.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The client's address.
    pub client: SocketAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// The host the request was routed by: lower case, no port.
    pub host: String,
    /// The request's id, as in the access log and on error pages.
    pub request_id: String,
}

/// A future a hook returns.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Custom logic at the phases of a request. Every method has a default
/// that does nothing; implement those you need.
pub trait Hooks: Send + Sync + 'static {
    /// Called once a request is routed to a site. Returning a response
    /// answers the request with it (nothing is looked up, stored or
    /// forwarded); the head may also be changed for what follows.
    fn request<'a>(
        &'a self,
        info: &'a RequestInfo,
        head: &'a mut request::Parts,
    ) -> HookFuture<'a, Option<Response<Bytes>>> {
        let _ = (info, head);
        Box::pin(async { None })
    }

    /// A value that joins the cache key of a GET or HEAD as a variant of
    /// its URL; None adds nothing.
    fn cache_key(&self, info: &RequestInfo, head: &request::Parts) -> Option<String> {
        let _ = (info, head);
        None
    }

    /// Called with each request head sent to an origin.
    fn origin_request(&self, head: &mut request::Parts) {
        let _ = head;
    }

    /// Called with the head of every answer to a client, last before it
    /// is sent.
    fn response(&self, info: &RequestInfo, head: &mut response::Parts) {
        let _ = (info, head);
    }

    /// Called with the request's access-log fields when its body has
    /// ended or the client went away; what it changes is what the access
    /// log writes.
    fn log(&self, fields: &mut serde_json::Map<String, serde_json::Value>) {
        let _ = fields;
    }
}

/// The request field that carries [`Hooks::cache_key`]'s value to the
/// cache's variant key: a client's own is removed first, and it never
/// reaches an origin.
pub(crate) const KEY_FIELD: http::HeaderName = http::HeaderName::from_static("outpost-hook-key");

/// Hooks that do nothing: the `outpost` command's.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}
