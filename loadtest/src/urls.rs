//! URL sets: which path each request asks for. One path, a list taken in
//! turn or at random, N keys spread uniformly or by a Zipf law, or the lines
//! of a file. Every path is checked once, up front, so no request can fail
//! to be built later.

use std::borrow::Cow;

use http::Uri;
use http::uri::{Authority, PathAndQuery};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};

use crate::error::Error;

pub use crate::bounds::KEY;

/// One entry of a list: a path, and the Host to send it with when the line
/// was an absolute URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path and query.
    pub path: String,
    /// Host header for this entry, if it differs from the target's.
    pub host: Option<Authority>,
}

/// Where the paths come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Paths given on the command line (or the URL's own path).
    Paths(Vec<String>),
    /// `count` keys, each path the template with `{key}` replaced.
    Keys {
        /// Number of distinct keys.
        count: u64,
        /// Path with `{key}` in it.
        template: String,
    },
    /// Lines of a file.
    List(Vec<Entry>),
}

impl Source {
    /// Reads a URL file: one path (`/a/b?c`) or absolute URL
    /// (`http://example.com/a`) a line; blank lines and `#` comments are
    /// skipped. `name` labels errors (`name:line: ...`).
    pub fn parse_list(text: &str, name: &str) -> Result<Source, Error> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_entry(line).map_err(|e| Error::AtLine {
                name: name.to_owned(),
                line: n + 1,
                source: Box::new(e),
            })?;
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(Error::EmptyList {
                name: name.to_owned(),
            });
        }
        Ok(Source::List(entries))
    }
}

fn parse_entry(line: &str) -> Result<Entry, Error> {
    if line.starts_with('/') {
        check_path(line)?;
        return Ok(Entry {
            path: line.to_owned(),
            host: None,
        });
    }
    let uri: Uri = line.parse().map_err(|source| Error::NotPathOrUrl {
        line: line.to_owned(),
        source,
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(Error::ListScheme {
                line: line.to_owned(),
            });
        }
    }
    let host = uri.authority().cloned().ok_or_else(|| Error::ListHost {
        line: line.to_owned(),
    })?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    Ok(Entry {
        path: path.to_owned(),
        host: Some(host),
    })
}

fn check_path(path: &str) -> Result<(), Error> {
    if !path.starts_with('/') {
        return Err(Error::PathStart(path.to_owned()));
    }
    path.parse::<PathAndQuery>().map_err(|source| Error::Path {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}

/// How each request picks among the entries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pick {
    /// Round robin over the global request number.
    InTurn,
    /// Uniformly at random.
    Uniform,
    /// Zipf law with this exponent over the entries in order: the first is
    /// the most popular.
    Zipf(f64),
}

#[derive(Debug, Clone)]
enum Entries {
    List(Vec<Entry>),
    Template { parts: Vec<String>, count: u64 },
}

/// The checked set of paths and the rule for picking one.
#[derive(Debug, Clone)]
pub struct UrlSet {
    entries: Entries,
    pick: Pick,
    kind: &'static str,
}

/// The path (and Host, if the entry has its own) for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice<'a> {
    /// Path and query.
    pub path: Cow<'a, str>,
    /// Host override.
    pub host: Option<&'a Authority>,
}

impl UrlSet {
    /// Checks every path (or the template) and the pick rule.
    pub fn new(source: Source, pick: Pick) -> Result<UrlSet, Error> {
        if let Pick::Zipf(s) = pick
            && !(s.is_finite() && s >= 0.0)
        {
            return Err(Error::ZipfExponent(s));
        }
        let (entries, kind) = match source {
            Source::Paths(paths) => {
                if paths.is_empty() {
                    return Err(Error::NoPaths);
                }
                for p in &paths {
                    check_path(p)?;
                }
                let list = paths
                    .into_iter()
                    .map(|path| Entry { path, host: None })
                    .collect();
                (Entries::List(list), "paths")
            }
            Source::List(list) => (Entries::List(list), "file"),
            Source::Keys { count, template } => {
                if count == 0 {
                    return Err(Error::NoKeys);
                }
                if !template.contains(KEY) {
                    return Err(Error::TemplateKey { template });
                }
                check_path(&template.replace(KEY, "0")).map_err(|e| Error::Template {
                    template: template.clone(),
                    source: Box::new(e),
                })?;
                let parts = template.split(KEY).map(str::to_owned).collect();
                (Entries::Template { parts, count }, "keys")
            }
        };
        Ok(UrlSet {
            entries,
            pick,
            kind,
        })
    }

    /// Number of distinct entries.
    #[expect(
        clippy::len_without_is_empty,
        reason = "never empty: UrlSet::new refuses an empty set"
    )]
    pub fn len(&self) -> u64 {
        match &self.entries {
            Entries::List(l) => l.len() as u64,
            Entries::Template { count, .. } => *count,
        }
    }

    /// `paths`, `keys` or `file`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The pick rule.
    pub fn pick(&self) -> Pick {
        self.pick
    }

    /// A picker for one worker, with its own random stream derived from
    /// `seed` and `worker` so runs repeat.
    pub fn picker(&self, seed: u64, worker: usize) -> Result<Picker<'_>, Error> {
        let zipf = match self.pick {
            Pick::Zipf(s) => {
                Some(
                    Zipf::new(self.len() as f64, s).map_err(|source| Error::Zipf {
                        exponent: s,
                        source,
                    })?,
                )
            }
            _ => None,
        };
        let stream = seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Ok(Picker {
            set: self,
            rng: SmallRng::seed_from_u64(stream),
            zipf,
        })
    }

    /// The entry at `index` (taken modulo the number of entries).
    pub fn get(&self, index: u64) -> Choice<'_> {
        match &self.entries {
            Entries::List(list) => {
                let i = usize::try_from(index % list.len().max(1) as u64).unwrap_or(0);
                match list.get(i) {
                    Some(e) => Choice {
                        path: Cow::Borrowed(&e.path),
                        host: e.host.as_ref(),
                    },
                    None => Choice {
                        path: Cow::Borrowed("/"),
                        host: None,
                    },
                }
            }
            Entries::Template { parts, count } => {
                let key = (index % (*count).max(1)).to_string();
                Choice {
                    path: Cow::Owned(parts.join(&key)),
                    host: None,
                }
            }
        }
    }
}

/// Picks entries for one worker.
pub struct Picker<'a> {
    set: &'a UrlSet,
    rng: SmallRng,
    zipf: Option<Zipf<f64>>,
}

impl<'a> Picker<'a> {
    /// The index of the entry for the request numbered `ticket` (global
    /// request number, used for round robin).
    pub fn index(&mut self, ticket: u64) -> u64 {
        let n = self.set.len();
        match (self.set.pick, &self.zipf) {
            (Pick::Zipf(_), Some(z)) => {
                // Zipf samples 1..=n as a float; rank 1 is key 0.
                let rank = z.sample(&mut self.rng) as u64;
                rank.saturating_sub(1).min(n - 1)
            }
            (Pick::Uniform, _) | (Pick::Zipf(_), None) => self.rng.random_range(0..n),
            (Pick::InTurn, _) => ticket % n,
        }
    }

    /// The entry for the request numbered `ticket`.
    pub fn choose(&mut self, ticket: u64) -> Choice<'a> {
        let i = self.index(ticket);
        self.set.get(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(count: u64, pick: Pick) -> UrlSet {
        UrlSet::new(
            Source::Keys {
                count,
                template: "/obj/{key}.bin".into(),
            },
            pick,
        )
        .expect("valid")
    }

    fn histogram(set: &UrlSet, samples: u64) -> Vec<u64> {
        let mut counts = vec![0u64; set.len() as usize];
        let mut picker = set.picker(7, 0).expect("picker");
        for t in 0..samples {
            counts[picker.index(t) as usize] += 1;
        }
        counts
    }

    #[test]
    fn template_renders_keys() {
        let set = keys(100, Pick::InTurn);
        assert_eq!(set.get(0).path, "/obj/0.bin");
        assert_eq!(set.get(42).path, "/obj/42.bin");
        assert_eq!(set.get(142).path, "/obj/42.bin");
        let mut p = set.picker(1, 0).expect("picker");
        let got: Vec<_> = (0..3).map(|t| p.choose(t).path.into_owned()).collect();
        assert_eq!(got, ["/obj/0.bin", "/obj/1.bin", "/obj/2.bin"]);
    }

    #[test]
    fn bad_templates_are_refused() {
        for template in ["/obj/", "obj/{key}", "/a b/{key}"] {
            let r = UrlSet::new(
                Source::Keys {
                    count: 3,
                    template: template.into(),
                },
                Pick::Uniform,
            );
            assert!(r.is_err(), "{template}");
        }
    }

    #[test]
    fn uniform_covers_every_key_evenly() {
        let counts = histogram(&keys(10, Pick::Uniform), 100_000);
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{c}");
        }
    }

    #[test]
    fn zipf_is_skewed_like_the_law() {
        let n = 1000u64;
        let samples = 200_000u64;
        let counts = histogram(&keys(n, Pick::Zipf(1.0)), samples);
        let harmonic: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        let expect_first = samples as f64 / harmonic;
        let first = counts[0] as f64;
        assert!(
            (first / expect_first - 1.0).abs() < 0.05,
            "{first} vs {expect_first}"
        );
        // Rank 2 gets about half of rank 1; the top 10 hold about H(10)/H(n).
        let ratio = counts[1] as f64 / first;
        assert!((0.45..0.55).contains(&ratio), "{ratio}");
        let top10: u64 = counts[..10].iter().sum();
        let want = (1..=10).map(|k| 1.0 / k as f64).sum::<f64>() / harmonic;
        assert!((top10 as f64 / samples as f64 - want).abs() < 0.02);
        assert!(counts[0] > counts[9] && counts[9] > counts[999]);
    }

    #[test]
    fn zipf_zero_is_uniform_and_seeds_repeat() {
        let counts = histogram(&keys(4, Pick::Zipf(0.0)), 40_000);
        assert!(counts.iter().all(|c| (9_000..11_000).contains(c)));
        let set = keys(1000, Pick::Zipf(1.1));
        let run = |seed| {
            let mut p = set.picker(seed, 3).expect("picker");
            (0..50).map(|t| p.index(t)).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn list_file_parses_paths_urls_and_comments() {
        let text = "# hot objects\n/a\n\n  http://example.com/b?x=1  \nhttps://cdn.example.net\n";
        let Source::List(list) = Source::parse_list(text, "urls.txt").expect("valid") else {
            panic!("a list");
        };
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].path, "/a");
        assert_eq!(list[0].host, None);
        assert_eq!(list[1].path, "/b?x=1");
        assert_eq!(
            list[1].host.as_ref().map(|h| h.as_str()),
            Some("example.com")
        );
        assert_eq!(list[2].path, "/");
        let set = UrlSet::new(Source::List(list), Pick::InTurn).expect("valid");
        assert_eq!(set.get(4).path, "/b?x=1");
    }

    #[test]
    fn list_file_errors_name_the_line() {
        let err = Source::parse_list("/ok\nftp://x/y\n", "u.txt").expect_err("bad line");
        // With its causes, as the command line prints it.
        let err = anyhow::Error::from(err);
        assert!(format!("{err:#}").starts_with("u.txt:2:"), "{err:#}");
        assert!(Source::parse_list("# nothing\n\n", "e.txt").is_err());
    }

    #[test]
    fn bad_zipf_exponent_is_refused() {
        for s in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(UrlSet::new(Source::Paths(vec!["/".into()]), Pick::Zipf(s)).is_err());
        }
    }
}
