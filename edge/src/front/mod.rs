//! The front door: listening sockets and TLS, the checks and guards in
//! front of the protocol servers, and the HTTP/1.1, HTTP/2 and HTTP/3
//! servers that turn client connections into requests for the proxy.

use std::sync::Arc;

use http::HeaderMap;
use http_body::Body;

use crate::proxy::{Proxy, ProxyBody};

mod batched;
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
mod turn;

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

/// `by` after `at`, for a time-out from the config: a span past what the
/// clock can count (the file may say `head_timeout: 18446744073709551615s`)
/// is a year, where `+` would panic.
pub(crate) fn later(at: tokio::time::Instant, by: std::time::Duration) -> tokio::time::Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(std::time::Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

/// An answer's head as HTTP/2 and HTTP/3 send it: no connection-specific
/// fields, a `Date` when the proxy set none, and a `Content-Length` when
/// the body's length is known and the proxy gave none.
pub(crate) fn multiplexed_head(headers: &mut HeaderMap, body: &ProxyBody) {
    strip_connection_fields(headers);
    headers.entry(http::header::DATE).or_insert_with(date::now);
    if !body.is_end_stream()
        && let Some(length) = body.size_hint().exact()
        && !headers.contains_key(http::header::CONTENT_LENGTH)
    {
        headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(length),
        );
    }
}

/// Fields that mean nothing in HTTP/2 and HTTP/3 (RFC 9113 §8.2.2, RFC
/// 9114 §4.2): `Connection` and the fields it names, and the other
/// connection-specific ones.
fn strip_connection_fields(headers: &mut HeaderMap) {
    use http::header::{CONNECTION, TE, TRANSFER_ENCODING, UPGRADE};
    static OTHERS: [http::HeaderName; 2] = [
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ];
    // One pass over the names: an answer seldom carries any of these, and
    // a removal by name hashes (and, given text, parses) it first.
    let any = headers.keys().any(|name| {
        [&CONNECTION, &TE, &TRANSFER_ENCODING, &UPGRADE].contains(&name) || OTHERS.contains(name)
    });
    if !any {
        return;
    }
    if let Some(connection) = headers.remove(http::header::CONNECTION)
        && let Ok(names) = connection.to_str()
    {
        for name in names.split(',') {
            headers.remove(name.trim());
        }
    }
    for name in [
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time-out as long as the config file can write one is far off,
    /// not a panic; an ordinary one is exact.
    #[test]
    fn the_longest_time_outs_do_not_overflow_the_clock() {
        let now = tokio::time::Instant::now();
        assert!(later(now, std::time::Duration::MAX) > now);
        let second = std::time::Duration::from_secs(1);
        assert_eq!(later(now, second), now + second);
    }

    /// RFC 9113 §8.2.2: connection-specific fields never reach h2.
    #[test]
    fn connection_fields_are_stripped() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("content-type", "text/plain"),
        ] {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        strip_connection_fields(&mut headers);
        let left: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }
}
