//! The purge journal: every purge mark, appended to a file beside the disk
//! tier and synced before the purge is answered, so that what was purged
//! stays purged after a restart.
//!
//! One line per mark: `seq soft kind name check`, the name in hex and the
//! check the first 8 hex digits of the line's blake3. A line that does not
//! check (a write torn by a crash) is skipped. On open the journal is read
//! and rewritten with only the latest mark per name.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a mark applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A URL's primary hash (the name is its 32 bytes).
    Url,
    Prefix,
    Host,
    Tag,
    /// A tag on the hosts one pattern matches (the name is the pattern, a
    /// NUL and the tag).
    ScopedTag,
    Everything,
    /// Not a purge: the sequence numbers given so far reach at most this
    /// (plus the step between watermarks), whatever the clock says later.
    Watermark,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Url => 'u',
            Kind::Prefix => 'p',
            Kind::Host => 'h',
            Kind::Tag => 't',
            Kind::ScopedTag => 's',
            Kind::Everything => 'e',
            Kind::Watermark => 'w',
        }
    }

    fn from_letter(letter: &str) -> Option<Kind> {
        Some(match letter {
            "u" => Kind::Url,
            "p" => Kind::Prefix,
            "h" => Kind::Host,
            "t" => Kind::Tag,
            "s" => Kind::ScopedTag,
            "e" => Kind::Everything,
            "w" => Kind::Watermark,
            _ => return None,
        })
    }
}

/// One recorded mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub seq: u64,
    pub soft: bool,
    pub kind: Kind,
    pub name: Vec<u8>,
}

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn line(mark: &Mark) -> String {
    let text = format!(
        "{} {} {} {}",
        mark.seq,
        if mark.soft { 's' } else { 'h' },
        mark.kind.letter(),
        if mark.name.is_empty() {
            "-".to_owned()
        } else {
            hex(&mark.name)
        }
    );
    let check = hex(&blake3::hash(text.as_bytes()).as_bytes()[..4]);
    format!("{text} {check}\n")
}

fn parse(text: &str) -> Option<Mark> {
    let (body, check) = text.rsplit_once(' ')?;
    if hex(&blake3::hash(body.as_bytes()).as_bytes()[..4]) != check {
        return None;
    }
    let mut fields = body.split(' ');
    let seq = fields.next()?.parse().ok()?;
    let soft = match fields.next()? {
        "s" => true,
        "h" => false,
        _ => return None,
    };
    let kind = Kind::from_letter(fields.next()?)?;
    let name = match fields.next()? {
        "-" => Vec::new(),
        name => unhex(name)?,
    };
    fields.next().is_none().then_some(Mark {
        seq,
        soft,
        kind,
        name,
    })
}

impl Journal {
    /// Opens the journal at `path` (created when absent). Returns it with
    /// the marks it holds, the latest per name (only lines that check),
    /// minus those `expired` says no longer matter, given them all; the
    /// file is rewritten to hold just those.
    pub fn open(
        path: &Path,
        expired: impl Fn(&Mark, &[Mark]) -> bool,
    ) -> std::io::Result<(Journal, Vec<Mark>)> {
        let mut latest: HashMap<(Kind, Vec<u8>, bool), u64> = HashMap::new();
        match File::open(path) {
            Ok(file) => {
                for text in BufReader::new(file).split(b'\n') {
                    let Some(mark) = std::str::from_utf8(&text?).ok().and_then(parse) else {
                        continue;
                    };
                    let seq = latest.entry((mark.kind, mark.name, mark.soft)).or_default();
                    *seq = (*seq).max(mark.seq);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let all: Vec<Mark> = latest
            .into_iter()
            .map(|((kind, name, soft), seq)| Mark {
                seq,
                soft,
                kind,
                name,
            })
            .collect();
        let mut marks: Vec<Mark> = all
            .iter()
            .filter(|mark| !expired(mark, &all))
            .cloned()
            .collect();
        marks.sort_by_key(|m| m.seq);
        // Rewrite through a new file renamed over the old: a crash midway
        // leaves one or the other whole.
        let fresh = path.with_extension("new");
        {
            let mut file = File::create(&fresh)?;
            for mark in &marks {
                file.write_all(line(mark).as_bytes())?;
            }
            file.sync_all()?;
        }
        std::fs::rename(&fresh, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok((
            Journal {
                path: path.to_owned(),
                file: Mutex::new(file),
            },
            marks,
        ))
    }

    /// Appends marks; with `sync`, waits until they are on the disk.
    pub fn append(&self, marks: &[Mark], sync: bool) -> std::io::Result<()> {
        let text: String = marks.iter().map(line).collect();
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(text.as_bytes())?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(seq: u64, kind: Kind, name: &str, soft: bool) -> Mark {
        Mark {
            seq,
            soft,
            kind,
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn marks_survive_reopening_latest_per_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purges");
        let (journal, marks) = Journal::open(&path, |_, _| false).unwrap();
        assert!(marks.is_empty());
        journal
            .append(
                &[
                    mark(5, Kind::Tag, "a b", false),
                    mark(7, Kind::Tag, "a b", false),
                    mark(8, Kind::Everything, "", true),
                ],
                true,
            )
            .unwrap();
        drop(journal);
        let (_, marks) = Journal::open(&path, |_, _| false).unwrap();
        assert_eq!(
            marks,
            vec![
                mark(7, Kind::Tag, "a b", false),
                mark(8, Kind::Everything, "", true)
            ]
        );
    }

    #[test]
    fn a_torn_or_damaged_line_is_skipped_and_expired_marks_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purges");
        let mut text = line(&mark(3, Kind::Host, "a.test", false));
        text.push_str(&line(&mark(4, Kind::Prefix, "a.test/x", false)));
        let damaged = line(&mark(9, Kind::Host, "b.test", false)).replacen('9', "8", 1);
        text.push_str(&damaged);
        text.push_str(&line(&mark(10, Kind::Tag, "t", true))[..12]);
        std::fs::write(&path, text).unwrap();
        let (_, marks) = Journal::open(&path, |m, _| m.kind == Kind::Prefix).unwrap();
        assert_eq!(marks, vec![mark(3, Kind::Host, "a.test", false)]);
        let rewritten = std::fs::read_to_string(&path).unwrap();
        assert_eq!(rewritten.lines().count(), 1);
    }
}
