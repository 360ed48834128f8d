//! Entity tags (RFC 9110 §8.8.3) and the lists of them in `If-None-Match`
//! and `If-Match` (§13.1.1, §13.1.2), read as bytes: an opaque tag may
//! hold obs-text, and a comma inside the quotes is part of the tag, not a
//! list separator.

use http::HeaderValue;

/// One entity tag: `W/"..."` or `"..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTag<'a> {
    pub weak: bool,
    /// The opaque tag with its quotes.
    pub opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    /// The tag a field value holds (surrounding white space allowed);
    /// None when it is not exactly one entity tag.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        match parse_one(trim(value))? {
            (tag, []) => Some(tag),
            _ => None,
        }
    }

    /// The tag of an `ETag` field.
    pub fn of(value: &'a HeaderValue) -> Option<Self> {
        Self::parse(value.as_bytes())
    }

    /// §8.8.3.2: the same opaque tags, whether weak or not.
    pub fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }

    /// §8.8.3.2: the same opaque tags, neither of them weak.
    pub fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }
}

/// What an `If-None-Match` or `If-Match` field list asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList<'a> {
    /// `*`: any current representation.
    Any,
    /// The tags listed, in order; members that are not entity tags are
    /// left out (a list of nothing but those matches nothing).
    Tags(Vec<EntityTag<'a>>),
}

impl<'a> TagList<'a> {
    /// The list the field lines make together; None without any line.
    pub fn parse(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Self> {
        let mut tags = Vec::new();
        let mut seen = false;
        for line in lines {
            seen = true;
            let value = trim(line.as_bytes());
            if value == b"*" {
                return Some(TagList::Any);
            }
            let mut rest = value;
            loop {
                rest = skip_separators(rest);
                if rest.is_empty() {
                    break;
                }
                match parse_one(rest) {
                    Some((tag, after)) => {
                        tags.push(tag);
                        rest = after;
                    }
                    // Not a tag: skip to the next comma outside quotes.
                    None => rest = skip_member(rest),
                }
            }
        }
        seen.then_some(TagList::Tags(tags))
    }

    /// Whether `current` (the representation's tag, if it has one) is one
    /// of the list's by the weak comparison (`If-None-Match`, §13.1.2).
    pub fn matches_weak(&self, current: Option<&EntityTag<'_>>) -> bool {
        match self {
            TagList::Any => current.is_some(),
            TagList::Tags(tags) => current.is_some_and(|c| tags.iter().any(|t| t.weak_eq(c))),
        }
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = value
        && is_ws(*first)
    {
        value = rest;
    }
    while let [rest @ .., last] = value
        && is_ws(*last)
    {
        value = rest;
    }
    value
}

fn skip_separators(mut value: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = value
        && (is_ws(*first) || *first == b',')
    {
        value = rest;
    }
    value
}

/// Past the member that starts `value`: to its comma outside quotes.
fn skip_member(value: &[u8]) -> &[u8] {
    let mut quoted = false;
    for (i, b) in value.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => return &value[i..],
            _ => {}
        }
    }
    &[]
}

/// §8.8.3: etagc = %x21 / %x23-7E / obs-text.
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// One entity tag at the start of `value`, and what follows it, which must
/// be the end, white space or a comma.
fn parse_one(value: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, quoted) = match value.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let body = quoted.strip_prefix(b"\"")?;
    let close = body.iter().position(|b| *b == b'"')?;
    if !body[..close].iter().all(|b| is_etagc(*b)) {
        return None;
    }
    let opaque = &quoted[..close + 2];
    let after = &quoted[close + 2..];
    match after.first() {
        None => {}
        Some(b) if is_ws(*b) || *b == b',' => {}
        Some(_) => return None,
    }
    Some((EntityTag { weak, opaque }, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lines: &[&[u8]]) -> Option<TagList<'static>> {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|l| HeaderValue::from_bytes(l).unwrap())
            .collect();
        let values: &'static [HeaderValue] = values.leak();
        TagList::parse(values.iter())
    }

    fn tag(text: &'static [u8]) -> EntityTag<'static> {
        EntityTag::parse(text).unwrap()
    }

    #[test]
    fn tags_are_compared_as_bytes_weakly_or_strongly() {
        assert!(tag(b"W/\"a\"").weak_eq(&tag(b"\"a\"")));
        assert!(!tag(b"W/\"a\"").strong_eq(&tag(b"\"a\"")));
        assert!(tag(b"\"a\"").strong_eq(&tag(b" \"a\" ")));
        assert!(!tag(b"\"a\"").weak_eq(&tag(b"\"A\"")));
        // obs-text is part of a tag (RFC 9110 §8.8.3), byte for byte.
        assert!(tag(b"\"caf\xe9\"").strong_eq(&tag(b"\"caf\xe9\"")));
        assert!(!tag(b"\"caf\xe9\"").weak_eq(&tag(b"\"caf\xe8\"")));
        for bad in [
            &b"a"[..],
            b"\"a",
            b"w/\"a\"",
            b"\"a\"b",
            b"\"a\" \"b\"",
            b"\"a b\"",
        ] {
            assert_eq!(EntityTag::parse(bad), None, "{bad:?}");
        }
    }

    /// RFC 9110 §13.1.2: a comma inside the quotes does not split the list.
    #[test]
    fn lists_split_outside_quotes_only() {
        let l = list(&[b"\"a,b\", W/\"c\"", b"\"d\""]).unwrap();
        assert_eq!(
            l,
            TagList::Tags(vec![tag(b"\"a,b\""), tag(b"W/\"c\""), tag(b"\"d\"")])
        );
        assert!(l.matches_weak(Some(&tag(b"\"a,b\""))));
        assert!(!l.matches_weak(Some(&tag(b"\"a\""))));
        assert!(!l.matches_weak(Some(&tag(b"\"b\""))));
        assert!(l.matches_weak(Some(&tag(b"\"c\""))));
        assert!(!l.matches_weak(None));
        // A member that is not a tag is left out; the rest still count.
        let l = list(&[b"junk, \"x\", \"y,\"z, \"w\""]).unwrap();
        assert!(l.matches_weak(Some(&tag(b"\"x\""))));
        assert!(l.matches_weak(Some(&tag(b"\"w\""))));
        assert_eq!(list(&[b"*"]), Some(TagList::Any));
        assert!(TagList::Any.matches_weak(Some(&tag(b"\"q\""))));
        assert!(!TagList::Any.matches_weak(None));
        assert_eq!(list(&[]), None);
        assert_eq!(list(&[b""]), Some(TagList::Tags(Vec::new())));
    }
}
