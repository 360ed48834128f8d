//! Where a key path (`cache.tag_headers[1]`, `sites[0].rules[2].ttl`)
//! stands in the YAML text: for errors found after parsing, whose values
//! carry no position of their own, so that every error names a line and
//! column. A path that leads to a key the file leaves out (a default) is
//! placed at the nearest key the file has on the way.

use serde::Deserialize;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML node as far as its place matters.
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Node;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML node")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Key>()? {
                    entries.push((key.0, map.next_value::<Spanned<Node>>()?));
                }
                Ok(Node::Map(entries))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// A mapping key, whatever scalar it is written as (`502:` is a key too).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Key;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

/// One step of a key path.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` as steps; a key may hold any character but `.` and `[`.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            if let Ok(i) = inner[..end].parse() {
                steps.push(Step::Index(i));
            }
            rest = &inner[end + 1..];
        }
    }
    steps
}

/// Where `path` stands in `text`: the line and column of its value, or of
/// the nearest key on the way that the file has; the start of the file
/// when not even the first key is there (or the text does not parse).
pub(crate) fn locate(text: &str, path: &str) -> (u32, u32) {
    let Ok(root) = serde_saphyr::from_str::<Node>(text) else {
        return (1, 1);
    };
    let mut at = (1, 1);
    let mut node = &root;
    for step in steps(path) {
        let next = match (step, node) {
            (Step::Key(key), Node::Map(entries)) => entries
                .iter()
                .find(|(k, _)| k == key || k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            (Step::Index(i), Node::Seq(items)) => items.get(i),
            _ => None,
        };
        match next {
            Some(spanned) => {
                let place = spanned.referenced;
                if place.line() > 0 {
                    at = (place.line() as u32, place.column() as u32);
                }
                node = &spanned.value;
            }
            None => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen:
  - addr: 127.0.0.1:80
cache:
  tag_headers: [a, 'b c']
sites:
  - hosts: [x]
    error_pages:
      502: {file: e.html}
";

    fn line_col(path: &str) -> (u32, u32) {
        locate(TEXT, path)
    }

    #[test]
    fn paths_are_placed_at_their_values_or_the_nearest_key_there() {
        assert_eq!(line_col("cache.tag_headers[1]").0, 4);
        assert_eq!(line_col("listen[0].addr").0, 2);
        assert_eq!(line_col("sites[0].error_pages.502").0, 8);
        // A default the file leaves out: its nearest written parent.
        assert_eq!(line_col("cache.memory").0, 4);
        assert_eq!(line_col("compression.levels.br"), (1, 1));
        assert_eq!(locate("{ not yaml", "a"), (1, 1));
        assert_eq!(
            steps("sites[0].rules[12].ttl"),
            [
                Step::Key("sites"),
                Step::Index(0),
                Step::Key("rules"),
                Step::Index(12),
                Step::Key("ttl")
            ]
        );
    }
}
