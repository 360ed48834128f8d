//! Response header fields as an entry keeps them: owned, compact, in order.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Response header fields as an entry keeps them: in the order of the map
/// they came from (a name's values together), names in one slice of
/// exactly their number, every value a range of one buffer (a `HeaderMap`
/// would hold a hash table with room to spare and a handle per value, 40
/// bytes each). A response is built from them with
/// [`StoredHeaders::to_map`].
#[derive(Debug, Clone, Default)]
pub struct StoredHeaders {
    /// Every value's bytes, one after another.
    values: Bytes,
    /// Each field's name and where its value ends in `values` (it starts
    /// where the last one ended); the top bit marks a sensitive value.
    fields: Box<[(HeaderName, u32)]>,
}

const SENSITIVE: u32 = 1 << 31;

impl StoredHeaders {
    /// A copy of `headers` that owns its values. Values parsed off the wire
    /// are slices of the connection's read buffer; kept in an entry they
    /// would hold that whole buffer (kilobytes) in memory for the entry's
    /// life.
    pub fn from_map(headers: &HeaderMap) -> Self {
        Self::from_fields(headers.iter().map(|(n, v)| (n.clone(), v.clone())))
    }

    /// The same from fields in order. Values past 2 GiB in all (not
    /// something a response head can carry) are left out.
    pub fn from_fields(fields: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        let fields: Vec<(HeaderName, HeaderValue)> = fields.into_iter().collect();
        // Sized exactly: the buffer is kept for the entry's life.
        let total = fields.iter().map(|(_, v)| v.len()).sum();
        let mut values = BytesMut::with_capacity(total);
        let mut kept = Vec::with_capacity(fields.len());
        for (name, value) in fields {
            let end = values.len() + value.len();
            let Ok(end) = u32::try_from(end) else {
                continue;
            };
            if end >= SENSITIVE {
                continue;
            }
            values.extend_from_slice(value.as_bytes());
            let flag = if value.is_sensitive() { SENSITIVE } else { 0 };
            kept.push((name, end | flag));
        }
        Self {
            values: values.freeze(),
            fields: kept.into_boxed_slice(),
        }
    }

    /// Each field's name, where its value lies, and whether it is sensitive.
    fn ranges(&self) -> impl Iterator<Item = (&HeaderName, std::ops::Range<usize>, bool)> {
        let mut start = 0;
        self.fields.iter().map(move |(name, end)| {
            let stop = (end & !SENSITIVE) as usize;
            let range = start..stop;
            start = stop;
            (name, range, end & SENSITIVE != 0)
        })
    }

    /// The value in `range` as a header value: a range of the shared buffer.
    fn value(&self, range: std::ops::Range<usize>, sensitive: bool) -> Option<HeaderValue> {
        let bytes = self.values.get(range.clone())?;
        let mut value = if bytes.is_empty() {
            HeaderValue::from_static("")
        } else {
            HeaderValue::from_maybe_shared(self.values.slice(range)).ok()?
        };
        value.set_sensitive(sensitive);
        Some(value)
    }

    /// A header map of the fields, with room for `extra` more.
    pub fn to_map(&self, extra: usize) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.fields.len() + extra);
        for (name, range, sensitive) in self.ranges() {
            if let Some(value) = self.value(range, sensitive) {
                map.append(name.clone(), value);
            }
        }
        map
    }

    /// Each field's name and value bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        self.ranges()
            .map(|(name, range, _)| (name, self.values.get(range).unwrap_or_default()))
    }

    /// The first value of the field `name`.
    pub fn get(&self, name: &str) -> Option<HeaderValue> {
        self.get_all(name).next()
    }

    /// Every value of the field `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = HeaderValue> + 'a {
        self.ranges()
            .filter(move |(n, _, _)| n.as_str().eq_ignore_ascii_case(name))
            .filter_map(|(_, range, sensitive)| self.value(range, sensitive))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::StoredHeaders;

    /// Fields keep their map's order and repeats; values no longer point into
    /// the buffer they were parsed from, but into one block of their own.
    #[test]
    fn stored_headers_keep_order_and_own_their_values() {
        let wire = bytes::Bytes::from(vec![b'v'; 16 * 1024]);
        let mut map = http::HeaderMap::new();
        map.append("set-cookie", "a=1".parse().unwrap());
        map.append(
            "x-big",
            http::HeaderValue::from_maybe_shared(wire.slice(..10)).unwrap(),
        );
        map.append("set-cookie", "b=2".parse().unwrap());
        let mut secret: http::HeaderValue = "token".parse().unwrap();
        secret.set_sensitive(true);
        map.append("x-secret", secret);
        map.append("etag", "\"v1\"".parse().unwrap());
        map.append("x-empty", "".parse().unwrap());
        let stored = StoredHeaders::from_map(&map);
        drop(map);
        // The 16 KiB buffer is no longer shared with the stored value.
        assert!(wire.is_unique());
        assert_eq!(stored.len(), 6);
        assert_eq!(stored.get("ETag").unwrap(), "\"v1\"");
        assert_eq!(stored.get("x-big").unwrap(), "vvvvvvvvvv");
        assert_eq!(stored.get("x-empty").unwrap(), "");
        let cookies: Vec<_> = stored.get_all("set-cookie").collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(!stored.contains_key("vary"));
        assert!(stored.contains_key("Set-Cookie"));
        let order: Vec<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            order,
            [
                "set-cookie",
                "set-cookie",
                "x-big",
                "x-secret",
                "etag",
                "x-empty"
            ]
        );
        let back = stored.to_map(2);
        assert_eq!(back.get_all("set-cookie").iter().count(), 2);
        assert_eq!(back.len(), 6);
        assert!(back["x-secret"].is_sensitive());
        assert!(!back["etag"].is_sensitive());
    }
}
