//! WebSocket tunnels: an HTTP/1.1 upgrade, or an extended CONNECT over
//! HTTP/2 (RFC 8441), forwarded as an HTTP/1.1 upgrade to the origin and
//! joined byte for byte once it answers 101.

use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Response, StatusCode, request};

use super::client::ClientUpgrade;
use super::headers;
use crate::origin::pool::Answer;

use super::exchange::Exchange;
use super::respond::{empty, plain, protocol_error, relay, upstream_error};
use super::status::{CacheStatus, Fwd};
use super::{Proxy, Reply};

impl Proxy {
    /// A WebSocket upgrade (RFC 6455 §4, RFC 9110 §7.8): the request goes
    /// to the origin with its Upgrade; only when the origin answers 101 is
    /// the client answered and the two connections joined, byte for byte,
    /// until either side closes. Any other answer is an ordinary response,
    /// and the client's connection goes on as HTTP. Never cached.
    ///
    /// Over HTTP/2 (`over_h2`, RFC 8441) the client's extended CONNECT
    /// becomes an HTTP/1.1 upgrade towards the origin, with a key of our
    /// own whose accept value the origin must prove, and the origin's 101
    /// becomes a 200 on the client's stream.
    pub(super) async fn tunnel(&self, mut request: Exchange, over_h2: bool) -> Reply {
        let Some(client_side) = request.parts.extensions.remove::<ClientUpgrade>() else {
            return (None, protocol_error("this connection cannot be upgraded\n"));
        };
        if !request.upstream.speaks_http1() {
            return (
                None,
                plain(
                    StatusCode::BAD_GATEWAY,
                    "WebSocket needs an origin pool that speaks HTTP/1.1\n",
                ),
            );
        }
        let mut outgoing = request.origin_parts(&request.parts.headers);
        // A tunnel's answer is its 101; nothing goes before it.
        outgoing
            .extensions
            .remove::<crate::origin::interim::InterimSink>();
        if over_h2 {
            outgoing.method = Method::GET;
        }
        outgoing.headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        outgoing
            .headers
            .insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        outgoing.headers.remove(CONTENT_LENGTH);
        let key = if over_h2 {
            match websocket_key() {
                Ok(key) => Some(key),
                Err(e) => {
                    return (
                        None,
                        plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
                    );
                }
            }
        } else {
            None
        };
        if let Some(key) = &key
            && let Ok(value) = HeaderValue::from_str(key)
        {
            outgoing
                .headers
                .insert(http::header::SEC_WEBSOCKET_KEY, value);
        }
        let answer = match request.send_bodiless(outgoing).await {
            Ok(answer) => answer,
            Err(e) => return upstream_error(&e),
        };
        if answer.response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return (Some(CacheStatus::fwd(Fwd::Bypass)), relay(answer));
        }
        let Answer {
            mut response,
            lease,
            ..
        } = answer;
        // RFC 6455 §4.1: the origin proves it read our key.
        if let Some(key) = &key {
            let accepted = response
                .headers()
                .get(http::header::SEC_WEBSOCKET_ACCEPT)
                .and_then(|v| v.to_str().ok());
            if accepted != Some(websocket_accept(key).as_str()) {
                return (
                    None,
                    plain(
                        StatusCode::BAD_GATEWAY,
                        "the origin's Sec-WebSocket-Accept does not match\n",
                    ),
                );
            }
        }
        let origin_side = hyper::upgrade::on(&mut response);
        let (mut parts, _) = response.into_parts();
        let upgrade = parts.headers.get(http::header::UPGRADE).cloned();
        headers::strip_hop_by_hop(&mut parts.headers);
        if over_h2 {
            // RFC 8441 §5: a 2xx opens the stream; the accept value is
            // HTTP/1.1's business alone.
            parts.status = StatusCode::OK;
            parts.headers.remove(http::header::SEC_WEBSOCKET_ACCEPT);
            parts.version = http::Version::HTTP_2;
        } else {
            parts.headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            parts.headers.insert(
                http::header::UPGRADE,
                upgrade.unwrap_or(HeaderValue::from_static("websocket")),
            );
            parts.version = http::Version::HTTP_11;
        }
        tokio::spawn(async move {
            let origin_side = async { origin_side.await.map_err(std::io::Error::other) };
            let (mut client, origin) = match tokio::try_join!(client_side.upgraded(), origin_side) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                    return;
                }
            };
            let mut origin = hyper_util::rt::TokioIo::new(origin);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut origin).await {
                tracing::debug!(error = %e, "WebSocket tunnel ended");
            }
            // The origin connection's slot is held for the tunnel's life.
            drop(lease);
        });
        (
            Some(CacheStatus::fwd(Fwd::Bypass)),
            Response::from_parts(parts, empty()),
        )
    }
}

/// A `Sec-WebSocket-Key` of our own: 16 random bytes, base64 (RFC 6455 §4.1).
pub(super) fn websocket_key() -> Result<String, boring::error::ErrorStack> {
    let mut nonce = [0u8; 16];
    boring::rand::rand_bytes(&mut nonce)?;
    Ok(boring::base64::encode_block(&nonce))
}

/// The `Sec-WebSocket-Accept` an origin must answer `key` with (RFC 6455 §4.2.2).
pub(super) fn websocket_accept(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    boring::base64::encode_block(&boring::sha::sha1(format!("{key}{GUID}").as_bytes()))
}

/// An HTTP/1.1 request to switch to WebSocket: `Upgrade: websocket` and
/// `Connection: upgrade` on a GET (RFC 6455 §4.1). Other upgrades are not
/// offered: their Upgrade field is dropped as hop-by-hop and the request
/// is served as HTTP (RFC 9110 §7.8 lets a server ignore it).
pub(super) fn is_websocket_upgrade(parts: &request::Parts) -> bool {
    let has_token = |name: http::HeaderName, token: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    parts.method == Method::GET
        && parts.version == http::Version::HTTP_11
        && has_token(http::header::UPGRADE, "websocket")
        && has_token(http::header::CONNECTION, "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §1.3's worked example, and keys of 16 bytes.
    #[test]
    fn websocket_keys_and_accept_values() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let (a, b) = (websocket_key().unwrap(), websocket_key().unwrap());
        assert_ne!(a, b);
        assert_eq!(boring::base64::decode_block(&a).unwrap().len(), 16);
    }
}
