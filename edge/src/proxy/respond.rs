//! The answers Outpost writes itself (errors, 413, 414, 421) and the
//! last touch on every answer from the origin: our `Via` hop.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::headers;
use crate::origin::error::{Chain, UpstreamError};
use crate::origin::pool::Answer;
use crate::origin::response::OriginBody;

use super::status::{CacheStatus, Detail, Fwd};
use super::{ProxyBody, Reply};

/// The answer when the origin could not be reached or failed before
/// answering: 504 for a time-out, 502 otherwise; 400 when the client's
/// own body broke the exchange.
pub(super) fn upstream_error(e: &UpstreamError) -> Reply {
    if let UpstreamError::ClientBody(_) = e {
        // RFC 9112 §6.3: the client's framing failed; the rest of what it
        // sent cannot be trusted, so the connection closes.
        tracing::info!(error = %Chain(e), "the client's request body failed");
        return (None, protocol_error("the request body could not be read\n"));
    }
    let status = match e {
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    let text = Chain(e).to_string();
    tracing::warn!(error = %text, "origin request failed");
    let res = plain(status, &format!("{text}\n"));
    let status = CacheStatus::fwd(Fwd::Miss).detail(Detail::OriginError);
    (Some(status), res)
}

/// A 400 for a request whose framing or target cannot be trusted: the
/// connection closes after it (HTTP/1.1; hyper drops the field on h2).
pub(super) fn protocol_error(text: &str) -> Response<ProxyBody> {
    let mut res = plain(StatusCode::BAD_REQUEST, text);
    res.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    res
}

pub(super) fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res = Response::new(full(Bytes::from(text.to_owned())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

pub(super) fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(super) fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// A response from the origin passed on as it came.
pub(super) fn relay(answer: Answer) -> Response<ProxyBody> {
    let (mut parts, body) = answer.response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    to_client(parts, OriginBody::new(body, answer.lease).boxed_unsync())
}

/// An origin's response head (hop-by-hop fields already gone) made ready
/// for the client: our `Via` hop.
pub(super) fn to_client(mut parts: http::response::Parts, body: ProxyBody) -> Response<ProxyBody> {
    headers::append_via(&mut parts.headers, parts.version);
    // The client's connection decides its own version.
    parts.version = http::Version::HTTP_11;
    Response::from_parts(parts, body)
}

/// An origin response head replaced by a body-less answer (`status`,
/// `headers`), keeping the origin's validators and caching fields.
pub(super) fn to_client_empty(
    mut parts: http::response::Parts,
    (code, extra): (StatusCode, HeaderMap),
) -> Response<ProxyBody> {
    parts.status = code;
    for name in [CONTENT_LENGTH, CONTENT_TYPE, http::header::CONTENT_ENCODING] {
        parts.headers.remove(name);
    }
    for (name, value) in &extra {
        parts.headers.insert(name, value.clone());
    }
    to_client(parts, empty())
}

pub(super) fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}
