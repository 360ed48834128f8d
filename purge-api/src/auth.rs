//! Who may use the side API: bearer tokens, full or scoped to hosts,
//! compared in constant time, and what a scoped token may purge.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use subtle::ConstantTimeEq;

use crate::budget::PurgeBudget;
use crate::purge::PurgeRequest;
use crate::{Admin, ScopeError, error};

impl Admin {
    /// Who presented the bearer token, and its scope; None when it is
    /// missing or matches no configured token. Every token is compared, in
    /// constant time.
    pub(crate) fn caller<B>(&self, req: &Request<B>) -> Option<Caller> {
        let given = bearer(req)?;
        // Compare hashes so that neither the length nor the bytes of a
        // token leak through timing.
        let given = blake3::hash(given.as_bytes());
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut found = None;
        for (expected, hosts) in tokens.iter() {
            if bool::from(given.as_bytes().ct_eq(expected)) && found.is_none() {
                found = Some(Caller {
                    token: *expected,
                    scope: match hosts {
                        None => Scope::All,
                        Some(hosts) => Scope::Hosts(hosts.clone()),
                    },
                });
            }
        }
        found
    }

    /// Whether the request may go on to its route: from a listed network
    /// (health probes excepted), and for a reading route with the read
    /// token or the full one, when the config asks for one.
    pub(crate) fn admitted<B>(&self, req: &Request<B>, reading: bool) -> Result<(), Denied> {
        let access = self
            .access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !access.networks.is_empty() {
            let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
            // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
            let client = client.map(|ip| match ip {
                std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
                v4 => v4,
            });
            if !client.is_some_and(|ip| access.networks.iter().any(|n| n.contains(&ip))) {
                return Err(Denied::Network);
            }
        }
        if reading && access.read_required {
            let given = bearer(req).map(|t| *blake3::hash(t.as_bytes()).as_bytes());
            let full = self
                .caller(req)
                .is_some_and(|c| matches!(c.scope, Scope::All));
            let matches = given
                .zip(access.read)
                .is_some_and(|(given, read)| bool::from(given.ct_eq(&read)));
            if !(matches || full) {
                return Err(Denied::Token);
            }
        }
        Ok(())
    }

    /// A scoped token may purge URLs, prefixes, hosts and tags of its
    /// hosts only: a tag purge it makes without `within_hosts` is limited
    /// to all of them (so the purge that reaches the rest of a fleet is too).
    pub(crate) fn check_scope(
        &self,
        scope: &Scope,
        purge: &mut PurgeRequest,
    ) -> Result<(), ScopeError> {
        match scope {
            Scope::All => Ok(()),
            Scope::Hosts(allowed) => {
                if purge.tags.is_some() && purge.within_hosts.is_none() {
                    purge.within_hosts = Some(allowed.clone());
                }
                check_hosts(allowed, purge)
            }
        }
    }
}

/// The bearer token a request presents.
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
}

/// Whether a token limited to the hosts `allowed` (names, or `*.` and a
/// parent name; lower-case) may make `purge`.
pub(crate) fn check_hosts(allowed: &[String], purge: &PurgeRequest) -> Result<(), ScopeError> {
    if purge.everything.is_some() {
        return Err(ScopeError::Everything);
    }
    if purge.tags.is_some() {
        let Some(within) = &purge.within_hosts else {
            return Err(ScopeError::TagsOn("*".into()));
        };
        // What does not read as a pattern is refused with a 400 later.
        for pattern in within.iter().filter_map(|p| crate::purge::host_pattern(p)) {
            if !pattern_in_scope(allowed, &pattern) {
                return Err(ScopeError::TagsOn(pattern));
            }
        }
    }
    let url_hosts = purge.urls.iter().flatten().map(|url| {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        rest.split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let prefix_hosts = purge
        .prefixes
        .iter()
        .flatten()
        .map(|p| p.split('/').next().unwrap_or_default().to_owned());
    let hosts = purge.hosts.iter().flatten().cloned();
    for host in url_hosts.chain(prefix_hosts).chain(hosts) {
        if !host_in_scope(allowed, &host) {
            return Err(ScopeError::Host(host));
        }
    }
    Ok(())
}

/// Whether `host` (any case, with or without a port or a trailing dot) is
/// one of `allowed`: named, or under an allowed `*.` parent.
pub(crate) fn host_in_scope(allowed: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_end_matches('.');
    allowed
        .iter()
        .any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => pattern == host,
        })
}

/// Whether every host the normalized `pattern` matches is one of `allowed`'s:
/// a name in scope, or `*.x` under an allowed `*.y` (x is y or below it).
fn pattern_in_scope(allowed: &[String], pattern: &str) -> bool {
    match pattern.strip_prefix("*.") {
        None => allowed.iter().any(|a| match a.strip_prefix("*.") {
            Some(suffix) => pattern
                .strip_suffix(suffix)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => a == pattern,
        }),
        Some(under) => allowed.iter().any(|a| {
            a.strip_prefix("*.").is_some_and(|suffix| {
                under == suffix
                    || under
                        .strip_suffix(suffix)
                        .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
            })
        }),
    }
}

/// Bearer tokens of the side API.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// May do everything; with none (and no scoped tokens) every
    /// state-changing call is refused.
    pub full: Option<String>,
    /// May purge URLs, prefixes, hosts and tags of their hosts only.
    pub scoped: Vec<(String, Vec<String>)>,
    /// The purge work each token may do.
    pub budget: PurgeBudget,
    /// Asked of the reading routes (`/stats`, `/metrics`, ...), which the
    /// full token also opens.
    pub read: Option<String>,
    /// Whether the reading routes ask for a token at all (with `read`
    /// None, only the full token opens them).
    pub read_required: bool,
    /// Client networks that may use the side API at all (health probes
    /// aside); any when empty.
    pub networks: Vec<ipnet::IpNet>,
}

/// The client's address on the side API, which the server puts in each
/// request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Who may reach and read the side API.
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// Whether the reading routes ask for a token, and the hash of the
    /// read token.
    read_required: bool,
    read: Option<[u8; 32]>,
    networks: Vec<ipnet::IpNet>,
}

impl Access {
    pub(crate) fn new(tokens: &Tokens) -> Self {
        Self {
            read_required: tokens.read_required || tokens.read.is_some(),
            read: tokens
                .read
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| *blake3::hash(t.as_bytes()).as_bytes()),
            networks: tokens.networks.clone(),
        }
    }
}

/// Why the side API turned a request away before its route.
pub(crate) enum Denied {
    /// From a network the config does not list.
    Network,
    /// A reading route without the read token (or the full one).
    Token,
}

/// A caller that presented a known token.
pub(crate) struct Caller {
    /// The token's hash: its purge budget is kept under it.
    pub(crate) token: [u8; 32],
    pub(crate) scope: Scope,
}

/// What a presented token may purge.
pub(crate) enum Scope {
    All,
    Hosts(Vec<String>),
}

/// A token's blake3 hash, and the hosts it is limited to (None: all).
pub(crate) type TokenTable = Vec<([u8; 32], Option<Vec<String>>)>;

/// The lookup table of `tokens`; blank tokens never match.
pub(crate) fn token_table(tokens: &Tokens) -> TokenTable {
    let hash = |t: &str| *blake3::hash(t.trim().as_bytes()).as_bytes();
    let mut table = Vec::new();
    if let Some(full) = tokens.full.as_deref().filter(|t| !t.trim().is_empty()) {
        table.push((hash(full), None));
    }
    for (token, hosts) in &tokens.scoped {
        if !token.trim().is_empty() {
            table.push((
                hash(token),
                Some(hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            ));
        }
    }
    table
}

pub(crate) fn unauthorized(request_id: &str) -> Response<Full<Bytes>> {
    let mut res = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token",
        request_id,
    );
    res.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    res
}
