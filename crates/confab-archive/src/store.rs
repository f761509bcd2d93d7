//! The archive's tables and what is done with them: records stored (once each), searched in
//! time order with the indexes the searches need, purged past their retention in bounded
//! batches, and every search and export logged.

use crate::db::{Db, Result, Value};
use crate::query::Query;
use crate::record::{Call, Direction, Message, Record, Registration};

/// The archive's tables (`$BLOB` is the binary type of the database).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS archive_messages (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    conversation TEXT NOT NULL,
    direction TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body $BLOB NOT NULL,
    server TEXT NOT NULL,
    keep_until BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_messages_at ON archive_messages (at);
CREATE INDEX IF NOT EXISTS archive_messages_keep ON archive_messages (keep_until);
CREATE TABLE IF NOT EXISTS archive_parties (
    party TEXT NOT NULL,
    at BIGINT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (party, at, id)
);
CREATE INDEX IF NOT EXISTS archive_parties_id ON archive_parties (id);
CREATE TABLE IF NOT EXISTS cdr_calls (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    answer_at BIGINT,
    end_at BIGINT NOT NULL,
    status BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ended_by TEXT NOT NULL,
    route TEXT,
    trunk TEXT,
    servers TEXT NOT NULL,
    keep_until BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cdr_calls_start ON cdr_calls (start_at);
CREATE INDEX IF NOT EXISTS cdr_calls_caller ON cdr_calls (caller, start_at);
CREATE INDEX IF NOT EXISTS cdr_calls_callee ON cdr_calls (callee, start_at);
CREATE INDEX IF NOT EXISTS cdr_calls_keep ON cdr_calls (keep_until);
CREATE TABLE IF NOT EXISTS cdr_registrations (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    user_aor TEXT NOT NULL,
    event TEXT NOT NULL,
    client TEXT NOT NULL,
    address TEXT NOT NULL,
    server TEXT NOT NULL,
    keep_until BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cdr_registrations_at ON cdr_registrations (at);
CREATE INDEX IF NOT EXISTS cdr_registrations_user ON cdr_registrations (user_aor, at);
CREATE INDEX IF NOT EXISTS cdr_registrations_keep ON cdr_registrations (keep_until);
CREATE TABLE IF NOT EXISTS archive_access (
    at BIGINT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    filter TEXT NOT NULL,
    results BIGINT NOT NULL
);
";

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 100;

const MESSAGE_COLUMNS: &str = "m.id, m.at, m.sender, m.recipients, m.conversation, m.direction, m.content_type, m.body, m.server, m.keep_until";
const CALL_COLUMNS: &str = "id, call_id, caller, callee, start_at, answer_at, end_at, status, reason, ended_by, route, trunk, servers, keep_until";
const REGISTRATION_COLUMNS: &str = "id, at, user_aor, event, client, address, server, keep_until";

/// What a purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    pub calls: u64,
    pub registrations: u64,
}

impl Purged {
    pub fn total(&self) -> u64 {
        self.messages + self.calls + self.registrations
    }
}

impl Db {
    /// Stores `records` in one transaction; one already stored (same id) is kept as it was.
    pub fn insert(&mut self, records: &[Record]) -> Result<()> {
        self.batch("BEGIN")?;
        match self.insert_all(records) {
            Ok(()) => self.batch("COMMIT"),
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    fn insert_all(&mut self, records: &[Record]) -> Result<()> {
        let (mut messages, mut parties, mut calls, mut regs) = (vec![], vec![], vec![], vec![]);
        for r in records {
            match r {
                Record::Message(m) => {
                    for p in std::iter::once(&m.sender).chain(&m.recipients) {
                        parties.push(vec![
                            p.as_str().into(),
                            m.at_ms.into(),
                            m.id.as_str().into(),
                        ]);
                    }
                    messages.push(vec![
                        m.id.as_str().into(),
                        m.at_ms.into(),
                        m.sender.as_str().into(),
                        m.recipients.join(" ").into(),
                        m.conversation.as_str().into(),
                        m.direction.as_str().into(),
                        m.content_type.as_str().into(),
                        Value::Bytes(m.body.clone()),
                        m.server.as_str().into(),
                        m.keep_until.into(),
                    ]);
                }
                Record::Call(c) => calls.push(vec![
                    c.id.as_str().into(),
                    c.call_id.as_str().into(),
                    c.caller.as_str().into(),
                    c.callee.as_str().into(),
                    c.start_ms.into(),
                    c.answer_ms.into(),
                    c.end_ms.into(),
                    i64::from(c.status).into(),
                    c.reason.as_str().into(),
                    c.ended_by.as_str().into(),
                    c.route.clone().into(),
                    c.trunk.clone().into(),
                    c.servers.join(" ").into(),
                    c.keep_until.into(),
                ]),
                Record::Registration(r) => regs.push(vec![
                    r.id.as_str().into(),
                    r.at_ms.into(),
                    r.user.as_str().into(),
                    r.event.as_str().into(),
                    r.client.as_str().into(),
                    r.address.as_str().into(),
                    r.server.as_str().into(),
                    r.keep_until.into(),
                ]),
            }
        }
        self.insert_rows(
            "archive_messages",
            &MESSAGE_COLUMNS.replace("m.", ""),
            messages,
        )?;
        self.insert_rows("archive_parties", "party, at, id", parties)?;
        self.insert_rows("cdr_calls", CALL_COLUMNS, calls)?;
        self.insert_rows("cdr_registrations", REGISTRATION_COLUMNS, regs)
    }

    fn insert_rows(&mut self, table: &str, columns: &str, rows: Vec<Vec<Value>>) -> Result<()> {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let width = chunk[0].len();
            let groups: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let cells: Vec<String> =
                        (1..=width).map(|c| format!("${}", r * width + c)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {table} ({columns}) VALUES {} ON CONFLICT DO NOTHING",
                groups.join(", ")
            );
            let params: Vec<Value> = chunk.iter().flatten().cloned().collect();
            self.exec(&sql, &params)?;
        }
        Ok(())
    }

    /// Archived messages matching `q`, in time order, to `each` (which may say stop).
    pub fn messages(&mut self, q: &Query, each: &mut dyn FnMut(Message) -> bool) -> Result<()> {
        let mut params: Vec<Value> = vec![];
        let mut sql = match &q.user {
            Some(u) => {
                params.push(u.as_str().into());
                format!("SELECT {MESSAGE_COLUMNS} FROM archive_parties p JOIN archive_messages m ON m.id = p.id WHERE p.party = $1 AND p.at >= $2 AND p.at < $3")
            }
            None => format!(
                "SELECT {MESSAGE_COLUMNS} FROM archive_messages m WHERE m.at >= $1 AND m.at < $2"
            ),
        };
        params.push(q.from_ms.into());
        params.push(q.to_ms.into());
        if let Some(w) = &q.with {
            params.push(w.as_str().into());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM archive_parties w WHERE w.id = m.id AND w.party = ${})",
                params.len()
            ));
        }
        sql.push_str(" ORDER BY m.at, m.id");
        let mut left = q.limit.unwrap_or(usize::MAX);
        self.query(&sql, &params, &mut |row| {
            let Some(m) = message_of(row) else {
                return true;
            };
            if !q.matches_text(&m.body) {
                return true;
            }
            left -= 1;
            each(m) && left > 0
        })
    }

    /// Call records matching `q` (the user as caller or callee), in time order.
    pub fn calls(&mut self, q: &Query, each: &mut dyn FnMut(Call) -> bool) -> Result<()> {
        let mut params: Vec<Value> = vec![q.from_ms.into(), q.to_ms.into()];
        let mut sql =
            format!("SELECT {CALL_COLUMNS} FROM cdr_calls WHERE start_at >= $1 AND start_at < $2");
        for (i, u) in [&q.user, &q.with].into_iter().flatten().enumerate() {
            params.push(u.as_str().into());
            let n = 3 + i;
            sql.push_str(&format!(" AND (caller = ${n} OR callee = ${n})"));
        }
        sql.push_str(" ORDER BY start_at, id");
        let mut left = q.limit.unwrap_or(usize::MAX);
        self.query(&sql, &params, &mut |row| {
            left -= 1;
            each(call_of(row)) && left > 0
        })
    }

    /// Sign-in records matching `q`, in time order.
    pub fn registrations(
        &mut self,
        q: &Query,
        each: &mut dyn FnMut(Registration) -> bool,
    ) -> Result<()> {
        let mut params: Vec<Value> = vec![q.from_ms.into(), q.to_ms.into()];
        let mut sql = format!(
            "SELECT {REGISTRATION_COLUMNS} FROM cdr_registrations WHERE at >= $1 AND at < $2"
        );
        if let Some(u) = &q.user {
            params.push(u.as_str().into());
            sql.push_str(" AND user_aor = $3");
        }
        sql.push_str(" ORDER BY at, id");
        let mut left = q.limit.unwrap_or(usize::MAX);
        self.query(&sql, &params, &mut |row| {
            left -= 1;
            each(registration_of(row)) && left > 0
        })
    }

    /// Deletes records whose retention ended before `now_s` (Unix seconds), `batch` at a time,
    /// except what involves a user on legal hold. With `dry_run`, counts them instead.
    pub fn purge(
        &mut self,
        now_s: i64,
        holds: &[String],
        batch: usize,
        dry_run: bool,
    ) -> Result<Purged> {
        let mut purged = Purged::default();
        let held = |first: usize, columns: &[&str]| -> String {
            if holds.is_empty() {
                return String::new();
            }
            let list: Vec<String> = (0..holds.len())
                .map(|i| format!("${}", first + i))
                .collect();
            let list = list.join(", ");
            columns
                .iter()
                .map(|c| format!(" AND {c} NOT IN ({list})"))
                .collect()
        };
        let message_hold = if holds.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = (0..holds.len()).map(|i| format!("${}", 3 + i)).collect();
            format!(
                " AND NOT EXISTS (SELECT 1 FROM archive_parties h WHERE h.id = m.id AND h.party IN ({}))",
                list.join(", ")
            )
        };
        let kinds = [
            (
                "archive_messages",
                format!("SELECT m.id FROM archive_messages m WHERE m.keep_until < $1{message_hold} LIMIT $2"),
            ),
            (
                "cdr_calls",
                format!(
                    "SELECT id FROM cdr_calls WHERE keep_until < $1{} LIMIT $2",
                    held(3, &["caller", "callee"])
                ),
            ),
            (
                "cdr_registrations",
                format!(
                    "SELECT id FROM cdr_registrations WHERE keep_until < $1{} LIMIT $2",
                    held(3, &["user_aor"])
                ),
            ),
        ];
        for (table, select) in kinds {
            let limit = if dry_run { i64::MAX } else { batch as i64 };
            let mut params: Vec<Value> = vec![now_s.into(), limit.into()];
            params.extend(holds.iter().map(|h| Value::from(h.as_str())));
            loop {
                let mut ids: Vec<Value> = Vec::new();
                self.query(&select, &params, &mut |row| {
                    ids.push(row[0].clone());
                    true
                })?;
                let n = ids.len() as u64;
                if !dry_run && n > 0 {
                    self.delete_ids(table, &ids)?;
                }
                match table {
                    "archive_messages" => purged.messages += n,
                    "cdr_calls" => purged.calls += n,
                    _ => purged.registrations += n,
                }
                if dry_run || n < batch as u64 {
                    break;
                }
            }
        }
        Ok(purged)
    }

    fn delete_ids(&mut self, table: &str, ids: &[Value]) -> Result<()> {
        let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let list = list.join(", ");
        self.batch("BEGIN")?;
        let r = (|| {
            if table == "archive_messages" {
                self.exec(
                    &format!("DELETE FROM archive_parties WHERE id IN ({list})"),
                    ids,
                )?;
            }
            self.exec(&format!("DELETE FROM {table} WHERE id IN ({list})"), ids)
        })();
        match r {
            Ok(_) => self.batch("COMMIT"),
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Records who searched or exported what, and how many records it gave.
    pub fn log_access(
        &mut self,
        who: &str,
        action: &str,
        filter: &str,
        results: u64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO archive_access (at, who, action, filter, results) VALUES ($1, $2, $3, $4, $5)",
            &[
                crate::time::now_ms().into(),
                who.into(),
                action.into(),
                filter.into(),
                (results as i64).into(),
            ],
        )?;
        Ok(())
    }

    /// The access log, oldest first: (at ms, who, action, filter, results).
    pub fn access_log(
        &mut self,
        each: &mut dyn FnMut(i64, String, String, String, i64),
    ) -> Result<()> {
        self.query(
            "SELECT at, who, action, filter, results FROM archive_access ORDER BY at",
            &[],
            &mut |r| {
                each(
                    r[0].int().unwrap_or(0),
                    r[1].text(),
                    r[2].text(),
                    r[3].text(),
                    r[4].int().unwrap_or(0),
                );
                true
            },
        )
    }
}

fn message_of(r: Vec<Value>) -> Option<Message> {
    Some(Message {
        id: r[0].text(),
        at_ms: r[1].int().unwrap_or(0),
        sender: r[2].text(),
        recipients: r[3]
            .text()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        conversation: r[4].text(),
        direction: Direction::parse(&r[5].text())?,
        content_type: r[6].text(),
        body: r[7].bytes(),
        server: r[8].text(),
        keep_until: r[9].int().unwrap_or(0),
    })
}

fn call_of(r: Vec<Value>) -> Call {
    let opt = |v: &Value| match v {
        Value::Text(None) => None,
        v => Some(v.text()),
    };
    Call {
        id: r[0].text(),
        call_id: r[1].text(),
        caller: r[2].text(),
        callee: r[3].text(),
        start_ms: r[4].int().unwrap_or(0),
        answer_ms: r[5].int(),
        end_ms: r[6].int().unwrap_or(0),
        status: r[7].int().unwrap_or(0) as u16,
        reason: r[8].text(),
        ended_by: r[9].text(),
        route: opt(&r[10]),
        trunk: opt(&r[11]),
        servers: r[12]
            .text()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        keep_until: r[13].int().unwrap_or(0),
    }
}

fn registration_of(r: Vec<Value>) -> Registration {
    Registration {
        id: r[0].text(),
        at_ms: r[1].int().unwrap_or(0),
        user: r[2].text(),
        event: r[3].text(),
        client: r[4].text(),
        address: r[5].text(),
        server: r[6].text(),
        keep_until: r[7].int().unwrap_or(0),
    }
}
