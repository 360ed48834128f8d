//! The answers Outpost writes itself (errors, 413, 414, 421) and the
//! last touch on every answer from the origin: our `Via` hop.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::error_page::OwnAnswer;
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
    let (status, general) = match e {
        UpstreamError::Timeout(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "The origin server did not answer in time.",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "The origin server could not be reached or did not answer properly.",
        ),
    };
    // The cause (the origin's address, its error) is for the log, which
    // `Proxy::handle` writes with the request id; the client gets the
    // general words.
    let mut res = plain(status, general);
    if let Some(own) = res.extensions_mut().get_mut::<OwnAnswer>() {
        own.cause = Some(Chain(e).to_string());
    }
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

/// One of Outpost's own answers, `text` saying what happened; its body
/// is made on the way out (`error_page::finish`), with the request id or
/// as the operator's page for the status.
pub(super) fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res = Response::new(empty());
    *res.status_mut() = status;
    res.extensions_mut().insert(OwnAnswer {
        general: text.to_owned(),
        cause: None,
    });
    res
}

/// A rule's redirect to `to`.
pub(super) fn redirect(status: StatusCode, to: &str) -> Response<ProxyBody> {
    let mut res = Response::new(empty());
    *res.status_mut() = status;
    match HeaderValue::from_str(to) {
        Ok(location) => {
            res.headers_mut().insert(http::header::LOCATION, location);
        }
        // A variable (the path, the query) made a target no field can
        // carry: the redirect cannot be given.
        Err(_) => return plain(StatusCode::BAD_REQUEST, "the redirect target is invalid\n"),
    }
    res.extensions_mut().insert(super::metrics::Source::Outpost);
    res
}

pub(crate) fn full(bytes: Bytes) -> ProxyBody {
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
