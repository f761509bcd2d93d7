//! The embedded SQLite store. WAL mode and a busy timeout let `confab user ...` write while the
//! server runs; the server sees a new user at its next lookup.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::{
    check_group, fold_changes, group_contacts, hashes, normalize_aor, split_path, Binding,
    ContactEntry, Privacy, Result, Store, StoreError, User, Visibility,
};

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE users (
        aor TEXT PRIMARY KEY,
        realm TEXT NOT NULL,
        ha1_md5 TEXT NOT NULL,
        ha1_sha256 TEXT NOT NULL
    );
    CREATE TABLE bindings (
        aor TEXT NOT NULL,
        key TEXT NOT NULL,
        contact TEXT NOT NULL,
        params TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        call_id TEXT NOT NULL,
        cseq INTEGER NOT NULL,
        path TEXT NOT NULL,
        transport TEXT NOT NULL,
        source TEXT NOT NULL,
        outbound INTEGER NOT NULL,
        PRIMARY KEY (aor, key)
    );
    CREATE INDEX bindings_expiry ON bindings (expires_at);",
    "CREATE TABLE contacts (
        owner TEXT NOT NULL,
        contact TEXT NOT NULL,
        grp TEXT NOT NULL,
        PRIMARY KEY (owner, contact, grp)
    );
    CREATE TABLE contact_groups (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (owner, name)
    );
    CREATE TABLE privacy (
        owner TEXT PRIMARY KEY,
        visibility TEXT NOT NULL
    );
    CREATE TABLE blocked (
        owner TEXT NOT NULL,
        watcher TEXT NOT NULL,
        PRIMARY KEY (owner, watcher)
    );
    CREATE TABLE soft_state (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        aor TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX soft_state_expiry ON soft_state (expires_at);
    CREATE TABLE changes (
        rev INTEGER PRIMARY KEY AUTOINCREMENT,
        aor TEXT NOT NULL
    );",
    "ALTER TABLE users ADD COLUMN pool TEXT;",
    "ALTER TABLE bindings ADD COLUMN server TEXT NOT NULL DEFAULT '';
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    "ALTER TABLE users ADD COLUMN remote_access BOOLEAN;
    ALTER TABLE users ADD COLUMN federation BOOLEAN;",
    "ALTER TABLE users ADD COLUMN line_uri TEXT;
    ALTER TABLE users ADD COLUMN voice BOOLEAN NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN voice_policy TEXT;
    ALTER TABLE users ADD COLUMN dial_plan TEXT;
    CREATE UNIQUE INDEX users_line_uri ON users (line_uri);",
    "ALTER TABLE users ADD COLUMN forwarding TEXT;",
];

/// How many change-log entries are kept (a server polls every few seconds).
const CHANGES_KEPT: i64 = 10_000;

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Switches the database to write-ahead logging. That needs the file to itself for a moment,
/// and SQLite answers "locked" at once rather than waiting (its busy handler does not run
/// for it), so this waits up to [`BUSY_TIMEOUT`] for a process opening it at the same time.
fn enable_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return Ok(r?),
        }
    }
}

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    /// One connection, which every handle of this store shares ([`Store::handle`]): the
    /// engines of one process take turns on it instead of waiting for SQLite's file lock.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        enable_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The version is read under the write lock: of several processes opening a new
        // database at once (servers of a pool, `confab user import` beside `confab up`), one
        // migrates while the others wait (busy timeout), then find nothing left to do.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < MIGRATIONS.len() {
            for m in &MIGRATIONS[version..] {
                tx.execute_batch(m)?;
            }
            tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
        }
        tx.commit()?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The connection, locked (a panic while it was held leaves it usable: SQLite rolled back
    /// what was unfinished).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a user on `conn` (the connection, or a transaction on it).
    fn add_user_on(
        &self,
        conn: &Connection,
        aor: &str,
        password: &str,
        pool: Option<&str>,
    ) -> Result<()> {
        let norm = normalize_aor(aor)?;
        let (realm, md5, sha) = hashes(&norm, password)?;
        let n = conn.execute(
            "INSERT OR IGNORE INTO users (aor, realm, ha1_md5, ha1_sha256, pool) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![norm, realm, md5, sha, pool],
        )?;
        if n == 0 {
            return Err(StoreError::UserExists(norm));
        }
        self.log_change(conn, &norm)
    }

    /// Records that `aor`'s user, list or privacy changed, trimming old entries.
    fn log_change(&self, conn: &Connection, aor: &str) -> Result<()> {
        conn.prepare_cached("INSERT INTO changes (aor) VALUES (?1)")?
            .execute(params![aor])?;
        let rev = conn.last_insert_rowid();
        if rev % 100 == 0 {
            conn.execute(
                "DELETE FROM changes WHERE rev <= ?1",
                params![rev - CHANGES_KEPT],
            )?;
        }
        Ok(())
    }

    /// Runs `f` in a transaction and logs a change of `owner`.
    fn change<T>(&self, owner: &str, f: impl FnOnce(&Connection, &str) -> Result<T>) -> Result<T> {
        let conn = self.conn();
        let owner = normalize_aor(owner)?;
        let tx = conn.unchecked_transaction()?;
        let out = f(&tx, &owner)?;
        self.log_change(&tx, &owner)?;
        tx.commit()?;
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn handle(&self) -> Option<Box<dyn Store>> {
        Some(Box::new(Self {
            conn: self.conn.clone(),
        }))
    }

    fn describe(&self) -> String {
        let conn = self.conn();
        match conn.path() {
            Some(p) if !p.is_empty() => format!("SQLite {p}"),
            _ => "SQLite in memory".into(),
        }
    }

    fn add_user(&self, aor: &str, password: &str, pool: Option<&str>) -> Result<()> {
        self.add_user_on(&self.conn(), aor, password, pool)
    }

    fn import_users(&self, users: &[(String, String)], pool: Option<&str>) -> Result<usize> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        let mut added = 0;
        for (aor, password) in users {
            match self.add_user_on(&tx, aor, password, pool) {
                Ok(()) => added += 1,
                Err(StoreError::UserExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        tx.commit()?;
        Ok(added)
    }

    fn set_home_pool(&self, aor: &str, pool: &str) -> Result<()> {
        self.change(aor, |tx, aor| {
            let n = tx.execute(
                "UPDATE users SET pool = ?2 WHERE aor = ?1",
                params![aor, pool],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchUser(aor.to_owned()));
            }
            for table in ["bindings", "soft_state"] {
                tx.execute(&format!("DELETE FROM {table} WHERE aor = ?1"), params![aor])?;
            }
            Ok(())
        })
    }

    fn set_access(&self, aor: &str, access: crate::Access) -> Result<()> {
        self.change(aor, |tx, aor| {
            let n = tx.execute(
                "UPDATE users SET remote_access = ?2, federation = ?3 WHERE aor = ?1",
                params![aor, access.remote, access.federation],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchUser(aor.to_owned()));
            }
            Ok(())
        })
    }

    fn set_telephony(&self, aor: &str, voice: &crate::Telephony) -> Result<()> {
        self.change(aor, |tx, aor| {
            if let Some(uri) = &voice.line_uri {
                let holder: Option<String> = tx
                    .query_row(
                        "SELECT aor FROM users WHERE line_uri = ?1 AND aor <> ?2",
                        params![uri, aor],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(holder) = holder {
                    return Err(StoreError::NumberTaken {
                        number: uri.clone(),
                        holder,
                    });
                }
            }
            let n = tx.execute(
                "UPDATE users SET line_uri = ?2, voice = ?3, voice_policy = ?4, dial_plan = ?5, forwarding = ?6 WHERE aor = ?1",
                params![aor, voice.line_uri, voice.enabled, voice.voice_policy, voice.dial_plan, voice.forwarding],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchUser(aor.to_owned()));
            }
            Ok(())
        })
    }

    fn number_owner(&self, line_uri: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT aor FROM users WHERE line_uri = ?1")?;
        Ok(st.query_row(params![line_uri], |r| r.get(0)).optional()?)
    }

    fn users_in_pool(&self, pool: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached("SELECT aor FROM users WHERE pool = ?1 ORDER BY aor")?;
        let rows = st.query_map(params![pool], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn home_unhomed(&self, pool: &str) -> Result<usize> {
        let conn = self.conn();
        Ok(conn.execute(
            "UPDATE users SET pool = ?1 WHERE pool IS NULL",
            params![pool],
        )?)
    }

    fn set_password(&self, aor: &str, password: &str) -> Result<()> {
        let norm = normalize_aor(aor)?;
        let (_, md5, sha) = hashes(&norm, password)?;
        // logged, so that running servers drop the hashes they keep in memory
        self.change(&norm, |tx, aor| {
            let n = tx.execute(
                "UPDATE users SET ha1_md5 = ?2, ha1_sha256 = ?3 WHERE aor = ?1",
                params![aor, md5, sha],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchUser(aor.to_owned()));
            }
            Ok(())
        })
    }

    fn remove_user(&self, aor: &str) -> Result<()> {
        let conn = self.conn();
        let norm = normalize_aor(aor)?;
        let tx = conn.unchecked_transaction()?;
        let n = tx.execute("DELETE FROM users WHERE aor = ?1", params![norm])?;
        for table in ["bindings", "soft_state"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE aor = ?1"),
                params![norm],
            )?;
        }
        for table in ["contacts", "contact_groups", "privacy", "blocked"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE owner = ?1"),
                params![norm],
            )?;
        }
        self.log_change(&tx, &norm)?;
        tx.commit()?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(norm));
        }
        Ok(())
    }

    fn user(&self, aor: &str) -> Result<Option<User>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT aor, realm, ha1_md5, ha1_sha256, pool, remote_access, federation, line_uri, voice, voice_policy, dial_plan, forwarding FROM users WHERE aor = ?1",
        )?;
        Ok(st
            .query_row(params![aor], |r| {
                Ok(User {
                    aor: r.get(0)?,
                    realm: r.get(1)?,
                    ha1_md5: r.get(2)?,
                    ha1_sha256: r.get(3)?,
                    pool: r.get(4)?,
                    access: crate::Access {
                        remote: r.get(5)?,
                        federation: r.get(6)?,
                    },
                    voice: crate::Telephony {
                        line_uri: r.get(7)?,
                        enabled: r.get(8)?,
                        voice_policy: r.get(9)?,
                        dial_plan: r.get(10)?,
                        forwarding: r.get(11)?,
                    },
                })
            })
            .optional()?)
    }

    fn list_users(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut st = conn.prepare("SELECT aor FROM users ORDER BY aor")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn save_binding(&self, b: &Binding) -> Result<()> {
        let conn = self.conn();
        save_binding(&conn, b)
    }

    fn save_bindings(&self, bs: &[Binding]) -> Result<()> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        for b in bs {
            save_binding(&tx, b)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn remove_binding(&self, aor: &str, key: &str) -> Result<()> {
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM bindings WHERE aor = ?1 AND key = ?2")?
            .execute(params![aor, key])?;
        Ok(())
    }

    fn bindings(&self, now: i64, aor: Option<&str>) -> Result<Vec<Binding>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT aor, key, contact, params, expires_at, call_id, cseq, path, transport, source, outbound, server
             FROM bindings WHERE expires_at > ?1 AND (?2 IS NULL OR aor = ?2)",
        )?;
        let rows = st.query_map(params![now, aor], |r| {
            Ok(Binding {
                aor: r.get(0)?,
                key: r.get(1)?,
                contact: r.get(2)?,
                params: r.get(3)?,
                expires_at: r.get(4)?,
                call_id: r.get(5)?,
                cseq: r.get(6)?,
                path: split_path(&r.get::<_, String>(7)?),
                transport: r.get(8)?,
                source: r.get(9)?,
                outbound: r.get(10)?,
                server: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        let conn = self.conn();
        match value {
            Some(v) => conn.execute(
                "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)",
                params![name, v],
            )?,
            None => conn.execute("DELETE FROM settings WHERE name = ?1", params![name])?,
        };
        Ok(())
    }

    fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT name, value FROM settings WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )?;
        let rows = st.query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn shared_setting(&self, name: &str, candidate: &str) -> Result<String> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)",
            params![name, candidate],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM settings WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?)
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM soft_state WHERE expires_at <= ?1")?
            .execute(params![now])?;
        let purged = conn
            .prepare_cached("DELETE FROM bindings WHERE expires_at <= ?1")?
            .execute(params![now])?;
        Ok(purged)
    }

    fn contacts(&self, owner: &str) -> Result<Vec<ContactEntry>> {
        let conn = self.conn();
        let owner = normalize_aor(owner)?;
        let mut st = conn
            .prepare_cached("SELECT contact, grp FROM contacts WHERE owner = ?1 ORDER BY rowid")?;
        let rows = st.query_map(params![owner], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(group_contacts(rows.collect::<rusqlite::Result<Vec<_>>>()?))
    }

    fn add_contact(&self, owner: &str, contact: &str, group: Option<&str>) -> Result<()> {
        let contact = normalize_aor(contact)?;
        self.change(owner, |tx, owner| {
            if contact == owner {
                return Err(StoreError::Invalid(
                    "a user cannot be on its own contact list".into(),
                ));
            }
            match group {
                Some(g) => {
                    let g = check_group(g)?;
                    tx.execute(
                        "INSERT OR IGNORE INTO contact_groups (owner, name) VALUES (?1, ?2)",
                        params![owner, g],
                    )?;
                    tx.execute(
                        "DELETE FROM contacts WHERE owner = ?1 AND contact = ?2 AND grp = ''",
                        params![owner, contact],
                    )?;
                    tx.execute(
                        "INSERT OR IGNORE INTO contacts (owner, contact, grp) VALUES (?1, ?2, ?3)",
                        params![owner, contact, g],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO contacts (owner, contact, grp)
                         SELECT ?1, ?2, '' WHERE NOT EXISTS
                           (SELECT 1 FROM contacts WHERE owner = ?1 AND contact = ?2)",
                        params![owner, contact],
                    )?;
                }
            }
            Ok(())
        })
    }

    fn remove_contact(&self, owner: &str, contact: &str) -> Result<bool> {
        let contact = normalize_aor(contact)?;
        self.change(owner, |tx, owner| {
            Ok(tx.execute(
                "DELETE FROM contacts WHERE owner = ?1 AND contact = ?2",
                params![owner, contact],
            )? > 0)
        })
    }

    fn groups(&self, owner: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let owner = normalize_aor(owner)?;
        let mut st =
            conn.prepare_cached("SELECT name FROM contact_groups WHERE owner = ?1 ORDER BY name")?;
        let rows = st.query_map(params![owner], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn add_group(&self, owner: &str, group: &str) -> Result<()> {
        let g = check_group(group)?;
        self.change(owner, |tx, owner| {
            tx.execute(
                "INSERT OR IGNORE INTO contact_groups (owner, name) VALUES (?1, ?2)",
                params![owner, g],
            )?;
            Ok(())
        })
    }

    fn remove_group(&self, owner: &str, group: &str) -> Result<bool> {
        self.change(owner, |tx, owner| {
            let n = tx.execute(
                "DELETE FROM contact_groups WHERE owner = ?1 AND name = ?2",
                params![owner, group],
            )?;
            // members of only this group stay on the list, ungrouped
            tx.execute(
                "UPDATE contacts SET grp = '' WHERE owner = ?1 AND grp = ?2 AND NOT EXISTS
                   (SELECT 1 FROM contacts c WHERE c.owner = ?1 AND c.contact = contacts.contact
                    AND c.grp <> ?2)",
                params![owner, group],
            )?;
            tx.execute(
                "DELETE FROM contacts WHERE owner = ?1 AND grp = ?2",
                params![owner, group],
            )?;
            Ok(n > 0)
        })
    }

    fn privacy(&self, owner: &str) -> Result<Privacy> {
        let conn = self.conn();
        let owner = normalize_aor(owner)?;
        let visibility: Option<String> = conn
            .prepare_cached("SELECT visibility FROM privacy WHERE owner = ?1")?
            .query_row(params![owner], |r| r.get(0))
            .optional()?;
        let mut st =
            conn.prepare_cached("SELECT watcher FROM blocked WHERE owner = ?1 ORDER BY watcher")?;
        let blocked = st
            .query_map(params![owner], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Privacy {
            visibility: if visibility.as_deref() == Some("contacts") {
                Visibility::Contacts
            } else {
                Visibility::Everyone
            },
            blocked,
        })
    }

    fn set_visibility(&self, owner: &str, visibility: Visibility) -> Result<()> {
        self.change(owner, |tx, owner| {
            tx.execute(
                "INSERT OR REPLACE INTO privacy (owner, visibility) VALUES (?1, ?2)",
                params![owner, visibility.name()],
            )?;
            Ok(())
        })
    }

    fn set_blocked(&self, owner: &str, watcher: &str, blocked: bool) -> Result<()> {
        let watcher = normalize_aor(watcher)?;
        self.change(owner, |tx, owner| {
            let sql = if blocked {
                "INSERT OR IGNORE INTO blocked (owner, watcher) VALUES (?1, ?2)"
            } else {
                "DELETE FROM blocked WHERE owner = ?1 AND watcher = ?2"
            };
            tx.execute(sql, params![owner, watcher])?;
            Ok(())
        })
    }

    fn changes_since(&self, rev: i64) -> Result<(i64, Vec<String>)> {
        let conn = self.conn();
        let mut st =
            conn.prepare_cached("SELECT rev, aor FROM changes WHERE rev > ?1 ORDER BY rev")?;
        let rows = st.query_map(params![rev], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(fold_changes(
            rev,
            rows.collect::<rusqlite::Result<Vec<_>>>()?,
        ))
    }

    fn save_state(
        &self,
        kind: &str,
        key: &str,
        aor: &str,
        expires_at: i64,
        data: &str,
    ) -> Result<()> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT OR REPLACE INTO soft_state (kind, key, aor, expires_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![kind, key, aor, expires_at, data])?;
        Ok(())
    }

    fn remove_state(&self, kind: &str, key: &str) -> Result<()> {
        let conn = self.conn();
        conn.prepare_cached("DELETE FROM soft_state WHERE kind = ?1 AND key = ?2")?
            .execute(params![kind, key])?;
        Ok(())
    }

    fn states(&self, kind: &str, now: i64, aor: Option<&str>) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(
            "SELECT key, data FROM soft_state WHERE kind = ?1 AND expires_at > ?2
             AND (?3 IS NULL OR aor = ?3) ORDER BY rowid",
        )?;
        let rows = st.query_map(params![kind, now, aor], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn note_change(&self, aor: &str) -> Result<()> {
        let conn = self.conn();
        self.log_change(&conn, aor)
    }
}

/// Inserts or updates one binding.
fn save_binding(conn: &Connection, b: &Binding) -> Result<()> {
    // an upsert rewrites a refreshed binding in place; INSERT OR REPLACE would delete it
    // and append it under a new rowid, touching about twice as many pages
    let mut st = conn.prepare_cached(
        "INSERT INTO bindings (aor, key, contact, params, expires_at, call_id, cseq, path, transport, source, outbound, server)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (aor, key) DO UPDATE SET contact = excluded.contact,
           params = excluded.params, expires_at = excluded.expires_at,
           call_id = excluded.call_id, cseq = excluded.cseq, path = excluded.path,
           transport = excluded.transport, source = excluded.source,
           outbound = excluded.outbound, server = excluded.server",
    )?;
    st.execute(params![
        b.aor,
        b.key,
        b.contact,
        b.params,
        b.expires_at,
        b.call_id,
        b.cseq,
        b.path.join("\n"),
        b.transport,
        b.source,
        b.outbound,
        b.server
    ])?;
    Ok(())
}
