//! `GET /explain?url=URL[&header=Name:value…][&method=M]`: what the cache
//! holds for a URL and what it would do with a request for it. The edge
//! answers through its hook, with the code its requests go through; this
//! file reads the query and checks who may ask (as for purges: a full
//! token, or one scoped to the URL's host).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::auth::{Scope, host_in_scope};
use crate::fleet::BoxFuture;
use crate::{Admin, error, json_response, unauthorized};

/// Most `header=` parameters one query may give.
const MAX_HEADERS: usize = 64;

/// A request to explain: the URL, its method and the header fields it
/// would carry.
#[derive(Debug, Clone)]
pub struct ExplainQuery {
    /// Absolute: `https://example.com/a?b=1`.
    pub url: String,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Works out the explanation of a query, as JSON; Err says why the query
/// cannot be explained (an invalid URL), for a 400.
pub type ExplainHook =
    dyn Fn(ExplainQuery) -> BoxFuture<'static, Result<serde_json::Value, String>> + Send + Sync;

impl Admin {
    pub(crate) async fn explain<B>(
        &self,
        req: &Request<B>,
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let Some(caller) = self.caller(req) else {
            return unauthorized(request_id);
        };
        let query = match parse(req.uri().query().unwrap_or_default()) {
            Ok(query) => query,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message, request_id),
        };
        if let Scope::Hosts(allowed) = &caller.scope {
            let host = url_host(&query.url);
            if !host_in_scope(allowed, host) {
                return error(
                    StatusCode::FORBIDDEN,
                    &format!("this token may not explain URLs of host {host:?}"),
                    request_id,
                );
            }
        }
        let Some(explain) = &self.explain else {
            return error(
                StatusCode::NOT_IMPLEMENTED,
                "this process cannot explain requests",
                request_id,
            );
        };
        match explain(query).await {
            Ok(explained) => json_response(StatusCode::OK, explained),
            Err(message) => error(StatusCode::BAD_REQUEST, &message, request_id),
        }
    }
}

/// The query's `url` (exactly one), `method` (GET unless given) and
/// `header` parameters (`Name:value`, each a valid field).
fn parse(query: &str) -> Result<ExplainQuery, String> {
    let mut url = None;
    let mut method = None;
    let mut headers = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "url" if url.is_some() => return Err("give one url".into()),
            "url" => url = Some(value.into_owned()),
            "method" if method.is_some() => return Err("give one method".into()),
            "method" => {
                method = Some(
                    Method::from_bytes(value.as_bytes())
                        .map_err(|_| format!("invalid method {value:?}"))?,
                );
            }
            "header" if headers.len() == MAX_HEADERS => {
                return Err(format!("at most {MAX_HEADERS} header parameters"));
            }
            "header" => {
                let (field, field_value) = value
                    .split_once(':')
                    .ok_or_else(|| format!("header {value:?} is not Name:value"))?;
                let field = HeaderName::from_bytes(field.trim().as_bytes())
                    .map_err(|_| format!("invalid header name {:?}", field.trim()))?;
                let field_value = HeaderValue::from_str(field_value.trim())
                    .map_err(|_| format!("invalid value for header {field}"))?;
                headers.push((field, field_value));
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let url = url.ok_or("the url parameter is required")?;
    Ok(ExplainQuery {
        url,
        method: method.unwrap_or(Method::GET),
        headers,
    })
}

/// The host (and port) of an absolute URL, as a scoped token is checked
/// against it.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_gives_the_url_the_method_and_each_header() {
        let query = parse(
            "url=https%3A%2F%2Fexample.com%2Fa%3Fb%3D1&header=Accept-Language:%20de&header=Cookie:a=1&method=HEAD",
        )
        .unwrap();
        assert_eq!(query.url, "https://example.com/a?b=1");
        assert_eq!(query.method, Method::HEAD);
        assert_eq!(query.headers.len(), 2);
        assert_eq!(query.headers[0].0, "accept-language");
        assert_eq!(query.headers[0].1, "de");
        // The value keeps what follows the first colon.
        assert_eq!(query.headers[1].1, "a=1");
        assert_eq!(parse("url=http://a/").unwrap().method, Method::GET);
    }

    #[test]
    fn a_bad_query_is_refused_with_the_reason() {
        for (query, reason) in [
            ("", "the url parameter is required"),
            ("url=a&url=b", "give one url"),
            ("url=a&header=NoColon", "is not Name:value"),
            ("url=a&header=Bad%20Name:1", "invalid header name"),
            ("url=a&header=X:a%0Ab", "invalid value"),
            ("url=a&method=G%20T", "invalid method"),
            ("url=a&color=red", "unknown parameter"),
        ] {
            let refused = parse(query).unwrap_err();
            assert!(refused.contains(reason), "{query}: {refused}");
        }
        let many = format!("url=a{}", "&header=X:1".repeat(MAX_HEADERS + 1));
        assert!(parse(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn the_host_of_a_url_is_what_a_scoped_token_is_checked_against() {
        assert_eq!(url_host("https://Example.com:8443/a?b"), "Example.com:8443");
        assert_eq!(url_host("http://example.com?x"), "example.com");
        assert_eq!(url_host("example.com/a"), "example.com");
    }
}
