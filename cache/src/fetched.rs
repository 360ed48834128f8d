//! [`Fetched`]: an origin's answer as the cache judges it, with the
//! request it answers and when each went. Storing ([`Cache::admit`]) and
//! revalidation ([`Cache::revalidated`]) both start from one.
//!
//! [`Cache::admit`]: crate::Cache::admit
//! [`Cache::revalidated`]: crate::Cache::revalidated

use std::time::SystemTime;

use http::{request, response};

use crate::key::CacheKey;

/// A response head from the origin, the request head it answers, and
/// when each went (RFC 9111 §4.2.3). The response's hop-by-hop fields are
/// already removed.
#[derive(Debug, Clone, Copy)]
pub struct Fetched<'a> {
    /// The key the request was looked up under.
    pub key: &'a CacheKey,
    /// The request as the client sent it (its method and the fields a
    /// response varies on).
    pub request: &'a request::Parts,
    pub response: &'a response::Parts,
    /// When the request went to the origin.
    pub request_time: SystemTime,
    /// When the origin's answer arrived.
    pub response_time: SystemTime,
}

impl<'a> Fetched<'a> {
    /// An answer that came at once: both times are `now`.
    pub fn at(
        key: &'a CacheKey,
        request: &'a request::Parts,
        response: &'a response::Parts,
        now: SystemTime,
    ) -> Self {
        Self {
            key,
            request,
            response,
            request_time: now,
            response_time: now,
        }
    }
}
