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

impl RequestId {
    /// Writes the id at the end of `out`, as Display does, without the
    /// formatting machinery (templates write it on every request).
    pub(crate) fn write_to(self, out: &mut String) {
        static PREFIX: OnceLock<String> = OnceLock::new();
        out.push_str(PREFIX.get_or_init(|| format!("{:x}-", std::process::id())));
        push_hex(out, self.0);
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = String::with_capacity(24);
        self.write_to(&mut text);
        f.write_str(&text)
    }
}

/// `n` in lower-case hex, without leading zeros.
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut at = buf.len();
    let mut n = n;
    loop {
        at -= 1;
        buf[at] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[at..].iter().map(|&b| char::from(b)));
}

/// `ip` as Display writes it; IPv4 (most clients) without the formatting
/// machinery.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
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
            Var::Client => push_ip(out, self.client),
            Var::RequestId => self.request_id.write_to(out),
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
                    let name = static_name(HeaderName::from_bytes(name.as_bytes()).ok()?);
                    let template = Template::parse(value).ok()?;
                    let value = match template.constant() {
                        Some(text) => Value::Fixed(static_value(text)?),
                        None => Value::Template(template),
                    };
                    Some((name, value))
                })
                .collect()
        };
        Self {
            remove: remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok().map(static_name))
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

/// Config text kept for the life of the process, once per distinct text.
///
/// A field name or fixed value that a rule writes on every request is then
/// copied into each request without touching a reference count, which on
/// two cores is a cache line passed between them on every copy and drop.
/// What is kept grows only with texts never configured before, so reloads
/// of the same rules keep nothing new.
fn interned(text: &str) -> &'static str {
    static KEPT: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut kept = KEPT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match kept.get(text) {
        Some(kept) => kept,
        None => {
            let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
            kept.insert(leaked);
            leaked
        }
    }
}

/// The same name, copied without a reference count.
fn static_name(name: HeaderName) -> HeaderName {
    // A parsed name is valid lower-case text, which is what
    // `from_static` asks for; standard names come back as themselves.
    HeaderName::from_static(interned(name.as_str()))
}

/// The value, copied without a reference count when it is plain ASCII
/// (what `from_static` takes); other valid values are shared as usual.
fn static_value(text: &str) -> Option<HeaderValue> {
    if text
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        Some(HeaderValue::from_static(interned(text)))
    } else {
        HeaderValue::from_str(text).ok()
    }
}

impl Value {
    /// The value, or None when a variable made it one no field may carry
    /// (the config check tried the template with ordinary values).
    fn get(&self, vars: Option<&Vars<'_>>) -> Option<HeaderValue> {
        match self {
            Value::Fixed(value) => Some(value.clone()),
            Value::Template(template) => {
                // Rendered into a buffer the thread keeps, then copied once
                // into a value of exactly its length: one allocation.
                thread_local! {
                    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
                }
                let vars = vars?;
                SCRATCH.with_borrow_mut(|text| {
                    text.clear();
                    template.render_into(text, |var, out| vars.write(var, out));
                    HeaderValue::from_str(text).ok()
                })
            }
        }
    }
}

/// A rule's request and response edits as a hit makes them, for the
/// criterion bench (`benches/actions.rs`): None for a rule without any.
pub fn edits_for_bench(
    rule: &outpost_config::Rule,
) -> Option<impl Fn(&mut HeaderMap, &mut HeaderMap) + use<>> {
    let actions = EdgeActions::new(rule)?;
    Some(move |request: &mut HeaderMap, response: &mut HeaderMap| {
        let vars = Vars {
            tls: false,
            host: "example.com",
            path: "/ruled/1k",
            query: None,
            rest_from: 0,
            client: IpAddr::from([127, 0, 0, 1]),
            request_id: RequestId(0x1234),
        };
        actions.edit_request(request, Some(&vars));
        actions.edit_response(StatusCode::OK, response, Some(&vars));
    })
}

/// The field of a site's HSTS setting.
pub(crate) fn hsts_value(hsts: &config::Hsts) -> Option<HeaderValue> {
    static_value(&hsts.value())
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
    fn ids_and_addresses_are_written_as_display_writes_them() {
        for n in [0, 1, 0xf, 0x10, 0xdead_beef, u64::MAX] {
            let mut text = String::new();
            RequestId(n).write_to(&mut text);
            assert_eq!(text, format!("{:x}-{n:x}", std::process::id()));
        }
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "192.0.2.7",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut text = String::new();
            push_ip(&mut text, ip);
            assert_eq!(text, ip.to_string());
        }
    }

    #[test]
    fn fixed_names_and_values_are_kept_once() {
        assert!(std::ptr::eq(interned("x-edge"), interned("x-edge")));
        assert_eq!(static_name(HeaderName::from_static("x-edge")), "x-edge");
        assert_eq!(static_name(http::header::VARY), http::header::VARY);
        assert_eq!(static_value("max-age=600\tx").unwrap(), "max-age=600\tx");
        // obs-text is a valid value, kept as a shared one.
        assert_eq!(
            static_value("caf\u{e9}").unwrap().as_bytes(),
            "caf\u{e9}".as_bytes()
        );
        assert!(static_value("a\nb").is_none());
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
