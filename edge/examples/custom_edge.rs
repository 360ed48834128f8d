//! An edge of one's own: the `outpost` command with hooks added. Run it as
//! `outpost` is run (`custom_edge run --config FILE`); everything the file
//! configures works as before, and these hooks join every request:
//!
//! - paths under `/members/` need `X-Api-Key: let-me-in`, checked by an
//!   async call standing in for an authentication service; others get a
//!   401 the hook writes itself;
//! - the cache keeps a mobile and a desktop variant of each page, by the
//!   User-Agent's device class (a purge of the URL removes both);
//! - origins are told the device class; clients see which binary served
//!   them; the access log says so too.

use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, request, response};
use outpost_edge::hooks::{HookFuture, Hooks, RequestInfo};

struct DeviceClasses;

/// What the User-Agent says the device is.
fn device_class(head: &request::Parts) -> &'static str {
    let agent = head
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if agent.contains("Mobile") {
        "mobile"
    } else {
        "desktop"
    }
}

/// Stands in for a call to an authentication service.
async fn key_is_valid(key: Option<&HeaderValue>) -> bool {
    tokio::task::yield_now().await;
    key.is_some_and(|k| k == "let-me-in")
}

impl Hooks for DeviceClasses {
    fn request<'a>(
        &'a self,
        _info: &'a RequestInfo,
        head: &'a mut request::Parts,
    ) -> HookFuture<'a, Option<Response<Bytes>>> {
        Box::pin(async move {
            if !head.uri.path().starts_with("/members/")
                || key_is_valid(head.headers.get("x-api-key")).await
            {
                head.headers.insert(
                    "x-device-class",
                    HeaderValue::from_static(device_class(head)),
                );
                return None;
            }
            let mut answer = Response::new(Bytes::from_static(b"a valid X-Api-Key is needed\n"));
            *answer.status_mut() = StatusCode::UNAUTHORIZED;
            Some(answer)
        })
    }

    fn cache_key(&self, _info: &RequestInfo, head: &request::Parts) -> Option<String> {
        Some(device_class(head).to_owned())
    }

    fn origin_request(&self, head: &mut request::Parts) {
        head.headers
            .insert("x-edge-binary", HeaderValue::from_static("custom-edge"));
    }

    fn response(&self, _info: &RequestInfo, head: &mut response::Parts) {
        head.headers
            .insert("x-served-by", HeaderValue::from_static("custom-edge"));
    }

    fn log(&self, fields: &mut serde_json::Map<String, serde_json::Value>) {
        fields.insert("binary".into(), "custom-edge".into());
    }
}

fn main() -> ExitCode {
    outpost_edge::cli::main(Some(Arc::new(DeviceClasses)))
}
