//! The durable local queue between the servers' engines and the archive database (the seed's
//! message queue in front of its archiving server). Records are appended as JSON lines to
//! numbered segment files in `<data dir>/archive-queue/` before the message they record is
//! forwarded; the archive writer reads them in order, stores them, and only then moves the
//! saved position on. A crash or a kill loses nothing that was appended (the kernel holds
//! what a write gave it), and an archive database that is away leaves the queue growing until
//! it is back. A record written twice (stored, then the crash came before the position moved)
//! is kept once: records carry unique ids.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::record::Record;

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;

/// This much of a segment is read for one batch (more when one line is longer).
const READ_BYTES: u64 = 1 << 20;

const POSITION: &str = "position";

/// Where the writer is: a segment and the offset of the next unread line in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:012}.jsonl"))
}

/// The segment numbers present, in order.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".jsonl")?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// The appending side, shared by a server's shards.
pub struct Appender {
    dir: PathBuf,
    current: Mutex<(File, u64, u64)>,
}

impl Appender {
    /// Opens the queue in `dir` (created if missing) with a fresh segment, so that nothing is
    /// ever appended after a line a crash may have cut short.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let next = segments(dir)?.last().map_or(1, |n| n + 1);
        let file = new_segment(dir, next)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: Mutex::new((file, next, 0)),
        })
    }

    /// Appends whole lines (each record's `to_line`) in one write.
    pub fn append(&self, lines: &[u8]) -> io::Result<()> {
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cur.0.write_all(lines)?;
        cur.2 += lines.len() as u64;
        if cur.2 >= SEGMENT_BYTES {
            let next = cur.1 + 1;
            *cur = (new_segment(&self.dir, next)?, next, 0);
        }
        Ok(())
    }
}

fn new_segment(dir: &Path, n: u64) -> io::Result<File> {
    OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(segment_path(dir, n))
}

/// What one read of the queue gave.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Where the next read starts once these are stored.
    pub end: Position,
    /// Lines that could not be read back (damaged), skipped and logged.
    pub damaged: usize,
}

/// The reading side: the archive writer's.
pub struct Reader {
    dir: PathBuf,
    pos: Position,
}

impl Reader {
    /// Opens the queue in `dir` at the saved position (or its start).
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let saved = fs::read_to_string(dir.join(POSITION)).ok().and_then(|t| {
            let (s, o) = t.trim().split_once(' ')?;
            Some(Position {
                segment: s.parse().ok()?,
                offset: o.parse().ok()?,
            })
        });
        let pos = match saved {
            Some(p) => p,
            None => Position {
                segment: segments(dir)?.first().copied().unwrap_or(1),
                offset: 0,
            },
        };
        Ok(Self {
            dir: dir.to_owned(),
            pos,
        })
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    /// Up to `max` records from the saved position on; nothing moves until [`Reader::commit`].
    pub fn next_batch(&self, max: usize) -> io::Result<Batch> {
        let all = segments(&self.dir)?;
        let mut batch = Batch {
            end: self.pos,
            ..Batch::default()
        };
        let mut pos = self.pos;
        for &seg in all.iter().filter(|s| **s >= self.pos.segment) {
            if seg != pos.segment {
                pos = Position {
                    segment: seg,
                    offset: 0,
                };
            }
            let newer_exists = all.last().is_some_and(|l| *l > seg);
            let mut file = match File::open(segment_path(&self.dir, seg)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            file.seek(SeekFrom::Start(pos.offset))?;
            let mut buf = Vec::new();
            let mut cap = READ_BYTES;
            loop {
                let got = (&mut file)
                    .take(cap - buf.len() as u64)
                    .read_to_end(&mut buf)?;
                // a line longer than what was read (a body near a raised message limit): more
                if got == 0 || buf.len() as u64 != cap || buf.contains(&b'\n') {
                    break;
                }
                cap *= 2;
            }
            let full = buf.len() as u64 == cap;
            let mut used = 0usize;
            while batch.records.len() < max {
                let Some(nl) = buf[used..].iter().position(|b| *b == b'\n') else {
                    break;
                };
                let line = &buf[used..used + nl];
                used += nl + 1;
                match Record::from_line(line) {
                    Ok(r) => batch.records.push(r),
                    Err(e) => {
                        batch.damaged += 1;
                        tracing::error!(event = "archive.queue_damaged", segment = seg, offset = pos.offset + used as u64, error = %e, "a line of the archive queue cannot be read back; skipped");
                    }
                }
            }
            pos.offset += used as u64;
            batch.end = pos;
            if batch.records.len() >= max {
                break;
            }
            let rest = buf.len() - used;
            if rest > 0 && newer_exists && !full {
                // a line a crash cut short at the end of an old segment: nothing follows it
                batch.damaged += 1;
                tracing::error!(
                    event = "archive.queue_damaged",
                    segment = seg,
                    bytes = rest,
                    "the end of an archive queue segment was cut short by a crash; skipped"
                );
                pos.offset += rest as u64;
                batch.end = pos;
            }
            if !newer_exists || rest > 0 && full {
                break;
            }
        }
        Ok(batch)
    }

    /// The batch up to `end` is stored: the position is saved, and finished segments removed.
    pub fn commit(&mut self, end: Position) -> io::Result<()> {
        let tmp = self.dir.join("position.tmp");
        fs::write(&tmp, format!("{} {}\n", end.segment, end.offset))?;
        fs::rename(&tmp, self.dir.join(POSITION))?;
        for seg in segments(&self.dir)?
            .into_iter()
            .filter(|s| *s < end.segment)
        {
            fs::remove_file(segment_path(&self.dir, seg))?;
        }
        self.pos = end;
        Ok(())
    }

    /// Bytes waiting in the queue past the saved position.
    pub fn backlog_bytes(&self) -> u64 {
        segments(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| *s >= self.pos.segment)
            .filter_map(|s| {
                fs::metadata(segment_path(&self.dir, s))
                    .ok()
                    .map(|m| (s, m.len()))
            })
            .map(|(s, len)| {
                if s == self.pos.segment {
                    len.saturating_sub(self.pos.offset)
                } else {
                    len
                }
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Registration};

    fn reg(n: u32) -> Record {
        Record::Registration(Registration {
            id: format!("t-{n}"),
            at_ms: i64::from(n),
            user: "alice@example.com".into(),
            event: "sign-in".into(),
            client: "test".into(),
            address: "127.0.0.1:5060".into(),
            server: "fe".into(),
            keep_until: 0,
        })
    }

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("confab-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_come_back_in_order_and_a_commit_moves_on() {
        let dir = temp("order");
        let a = Appender::open(&dir).unwrap();
        for n in 0..10 {
            a.append(&reg(n).to_line()).unwrap();
        }
        let mut r = Reader::open(&dir).unwrap();
        let b = r.next_batch(4).unwrap();
        assert_eq!(b.records, (0..4).map(reg).collect::<Vec<_>>());
        // not committed: the same again
        assert_eq!(r.next_batch(4).unwrap().records, b.records);
        r.commit(b.end).unwrap();
        let b = r.next_batch(100).unwrap();
        assert_eq!(b.records, (4..10).map(reg).collect::<Vec<_>>());
        r.commit(b.end).unwrap();
        assert_eq!(r.backlog_bytes(), 0);
        // a reader opened again (a restart) starts where the last commit left
        a.append(&reg(10).to_line()).unwrap();
        let r2 = Reader::open(&dir).unwrap();
        assert_eq!(r2.next_batch(100).unwrap().records, vec![reg(10)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_longer_than_one_read_comes_back_whole() {
        let dir = temp("long");
        let a = Appender::open(&dir).unwrap();
        let long = Record::Message(crate::record::Message {
            id: "long".into(),
            at_ms: 0,
            sender: "alice@example.com".into(),
            recipients: vec!["bob@example.com".into()],
            conversation: "c".into(),
            direction: crate::record::Direction::Internal,
            content_type: "application/octet-stream".into(),
            body: vec![7; 3 << 20],
            server: "fe".into(),
            keep_until: 0,
        });
        a.append(&long.to_line()).unwrap();
        a.append(&reg(1).to_line()).unwrap();
        let mut r = Reader::open(&dir).unwrap();
        let b = r.next_batch(100).unwrap();
        assert_eq!(b.records, vec![long, reg(1)]);
        r.commit(b.end).unwrap();
        assert_eq!(r.backlog_bytes(), 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_skipped_and_what_follows_is_kept() {
        let dir = temp("torn");
        {
            let a = Appender::open(&dir).unwrap();
            a.append(&reg(1).to_line()).unwrap();
            let half = reg(2).to_line();
            a.append(&half[..half.len() / 2]).unwrap();
        }
        // the server starts again: a new segment
        let a = Appender::open(&dir).unwrap();
        a.append(&reg(3).to_line()).unwrap();
        let mut r = Reader::open(&dir).unwrap();
        let b = r.next_batch(100).unwrap();
        assert_eq!(b.records, vec![reg(1), reg(3)]);
        assert_eq!(b.damaged, 1);
        r.commit(b.end).unwrap();
        assert_eq!(
            segments(&dir).unwrap().len(),
            1,
            "the finished segment is removed"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
