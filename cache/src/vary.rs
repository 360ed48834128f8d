//! Vary (RFC 9111 §4.1): a response that varies is stored as one variant
//! among several under its URL. The primary key holds a marker naming the
//! fields it varies on; each variant lives under a secondary key made of
//! the URL and the request's normalized values of those fields.

use std::collections::VecDeque;
use std::sync::Mutex;

use http::header::VARY;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Variants kept per URL; storing one more drops the least recently stored.
pub const MAX_VARIANTS: usize = 32;

/// The field names a response varies on, lower-case, sorted, without
/// duplicates, from every `Vary` line. `None` for `Vary: *`, which no
/// request ever matches.
pub fn names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for value in headers.get_all(VARY) {
        for name in value.to_str().unwrap_or_default().split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            if let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                names.push(name);
            }
        }
    }
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

/// A field's value for matching: every line joined, each list member
/// trimmed, members separated by `", "`. Absent is distinct from empty.
///
/// RFC 9111 §4.1 lets values match when they "can be normalized to be
/// identical" (whitespace, case where the field is case-insensitive). The
/// proactive negotiation fields (RFC 9110 §12.5) go further: their
/// members are case-insensitive and their order carries no meaning (the
/// weights do), so they are lower-cased, written without spaces or a
/// default `q=1`, and sorted.
fn normalized(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let members = lines
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let negotiation = matches!(
        name.as_str(),
        "accept-language" | "accept-encoding" | "accept-charset"
    );
    if !negotiation {
        return Some(members.collect::<Vec<_>>().join(", "));
    }
    // A member of parameters only (`;`, `;q=1`) is empty once written in
    // its single form: it is dropped, as the empty members before it are,
    // so that a normalized value normalizes to itself.
    let mut members: Vec<String> = members
        .map(negotiation_member)
        .filter(|m| !m.is_empty())
        .collect();
    members.sort();
    members.dedup();
    Some(members.join(", "))
}

/// One member of an Accept-* field (`de-CH ; q=0.8`) in a single form
/// (`de-ch;q=0.8`); a weight of 1 is the default and is left out.
fn negotiation_member(member: &str) -> String {
    let mut parts = member.split(';').map(|p| p.trim().to_ascii_lowercase());
    let mut out = parts.next().unwrap_or_default();
    for parameter in parts {
        let parameter: String = parameter
            .split('=')
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("=");
        let default_weight = parameter.strip_prefix("q=").is_some_and(|q| {
            q == "1" || (q.starts_with("1.") && q[2..].bytes().all(|b| b == b'0'))
        });
        if !default_weight && !parameter.is_empty() {
            out.push(';');
            out.push_str(&parameter);
        }
    }
    out
}

/// Rewrites the fields in `names` to their normalized form, so that values
/// that differ only in whitespace or line breaks compare equal.
pub fn normalize_fields(headers: &mut HeaderMap, names: &[HeaderName]) {
    for name in names {
        if let Some(value) = normalized(headers, name) {
            headers.remove(name);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name.clone(), value);
            }
        }
    }
}

/// Request fields a rule adds to the key (`key: {headers, cookies}`): they
/// make variants exactly as Vary does, so a purge of the URL reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFields {
    /// Lower-case header names.
    pub headers: Vec<HeaderName>,
    /// Cookie names, as written.
    pub cookies: Vec<String>,
}

impl KeyFields {
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.cookies.is_empty()
    }
}

/// What a response's variant is made of: the request fields it varies
/// on (its Vary names and the rule's key fields), the rule's key cookies,
/// and the secondary text of the request it answered. A request is the
/// same variant when its own text under these fields is the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Variation {
    /// Lower-case, sorted, without duplicates.
    pub names: Vec<HeaderName>,
    pub cookies: Vec<String>,
    /// The answered request's [`secondary`] text ("" when nothing varies).
    pub text: String,
}

impl Variation {
    /// The variation of a response that varies on `vary` (its Vary
    /// names), stored under a rule that keys on `fields`, for `request`.
    pub(crate) fn new(mut vary: Vec<HeaderName>, fields: &KeyFields, request: &HeaderMap) -> Self {
        vary.extend(fields.headers.iter().cloned());
        vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        vary.dedup();
        let cookies = fields.cookies.clone();
        let text = secondary(&vary, &cookies, request);
        Self {
            names: vary,
            cookies,
            text,
        }
    }

    /// Whether the response varies at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty() && self.cookies.is_empty()
    }

    /// Whether a request with `request`'s fields selects this same variant
    /// (RFC 9111 §4.1).
    pub(crate) fn matches(&self, request: &HeaderMap) -> bool {
        self.is_empty() || secondary(&self.names, &self.cookies, request) == self.text
    }
}

/// The secondary part of a variant's key: each varied field and cookie
/// with the request's normalized value (`\u{1}` marks an absent one).
pub fn secondary(names: &[HeaderName], cookies: &[String], request: &HeaderMap) -> String {
    let mut text = String::new();
    for name in names {
        text.push_str(name.as_str());
        text.push('=');
        match normalized(request, name) {
            Some(value) => text.push_str(&value),
            None => text.push('\u{1}'),
        }
        text.push('\n');
    }
    for cookie in cookies {
        text.push_str("cookie:");
        text.push_str(cookie);
        text.push('=');
        match cookie_value(request, cookie) {
            Some(value) => text.push_str(value),
            None => text.push('\u{1}'),
        }
        text.push('\n');
    }
    text
}

/// The fields of a variant's text as [`secondary`] wrote them: each
/// varied field (a cookie as `cookie:NAME`) with the request's value,
/// None where the request had none.
pub fn fields_of(secondary: &str) -> Vec<(String, Option<String>)> {
    secondary
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let value = (value != "\u{1}").then(|| value.to_owned());
            (name.to_owned(), value)
        })
        .collect()
}

/// The value of cookie `name` in the request's Cookie fields (RFC 6265 §5.4).
fn cookie_value<'a>(request: &'a HeaderMap, name: &str) -> Option<&'a str> {
    request
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

/// Where a variant is stored.
pub fn secondary_hash(key: &str, secondary: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(key.as_bytes());
    hasher.update(b"\0vary\0");
    hasher.update(secondary.as_bytes());
    *hasher.finalize().as_bytes()
}

/// Stored under a URL's primary key when its responses vary.
#[derive(Debug)]
pub struct VaryMarker {
    /// Full primary key text.
    pub key: String,
    /// Identifies this marker: variants stored under an earlier marker
    /// (before a purge, or before the Vary names changed) never match.
    pub id: u64,
    pub names: Vec<HeaderName>,
    pub cookies: Vec<String>,
    /// Secondary hashes of the variants, most recently stored last.
    variants: Mutex<VecDeque<[u8; 32]>>,
}

impl VaryMarker {
    pub fn new(key: String, names: Vec<HeaderName>, cookies: Vec<String>) -> Self {
        Self::with_id(key, crate::id::unique_id(), names, cookies)
    }

    /// A marker read back from disk, with the id its variants were stored under.
    pub fn with_id(key: String, id: u64, names: Vec<HeaderName>, cookies: Vec<String>) -> Self {
        Self {
            key,
            id,
            names,
            cookies,
            variants: Mutex::new(VecDeque::new()),
        }
    }

    /// Records a stored variant; returns the ones pushed out by the bound.
    pub fn remember(&self, hash: [u8; 32]) -> Vec<[u8; 32]> {
        let mut variants = self.variants.lock().unwrap_or_else(|p| p.into_inner());
        variants.retain(|h| *h != hash);
        variants.push_back(hash);
        let excess = variants.len().saturating_sub(MAX_VARIANTS);
        variants.drain(..excess).collect()
    }

    /// Every variant stored under this marker.
    pub fn variants(&self) -> Vec<[u8; 32]> {
        self.variants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variant's text reads back as its fields and values, an absent
    /// value as None.
    #[test]
    fn a_variants_fields_read_back() {
        let names = [
            HeaderName::from_static("accept-language"),
            HeaderName::from_static("x-a"),
        ];
        let text = secondary(
            &names,
            &["session".to_owned()],
            &headers(&[("accept-language", "de"), ("cookie", "session=s1; b=2")]),
        );
        assert_eq!(
            fields_of(&text),
            [
                ("accept-language".to_owned(), Some("de".to_owned())),
                ("x-a".to_owned(), None),
                ("cookie:session".to_owned(), Some("s1".to_owned())),
            ]
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn names_are_combined_lowercased_and_sorted() {
        let h = headers(&[
            ("vary", "Accept-Language, accept-encoding"),
            ("vary", "ACCEPT-ENCODING"),
        ]);
        let names: Vec<String> = names(&h).unwrap().iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["accept-encoding", "accept-language"]);
        assert_eq!(super::names(&headers(&[("vary", "accept, *")])), None);
    }

    /// RFC 9111 §4.1: values are compared after normalization; several
    /// lines combine; an absent field differs from an empty one.
    #[test]
    fn secondary_keys_normalize_values() {
        let names = vec![HeaderName::from_static("accept-encoding")];
        let a = secondary(&names, &[], &headers(&[("accept-encoding", "gzip,  br")]));
        let b = secondary(
            &names,
            &[],
            &headers(&[("accept-encoding", "gzip"), ("accept-encoding", " br ")]),
        );
        assert_eq!(a, b);
        let other = vec![HeaderName::from_static("x-order")];
        assert_ne!(
            secondary(&other, &[], &headers(&[("x-order", "a, b")])),
            secondary(&other, &[], &headers(&[("x-order", "b, a")])),
            "order counts in a field not known to ignore it"
        );
        assert_ne!(
            secondary(&names, &[], &headers(&[])),
            secondary(&names, &[], &headers(&[("accept-encoding", "")]))
        );
    }

    /// RFC 9110 §12.5: in the negotiation fields, case, spacing, member
    /// order and a default weight change nothing; the weights do.
    #[test]
    fn negotiation_fields_match_whatever_their_order_and_case() {
        let names = vec![HeaderName::from_static("accept-language")];
        let key = |value: &str| secondary(&names, &[], &headers(&[("accept-language", value)]));
        let base = key("en, de");
        for same in [
            "de, en",
            "eN, De",
            " en ,   de",
            "de;q=1, en",
            "de; Q=1.000, en",
            "en, de, en",
        ] {
            assert_eq!(key(same), base, "{same:?}");
        }
        assert_ne!(key("en, de;q=0.5"), base);
        assert_eq!(key("en, de;q=0.5"), key("DE; q=0.5 ,en"));
        assert_ne!(key("en"), base);
        let encodings = vec![HeaderName::from_static("accept-encoding")];
        assert_eq!(
            secondary(
                &encodings,
                &[],
                &headers(&[("accept-encoding", "br, GZIP")])
            ),
            secondary(&encodings, &[], &headers(&[("accept-encoding", "gzip,br")]))
        );
    }

    /// RFC 9110 §12.5: a negotiation member that is only parameters is
    /// dropped, so that normalizing a normalized value changes nothing
    /// (found by `fuzz/vary`: `Accept-Charset: utf-8;q=1.000, ISO-8859-1;Q=0.5, ;`
    /// became `, iso-8859-1;q=0.5, utf-8`, then `iso-8859-1;q=0.5, utf-8`).
    #[test]
    fn normalized_negotiation_fields_stay_as_they_are() {
        let names = vec![HeaderName::from_static("accept-charset")];
        let mut once = headers(&[("accept-charset", "utf-8;q=1.000, ISO-8859-1;Q=0.5, ;")]);
        normalize_fields(&mut once, &names);
        assert_eq!(once["accept-charset"], "iso-8859-1;q=0.5, utf-8");
        let mut twice = once.clone();
        normalize_fields(&mut twice, &names);
        assert_eq!(twice, once);
        assert_eq!(
            secondary(&names, &[], &headers(&[("accept-charset", "utf-8, ; q=1")])),
            secondary(&names, &[], &headers(&[("accept-charset", "utf-8")]))
        );
    }

    #[test]
    fn cookies_join_the_secondary_key() {
        let cookies = vec!["lang".to_owned()];
        let en = secondary(&[], &cookies, &headers(&[("cookie", "session=1; lang=en")]));
        assert_eq!(
            en,
            secondary(
                &[],
                &cookies,
                &headers(&[("cookie", "lang=en"), ("cookie", "session=2")])
            )
        );
        assert_ne!(
            en,
            secondary(&[], &cookies, &headers(&[("cookie", "lang=fr")]))
        );
        assert_ne!(en, secondary(&[], &cookies, &headers(&[])));
    }

    /// RFC 9111 §4.1: a request selects a variant by its values of the
    /// fields the response varies on; a rule's key fields and cookies make
    /// variants as Vary does.
    #[test]
    fn a_variation_matches_requests_with_the_same_values() {
        let fields = KeyFields {
            headers: vec![HeaderName::from_static("x-device")],
            cookies: vec!["lang".to_owned()],
        };
        let request = headers(&[
            ("accept-encoding", "gzip, br"),
            ("x-device", "phone"),
            ("cookie", "lang=en; session=1"),
        ]);
        let vary = names(&headers(&[("vary", "Accept-Encoding")])).unwrap();
        let variation = Variation::new(vary, &fields, &request);
        assert_eq!(variation.names.len(), 2);
        assert!(variation.matches(&headers(&[
            ("accept-encoding", "br,gzip"),
            ("x-device", "phone"),
            ("cookie", "lang=en; session=2"),
        ])));
        assert!(!variation.matches(&headers(&[
            ("accept-encoding", "gzip, br"),
            ("x-device", "desktop"),
            ("cookie", "lang=en"),
        ])));
        assert!(!variation.matches(&headers(&[
            ("accept-encoding", "gzip, br"),
            ("x-device", "phone"),
        ])));
        let plain = Variation::new(Vec::new(), &KeyFields::default(), &request);
        assert!(plain.is_empty() && plain.text.is_empty());
        assert!(
            plain.matches(&headers(&[])),
            "nothing varies: every request"
        );
    }

    #[test]
    fn the_variant_count_is_bounded() {
        let marker = VaryMarker::new("k".into(), vec![], vec![]);
        for i in 0..MAX_VARIANTS as u8 {
            assert!(marker.remember([i; 32]).is_empty());
        }
        assert_eq!(
            marker.remember([0; 32]),
            Vec::<[u8; 32]>::new(),
            "re-storing one does not grow the set"
        );
        assert_eq!(marker.remember([200; 32]), vec![[1; 32]]);
    }

    /// Property tests: any request field lines under any Vary names.
    mod properties {
        use super::*;
        use crate::strategies::list_value;
        use proptest::collection::vec;
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = HeaderName> {
            prop_oneof![
                Just(HeaderName::from_static("accept-language")),
                Just(HeaderName::from_static("accept-encoding")),
                Just(HeaderName::from_static("accept-charset")),
                Just(HeaderName::from_static("accept")),
                Just(HeaderName::from_static("x-device")),
            ]
        }

        proptest! {
            /// RFC 9111 §4.1: normalizing the request's fields (as the
            /// stored request is kept) is idempotent and picks the same
            /// variant as the fields as they came.
            #[test]
            fn normalizing_changes_no_variant(
                lines in vec((field(), list_value()), 0..6),
                vary in vec(field(), 0..4),
            ) {
                let mut request = HeaderMap::new();
                for (name, value) in lines {
                    request.append(name, value);
                }
                let mut names = vary;
                names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                names.dedup();
                let mut once = request.clone();
                normalize_fields(&mut once, &names);
                let mut twice = once.clone();
                normalize_fields(&mut twice, &names);
                prop_assert_eq!(&twice, &once);
                prop_assert_eq!(secondary(&names, &[], &once), secondary(&names, &[], &request));
            }

            /// The names read from Vary lines are sorted, without
            /// duplicates, and read back the same from one line.
            #[test]
            fn vary_names_are_canonical(lines in vec("[ -~]{0,30}", 0..3)) {
                let mut response = HeaderMap::new();
                for line in lines.iter().filter_map(|l| HeaderValue::from_str(l).ok()) {
                    response.append(VARY, line);
                }
                if let Some(found) = names(&response) {
                    prop_assert!(found.windows(2).all(|p| p[0].as_str() < p[1].as_str()));
                    let joined: Vec<&str> = found.iter().map(HeaderName::as_str).collect();
                    let mut again = HeaderMap::new();
                    again.insert(VARY, HeaderValue::from_str(&joined.join(", ")).unwrap());
                    prop_assert_eq!(names(&again), Some(found));
                }
            }
        }
    }
}
