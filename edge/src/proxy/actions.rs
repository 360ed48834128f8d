//! A rule's edge actions, compiled from the config: the redirect it
//! answers with, the path it rewrites, and the header changes it makes to
//! the request (before keying) and to the answer (on the way out).

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use outpost_cache::normalize_path;
use outpost_config::actions::{self as config, RewriteKey};
use outpost_config::template::{Template, Var};
use regex::Regex;

/// The id of one request, shared by its access-log line, its error page
/// and its log lines: the process id and a counter, in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestId(pub(crate) u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        static PID: OnceLock<u32> = OnceLock::new();
        let pid = PID.get_or_init(std::process::id);
        write!(f, "{pid:x}-{:x}", self.0)
    }
}

/// What a template may read of the request, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a> {
    pub(crate) tls: bool,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    /// Where the rule's prefix ends in `path`.
    pub(crate) rest_from: usize,
    pub(crate) client: IpAddr,
    pub(crate) request_id: RequestId,
}

impl Vars<'_> {
    fn write(&self, var: Var, out: &mut String) {
        match var {
            Var::Scheme => out.push_str(if self.tls { "https" } else { "http" }),
            Var::Host => out.push_str(self.host),
            Var::Path => out.push_str(self.path),
            Var::Query => out.push_str(self.query.unwrap_or_default()),
            Var::Uri => {
                out.push_str(self.path);
                if let Some(query) = self.query {
                    out.push('?');
                    out.push_str(query);
                }
            }
            Var::Rest => out.push_str(self.path.get(self.rest_from..).unwrap_or_default()),
            Var::Client => {
                let _ = write!(out, "{}", self.client);
            }
            Var::RequestId => {
                let _ = write!(out, "{}", self.request_id);
            }
        }
    }

    fn render(&self, template: &Template) -> String {
        template.render(|var, out| self.write(var, out))
    }

    /// A copy that outlives the request's head, for the answer's edits.
    pub(crate) fn kept(self) -> OwnedVars {
        OwnedVars {
            tls: self.tls,
            host: self.host.to_owned(),
            path: self.path.to_owned(),
            query: self.query.map(str::to_owned),
            rest_from: self.rest_from,
            client: self.client,
            request_id: self.request_id,
        }
    }
}

/// [`Vars`] kept for the way out, when the rule's response edits have
/// templates.
#[derive(Debug, Clone)]
pub(crate) struct OwnedVars {
    tls: bool,
    host: String,
    path: String,
    query: Option<String>,
    rest_from: usize,
    client: IpAddr,
    request_id: RequestId,
}

impl OwnedVars {
    pub(crate) fn vars(&self) -> Vars<'_> {
        Vars {
            tls: self.tls,
            host: &self.host,
            path: &self.path,
            query: self.query.as_deref(),
            rest_from: self.rest_from,
            client: self.client,
            request_id: self.request_id,
        }
    }
}

/// Everything a rule does besides caching.
#[derive(Debug)]
pub(crate) struct EdgeActions {
    /// The rule's `match.path_prefix`, where `{rest}` starts.
    prefix: Option<String>,
    redirect: Option<(Template, StatusCode)>,
    rewrite: Option<Rewrite>,
    request: Option<HeaderEdits>,
    response: Option<HeaderEdits>,
    /// Response edits apply to error answers too.
    always: bool,
    /// Whether the redirect or the request edits read the request's values.
    request_vars: bool,
    /// Whether the response edits do.
    response_vars: bool,
}

#[derive(Debug)]
struct Rewrite {
    change: PathChange,
    key: RewriteKey,
}

#[derive(Debug)]
enum PathChange {
    /// The rule's prefix becomes this one.
    Prefix(String),
    /// The regex's first match becomes the replacement.
    Regex(Regex, String),
}

/// Removals, then replacements, then additions.
#[derive(Debug, Default)]
struct HeaderEdits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, Value)>,
    add: Vec<(HeaderName, Value)>,
}

#[derive(Debug)]
enum Value {
    Fixed(HeaderValue),
    Template(Template),
}

/// Why a request's rewrite failed at run time.
#[derive(Debug, thiserror::Error)]
#[error("the rule's rewrite made {0:?}, which is not a path")]
pub(crate) struct BadRewrite(String);

impl EdgeActions {
    /// None for a rule that does nothing of the kind. The config was
    /// checked, so what does not compile here is left out.
    pub(crate) fn new(rule: &outpost_config::Rule) -> Option<Self> {
        if rule.redirect.is_none()
            && rule.rewrite.is_none()
            && rule.request_headers.is_none()
            && rule.response_headers.is_none()
        {
            return None;
        }
        let prefix = rule.matcher.path_prefix.clone();
        let redirect = rule.redirect.as_ref().and_then(|r| {
            let template = Template::parse(&r.value.to).ok()?;
            let status = StatusCode::from_u16(r.value.status).ok()?;
            Some((template, status))
        });
        let rewrite = rule.rewrite.as_ref().and_then(|r| {
            let r = &r.value;
            let change = match (&r.path_prefix, &r.path_regex, &r.to) {
                (Some(prefix), _, _) => PathChange::Prefix(prefix.clone()),
                (None, Some(regex), Some(to)) => {
                    PathChange::Regex(Regex::new(regex).ok()?, to.clone())
                }
                _ => return None,
            };
            Some(Rewrite { change, key: r.key })
        });
        let request = rule
            .request_headers
            .as_ref()
            .map(|h| HeaderEdits::new(&h.value.set, &h.value.add, &h.value.remove));
        let response = rule
            .response_headers
            .as_ref()
            .map(|h| HeaderEdits::new(&h.value.set, &h.value.add, &h.value.remove));
        let always = rule
            .response_headers
            .as_ref()
            .is_some_and(|h| h.value.always);
        let request_vars =
            redirect.is_some() || request.as_ref().is_some_and(HeaderEdits::has_templates);
        let response_vars = response.as_ref().is_some_and(HeaderEdits::has_templates);
        Some(Self {
            prefix,
            redirect,
            rewrite,
            request,
            response,
            always,
            request_vars,
            response_vars,
        })
    }

    /// Whether the redirect or the request edits read the request's values.
    pub(crate) fn request_vars(&self) -> bool {
        self.request_vars
    }

    /// Whether the response edits read the request's values.
    pub(crate) fn response_vars(&self) -> bool {
        self.response_vars
    }

    /// Where `{rest}` starts in `path` (which the rule matched).
    pub(crate) fn rest_from(&self, path: &str) -> usize {
        self.prefix
            .as_deref()
            .filter(|p| path.starts_with(p))
            .map_or(0, str::len)
    }

    /// The redirect the rule answers with: its status and target.
    pub(crate) fn redirect(&self, vars: &Vars<'_>) -> Option<(StatusCode, String)> {
        let (template, status) = self.redirect.as_ref()?;
        Some((*status, vars.render(template)))
    }

    /// Changes the request's headers.
    pub(crate) fn edit_request(&self, headers: &mut HeaderMap, vars: Option<&Vars<'_>>) {
        if let Some(edits) = &self.request {
            edits.apply(headers, vars);
        }
    }

    /// Changes an answer's headers, unless it is an error the edits are
    /// not for.
    pub(crate) fn edit_response(
        &self,
        status: StatusCode,
        headers: &mut HeaderMap,
        vars: Option<&Vars<'_>>,
    ) {
        if let Some(edits) = &self.response
            && (self.always || status.as_u16() < 400)
        {
            edits.apply(headers, vars);
        }
    }

    /// The path the origin is asked for, when the rule rewrites `path`.
    pub(crate) fn rewritten(&self, path: &str) -> Option<Result<String, BadRewrite>> {
        let rewrite = self.rewrite.as_ref()?;
        let changed = match &rewrite.change {
            PathChange::Prefix(to) => {
                let rest = &path[self.rest_from(path)..];
                let mut changed = to.clone();
                // `/app` to `/`: no doubled slash at the seam.
                match rest.strip_prefix('/') {
                    Some(rest) if changed.ends_with('/') => changed.push_str(rest),
                    _ => changed.push_str(rest),
                }
                changed
            }
            PathChange::Regex(regex, to) => regex.replace(path, to.as_str()).into_owned(),
        };
        if !changed.starts_with('/') {
            return Some(Err(BadRewrite(changed)));
        }
        Some(normalize_path(&changed).map_err(|_| BadRewrite(changed)))
    }

    /// Whether the key is built from the rewritten path.
    pub(crate) fn keys_rewritten(&self) -> bool {
        self.rewrite
            .as_ref()
            .is_some_and(|r| r.key == RewriteKey::Rewritten)
    }
}

impl HeaderEdits {
    fn new(
        set: &std::collections::BTreeMap<String, String>,
        add: &std::collections::BTreeMap<String, String>,
        remove: &[String],
    ) -> Self {
        let pairs = |map: &std::collections::BTreeMap<String, String>| {
            map.iter()
                .filter_map(|(name, value)| {
                    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                    let template = Template::parse(value).ok()?;
                    let value = match template.constant() {
                        Some(text) => Value::Fixed(HeaderValue::from_str(text).ok()?),
                        None => Value::Template(template),
                    };
                    Some((name, value))
                })
                .collect()
        };
        Self {
            remove: remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect(),
            set: pairs(set),
            add: pairs(add),
        }
    }

    fn has_templates(&self) -> bool {
        self.set
            .iter()
            .chain(&self.add)
            .any(|(_, v)| matches!(v, Value::Template(_)))
    }

    fn apply(&self, headers: &mut HeaderMap, vars: Option<&Vars<'_>>) {
        for name in &self.remove {
            headers.remove(name);
        }
        // One growth of the map, if any, rather than one per field.
        headers.reserve(self.set.len() + self.add.len());
        for (name, value) in &self.set {
            if let Some(value) = value.get(vars) {
                headers.insert(name.clone(), value);
            }
        }
        for (name, value) in &self.add {
            if let Some(value) = value.get(vars) {
                headers.append(name.clone(), value);
            }
        }
    }
}

impl Value {
    /// The value, or None when a variable made it one no field may carry
    /// (the config check tried the template with ordinary values).
    fn get(&self, vars: Option<&Vars<'_>>) -> Option<HeaderValue> {
        match self {
            Value::Fixed(value) => Some(value.clone()),
            Value::Template(template) => {
                // The rendered text becomes the value's bytes, uncopied.
                let text = vars?.render(template);
                HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).ok()
            }
        }
    }
}

/// The field of a site's HSTS setting.
pub(crate) fn hsts_value(hsts: &config::Hsts) -> Option<HeaderValue> {
    HeaderValue::from_str(&hsts.value()).ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn actions(rule: &str) -> EdgeActions {
        let text = format!(
            "listen: [{{addr: 127.0.0.1:0}}]\norigins: {{a: {{servers: [{{url: http://127.0.0.1:1}}]}}}}\nsites:\n  - hosts: [example.com]\n    origin: a\n    rules:\n      - {rule}\n"
        );
        let loaded = outpost_config::load_str(&text, "t.yaml", Path::new(".")).unwrap();
        EdgeActions::new(&loaded.config.sites[0].rules[0]).unwrap()
    }

    fn vars<'a>(path: &'a str, query: Option<&'a str>, rest_from: usize) -> Vars<'a> {
        Vars {
            tls: false,
            host: "example.com",
            path,
            query,
            rest_from,
            client: IpAddr::from([192, 0, 2, 7]),
            request_id: RequestId(0x2a),
        }
    }

    #[test]
    fn a_redirect_fills_its_template() {
        let a = actions(
            "{match: {path_prefix: /old/}, redirect: {to: 'https://{host}/new/{rest}{query}', status: 308}}",
        );
        let v = vars("/old/a/b", Some("x=1"), a.rest_from("/old/a/b"));
        assert_eq!(
            a.redirect(&v),
            Some((
                StatusCode::PERMANENT_REDIRECT,
                "https://example.com/new/a/bx=1".into()
            ))
        );
        let a = actions("{redirect: {to: 'https://{host}{uri}'}}");
        let (status, to) = a.redirect(&vars("/p", Some("q=2"), 0)).unwrap();
        assert_eq!(
            (status.as_u16(), to.as_str()),
            (302, "https://example.com/p?q=2")
        );
    }

    #[test]
    fn a_prefix_rewrite_keeps_one_slash_at_the_seam() {
        let a = actions("{match: {path_prefix: /app/}, rewrite: {path_prefix: /v2/app/}}");
        assert_eq!(a.rewritten("/app/x/y").unwrap().unwrap(), "/v2/app/x/y");
        assert_eq!(a.rewritten("/app/").unwrap().unwrap(), "/v2/app/");
        let a = actions("{match: {path_prefix: /app}, rewrite: {path_prefix: /}}");
        assert_eq!(a.rewritten("/app/x").unwrap().unwrap(), "/x");
        assert!(!a.keys_rewritten());
    }

    #[test]
    fn a_regex_rewrite_uses_captures_and_is_normalized() {
        let a = actions(
            "{rewrite: {path_regex: '^/u/([0-9]+)/(.*)$', to: '/users/$1/$2', key: rewritten}}",
        );
        assert_eq!(a.rewritten("/u/7/a/b").unwrap().unwrap(), "/users/7/a/b");
        assert_eq!(a.rewritten("/u/7/a%2db").unwrap().unwrap(), "/users/7/a-b");
        // What normalization refuses in a client's path is refused here too.
        assert!(a.rewritten("/u/7/a/../b").unwrap().is_err());
        // No match: the path as it was.
        assert_eq!(a.rewritten("/other").unwrap().unwrap(), "/other");
        assert!(a.keys_rewritten());
        let a = actions("{rewrite: {path_regex: '^/(.*)$', to: '$1'}}");
        assert!(a.rewritten("/x").unwrap().is_err());
    }

    #[test]
    fn header_edits_remove_then_set_then_add() {
        let a = actions(
            "{request_headers: {remove: [Cookie, X-Drop], set: {X-Edge: outpost, X-Client: '{client}'}, add: {Via-Edge: '{request_id}'}}, response_headers: {set: {X-Frame-Options: DENY}, remove: [X-Powered-By]}}",
        );
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1"));
        h.insert("x-edge", HeaderValue::from_static("client-said"));
        h.insert("via-edge", HeaderValue::from_static("first"));
        let v = vars("/", None, 0);
        assert!(a.request_vars() && !a.response_vars());
        a.edit_request(&mut h, Some(&v));
        assert!(h.get("cookie").is_none());
        assert_eq!(h["x-edge"], "outpost");
        assert_eq!(h["x-client"], "192.0.2.7");
        let added: Vec<_> = h.get_all("via-edge").iter().collect();
        assert_eq!(added.len(), 2);
        assert!(added[1].to_str().unwrap().ends_with("-2a"));

        let mut r = HeaderMap::new();
        r.insert("x-powered-by", HeaderValue::from_static("php"));
        a.edit_response(StatusCode::OK, &mut r, None);
        assert_eq!(r["x-frame-options"], "DENY");
        assert!(r.get("x-powered-by").is_none());
        // Not on an error answer unless `always`.
        let mut e = HeaderMap::new();
        a.edit_response(StatusCode::BAD_GATEWAY, &mut e, None);
        assert!(e.is_empty());
        let a = actions("{response_headers: {set: {X-Frame-Options: DENY}, always: true}}");
        a.edit_response(StatusCode::BAD_GATEWAY, &mut e, None);
        assert_eq!(e["x-frame-options"], "DENY");
        assert!(!a.request_vars() && !a.response_vars());
    }
}
