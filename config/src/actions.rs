//! Edge rules beside caching: what a rule does to a request before it is
//! keyed (redirect, rewrite, request headers) and to an answer on its way
//! out (response headers); a site's HSTS and the error pages of a site or
//! of the whole node. The checks on them live here too, so the model and
//! what may be written in it are read together.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::template::Template;
use crate::units::Span;

/// `redirect:` answers the request with a redirect to `to` instead of
/// serving it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    /// A template of the target, e.g. `https://{host}{uri}`.
    pub to: String,
    /// 301, 302, 303, 307 or 308.
    #[serde(default = "Redirect::default_status")]
    pub status: u16,
}

impl Redirect {
    fn default_status() -> u16 {
        302
    }
}

/// `rewrite:` changes the path the origin is asked for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Replaces the rule's `match.path_prefix` at the start of the path.
    pub path_prefix: Option<String>,
    /// A regular expression on the path; its first match is replaced by
    /// `to`, where `$1` or `${name}` stand for its captures.
    pub path_regex: Option<String>,
    pub to: Option<String>,
    /// Which path the cache key is built from.
    #[serde(default)]
    pub key: RewriteKey,
}

/// Whether a rewritten request is keyed by the path the client asked for
/// or by the one the origin is asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewriteKey {
    /// The client's path: purges name the URLs clients use.
    #[default]
    Original,
    /// The rewritten path: clients' paths that rewrite to one origin path
    /// share one entry (purges are rewritten the same way).
    Rewritten,
}

/// Header changes on the request, applied in the order remove, set, add,
/// before the request is keyed and forwarded. Values are templates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHeaders {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Header changes on every answer to the rule's requests, from the cache or
/// the origin, in the order remove, set, add. Stored responses are not
/// changed. Values are templates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeaders {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
    /// Also on error answers (status 400 and above, Outpost's own too);
    /// otherwise on answers below 400 only.
    #[serde(default)]
    pub always: bool,
}

/// `Strict-Transport-Security` (RFC 6797) on every answer over TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    pub max_age: Span,
    #[serde(default)]
    pub include_subdomains: bool,
    /// Asks to be listed in the browsers' preload list, which wants a
    /// max_age of a year or more and include_subdomains.
    #[serde(default)]
    pub preload: bool,
}

impl Hsts {
    /// The field's value.
    pub fn value(&self) -> String {
        let mut value = format!("max-age={}", self.max_age.get().as_secs());
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        value
    }
}

/// The body of one of Outpost's own error answers: a file (relative to
/// the config's directory, read at start and reload) in which
/// `{request_id}` and `{status}` are filled in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPage {
    pub file: PathBuf,
    #[serde(default = "ErrorPage::default_content_type")]
    pub content_type: String,
}

impl ErrorPage {
    fn default_content_type() -> String {
        "text/html; charset=utf-8".into()
    }

    /// Largest page file.
    pub const MAX_SIZE: u64 = 1 << 20;
}

/// Error pages by status code.
pub type ErrorPages = BTreeMap<u16, Spanned<ErrorPage>>;

/// Request fields that routing, framing or the origin's address decide;
/// a rule may not set them.
pub(crate) const REQUEST_FIXED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Response fields that framing decides; a rule may not touch them.
pub(crate) const RESPONSE_FIXED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "content-encoding",
    "connection",
    "keep-alive",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// Collects errors as (location, key path, message).
pub(crate) type Report<'a> = dyn FnMut(Location, String, String) + 'a;

pub(crate) fn check_redirect(redirect: &Spanned<Redirect>, path: &str, err: &mut Report<'_>) {
    let at = redirect.referenced;
    if !matches!(redirect.value.status, 301 | 302 | 303 | 307 | 308) {
        err(
            at,
            format!("{path}.status"),
            format!(
                "{} is not a redirect status (301, 302, 303, 307 or 308)",
                redirect.value.status
            ),
        );
    }
    match Template::parse(&redirect.value.to) {
        Err(e) => err(at, format!("{path}.to"), e.to_string()),
        Ok(t) if t.parts().is_empty() => {
            err(at, format!("{path}.to"), "the target is empty".into());
        }
        Ok(_) => {}
    }
}

pub(crate) fn check_rewrite(
    rewrite: &Spanned<Rewrite>,
    matched_prefix: Option<&str>,
    path: &str,
    err: &mut Report<'_>,
) {
    let at = rewrite.referenced;
    let r = &rewrite.value;
    match (&r.path_prefix, &r.path_regex) {
        (Some(prefix), None) => {
            if matched_prefix.is_none() {
                err(
                    at,
                    format!("{path}.path_prefix"),
                    "replacing a prefix needs the rule's match.path_prefix".into(),
                );
            }
            if !prefix.starts_with('/') {
                err(
                    at,
                    format!("{path}.path_prefix"),
                    format!("{prefix:?} must start with /"),
                );
            }
            if r.to.is_some() {
                err(
                    at,
                    format!("{path}.to"),
                    "`to` goes with path_regex; path_prefix is the replacement".into(),
                );
            }
        }
        (None, Some(regex)) => {
            if let Err(e) = regex::Regex::new(regex) {
                err(
                    at,
                    format!("{path}.path_regex"),
                    format!("invalid regular expression: {}", last_line(&e.to_string())),
                );
            }
            match &r.to {
                None => err(
                    at,
                    format!("{path}.to"),
                    "path_regex needs `to`, the replacement".into(),
                ),
                Some(to) if !to.starts_with('/') && !to.starts_with('$') => err(
                    at,
                    format!("{path}.to"),
                    format!("{to:?} must start with / or a capture"),
                ),
                Some(_) => {}
            }
        }
        _ => err(
            at,
            path.to_owned(),
            "give either path_prefix, or path_regex with to".into(),
        ),
    }
}

/// Checks one rule's `request_headers` or `response_headers`: names,
/// fields Outpost decides (`fixed`), and the values' templates.
pub(crate) fn check_header_lists(
    at: Location,
    path: &str,
    values: [(&str, &BTreeMap<String, String>); 2],
    remove: &[String],
    fixed: &[&str],
    err: &mut Report<'_>,
) {
    let mut check_name = |key: String, name: &str| {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            err(at, key, format!("{name:?} is not a header name"));
        } else if fixed.contains(&name.to_ascii_lowercase().as_str()) {
            err(
                at,
                key,
                format!("{name} is decided by Outpost and may not be changed by a rule"),
            );
        }
    };
    for (which, map) in values {
        for name in map.keys() {
            check_name(format!("{path}.{which}.{name}"), name);
        }
    }
    for (i, name) in remove.iter().enumerate() {
        check_name(format!("{path}.remove[{i}]"), name);
    }
    for (which, map) in values {
        for (name, value) in map {
            let key = format!("{path}.{which}.{name}");
            match Template::parse(value) {
                Err(e) => err(at, key, e.to_string()),
                Ok(t) => {
                    // Filled with what a variable may hold, it must still be
                    // a header value.
                    let sample = t.render(|_, out| out.push('x'));
                    if http::HeaderValue::from_str(&sample).is_err() {
                        err(at, key, format!("{value:?} is not a header value"));
                    }
                }
            }
        }
    }
}

pub(crate) fn check_hsts(hsts: &Spanned<Hsts>, path: &str, err: &mut Report<'_>) {
    const YEAR: Duration = Duration::from_secs(31_536_000);
    let h = &hsts.value;
    if h.preload && (h.max_age.get() < YEAR || !h.include_subdomains) {
        err(
            hsts.referenced,
            format!("{path}.preload"),
            "the preload list needs max_age of a year or more and include_subdomains: true".into(),
        );
    }
}

pub(crate) fn check_error_pages(pages: &ErrorPages, path: &str, err: &mut Report<'_>) {
    for (code, page) in pages {
        if !(400..=599).contains(code) {
            err(
                page.referenced,
                format!("{path}.{code}"),
                format!("{code} is not an error status (400 to 599)"),
            );
        }
        if http::HeaderValue::from_str(&page.value.content_type).is_err()
            || page.value.content_type.is_empty()
        {
            err(
                page.referenced,
                format!("{path}.{code}.content_type"),
                format!("{:?} is not a media type", page.value.content_type),
            );
        }
    }
}

fn last_line(text: &str) -> String {
    text.lines().last().unwrap_or_default().trim().to_owned()
}
