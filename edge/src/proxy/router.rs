//! Routing: the request's host picks a site, its path picks the first
//! matching rule. A host that no site serves is answered 421 by the proxy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use outpost_cache::{CacheKey, KeyFields, StoreRules, normalize_path};
use outpost_config::{CacheMode, ErrorList, Loaded, QueryKey, Rule};
use outpost_purge_api::UrlError;
use regex::Regex;

use super::actions::{BadRewrite, EdgeActions, hsts_value};
use super::error_page::{self, Page, Pages};

/// How long past freshness an entry answers when the origin cannot be
/// reached, unless a rule says otherwise.
pub const STALE_IF_UNREACHABLE: Duration = Duration::from_secs(300);

/// A site as the proxy uses it.
pub struct Site {
    /// The site's first host name, lower case (`*` for the catch-all): its
    /// label in the metrics.
    pub name: String,
    pub origin: String,
    /// Misses go through the key's owner in the fleet.
    pub shield: bool,
    rules: Vec<CompiledRule>,
    /// What applies where no rule matches.
    fallback: RuleView,
    /// Request headers removed before keying and forwarding.
    stripped: Vec<http::HeaderName>,
    /// `Strict-Transport-Security` for answers over TLS.
    pub hsts: Option<http::HeaderValue>,
    /// Bodies of Outpost's own error answers, the file's defaults included.
    error_pages: Pages,
}

/// What a rule sets, compiled once per config generation and shared by
/// every request the rule matches.
#[derive(Debug)]
pub struct RuleSettings {
    pub bypass: bool,
    pub query: QueryKey,
    /// The client's no-cache and no-store are set aside.
    pub ignore_client_no_cache: bool,
    /// Request headers and cookies that join the key.
    key_fields: KeyFields,
    /// Largest request body forwarded (413 above it).
    pub max_request_body: Option<u64>,
    /// How long past freshness an entry may answer when the origin cannot
    /// be reached (RFC 9111 §4.2.4).
    pub stale_if_unreachable: Duration,
    store: StoreRules,
    ttl_by_status: BTreeMap<u16, Duration>,
    /// Redirect, rewrite and header changes, when the rule has any.
    pub actions: Option<EdgeActions>,
    /// Whether Outpost may compress the answers (when compression is on).
    pub compress: bool,
    /// Bytes per slice, when GETs fetch and store aligned slices.
    pub slice: Option<u64>,
}

/// What applies where no rule matches: the defaults of a rule.
impl Default for RuleSettings {
    fn default() -> Self {
        Self {
            bypass: false,
            query: QueryKey::default(),
            ignore_client_no_cache: false,
            key_fields: KeyFields::default(),
            max_request_body: None,
            stale_if_unreachable: STALE_IF_UNREACHABLE,
            store: StoreRules::default(),
            ttl_by_status: BTreeMap::new(),
            actions: None,
            compress: true,
            slice: None,
        }
    }
}

/// What applies to one request: the rule's settings, shared (one
/// reference count per request, not one per setting), and what the
/// request's own path or hooks add to them.
#[derive(Debug, Clone)]
pub struct RuleView {
    settings: Arc<RuleSettings>,
    /// The extension the rule matched the path by, when its lifetimes
    /// apply only to responses of that extension's media types.
    checked_extension: Option<Arc<str>>,
    /// The key fields when a hook added one to the rule's.
    key_fields: Option<Arc<KeyFields>>,
    /// Which of the site's rules this is (None: no rule matched).
    index: Option<usize>,
}

impl std::ops::Deref for RuleView {
    type Target = RuleSettings;

    fn deref(&self) -> &RuleSettings {
        &self.settings
    }
}

impl Default for RuleView {
    fn default() -> Self {
        Self::of(RuleSettings::default())
    }
}

impl RuleView {
    fn of(settings: RuleSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            checked_extension: None,
            key_fields: None,
            index: None,
        }
    }

    /// Which of the site's rules this is, for [`Site::actions`].
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// Request headers and cookies that join the key.
    pub fn key_fields(&self) -> &KeyFields {
        self.key_fields
            .as_deref()
            .unwrap_or(&self.settings.key_fields)
    }

    /// Adds a request field to the key, for this request only.
    pub fn key_by_field(&mut self, name: http::HeaderName) {
        let mut fields = self.key_fields().clone();
        fields.headers.push(name);
        self.key_fields = Some(Arc::new(fields));
    }

    /// The rule's edge actions, when it has any.
    pub fn actions(&self) -> Option<&EdgeActions> {
        self.settings.actions.as_ref()
    }

    /// The storing rules for a response with `status` and
    /// `content_type`: `ttl_by_status` takes the place of `ttl` for the
    /// codes it names. A rule that matched the path by its extension gives
    /// its lifetimes only to a response of that extension's media types:
    /// `/account.php/x.css` answered with an HTML page is cached, if at
    /// all, by the origin's words (web cache deception).
    pub fn store_rules(&self, status: u16, content_type: Option<&str>) -> StoreRules {
        let mut rules = self.store;
        if let Some(ttl) = self.ttl_by_status.get(&status) {
            rules.ttl = Some(*ttl);
        }
        if let Some(extension) = &self.checked_extension
            && outpost_config::media::agrees(extension, content_type) != Some(true)
        {
            rules.ttl = None;
            rules.default_ttl = None;
            rules.respect_origin = true;
        }
        rules
    }

    /// The path the key is built from: `path`, or what the rule rewrites
    /// it to when the rule keys by the rewritten path.
    pub fn key_path<'a>(&self, path: &'a str) -> Result<std::borrow::Cow<'a, str>, BadRewrite> {
        match self.actions() {
            Some(actions) if actions.keys_rewritten() => match actions.rewritten(path) {
                Some(changed) => changed.map(std::borrow::Cow::Owned),
                None => Ok(path.into()),
            },
            _ => Ok(path.into()),
        }
    }
}

struct CompiledRule {
    /// Whether the rule is for TLS connections (Some(true)) or plain ones.
    tls: Option<bool>,
    path_prefix: Option<String>,
    path_regex: Option<Regex>,
    extensions: Option<Vec<String>>,
    /// Whether the rule's lifetimes need a response whose Content-Type
    /// agrees with the path's extension.
    check_content_type: bool,
    view: RuleView,
}

impl CompiledRule {
    /// `passed`: the site's passed headers, which join every rule's key.
    fn new(rule: &Rule, passed: &[http::HeaderName]) -> Result<Self, regex::Error> {
        let path_regex = rule
            .matcher
            .path_regex
            .as_ref()
            .map(|r| Regex::new(&r.value))
            .transpose()?;
        let sets_ttl =
            rule.ttl.is_some() || rule.default_ttl.is_some() || !rule.ttl_by_status.is_empty();
        Ok(Self {
            check_content_type: rule.check_content_type
                && sets_ttl
                && rule.matcher.extensions.is_some(),
            tls: rule
                .matcher
                .scheme
                .map(|s| s == outpost_config::Scheme::Https),
            path_prefix: rule.matcher.path_prefix.clone(),
            path_regex,
            extensions: rule.matcher.extensions.as_ref().map(|list| {
                list.iter()
                    .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                    .collect()
            }),
            view: RuleView::of(RuleSettings {
                bypass: rule.cache == CacheMode::Bypass,
                query: rule.key.query.clone(),
                ignore_client_no_cache: rule.ignore_client_no_cache,
                max_request_body: rule.max_request_body.map(|s| s.bytes()),
                stale_if_unreachable: rule
                    .stale_if_unreachable
                    .map_or(STALE_IF_UNREACHABLE, |t| t.get()),
                key_fields: KeyFields {
                    headers: rule
                        .key
                        .headers
                        .iter()
                        .filter_map(|h| {
                            http::HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes()).ok()
                        })
                        .chain(passed.iter().cloned())
                        .collect(),
                    cookies: rule.key.cookies.clone(),
                },
                store: StoreRules {
                    ttl: rule.ttl.map(|t| t.get()),
                    default_ttl: rule.default_ttl.map(|t| t.get()),
                    share_set_cookie: rule.share_set_cookie,
                    respect_origin: rule.respect_origin,
                    stale_while_revalidate: rule.stale_while_revalidate.map(|t| t.get()),
                    stale_if_error: rule.stale_if_error.map(|t| t.get()),
                    store_with_cookie: rule.store_with_cookie,
                },
                ttl_by_status: rule
                    .ttl_by_status
                    .iter()
                    .map(|(code, ttl)| (*code, ttl.get()))
                    .collect(),
                actions: EdgeActions::new(rule),
                compress: rule.compress,
                slice: rule.slice.map(|s| s.bytes()),
            }),
        })
    }

    fn matches(&self, path: &str, tls: bool) -> bool {
        if self.tls.is_some_and(|wanted| wanted != tls) {
            return false;
        }
        if let Some(prefix) = &self.path_prefix
            && !path.starts_with(prefix.as_str())
        {
            return false;
        }
        if let Some(regex) = &self.path_regex
            && !regex.is_match(path)
        {
            return false;
        }
        if let Some(extensions) = &self.extensions {
            let Some(ext) = extension(path) else {
                return false;
            };
            if !extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
                return false;
            }
        }
        true
    }

    /// The rule's view for `path`, which it matches.
    fn view_for(&self, index: usize, path: &str) -> RuleView {
        let mut view = self.view.clone();
        view.index = Some(index);
        if self.check_content_type {
            view.checked_extension = extension(path).map(Arc::from);
        }
        view
    }
}

/// The extension of the path's last segment, without the dot.
fn extension(path: &str) -> Option<&str> {
    let last = path.rsplit('/').next().unwrap_or_default();
    last.rsplit_once('.').map(|(_, ext)| ext)
}

impl Site {
    /// The first rule whose match holds for `path` asked over TLS or not;
    /// the defaults when none does.
    pub fn rule_for(&self, path: &str, tls: bool) -> RuleView {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(path, tls))
            .map_or_else(|| self.fallback.clone(), |(i, r)| r.view_for(i, path))
    }

    /// The edge actions of the rule [`RuleView::index`] names.
    pub(crate) fn actions(&self, index: Option<usize>) -> Option<&EdgeActions> {
        self.rules.get(index?)?.view.actions()
    }

    /// The operator's page for one of Outpost's own answers with `status`.
    pub(crate) fn error_page(&self, status: u16) -> Option<&Page> {
        self.error_pages.get(&status).map(|p| &**p)
    }

    /// Removes the request headers this site does not pass (see
    /// [`outpost_config::UNKEYED_HEADERS`]).
    pub fn strip_unkeyed(&self, headers: &mut http::HeaderMap) {
        super::headers::remove_named(headers, &self.stripped);
    }
}

/// Names to sites, hashed by foldhash: the tables come from the config, so
/// a request's name (whatever it is) cannot lengthen their chains, and
/// SipHash cost a tenth of routing a request.
type Sites = HashMap<String, Arc<Site>, foldhash::fast::RandomState>;

pub struct Router {
    exact: Sites,
    /// `*.example.com` stored as `example.com`.
    wildcard: Sites,
    any: Option<Arc<Site>>,
    /// Error pages for requests no site serves.
    error_pages: Pages,
}

impl Router {
    /// The sites of a checked config, with their error pages read.
    pub fn new(loaded: &Loaded) -> Result<Self, ErrorList> {
        let config = &loaded.config;
        let defaults = error_page::load(loaded, &config.error_pages, "error_pages")
            .map_err(|e| ErrorList(vec![e]))?;
        let mut router = Router {
            exact: Sites::default(),
            wildcard: Sites::default(),
            any: None,
            error_pages: defaults.clone(),
        };
        for (i, site) in config.sites.iter().enumerate() {
            let passed: Vec<http::HeaderName> = site
                .pass_headers
                .iter()
                .filter_map(|h| {
                    http::HeaderName::from_bytes(h.value.to_ascii_lowercase().as_bytes()).ok()
                })
                .collect();
            let stripped = outpost_config::UNKEYED_HEADERS
                .iter()
                .map(|name| http::HeaderName::from_static(name))
                .filter(|name| !passed.contains(name))
                .collect();
            let rules = site
                .rules
                .iter()
                .enumerate()
                .map(|(k, rule)| {
                    CompiledRule::new(rule, &passed).map_err(|e| {
                        let at = rule
                            .matcher
                            .path_regex
                            .as_ref()
                            .map_or(site.origin.referenced, |r| r.referenced);
                        ErrorList(vec![loaded.error_at(
                            at,
                            format!("sites[{i}].rules[{k}].match.path_regex"),
                            e.to_string(),
                        )])
                    })
                })
                .collect::<Result<_, _>>()?;
            let mut error_pages = defaults.clone();
            error_pages.extend(
                error_page::load(
                    loaded,
                    &site.error_pages,
                    &format!("sites[{i}].error_pages"),
                )
                .map_err(|e| ErrorList(vec![e]))?,
            );
            let fallback = RuleView::of(RuleSettings {
                key_fields: KeyFields {
                    headers: passed.clone(),
                    cookies: Vec::new(),
                },
                ..RuleSettings::default()
            });
            let compiled = Arc::new(Site {
                name: site
                    .hosts
                    .first()
                    .map(|h| h.value.to_ascii_lowercase())
                    .unwrap_or_default(),
                origin: site.origin.value.clone(),
                shield: site.shield,
                rules,
                fallback,
                stripped,
                hsts: site.hsts.as_ref().and_then(|h| hsts_value(&h.value)),
                error_pages,
            });
            for host in &site.hosts {
                let host = host.value.to_ascii_lowercase();
                if host == "*" {
                    router.any = Some(compiled.clone());
                } else if let Some(suffix) = host.strip_prefix("*.") {
                    router.wildcard.insert(suffix.to_owned(), compiled.clone());
                } else {
                    router.exact.insert(host, compiled.clone());
                }
            }
        }
        Ok(router)
    }

    /// The site for a host name (lower-case, without port): exact name, then
    /// the closest wildcard, then the catch-all site.
    pub fn site(&self, host: &str) -> Option<&Arc<Site>> {
        if let Some(site) = self.exact.get(host) {
            return Some(site);
        }
        let mut rest = host;
        while !self.wildcard.is_empty()
            && let Some((_, parent)) = rest.split_once('.')
        {
            if let Some(site) = self.wildcard.get(parent) {
                return Some(site);
            }
            rest = parent;
        }
        self.any.as_ref()
    }

    /// The operator's page for an answer of Outpost's own to a request no
    /// site serves.
    pub(crate) fn error_page(&self, status: u16) -> Option<&Page> {
        self.error_pages.get(&status).map(|p| &**p)
    }
}

/// The host name of a `Host` value or URI authority: lower-case, without
/// port, without trailing dot. None when it is not a valid host.
pub fn host_name(authority: &str) -> Option<String> {
    if let Some(simple) = simple_host_name(authority) {
        return Some(simple.to_owned());
    }
    let authority: http::uri::Authority = authority.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    // RFC 3986 §3.2.3: a port is digits; one past 65535 names no port at
    // all, and must not share the entry of the host without it. An empty
    // port is the default one (§6.2.3).
    if let Some(port) = authority.as_str().rsplit_once(']').map_or(
        authority.as_str().rsplit_once(':').map(|(_, p)| p),
        |(_, rest)| rest.strip_prefix(':'),
    ) && !port.is_empty()
        && (!port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err())
    {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
    (!host.is_empty()).then_some(host)
}

/// The host of what nearly every client sends, found without parsing:
/// a lower-case name or IPv4 address, with at most a valid port. None for
/// anything else, which [`host_name`] parses in full.
fn simple_host_name(authority: &str) -> Option<&str> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => (authority, ""),
    };
    let plain = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
    let valid_port = port.is_empty()
        || (port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok());
    (!host.is_empty() && !host.ends_with('.') && host.bytes().all(plain) && valid_port)
        .then_some(host)
}

/// Which certificate serves which name: exact names, then one-level
/// wildcards, then the first certificate (index 0).
#[derive(Debug, Default)]
pub struct CertNames {
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
}

impl CertNames {
    /// `host` (a name, or `*.` and a parent name) is served by certificate
    /// `index`, unless an earlier certificate serves it.
    pub fn add(&mut self, host: &str, index: usize) {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_owned()).or_insert(index),
            None => self.exact.entry(host).or_insert(index),
        };
    }

    /// The index of the certificate chosen for `name` (an SNI or a Host,
    /// lower-cased); the default certificate when none names it.
    pub fn choose(&self, name: Option<&str>) -> usize {
        self.find(name).unwrap_or(0)
    }

    pub fn find(&self, name: Option<&str>) -> Option<usize> {
        let name = name?.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        self.exact.get(name).copied().or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent).copied())
        })
    }
}

impl Router {
    /// The key a purge URL names, built with the rules of the site that serves it.
    pub(crate) fn purge_key(&self, url: &str) -> Result<CacheKey, UrlError> {
        // Validates the URL as a whole (scheme, host) first.
        CacheKey::from_url(url, &outpost_config::QueryKey::All)?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(split);
        let host = host_name(authority).ok_or_else(|| UrlError::NoHost(url.to_owned()))?;
        let site = self
            .site(&host)
            .ok_or_else(|| UrlError::NoSite(host.clone()))?;
        let path_and_query = path_and_query.split('#').next().unwrap_or_default();
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        // The same normalization the proxy applies before matching and keying.
        let path = normalize_path(if path.is_empty() { "/" } else { path }).map_err(|source| {
            UrlError::Path {
                url: url.to_owned(),
                source,
            }
        })?;
        let rule = site.rule_for(&path, scheme.eq_ignore_ascii_case("https"));
        let path = rule
            .key_path(&path)
            .map_err(|e| UrlError::Rewrite(format!("{url:?}: {e}")))?;
        let target = match query {
            Some(query) => format!("{path}?{query}"),
            None => path.into_owned(),
        };
        Ok(CacheKey::new(
            &scheme.to_ascii_lowercase(),
            authority,
            &target,
            &rule.query,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn router() -> Router {
        let text = "\
listen: [{addr: 127.0.0.1:0}]
origins:
  a: {servers: [{url: http://127.0.0.1:1}]}
  b: {servers: [{url: http://127.0.0.1:2}]}
  c: {servers: [{url: http://127.0.0.1:3}]}
sites:
  - hosts: [example.com]
    origin: a
    rules:
      - match: {path_prefix: /static/, extensions: [css]}
        ttl: 1h
      - match: {path_regex: '^/api/v[0-9]+/'}
        cache: bypass
      - match: {path_prefix: /static/}
        key: {query: ignore}
  - hosts: ['*.example.com']
    origin: b
  - hosts: ['*']
    origin: c
";
        let loaded = outpost_config::load_str(text, "t.yaml", Path::new(".")).unwrap();
        Router::new(&loaded).unwrap()
    }

    #[test]
    fn hosts_pick_sites() {
        let r = router();
        assert_eq!(r.site("example.com").unwrap().origin, "a");
        assert_eq!(r.site("www.example.com").unwrap().origin, "b");
        assert_eq!(r.site("a.b.example.com").unwrap().origin, "b");
        assert_eq!(r.site("other.net").unwrap().origin, "c");
    }

    #[test]
    fn first_matching_rule_wins() {
        let r = router();
        let site = r.site("example.com").unwrap();
        assert_eq!(
            site.rule_for("/static/a.css", false)
                .store_rules(200, Some("text/css"))
                .ttl,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(site.rule_for("/static/a.js", false).query, QueryKey::Ignore);
        assert!(site.rule_for("/api/v2/users", false).bypass);
        assert!(!site.rule_for("/api/users", false).bypass);
        assert_eq!(site.rule_for("/", false).query, QueryKey::All);
    }

    #[test]
    fn host_names_are_normalized() {
        assert_eq!(
            host_name("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(host_name("example.com.").as_deref(), Some("example.com"));
        assert_eq!(host_name("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(host_name("user@host"), None);
        // Issue 19: no entry is shared through a port that cannot be.
        assert_eq!(host_name("a:99999"), None);
        assert_eq!(host_name("a:65535").as_deref(), Some("a"));
        assert_eq!(host_name("a:").as_deref(), Some("a"));
        assert_eq!(host_name("[::1]:99999"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name(":80"), None);
        assert_eq!(host_name("a:+80"), None);
        assert_eq!(host_name("127.0.0.1:8080").as_deref(), Some("127.0.0.1"));
    }

    /// The quick path gives what the full parse gives wherever it answers.
    #[test]
    fn simple_host_names_agree_with_the_full_parse() {
        for authority in [
            "example.com",
            "example.com:8080",
            "a-b.example:0",
            "a:65535",
            "a:",
            "127.0.0.1:19012",
            "xn--bcher-kva.example",
        ] {
            let simple = simple_host_name(authority).expect(authority);
            let parsed: http::uri::Authority = authority.parse().unwrap();
            assert_eq!(simple, parsed.host(), "{authority}");
        }
        for authority in [
            "Example.com",
            "a.:80",
            "a:99999",
            "a:8o",
            "a b",
            "[::1]",
            "u@h",
            "",
        ] {
            assert_eq!(simple_host_name(authority), None, "{authority}");
        }
    }
}
