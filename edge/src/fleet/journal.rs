//! What a node of the fleet keeps on its own disk, so that a restart
//! neither misses a purge nor applies one twice: the last stream sequence
//! it applied (and which stream that was), and the purges it accepted
//! itself, until they are published and seen coming back.
//!
//! One append-only file of tab-separated lines, compacted when it grows:
//! - `S seq created`: the stream (by its creation time) and the last sequence applied;
//! - `L event-json`: a purge accepted and applied here (written and synced
//!   before it is published);
//! - `P id seq`: that purge is in the stream at `seq`;
//! - `A seq id`: the stream's purge at `seq` is applied (or was this node's own).
//!
//! The file comes from the disk, so it is read as hostile: a torn or
//! foreign line is skipped, and a journal without an `S` line makes the
//! node a new one (which purges everything it holds before it serves).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::event::PurgeEvent;

/// Compact when the file passes this size.
const COMPACT_AT: u64 = 8 << 20;

/// A purge this node accepted that the stream has not brought back yet.
#[derive(Debug, Clone)]
struct Own {
    event: PurgeEvent,
    /// Its sequence once the stream acknowledged it.
    published: Option<u64>,
}

pub(crate) struct Journal {
    /// Held (an exclusive lock on `lock` beside the journal) while this
    /// process is the node: a successor in a binary upgrade waits for it.
    lock: Option<File>,
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
    last_seq: u64,
    /// The stream's creation time as the server reports it: a stream
    /// deleted and made again starts its sequences over.
    stream_created: Option<String>,
    own: VecDeque<Own>,
}

impl Journal {
    /// Opens (or starts) the journal in `dir`; `WouldBlock` while another
    /// process holds it.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            std::fs::TryLockError::Error(e) => e,
        })?;
        let path = dir.join("journal.log");
        let mut journal = Self {
            lock: Some(lock),
            file: BufWriter::new(OpenOptions::new().create(true).append(true).open(&path)?),
            path,
            written: 0,
            last_seq: 0,
            stream_created: None,
            own: VecDeque::new(),
        };
        let reader = BufReader::new(File::open(&journal.path)?);
        for line in reader.split(b'\n') {
            let line = line?;
            journal.written += line.len() as u64 + 1;
            match std::str::from_utf8(&line) {
                Ok(text) if journal.replay(text) => {}
                _ => {
                    tracing::warn!(path = %journal.path.display(), "skipping an unreadable line of the fleet journal")
                }
            }
        }
        Ok(journal)
    }

    /// Applies one line read back; false when it does not read.
    fn replay(&mut self, line: &str) -> bool {
        let mut fields = line.splitn(3, '\t');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("S"), Some(seq), Some(created)) => match seq.parse() {
                Ok(seq) => {
                    self.reset_state(seq, created);
                    true
                }
                Err(_) => false,
            },
            (Some("L"), Some(json), None) => match serde_json::from_str::<PurgeEvent>(json) {
                Ok(event) => {
                    self.own.push_back(Own {
                        event,
                        published: None,
                    });
                    true
                }
                Err(_) => false,
            },
            (Some("P"), Some(id), Some(seq)) => match seq.parse() {
                Ok(seq) => {
                    self.mark_published(id, seq);
                    true
                }
                Err(_) => false,
            },
            (Some("A"), Some(seq), Some(id)) => match seq.parse() {
                Ok(seq) => {
                    self.mark_applied(seq, id);
                    true
                }
                Err(_) => false,
            },
            _ => false,
        }
    }

    /// Lets another process open the journal (this one is leaving).
    pub(crate) fn release(&mut self) {
        self.lock = None;
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The stream this node last read; None for a node never part of the fleet.
    pub(crate) fn stream_created(&self) -> Option<&str> {
        self.stream_created.as_deref()
    }

    /// Records a purge accepted here, synced before it may be published.
    pub(crate) fn announce(&mut self, event: &PurgeEvent) -> io::Result<()> {
        let json = serde_json::to_string(event).map_err(io::Error::other)?;
        self.write_line(&format!("L\t{json}"))?;
        self.sync()?;
        self.own.push_back(Own {
            event: event.clone(),
            published: None,
        });
        Ok(())
    }

    /// The stream holds `id` at `seq` (written with the next sync).
    pub(crate) fn published(&mut self, id: &str, seq: u64) -> io::Result<()> {
        self.write_line(&format!("P\t{id}\t{seq}"))?;
        self.mark_published(id, seq);
        Ok(())
    }

    /// Whether `id` is a purge of this node's that the stream has not
    /// brought back yet (so it is applied already).
    pub(crate) fn is_own(&self, id: &str) -> bool {
        self.own.iter().any(|own| own.event.id == id)
    }

    /// The stream's purge at `seq` is done here (written with the next sync).
    pub(crate) fn applied(&mut self, seq: u64, id: &str) -> io::Result<()> {
        self.write_line(&format!("A\t{seq}\t{id}"))?;
        self.mark_applied(seq, id);
        Ok(())
    }

    /// Starts over on a stream: everything before `seq` counts as applied
    /// (the node has purged everything to make it so). Purges of this
    /// node's that only the old stream held are forgotten; those never
    /// published stay queued.
    pub(crate) fn reset(&mut self, seq: u64, created: &str) -> io::Result<()> {
        self.write_line(&format!("S\t{seq}\t{created}"))?;
        self.reset_state(seq, created);
        self.sync()
    }

    /// This node's purges still waiting to be published, oldest first.
    pub(crate) fn outbox(&self) -> Vec<PurgeEvent> {
        self.own
            .iter()
            .filter(|own| own.published.is_none())
            .map(|own| own.event.clone())
            .collect()
    }

    /// A queued purge by id (for `GET /purge/{id}` before it is published).
    pub(crate) fn queued(&self, id: &str) -> Option<&PurgeEvent> {
        self.own
            .iter()
            .find(|own| own.event.id == id && own.published.is_none())
            .map(|own| &own.event)
    }

    /// Makes what was written durable, and compacts a large file.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        if self.written > COMPACT_AT {
            self.compact()?;
        }
        Ok(())
    }

    fn write_line(&mut self, line: &str) -> io::Result<()> {
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.written += line.len() as u64 + 1;
        Ok(())
    }

    fn reset_state(&mut self, seq: u64, created: &str) {
        self.last_seq = seq;
        self.stream_created = Some(created.to_owned());
        self.own.retain(|own| own.published.is_none());
    }

    fn mark_published(&mut self, id: &str, seq: u64) {
        if let Some(own) = self.own.iter_mut().find(|own| own.event.id == id) {
            own.published = Some(seq);
        }
    }

    fn mark_applied(&mut self, seq: u64, id: &str) {
        self.last_seq = self.last_seq.max(seq);
        // Seen coming back; and one published before this sequence that
        // never came back was lost with a stream that started over.
        self.own.retain(|own| {
            own.event.id != id && own.published.is_none_or(|published| published > seq)
        });
    }

    /// Rewrites the file as its state: one `S` line and this node's purges
    /// still in flight.
    fn compact(&mut self) -> io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut out = BufWriter::new(File::create(&tmp)?);
        let mut written = 0;
        let mut line = |text: String| -> io::Result<()> {
            written += text.len() as u64 + 1;
            out.write_all(text.as_bytes())?;
            out.write_all(b"\n")
        };
        if let Some(created) = &self.stream_created {
            line(format!("S\t{}\t{created}", self.last_seq))?;
        }
        for own in &self.own {
            let json = serde_json::to_string(&own.event).map_err(io::Error::other)?;
            line(format!("L\t{json}"))?;
            if let Some(seq) = own.published {
                line(format!("P\t{}\t{seq}", own.event.id))?;
            }
        }
        out.flush()?;
        out.get_ref().sync_all()?;
        drop(out);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = BufWriter::new(OpenOptions::new().append(true).open(&self.path)?);
        self.written = written;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use outpost_purge_api::PurgeRequest;

    use super::*;

    fn event(id: &str) -> PurgeEvent {
        PurgeEvent {
            id: id.into(),
            node: "a".into(),
            at_ms: 1,
            purge: PurgeRequest::everything(),
        }
    }

    #[test]
    fn a_restart_remembers_the_last_sequence_and_the_purges_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut journal = Journal::open(dir.path()).unwrap();
            assert_eq!(journal.stream_created(), None);
            journal.reset(10, "2026-01-01T00:00:00Z").unwrap();
            journal.announce(&event("mine1")).unwrap();
            journal.announce(&event("mine2")).unwrap();
            journal.published("mine1", 12).unwrap();
            journal.applied(11, "theirs").unwrap();
            journal.sync().unwrap();
        }
        let mut journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.last_seq(), 11);
        assert_eq!(journal.stream_created(), Some("2026-01-01T00:00:00Z"));
        assert!(journal.is_own("mine1") && journal.is_own("mine2"));
        assert_eq!(journal.outbox(), vec![event("mine2")]);
        journal.applied(12, "mine1").unwrap();
        assert!(!journal.is_own("mine1"));
        assert!(journal.queued("mine2").is_some());
    }

    #[test]
    fn one_process_at_a_time_holds_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Journal::open(dir.path()).unwrap();
        let busy = Journal::open(dir.path()).err().expect("held");
        assert_eq!(busy.kind(), io::ErrorKind::WouldBlock);
        first.release();
        Journal::open(dir.path()).expect("free once released");
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut journal = Journal::open(dir.path()).unwrap();
            journal.reset(5, "c").unwrap();
            journal.applied(6, "x").unwrap();
            journal.sync().unwrap();
        }
        let path = dir.path().join("journal.log");
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"A\t7\tx\xff\xfe");
        text.extend_from_slice(b"\nL\t{\"id\":");
        std::fs::write(&path, text).unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.last_seq(), 6);
        assert!(journal.outbox().is_empty());
    }

    #[test]
    fn compaction_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.reset(0, "c").unwrap();
        journal.announce(&event("queued")).unwrap();
        for seq in 1..=2000 {
            journal.applied(seq, &format!("id{seq}")).unwrap();
        }
        journal.compact().unwrap();
        journal.applied(2001, "last").unwrap();
        journal.sync().unwrap();
        let size = std::fs::metadata(dir.path().join("journal.log"))
            .unwrap()
            .len();
        assert!(size < 1000, "{size}");
        drop(journal);
        let journal = Journal::open(dir.path()).unwrap();
        assert_eq!(journal.last_seq(), 2001);
        assert_eq!(journal.outbox(), vec![event("queued")]);
    }

    #[test]
    fn a_stream_that_started_over_forgets_what_only_it_held() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path()).unwrap();
        journal.reset(3, "old").unwrap();
        journal.announce(&event("sent")).unwrap();
        journal.published("sent", 4).unwrap();
        journal.announce(&event("waiting")).unwrap();
        journal.reset(0, "new").unwrap();
        assert!(!journal.is_own("sent"));
        assert_eq!(journal.outbox(), vec![event("waiting")]);
    }
}
