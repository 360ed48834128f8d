//! Outpost's own error answers as clients see them: the operator's page
//! for the status when the site (or the file) names one, else a short text
//! in general terms; either way with the request id, so that a client's
//! report leads to the log line that has the cause. An origin's address
//! and error text go to the log only.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response};
use outpost_config::actions::{ErrorPage, ErrorPages};
use outpost_config::{ConfigError, Loaded};

use super::ProxyBody;
use super::actions::RequestId;
use super::respond::full;

/// Marks an answer as one of Outpost's own: what happened, said in
/// general terms, and the cause for the log.
#[derive(Debug, Clone)]
pub(crate) struct OwnAnswer {
    pub(crate) general: String,
    /// The failure behind it (an origin's address and error), for the
    /// log only.
    pub(crate) cause: Option<String>,
}

/// An operator's page, read when the config was loaded.
#[derive(Debug)]
pub(crate) struct Page {
    body: String,
    content_type: HeaderValue,
}

/// Pages by status.
pub(crate) type Pages = HashMap<u16, Arc<Page>>;

/// Reads the page files `pages` names; `key` is their place in the file
/// (`error_pages`, `sites[0].error_pages`), for errors.
pub(crate) fn load(loaded: &Loaded, pages: &ErrorPages, key: &str) -> Result<Pages, ConfigError> {
    let mut out = Pages::new();
    for (code, page) in pages {
        let ErrorPage { file, content_type } = &page.value;
        let at = |message: String| {
            loaded.error_at(page.referenced, format!("{key}.{code}.file"), message)
        };
        let path = loaded.resolve(file);
        let size = std::fs::metadata(&path)
            .map_err(|e| at(format!("cannot read {}: {e}", path.display())))?
            .len();
        if size > ErrorPage::MAX_SIZE {
            return Err(at(format!(
                "{} is {size} bytes; an error page may have at most {}",
                path.display(),
                ErrorPage::MAX_SIZE
            )));
        }
        let body = std::fs::read_to_string(&path)
            .map_err(|e| at(format!("cannot read {}: {e}", path.display())))?;
        let content_type = HeaderValue::from_str(content_type)
            .map_err(|_| at(format!("{content_type:?} is not a media type")))?;
        out.insert(*code, Arc::new(Page { body, content_type }));
    }
    Ok(out)
}

/// Gives an answer of Outpost's own its body: `page` with `{request_id}`
/// and `{status}` filled in, or the general text and the request id.
pub(crate) fn finish(
    response: &mut Response<ProxyBody>,
    own: &OwnAnswer,
    page: Option<&Page>,
    id: RequestId,
) {
    let status = response.status();
    let (body, content_type) = match page {
        Some(page) => (
            page.body
                .replace("{request_id}", &id.to_string())
                .replace("{status}", status.as_str()),
            page.content_type.clone(),
        ),
        None => (
            format!(
                "{} {}\n{}\nrequest id: {id}\n",
                status.as_str(),
                status.canonical_reason().unwrap_or_default(),
                own.general.trim_end()
            ),
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.remove(CONTENT_LENGTH);
    *response.body_mut() = full(Bytes::from(body));
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use http_body_util::BodyExt;

    use super::*;

    async fn text(response: Response<ProxyBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn own() -> OwnAnswer {
        OwnAnswer {
            general: "the origin could not be reached".into(),
            cause: Some("10.0.0.1:8080: connection refused".into()),
        }
    }

    #[tokio::test]
    async fn the_default_body_names_the_request_and_not_the_cause() {
        let mut res = Response::new(full(Bytes::new()));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        finish(&mut res, &own(), None, RequestId(0xbeef));
        let body = text(res).await;
        assert!(body.starts_with("502 Bad Gateway\n"), "{body}");
        assert!(body.contains("-beef"), "{body}");
        assert!(!body.contains("10.0.0.1"), "{body}");
    }

    #[tokio::test]
    async fn a_page_is_filled_in() {
        let page = Page {
            body: "<p>{status}: ask us about {request_id}</p><style>p { color: red }</style>"
                .into(),
            content_type: HeaderValue::from_static("text/html"),
        };
        let mut res = Response::new(full(Bytes::new()));
        *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        finish(&mut res, &own(), Some(&page), RequestId(1));
        assert_eq!(res.headers()[CONTENT_TYPE], "text/html");
        let body = text(res).await;
        assert!(body.starts_with("<p>504: ask us about "), "{body}");
        assert!(
            body.ends_with("-1</p><style>p { color: red }</style>"),
            "{body}"
        );
    }
}
