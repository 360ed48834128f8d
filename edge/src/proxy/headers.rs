//! Header handling at the proxy's two edges: hop-by-hop fields never cross
//! (RFC 9110 §7.6.1), forwarding fields are ours to set, and `Via` records
//! each hop.

use std::net::IpAddr;

use http::header::{
    CONNECTION, HOST, HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{HeaderMap, Version};

/// The pseudonym this proxy uses in `Via` and `Cache-Status`.
pub const PSEUDONYM: &str = "Outpost";

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes `Connection`, every field it names, and the other hop-by-hop fields.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TE,
        TRAILER,
        TRANSFER_ENCODING,
        UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Prepares a client's request headers for the origin: no hop-by-hop fields,
/// no client-supplied `Forwarded` / `X-Forwarded-Host`, the client appended
/// to `X-Forwarded-For`, our `X-Forwarded-Proto`, `Host` and `Via`.
pub fn to_origin(headers: &mut HeaderMap, client: IpAddr, tls: bool, host: &str, version: Version) {
    // TE is hop-by-hop, but a client that takes trailers (gRPC must) gets
    // them relayed, so the origin may send them (RFC 9110 §10.1.4).
    let trailers = headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    strip_hop_by_hop(headers);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(FORWARDED);
    headers.remove(X_FORWARDED_HOST);
    let client = client.to_canonical().to_string();
    let forwarded_for = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) if !existing.trim().is_empty() => format!("{existing}, {client}"),
        _ => client,
    };
    headers.remove(X_FORWARDED_FOR);
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Ok(value) = HeaderValue::from_str(host) {
        headers.insert(HOST, value);
    }
    append_via(headers, version);
}

/// Adds this hop to `Via`, naming the protocol version the message arrived with.
pub fn append_via(headers: &mut HeaderMap, version: Version) {
    let protocol = match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    };
    let existing = headers.get(VIA).and_then(|v| v.to_str().ok());
    if existing.is_none() && protocol == "1.1" {
        // The common case, on every response: made once.
        static OURS: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
            HeaderValue::from_str(&format!("1.1 {}", PSEUDONYM.to_ascii_lowercase()))
                .unwrap_or(HeaderValue::from_static("1.1 outpost"))
        });
        headers.insert(VIA, OURS.clone());
        return;
    }
    let hop = format!("{protocol} {}", PSEUDONYM.to_ascii_lowercase());
    let value = match existing {
        Some(existing) => format!("{existing}, {hop}"),
        None => hop,
    };
    headers.remove(VIA);
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(VIA, value);
    }
}

/// Removes the fields named in `names` (a few), looking at the map's own
/// names once: a removal by name hashes the name first, and a head seldom
/// carries any of these.
pub(crate) fn remove_named(headers: &mut HeaderMap, names: &[http::HeaderName]) {
    if names.is_empty() {
        return;
    }
    let found: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| names.contains(name))
        .cloned()
        .collect();
    for name in found {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9110 §7.6.3: each hop appends itself, with the protocol version
    /// the message came in with.
    #[test]
    fn via_names_this_hop_after_the_others() {
        let mut h = HeaderMap::new();
        append_via(&mut h, Version::HTTP_11);
        assert_eq!(h[VIA], "1.1 outpost");
        append_via(&mut h, Version::HTTP_2);
        assert_eq!(h[VIA], "1.1 outpost, 2 outpost");
        let mut h = HeaderMap::new();
        h.insert(VIA, HeaderValue::from_static("1.0 fred"));
        append_via(&mut h, Version::HTTP_11);
        assert_eq!(h.get_all(VIA).iter().count(), 1);
        assert_eq!(h[VIA], "1.0 fred, 1.1 outpost");
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarding_fields_are_set_by_us() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
        h.insert(FORWARDED, HeaderValue::from_static("for=1.2.3.4"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        to_origin(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            false,
            "example.com",
            Version::HTTP_11,
        );
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.9, 127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert_eq!(h[HOST], "example.com");
        assert_eq!(h[VIA], "1.1 outpost");
        assert!(!h.contains_key(X_FORWARDED_HOST));
        assert!(!h.contains_key(FORWARDED));
    }
}
