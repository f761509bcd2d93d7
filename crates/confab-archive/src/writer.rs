//! The archive writer: a thread that moves records from the local queue into the archive
//! database, and writes critical-mode messages straight there (their sender waits for the
//! answer). While the database is away the queue grows and the writer retries every second;
//! what it logs (`archive.unavailable`, `archive.recovered`) says so once each way.

use std::io;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use crate::db::{ArchiveError, Db};
use crate::journal::{Appender, Reader};
use crate::record::Record;

/// Records per database transaction from the queue.
const BATCH: usize = 500;

/// How often the queue is looked at when nothing else wakes the writer.
const POLL: Duration = Duration::from_millis(100);

/// A critical-mode write: `done` hears whether the records are in the archive.
pub struct Critical {
    pub records: Vec<Record>,
    pub done: Box<dyn FnOnce(Result<(), String>) + Send>,
}

/// What the engines' drivers hold: the queue to append to, and the way to the writer.
pub struct Sink {
    appender: Appender,
    critical: mpsc::Sender<Critical>,
}

impl Sink {
    /// Appends records' lines to the durable queue (before the messages they record go on).
    pub fn append(&self, lines: &[u8]) -> io::Result<()> {
        self.appender.append(lines)
    }

    /// Sends a critical write to the writer; its `done` is told the outcome.
    pub fn critical(&self, c: Critical) {
        if let Err(mpsc::SendError(c)) = self.critical.send(c) {
            (c.done)(Err("the archive writer has stopped".into()));
        }
    }
}

/// Starts the writer for the archive at `database` with its queue in `queue_dir`.
pub fn start(database: &str, queue_dir: &Path) -> Result<Sink, ArchiveError> {
    let appender = Appender::open(queue_dir).map_err(|e| {
        ArchiveError::Invalid(format!(
            "cannot open the archive queue in {}: {e}",
            queue_dir.display()
        ))
    })?;
    let reader = Reader::open(queue_dir).map_err(|e| {
        ArchiveError::Invalid(format!(
            "cannot read the archive queue in {}: {e}",
            queue_dir.display()
        ))
    })?;
    let db = Db::new(database)?;
    let (tx, rx) = mpsc::channel();
    let mut writer = Writer {
        db,
        reader,
        rx,
        schema_ready: false,
        down_since: None,
        written: 0,
    };
    std::thread::Builder::new()
        .name("confab-archive".into())
        .spawn(move || writer.run())
        .map_err(|e| ArchiveError::Unavailable(format!("cannot start the archive writer: {e}")))?;
    Ok(Sink {
        appender,
        critical: tx,
    })
}

struct Writer {
    db: Db,
    reader: Reader,
    rx: mpsc::Receiver<Critical>,
    schema_ready: bool,
    /// The database has failed since then (and what the queue held then).
    down_since: Option<std::time::Instant>,
    written: u64,
}

impl Writer {
    fn run(&mut self) {
        tracing::info!(event = "archive.writer", database = %self.db.describe(), backlog_bytes = self.reader.backlog_bytes(), "archive writer started");
        // a backlog is written a batch at a time, critical writes (a sender waits) between
        let mut more = true;
        loop {
            let wait = if more { Duration::ZERO } else { POLL };
            match self.rx.recv_timeout(wait) {
                Ok(first) => {
                    let mut batch = vec![first];
                    while let Ok(more) = self.rx.try_recv() {
                        batch.push(more);
                    }
                    self.critical(batch);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    while self.queued_batch() {}
                    return;
                }
            }
            more = self.queued_batch();
        }
    }

    fn write(&mut self, records: &[Record]) -> Result<(), ArchiveError> {
        if !self.schema_ready {
            self.db.ensure_schema()?;
            self.schema_ready = true;
        }
        let r = self.db.insert(records);
        match &r {
            Ok(()) => {
                self.written += records.len() as u64;
                if let Some(since) = self.down_since.take() {
                    tracing::info!(
                        event = "archive.recovered",
                        after_s = since.elapsed().as_secs(),
                        backlog_bytes = self.reader.backlog_bytes(),
                        "the archive database is back; the queue is being written"
                    );
                }
            }
            Err(e) => {
                if matches!(e, ArchiveError::Unavailable(_)) {
                    self.schema_ready = false;
                }
                if self.down_since.is_none() {
                    self.down_since = Some(std::time::Instant::now());
                    tracing::error!(event = "archive.unavailable", error = %e, backlog_bytes = self.reader.backlog_bytes(), "cannot write to the archive database; records wait in the local queue (critical mode refuses messages)");
                }
            }
        }
        r
    }

    fn critical(&mut self, batch: Vec<Critical>) {
        let records: Vec<Record> = batch
            .iter()
            .flat_map(|c| c.records.iter().cloned())
            .collect();
        let outcome = self.write(&records).map_err(|e| e.to_string());
        for c in batch {
            (c.done)(outcome.clone());
        }
    }

    /// Writes the next batch of the queue; whether more may follow at once (false when the
    /// queue is empty or the database failed: the next try waits a poll).
    fn queued_batch(&mut self) -> bool {
        let batch = match self.reader.next_batch(BATCH) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(event = "archive.queue_unreadable", error = %e, "cannot read the archive queue");
                return false;
            }
        };
        if batch.records.is_empty() && batch.end == self.reader.position() {
            return false;
        }
        if !batch.records.is_empty() && self.write(&batch.records).is_err() {
            return false;
        }
        if let Err(e) = self.reader.commit(batch.end) {
            tracing::error!(event = "archive.queue_unreadable", error = %e, "cannot save the archive queue's position");
            return false;
        }
        tracing::debug!(
            event = "archive.written",
            records = batch.records.len(),
            total = self.written
        );
        true
    }
}
