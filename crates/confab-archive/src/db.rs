//! The archive database: SQLite (the deployment's file, or one of its own) or PostgreSQL (the
//! deployment's, or a separate archive database for large deployments). The SQL is written
//! once, with `$n` placeholders; the two connections differ only in how a statement is run
//! and a row read back ([`Db::exec`], [`Db::query`]).

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};

/// Why the archive could not do something.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The database is away (down, restarting, unreachable): retry later.
    #[error("archive database unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement.
    #[error("archive database error: {0}")]
    Database(String),
    /// A request that cannot be served as asked; the text says what to fix.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

impl From<rusqlite::Error> for ArchiveError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Database(e.to_string()),
        }
    }
}

impl From<postgres::Error> for ArchiveError {
    fn from(e: postgres::Error) -> Self {
        // the deployment store's reading of PostgreSQL's errors: unavailable or refused
        match confab_store::StoreError::from(e) {
            confab_store::StoreError::Unavailable(m) => Self::Unavailable(m),
            confab_store::StoreError::Database(m) => Self::Database(m),
            other => Self::Database(other.to_string()),
        }
    }
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Vec<u8>),
}

impl Value {
    pub fn int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => *i,
            Self::Text(t) => t.as_deref().and_then(|t| t.parse().ok()),
            Self::Bytes(_) => None,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Self::Text(t) => t.clone().unwrap_or_default(),
            Self::Int(i) => i.map(|i| i.to_string()).unwrap_or_default(),
            Self::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Bytes(b) => b.clone(),
            Self::Text(t) => t.clone().unwrap_or_default().into_bytes(),
            Self::Int(_) => Vec::new(),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(Some(i))
    }
}

impl From<Option<i64>> for Value {
    fn from(i: Option<i64>) -> Self {
        Self::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Text(Some(s.to_owned()))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Text(Some(s))
    }
}

impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        Self::Text(s)
    }
}

const CONNECT_WITHIN: Duration = Duration::from_secs(3);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// A connection to the archive database.
pub enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(Box<Pg>),
}

pub struct Pg {
    config: postgres::Config,
    target: String,
    client: Option<postgres::Client>,
    last_attempt: Option<Instant>,
}

impl Pg {
    fn client(&mut self) -> Result<&mut postgres::Client> {
        if self
            .client
            .as_ref()
            .is_some_and(postgres::Client::is_closed)
        {
            self.client = None;
        }
        if self.client.is_none() {
            if self
                .last_attempt
                .is_some_and(|t| t.elapsed() < RECONNECT_EVERY)
            {
                return Err(ArchiveError::Unavailable(format!(
                    "{} is not reachable (retrying every second)",
                    self.target
                )));
            }
            self.last_attempt = Some(Instant::now());
            let client = self.config.connect(postgres::NoTls).map_err(|e| {
                ArchiveError::Unavailable(format!(
                    "cannot connect to {}: {}",
                    self.target,
                    confab_store::postgres_error_text(&e)
                ))
            })?;
            self.last_attempt = None;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    fn failed(&mut self, e: postgres::Error) -> ArchiveError {
        let e = ArchiveError::from(e);
        if matches!(e, ArchiveError::Unavailable(_)) {
            self.client = None;
        }
        e
    }
}

/// Whether `spec` names a PostgreSQL database (else it is an SQLite file's path).
pub fn is_postgres(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

impl Db {
    /// Opens the archive at `spec` (a `postgres://` URL or an SQLite file's path) and brings its
    /// tables up to date. A PostgreSQL archive that is away now is opened anyway (its tables
    /// are made at the first connection), so that a server starts during an archive outage
    /// and its queue waits.
    pub fn open(spec: &str) -> Result<Self> {
        let mut db = Self::new(spec)?;
        match db.ensure_schema() {
            Ok(()) | Err(ArchiveError::Unavailable(_)) => Ok(db),
            Err(e) => Err(e),
        }
    }

    /// The archive at `spec`, not connected yet for PostgreSQL (the first statement connects,
    /// on the thread that will use it: the blocking client cannot start inside a runtime).
    pub fn new(spec: &str) -> Result<Self> {
        let db = if is_postgres(spec) {
            let mut config: postgres::Config = spec.parse().map_err(|e| {
                ArchiveError::Invalid(format!(
                    "'{}' is not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE",
                    confab_store::redact_password(spec)
                ))
            })?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(CONNECT_WITHIN);
            }
            config.tcp_user_timeout(Duration::from_secs(5));
            let target = confab_store::describe_postgres(&config);
            Self::Postgres(Box::new(Pg {
                config,
                target,
                client: None,
                last_attempt: None,
            }))
        } else {
            let conn = rusqlite::Connection::open(spec).map_err(|e| {
                ArchiveError::Invalid(format!("cannot open the archive database {spec}: {e}"))
            })?;
            conn.busy_timeout(Duration::from_secs(5))?;
            // what users wrote is readable by the file's owner only (SQLite gives its journal
            // files the same mode)
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(spec, std::fs::Permissions::from_mode(0o600)).map_err(
                    |e| ArchiveError::Invalid(format!("cannot restrict {spec} to its owner: {e}")),
                )?;
            }
            let _ = conn.pragma_update(None, "journal_mode", "WAL");
            Self::Sqlite(conn)
        };
        Ok(db)
    }

    /// Where it is, for messages (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(c) => format!("SQLite at {}", c.path().unwrap_or("(memory)")),
            Self::Postgres(p) => p.target.clone(),
        }
    }

    /// Runs a statement; the rows it changed.
    pub fn exec(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Self::Sqlite(c) => {
                let sql = sqlite_placeholders(sql);
                let mut stmt = c.prepare_cached(&sql)?;
                Ok(
                    stmt.execute(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?
                        as u64,
                )
            }
            Self::Postgres(p) => {
                let boxed = pg_params(params);
                let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
                let r = p.client()?.execute(sql, &refs);
                r.map_err(|e| p.failed(e))
            }
        }
    }

    /// Statements without parameters, several at once (schema, BEGIN/COMMIT).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Self::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Self::Postgres(p) => {
                let r = p.client()?.batch_execute(sql);
                r.map_err(|e| p.failed(e))
            }
        }
    }

    /// Runs a query and hands each row to `each` as it comes (bounded memory), until `each`
    /// says stop.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        each: &mut dyn FnMut(Vec<Value>) -> bool,
    ) -> Result<()> {
        match self {
            Self::Sqlite(c) => {
                let sql = sqlite_placeholders(sql);
                let mut stmt = c.prepare_cached(&sql)?;
                let n = stmt.column_count();
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(params.iter().map(sqlite_value)))?;
                while let Some(row) = rows.next()? {
                    let values = (0..n)
                        .map(|i| match row.get_ref(i) {
                            Ok(rusqlite::types::ValueRef::Integer(v)) => Value::Int(Some(v)),
                            Ok(rusqlite::types::ValueRef::Text(t)) => {
                                Value::Text(Some(String::from_utf8_lossy(t).into_owned()))
                            }
                            Ok(rusqlite::types::ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
                            Ok(rusqlite::types::ValueRef::Real(r)) => Value::Int(Some(r as i64)),
                            _ => Value::Text(None),
                        })
                        .collect();
                    if !each(values) {
                        break;
                    }
                }
                Ok(())
            }
            Self::Postgres(p) => {
                let boxed = pg_params(params);
                let result = (|| {
                    let client = p.client()?;
                    let mut rows = client
                        .query_raw(sql, boxed.iter().map(|b| b.as_ref() as &dyn ToSql))
                        .map_err(ArchiveError::from)?;
                    while let Some(row) = rows.next().map_err(ArchiveError::from)? {
                        if !each(pg_row(&row)) {
                            break;
                        }
                    }
                    Ok(())
                })();
                if matches!(result, Err(ArchiveError::Unavailable(_))) {
                    p.client = None;
                }
                result
            }
        }
    }

    /// Makes the archive's tables if they are missing (idempotent).
    pub fn ensure_schema(&mut self) -> Result<()> {
        let (lock, blob) = match self {
            Self::Sqlite(_) => ("BEGIN IMMEDIATE;", "BLOB"),
            // servers of a pool may start at once
            Self::Postgres(_) => ("BEGIN; SELECT pg_advisory_xact_lock(72450022);", "BYTEA"),
        };
        self.batch(lock)?;
        let r = self.batch(&crate::store::SCHEMA.replace("$BLOB", blob));
        match r {
            Ok(()) => self.batch("COMMIT"),
            Err(e) => {
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// `$3` becomes `?3`: SQLite numbers named `$` parameters by first appearance, not by digit.
fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_value(v: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match v {
        Value::Int(Some(i)) => V::Integer(*i),
        Value::Text(Some(t)) => V::Text(t.clone()),
        Value::Bytes(b) => V::Blob(b.clone()),
        Value::Int(None) | Value::Text(None) => V::Null,
    }
}

fn pg_params(params: &[Value]) -> Vec<Box<dyn ToSql + Sync>> {
    params
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync> {
            match v {
                Value::Int(i) => Box::new(*i),
                Value::Text(t) => Box::new(t.clone()),
                Value::Bytes(b) => Box::new(b.clone()),
            }
        })
        .collect()
}

fn pg_row(row: &postgres::Row) -> Vec<Value> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, col)| match *col.type_() {
            Type::INT8 => Value::Int(row.get::<_, Option<i64>>(i)),
            Type::INT4 => Value::Int(row.get::<_, Option<i32>>(i).map(i64::from)),
            Type::BYTEA => Value::Bytes(row.get::<_, Option<Vec<u8>>>(i).unwrap_or_default()),
            _ => Value::Text(row.try_get::<_, Option<String>>(i).ok().flatten()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_renumbered_for_sqlite_by_digit() {
        assert_eq!(
            super::sqlite_placeholders("a = $2 AND b = $1 AND c = '$x'"),
            "a = ?2 AND b = ?1 AND c = '$x'"
        );
    }
}
