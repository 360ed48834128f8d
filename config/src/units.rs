//! Human-friendly sizes (`64KiB`, `2GiB`) and durations (`90s`, `5m`, `1d`)
//! as they appear in the config file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A number of bytes, written with an optional unit: `B`, decimal `KB`/`MB`/`GB`/`TB`
/// or binary `KiB`/`MiB`/`GiB`/`TiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        if number.is_empty() {
            return Err(format!(
                "{text:?} is not a size (expected e.g. 64KiB, 512MiB, 2GiB)"
            ));
        }
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is too large a size"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000_u64.pow(2),
            "GB" => 1000_u64.pow(3),
            "TB" => 1000_u64.pow(4),
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} in {text:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(Size)
            .ok_or_else(|| format!("{text:?} is too large a size"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, factor) in UNITS {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{name}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = NumberOrText::deserialize(deserializer)?;
        match raw {
            NumberOrText::Number(n) => Ok(Size(n)),
            NumberOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A span of time written as one or more number-and-unit pairs:
/// `250ms`, `90s`, `5m`, `2h`, `1d`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let original = text;
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err("empty duration (expected e.g. 90s, 5m, 1d)".into());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "{original:?} is not a duration (expected e.g. 90s, 5m, 1d)"
                ));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("{original:?} is too long a duration"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Some(Duration::from_millis(number)),
                "s" => Some(Duration::from_secs(number)),
                "m" => number.checked_mul(60).map(Duration::from_secs),
                "h" => number.checked_mul(3600).map(Duration::from_secs),
                "d" => number.checked_mul(86_400).map(Duration::from_secs),
                "" => {
                    return Err(format!(
                        "{original:?} has no unit (write e.g. {number}s; units: ms, s, m, h, d)"
                    ));
                }
                other => {
                    return Err(format!(
                        "unknown duration unit {other:?} in {original:?} (units: ms, s, m, h, d)"
                    ));
                }
            };
            total = part
                .and_then(|p| total.checked_add(p))
                .ok_or_else(|| format!("{original:?} is too long a duration"))?;
        }
        Ok(Span(total))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() != 0 || d.as_secs() == 0 {
            // Milliseconds, while their count is a number the parser reads.
            return match u64::try_from(d.as_millis()) {
                Ok(millis) => write!(f, "{millis}ms"),
                Err(_) => write!(f, "{}s{}ms", d.as_secs(), d.subsec_millis()),
            };
        }
        let secs = d.as_secs();
        for (name, factor) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs.is_multiple_of(factor) {
                return write!(f, "{}{name}", secs / factor);
            }
        }
        write!(f, "{secs}s")
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = NumberOrText::deserialize(deserializer)?;
        match raw {
            NumberOrText::Number(n) => Err(serde::de::Error::custom(format!(
                "{n} has no unit (write e.g. {n}s; units: ms, s, m, h, d)"
            ))),
            NumberOrText::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A YAML scalar that may be written as a bare number or as text.
enum NumberOrText {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for NumberOrText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NumberOrText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number with a unit")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NumberOrText, E> {
                u64::try_from(v)
                    .map(NumberOrText::Number)
                    .map_err(|_| E::custom(format!("{v} is negative")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("64KiB".parse::<Size>(), Ok(Size(64 * 1024)));
        assert_eq!("2GiB".parse::<Size>(), Ok(Size(2 << 30)));
        assert_eq!("10MB".parse::<Size>(), Ok(Size(10_000_000)));
        assert_eq!("512".parse::<Size>(), Ok(Size(512)));
        assert_eq!("1 MiB".parse::<Size>(), Ok(Size(1 << 20)));
        assert!(
            "12XB"
                .parse::<Size>()
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!("MiB".parse::<Size>().is_err());
        assert!(
            "99999999999TiB"
                .parse::<Size>()
                .unwrap_err()
                .contains("too large")
        );
        assert_eq!(Size(256 << 20).to_string(), "256MiB");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!("90s".parse::<Span>(), Ok(Span(Duration::from_secs(90))));
        assert_eq!("5m".parse::<Span>(), Ok(Span(Duration::from_secs(300))));
        assert_eq!("1d".parse::<Span>(), Ok(Span(Duration::from_secs(86_400))));
        assert_eq!("1h30m".parse::<Span>(), Ok(Span(Duration::from_secs(5400))));
        assert_eq!(
            "250ms".parse::<Span>(),
            Ok(Span(Duration::from_millis(250)))
        );
        assert!("90".parse::<Span>().unwrap_err().contains("no unit"));
        assert!(
            "5w".parse::<Span>()
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert!("s".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
        assert_eq!(Span(Duration::from_secs(86_400)).to_string(), "1d");
    }

    /// A duration prints as text that reads back as it, even when its
    /// milliseconds outnumber a u64 (found by the property test below:
    /// 18446744073709552.001s printed as `18446744073709552001ms`, which
    /// is too long to read).
    #[test]
    fn the_longest_durations_print_as_they_read() {
        let span = Span(Duration::from_secs(18_446_744_073_709_552) + Duration::from_millis(1));
        assert_eq!(span.to_string(), "18446744073709552s1ms");
        assert_eq!(span.to_string().parse::<Span>(), Ok(span));
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1500ms");
    }

    /// Property tests: sizes and durations printed and read back.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Every size prints as text that reads back as that size.
            #[test]
            fn sizes_read_back_as_printed(bytes in any::<u64>()) {
                let size = Size(bytes);
                prop_assert_eq!(size.to_string().parse::<Size>(), Ok(size));
            }

            /// Every duration the file can hold prints as text that reads
            /// back as that duration.
            #[test]
            fn spans_read_back_as_printed(secs in any::<u64>(), millis in 0u32..1000) {
                let span = Span(Duration::from_secs(secs) + Duration::from_millis(millis.into()));
                prop_assert_eq!(span.to_string().parse::<Span>(), Ok(span));
            }

            /// Whatever text reads as a size or a duration prints as text
            /// that reads back the same.
            #[test]
            fn parsed_units_read_back(text in "[0-9]{1,22}[ ]?(B|KB|kB|MB|GB|TB|KiB|MiB|GiB|TiB|ms|s|m|h|d|[a-z]{1,2})([0-9]{1,20}(ms|s|m|h|d))?") {
                if let Ok(size) = text.parse::<Size>() {
                    prop_assert_eq!(size.to_string().parse::<Size>(), Ok(size));
                }
                if let Ok(span) = text.parse::<Span>() {
                    prop_assert_eq!(span.to_string().parse::<Span>(), Ok(span));
                }
            }
        }
    }
}
