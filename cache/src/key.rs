//! Cache keys: a normalized text form of the request's identity and its
//! blake3 hash. The text is kept beside the hash so that a collision can
//! never serve one URL's object for another.

use std::fmt;

use outpost_config::QueryKey;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    text: String,
    hash: [u8; 32],
    /// The hash of the URL's own key: the same as `hash`, except for a
    /// part of the URL's object (a stored range or slice), which purges of
    /// the URL reach through it.
    primary: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not an absolute http or https URL")]
    NotAbsolute(String),
}

impl CacheKey {
    /// Builds the key for a request to `scheme://host` + `path_and_query`.
    ///
    /// The host is lower-cased and loses its trailing dots and its scheme's
    /// default port; the path has percent-encoded unreserved characters
    /// decoded and other escapes upper-cased; the query is sorted by
    /// parameter or dropped, as the rule says.
    pub fn new(scheme: &str, host: &str, path_and_query: &str, query: &QueryKey) -> CacheKey {
        let scheme = if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(scheme.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(scheme)
        };
        let host = normalize_host(&scheme, host);
        let (path, raw_query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut text = String::with_capacity(scheme.len() + host.len() + path_and_query.len() + 4);
        text.push_str(&scheme);
        text.push_str("://");
        text.push_str(&host);
        if path.is_empty() {
            text.push('/');
        } else {
            normalize_escapes(path, &mut text);
        }
        if let Some(q) = raw_query {
            let kept = |param: &str| match query {
                QueryKey::All => true,
                QueryKey::Ignore => false,
                QueryKey::Include(names) => names.iter().any(|n| n == param_name(param)),
                QueryKey::Exclude(names) => !names.iter().any(|n| n == param_name(param)),
            };
            // The rule names parameters as the origin reads them: a name
            // is matched once its escapes are normalized (`%69d` is `id`).
            let mut params: Vec<String> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let mut out = String::with_capacity(p.len());
                    normalize_escapes(p, &mut out);
                    out
                })
                .filter(|p| kept(p))
                .collect();
            if !params.is_empty() {
                // By name only, and stable: `a=2&a=1` keeps its order, which
                // the origin may well give meaning to.
                params.sort_by(|x, y| param_name(x).cmp(param_name(y)));
                text.push('?');
                text.push_str(&params.join("&"));
            }
        }
        let hash = *blake3::hash(text.as_bytes()).as_bytes();
        CacheKey {
            text,
            hash,
            primary: hash,
        }
    }

    /// The key of one part of this URL's object (`label` names it, e.g.
    /// `range` or `slice=1048576:3`): a key of its own, stored apart from
    /// the whole object, whose purges reach it as they reach the URL. The
    /// text adds `#label`, which no request's key has (the fragment is
    /// never part of one).
    pub fn part(&self, label: &str) -> CacheKey {
        let text = format!("{}#{label}", self.text);
        let hash = *blake3::hash(text.as_bytes()).as_bytes();
        CacheKey {
            text,
            hash,
            primary: self.primary,
        }
    }

    /// Whether this is the key of a part of a URL's object.
    pub fn is_part(&self) -> bool {
        self.primary != self.hash
    }

    /// The hash of the URL's own key, which purges of the URL name.
    pub fn primary(&self) -> &[u8; 32] {
        &self.primary
    }

    /// Parses an absolute URL such as `https://example.com/a?b=1`.
    pub fn from_url(url: &str, query: &QueryKey) -> Result<CacheKey, KeyError> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
            .ok_or_else(|| KeyError::NotAbsolute(url.to_owned()))?;
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, path_and_query) = rest.split_at(split);
        // A host that is only its scheme's default port (`http://:80`)
        // names no host once normalized.
        if host.contains('@') || normalize_host(&scheme.to_ascii_lowercase(), host).is_empty() {
            return Err(KeyError::NotAbsolute(url.to_owned()));
        }
        let path_and_query = match path_and_query.split_once('#') {
            Some((before, _)) => before,
            None => path_and_query,
        };
        Ok(CacheKey::new(scheme, host, path_and_query, query))
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.text)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn param_name(param: &str) -> &str {
    param.split('=').next().unwrap_or(param)
}

/// A path that cannot be served as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    #[error("the path has a dot segment")]
    DotSegment,
}

/// The path as Outpost matches, keys and forwards it: percent-escapes of
/// unreserved characters decoded, other escapes upper-cased (RFC 3986
/// §6.2.2), and dot segments, written plainly or encoded, refused: a
/// client sends them resolved (§5.2.4), and left in they would let a path
/// match one rule and reach another resource at the origin.
pub fn normalize_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut out = String::with_capacity(path.len());
    normalize_escapes(path, &mut out);
    if out
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(PathError::DotSegment);
    }
    Ok(out)
}

/// Lower-cases the host and removes its trailing dots, an empty port
/// (RFC 3986 §6.2.3) and the scheme's default port. They go before and
/// after the port, so that a normalized host normalizes to itself
/// (`a.:80.` is `a`).
pub fn normalize_host(scheme: &str, host: &str) -> String {
    let mut host = host.to_ascii_lowercase();
    trim_dots(&mut host);
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    if !default_port.is_empty() && host.ends_with(default_port) {
        let cut = host.len() - default_port.len();
        // The colon must separate the port, not sit inside an IPv6 literal.
        let before = &host[..cut];
        if !before.contains(':') || before.ends_with(']') {
            host.truncate(cut);
        }
    }
    trim_dots(&mut host);
    host
}

/// Removes a name's trailing dots (the root label's, and any written after
/// it: `example.com..`) and the `:` of an empty port; a lone `.` stays.
fn trim_dots(host: &mut String) {
    while host.len() > 1 && host.ends_with(['.', ':']) {
        host.pop();
    }
}

/// Copies `input` to `out`, decoding `%XX` escapes of unreserved characters
/// (RFC 3986 §6.2.2.2) and upper-casing the hex digits of the others.
///
/// A `%` that starts no escape stays as it is; an escape whose character
/// would make an escape with it (`%%32e`, `%4%45`) stays an escape, so that
/// the output has only the escapes the input had: normalizing it again
/// changes nothing, and an origin that decodes it once never finds an
/// escape (`%2e`) that was not there.
fn normalize_escapes(input: &str, out: &mut String) {
    // What lies between escapes is copied as it is, a run at a time.
    let mut rest = input;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.as_bytes().get(at + 1..at + 3);
        let Some((hi, lo, digits)) =
            escape.and_then(|d| Some((hex(d[0])?, hex(d[1])?, [d[0], d[1]])))
        else {
            // A `%` that starts no escape.
            out.push('%');
            rest = &rest[at + 1..];
            continue;
        };
        let decoded = hi << 4 | lo;
        let completes_an_escape = decoded.is_ascii_hexdigit() && ends_an_escape_start(out);
        if (decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded)) && !completes_an_escape {
            out.push(decoded as char);
        } else {
            out.push('%');
            out.push(digits[0].to_ascii_uppercase() as char);
            out.push(digits[1].to_ascii_uppercase() as char);
        }
        // Both digits are ASCII: the escape ends on a character boundary.
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
}

/// Whether `out` ends in `%` or `%` and a hex digit: a start that one more
/// hex digit turns into an escape.
fn ends_an_escape_start(out: &str) -> bool {
    let bytes = out.as_bytes();
    match bytes {
        [.., b'%'] => true,
        [.., b'%', digit] => digit.is_ascii_hexdigit(),
        _ => false,
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule's query names match a parameter whatever escapes its name
    /// is written with. Before, `?%69d=7` under `include: [id]` lost its
    /// parameter and was keyed as the bare URL, though the origin reads
    /// `id=7` (one object stored for another); `?utm%5Fsource=x` escaped
    /// `exclude: [utm_source]`, and its key read back differently (seen
    /// while writing `fuzz/cache_key`, whose idempotence check covers it).
    #[test]
    fn query_names_match_through_escapes() {
        let include = QueryKey::Include(vec!["id".into()]);
        let exclude = QueryKey::Exclude(vec!["utm_source".into()]);
        let key = |url: &str, query: &QueryKey| CacheKey::from_url(url, query).unwrap();
        assert_eq!(key("http://a/p?%69d=7", &include).text(), "http://a/p?id=7");
        assert_eq!(
            key("http://a/p?i%64=7&x=1", &include).text(),
            "http://a/p?id=7"
        );
        let excluded = key("http://a/p?utm%5Fsource=x&id=7", &exclude);
        assert_eq!(excluded.text(), "http://a/p?id=7");
        assert_eq!(key(excluded.text(), &exclude), excluded);
    }

    #[test]
    fn query_parameters_can_be_included_or_excluded() {
        let include = QueryKey::Include(vec!["id".into()]);
        let exclude = QueryKey::Exclude(vec!["utm_source".into(), "fbclid".into()]);
        let url = "http://a/p?utm_source=x&id=7&page=2&fbclid=z";
        assert_eq!(
            CacheKey::from_url(url, &include).unwrap().text(),
            "http://a/p?id=7"
        );
        assert_eq!(
            CacheKey::from_url(url, &exclude).unwrap().text(),
            "http://a/p?id=7&page=2"
        );
        assert_eq!(
            CacheKey::from_url("http://a/p?utm_source=x", &exclude)
                .unwrap()
                .text(),
            "http://a/p"
        );
    }

    fn key(url: &str) -> String {
        CacheKey::from_url(url, &QueryKey::All)
            .unwrap()
            .text()
            .to_owned()
    }

    #[test]
    fn host_is_lowercased_and_default_port_dropped() {
        assert_eq!(key("HTTPS://Example.COM:443/a"), "https://example.com/a");
        assert_eq!(key("http://example.com:80/a"), "http://example.com/a");
        assert_eq!(
            key("http://example.com:8080/a"),
            "http://example.com:8080/a"
        );
        assert_eq!(key("https://example.com:80/a"), "https://example.com:80/a");
        assert_eq!(key("http://[::1]:80/a"), "http://[::1]/a");
        assert_eq!(key("http://example.com./a"), "http://example.com/a");
        assert_eq!(key("http://example.com"), "http://example.com/");
    }

    /// A normalized host normalizes to itself (found by `fuzz/cache_key`
    /// and `fuzz/purge_body`: `example.com..` became `example.com.`, then
    /// `example.com`; `a:80.` became `a:80`, then `a`).
    #[test]
    fn hosts_normalize_in_one_pass() {
        for (host, expected) in [
            ("example.com..", "example.com"),
            ("a:80.", "a"),
            ("a.:80.", "a"),
            ("[::1]:80.", "[::1]"),
            ("a:", "a"),
            ("a.:", "a"),
            ("[::1]:", "[::1]"),
            (".", "."),
            ("..", "."),
        ] {
            assert_eq!(normalize_host("http", host), expected, "{host}");
            assert_eq!(normalize_host("http", expected), expected);
        }
        assert_eq!(key("http://example.com../a"), "http://example.com/a");
    }

    #[test]
    fn query_is_sorted_or_dropped() {
        assert_eq!(key("http://a/p?b=2&a=1"), "http://a/p?a=1&b=2");
        assert_eq!(key("http://a/p?"), "http://a/p");
        let ignored = CacheKey::from_url("http://a/p?b=2", &QueryKey::Ignore).unwrap();
        assert_eq!(ignored.text(), "http://a/p");
    }

    #[test]
    fn escapes_are_normalized() {
        assert_eq!(key("http://a/%7euser/%2f%e2"), "http://a/~user/%2F%E2");
        assert_eq!(key("http://a/100%"), "http://a/100%");
        assert_eq!(key("http://a/%4"), "http://a/%4");
        assert_eq!(key("http://a/é"), "http://a/é");
        assert_eq!(key("http://a/p#frag"), "http://a/p");
    }

    /// RFC 3986 §6.2.2.2 decodes escapes of unreserved characters, but
    /// never so as to make an escape out of a `%` that started none (found
    /// by `fuzz/cache_key`: `/%%4%45/` became `/%%4E/`, then `/%N/`).
    /// Otherwise `/static/%%32e%%32e/account` would pass as `/static/%2e%2e/account`,
    /// which an origin decoding it once reads as `/static/../account`
    /// (RFC 3986 §5.2.4).
    #[test]
    fn decoding_never_makes_a_new_escape() {
        for (path, expected) in [
            ("/%%4%45/", "/%%4%45/"),
            ("/%%32e", "/%%32e"),
            ("/%4%31", "/%4%31"),
            ("/static/%%32e%%32e/account", "/static/%%32e%%32e/account"),
            ("/%%41", "/%%41"),
            ("/%%4g%41", "/%%4gA"),
            ("/100%/%7e", "/100%/~"),
        ] {
            assert_eq!(normalize_path(path).as_deref(), Ok(expected), "{path}");
            assert_eq!(
                normalize_path(expected).as_deref(),
                Ok(expected),
                "{expected}"
            );
        }
        assert_eq!(key("http://a/p?x=%%32e"), "http://a/p?x=%%32e");
    }

    #[test]
    fn repeated_parameters_keep_their_order() {
        assert_eq!(key("http://a/p?b=1&a=2&a=1"), "http://a/p?a=2&a=1&b=1");
        assert_ne!(key("http://a/p?a=2&a=1"), key("http://a/p?a=1&a=2"));
    }

    #[test]
    fn paths_are_normalized_and_dot_segments_refused() {
        assert_eq!(
            normalize_path("/%7Euser/a%2fb").as_deref(),
            Ok("/~user/a%2Fb")
        );
        assert_eq!(normalize_path("/%61pi/x").as_deref(), Ok("/api/x"));
        for bad in [
            "/static/../account",
            "/static/%2e%2e/account",
            "/a/./b",
            "/a/%2E",
            "/..",
        ] {
            assert_eq!(normalize_path(bad), Err(PathError::DotSegment), "{bad}");
        }
        assert_eq!(normalize_path("/a..b/c.").as_deref(), Ok("/a..b/c."));
        assert_eq!(normalize_path("?x=1"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn different_urls_have_different_hashes() {
        let a = CacheKey::from_url("http://a/x", &QueryKey::All).unwrap();
        let b = CacheKey::from_url("http://b/x", &QueryKey::All).unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a, CacheKey::new("http", "A:80", "/x", &QueryKey::All));
    }

    #[test]
    fn relative_urls_are_refused() {
        assert!(CacheKey::from_url("/x", &QueryKey::All).is_err());
        assert!(CacheKey::from_url("ftp://a/x", &QueryKey::All).is_err());
        assert!(CacheKey::from_url("http:///x", &QueryKey::All).is_err());
    }

    /// A URL whose host is only the default port names no host: its key
    /// would read as `http:///` (found by `fuzz/cache_key`: `http://:80`).
    /// A fragment right after the host is no part of the host.
    #[test]
    fn urls_without_a_host_are_refused() {
        assert!(CacheKey::from_url("http://:80", &QueryKey::All).is_err());
        assert!(CacheKey::from_url("https://:443/x", &QueryKey::All).is_err());
        assert_eq!(key("http://:8080/x"), "http://:8080/x");
        assert_eq!(key("http://a.test#frag"), "http://a.test/");
        assert_eq!(key("http://a.test#x/y"), "http://a.test/");
    }

    /// Property tests: hosts, paths and queries as clients write them,
    /// escapes of every kind included.
    mod properties {
        use super::*;
        use crate::strategies::{host, path, query};
        use proptest::prelude::*;

        fn query_key() -> impl Strategy<Value = QueryKey> {
            prop_oneof![
                Just(QueryKey::All),
                Just(QueryKey::Ignore),
                Just(QueryKey::Include(vec!["id".into(), "a_b".into()])),
                Just(QueryKey::Exclude(vec!["utm_source".into(), "a".into()])),
            ]
        }

        /// Every escape decoded once, but `%2F`, which stays inside its
        /// segment: what an origin makes of a path.
        fn decoded_once(path: &str) -> String {
            let bytes = path.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let escape = path
                    .get(i + 1..i + 3)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
                match escape.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) if bytes[i] == b'%' && byte != b'/' => {
                        out.push(byte);
                        i += 3;
                    }
                    _ => {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        }

        /// `normalize_escapes` a character at a time, as it was written
        /// before it copied runs: the reference the quick one must match.
        fn escapes_by_character(input: &str) -> String {
            let bytes = input.as_bytes();
            let mut out = String::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%'
                    && i + 2 < bytes.len()
                    && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
                {
                    let decoded = hi << 4 | lo;
                    let completes = decoded.is_ascii_hexdigit() && ends_an_escape_start(&out);
                    if (decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded)) && !completes
                    {
                        out.push(decoded as char);
                    } else {
                        out.push('%');
                        out.push(bytes[i + 1].to_ascii_uppercase() as char);
                        out.push(bytes[i + 2].to_ascii_uppercase() as char);
                    }
                    i += 3;
                    continue;
                }
                let len = input[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&input[i..i + len]);
                i += len;
            }
            out
        }

        proptest! {
            /// Escapes are normalized run by run exactly as character by
            /// character.
            #[test]
            fn escapes_agree_with_the_character_reference(
                input in prop_oneof![path(), query(), "[%0-9a-fA-F/.é]{0,12}"]
            ) {
                let mut quick = String::new();
                normalize_escapes(&input, &mut quick);
                prop_assert_eq!(quick, escapes_by_character(&input));
            }

            /// RFC 3986 §6.2.2: a normalized path normalizes to itself, and
            /// neither it nor what an origin decodes from it has a dot
            /// segment (§5.2.4).
            #[test]
            fn paths_normalize_in_one_pass(path in path()) {
                if let Ok(normalized) = normalize_path(&path) {
                    prop_assert_eq!(normalize_path(&normalized), Ok(normalized.clone()));
                    let decoded = decoded_once(&normalized);
                    prop_assert!(
                        !decoded.split('/').any(|s| s == "." || s == ".."),
                        "{:?} is {:?}, which an origin reads as {:?}", path, normalized, decoded
                    );
                }
            }

            /// RFC 9110 §4.2.3: a normalized host normalizes to itself.
            #[test]
            fn hosts_normalize_in_one_pass(host in host(), tls in any::<bool>()) {
                let scheme = if tls { "https" } else { "http" };
                let once = normalize_host(scheme, &host);
                prop_assert_eq!(normalize_host(scheme, &once), once);
            }

            /// A key read back from its own text is the same key, whatever
            /// the rule does with the query.
            #[test]
            fn keys_read_back_from_their_text(
                host in host(),
                path in path(),
                query in proptest::option::of(query()),
                keying in query_key(),
            ) {
                let url = match &query {
                    Some(query) => format!("http://{host}{path}?{query}"),
                    None => format!("http://{host}{path}"),
                };
                let key = CacheKey::from_url(&url, &keying).unwrap();
                let again = CacheKey::from_url(key.text(), &keying).unwrap();
                prop_assert_eq!(&again, &key, "{}", url);
                if let Ok(path) = normalize_path(&path) {
                    let target = match &query {
                        Some(query) => format!("{path}?{query}"),
                        None => path,
                    };
                    let built = CacheKey::new("http", &host, &target, &keying);
                    prop_assert_eq!(CacheKey::from_url(built.text(), &keying), Ok(built));
                }
            }
        }
    }
}
