//! Partial content (RFC 9110 §14.4, RFC 9111 §3.3): the one byte range a
//! stored 206 holds, read from its `Content-Range`. A 206 is stored only
//! as a part of its URL's object ([`crate::CacheKey::part`]), and only
//! when it holds one range of a representation whose length it states.

use http::HeaderMap;
use http::header::{CONTENT_RANGE, CONTENT_TYPE};

/// The range of a representation a partial response holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First and last byte held, inclusive.
    pub first: u64,
    pub last: u64,
    /// The length of the whole representation.
    pub complete: u64,
}

impl ContentRange {
    /// The one range a 206's fields state: `Content-Range: bytes a-b/n`
    /// with `a <= b < n`, and not a `multipart/byteranges` body. Anything
    /// else (an unknown length `*`, another unit, several fields) is `None`.
    pub fn of(headers: &HeaderMap) -> Option<ContentRange> {
        let mut values = headers.get_all(CONTENT_RANGE).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let multipart = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .get(..9)
                    .is_some_and(|t| t.eq_ignore_ascii_case("multipart"))
            });
        if multipart {
            return None;
        }
        Self::parse(value.to_str().ok()?)
    }

    /// Parses `bytes a-b/n` (RFC 9110 §14.4).
    pub fn parse(value: &str) -> Option<ContentRange> {
        let (unit, rest) = value.trim().split_once(' ')?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (range, complete) = rest.trim_start().split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        let (first, last, complete) = (number(first)?, number(last)?, number(complete)?);
        (first <= last && last < complete).then_some(ContentRange {
            first,
            last,
            complete,
        })
    }

    /// How many bytes the range holds.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the range holds the whole representation.
    pub fn is_whole(&self) -> bool {
        self.first == 0 && self.last + 1 == self.complete
    }

    /// Whether the range holds the bytes `start..=end`.
    pub fn covers(&self, (start, end): (u64, u64)) -> bool {
        self.first <= start && end <= self.last
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_single_range_with_its_complete_length_is_read() {
        let range = ContentRange::of(&headers(&[("content-range", "bytes 4-9/10")])).unwrap();
        assert_eq!((range.first, range.last, range.complete), (4, 9, 10));
        assert_eq!(range.len(), 6);
        assert!(range.covers((5, 9)) && !range.covers((3, 5)));
        assert!(!range.is_whole());
        assert!(ContentRange::parse("bytes 0-9/10").unwrap().is_whole());
    }

    /// RFC 9110 §14.4: an unknown length, an invalid range, another unit,
    /// two fields or a multipart body are not one storable range.
    #[test]
    fn what_is_not_one_range_of_a_known_length_is_refused() {
        for value in [
            "bytes 4-9/*",
            "bytes 9-4/10",
            "bytes 4-10/10",
            "items 4-9/10",
            "bytes */10",
            "bytes 4-9/",
            "bytes -1-9/10",
            "bytes 4-9/99999999999999999999999",
        ] {
            assert_eq!(ContentRange::parse(value), None, "{value}");
        }
        let two = headers(&[
            ("content-range", "bytes 0-1/10"),
            ("content-range", "bytes 2-3/10"),
        ]);
        assert_eq!(ContentRange::of(&two), None);
        let multipart = headers(&[
            ("content-range", "bytes 0-1/10"),
            ("content-type", "multipart/byteranges; boundary=x"),
        ]);
        assert_eq!(ContentRange::of(&multipart), None);
    }
}
