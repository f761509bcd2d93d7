//! The embedded SQLite store. WAL mode and a busy timeout let `confab user ...` write while the
//! server runs; the server sees a new user at its next lookup.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use sip_auth::{ha1, Algorithm};

use crate::{normalize_aor, Binding, Result, Store, StoreError, User};

const MIGRATIONS: &[&str] = &["CREATE TABLE users (
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
    CREATE INDEX bindings_expiry ON bindings (expires_at);"];

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
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

    fn init(conn: Connection) -> Result<Self> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))?;
        }
        Ok(Self { conn })
    }

    fn hashes(aor: &str, password: &str) -> Result<(String, String, String)> {
        let aor = normalize_aor(aor)?;
        let (user, realm) = aor.split_once('@').expect("normalized");
        Ok((
            realm.to_owned(),
            ha1(Algorithm::Md5, user, realm, password),
            ha1(Algorithm::Sha256, user, realm, password),
        ))
    }
}

impl Store for SqliteStore {
    fn add_user(&self, aor: &str, password: &str) -> Result<()> {
        let norm = normalize_aor(aor)?;
        let (realm, md5, sha) = Self::hashes(&norm, password)?;
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO users (aor, realm, ha1_md5, ha1_sha256) VALUES (?1, ?2, ?3, ?4)",
            params![norm, realm, md5, sha],
        )?;
        if n == 0 {
            return Err(StoreError::UserExists(norm));
        }
        Ok(())
    }

    fn set_password(&self, aor: &str, password: &str) -> Result<()> {
        let norm = normalize_aor(aor)?;
        let (_, md5, sha) = Self::hashes(&norm, password)?;
        let n = self.conn.execute(
            "UPDATE users SET ha1_md5 = ?2, ha1_sha256 = ?3 WHERE aor = ?1",
            params![norm, md5, sha],
        )?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(norm));
        }
        Ok(())
    }

    fn remove_user(&self, aor: &str) -> Result<()> {
        let norm = normalize_aor(aor)?;
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute("DELETE FROM users WHERE aor = ?1", params![norm])?;
        tx.execute("DELETE FROM bindings WHERE aor = ?1", params![norm])?;
        tx.commit()?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(norm));
        }
        Ok(())
    }

    fn user(&self, aor: &str) -> Result<Option<User>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT aor, realm, ha1_md5, ha1_sha256 FROM users WHERE aor = ?1")?;
        Ok(st
            .query_row(params![aor], |r| {
                Ok(User {
                    aor: r.get(0)?,
                    realm: r.get(1)?,
                    ha1_md5: r.get(2)?,
                    ha1_sha256: r.get(3)?,
                })
            })
            .optional()?)
    }

    fn list_users(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT aor FROM users ORDER BY aor")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn save_binding(&self, b: &Binding) -> Result<()> {
        let mut st = self.conn.prepare_cached(
            "INSERT OR REPLACE INTO bindings (aor, key, contact, params, expires_at, call_id, cseq, path, transport, source, outbound)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            b.outbound
        ])?;
        Ok(())
    }

    fn remove_binding(&self, aor: &str, key: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM bindings WHERE aor = ?1 AND key = ?2")?
            .execute(params![aor, key])?;
        Ok(())
    }

    fn bindings(&self, now: i64) -> Result<Vec<Binding>> {
        let mut st = self.conn.prepare(
            "SELECT aor, key, contact, params, expires_at, call_id, cseq, path, transport, source, outbound
             FROM bindings WHERE expires_at > ?1",
        )?;
        let rows = st.query_map(params![now], |r| {
            let path: String = r.get(7)?;
            Ok(Binding {
                aor: r.get(0)?,
                key: r.get(1)?,
                contact: r.get(2)?,
                params: r.get(3)?,
                expires_at: r.get(4)?,
                call_id: r.get(5)?,
                cseq: r.get(6)?,
                path: if path.is_empty() {
                    Vec::new()
                } else {
                    path.split('\n').map(str::to_owned).collect()
                },
                transport: r.get(8)?,
                source: r.get(9)?,
                outbound: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM bindings WHERE expires_at <= ?1", params![now])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(key: &str, expires_at: i64) -> Binding {
        Binding {
            aor: "alice@example.com".into(),
            key: key.into(),
            contact: format!("sip:alice@{key}"),
            params: String::new(),
            expires_at,
            call_id: "c".into(),
            cseq: 1,
            path: vec!["<sip:edge;lr>".into(), "<sip:dir;lr>".into()],
            transport: "udp".into(),
            source: "127.0.0.1:5062".into(),
            outbound: false,
        }
    }

    #[test]
    fn users_keep_hashes_never_passwords() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user("alice@Example.COM", "s3cret").unwrap();
        let u = s.user("alice@example.com").unwrap().unwrap();
        assert_eq!(u.realm, "example.com");
        assert_eq!(
            u.ha1_md5,
            ha1(Algorithm::Md5, "alice", "example.com", "s3cret")
        );
        assert!(!u.ha1_md5.contains("s3cret") && !u.ha1_sha256.contains("s3cret"));
        assert!(matches!(
            s.add_user("alice@example.com", "x"),
            Err(StoreError::UserExists(_))
        ));
        s.set_password("alice@example.com", "new").unwrap();
        assert_ne!(
            s.user("alice@example.com").unwrap().unwrap().ha1_md5,
            u.ha1_md5
        );
        assert_eq!(s.list_users().unwrap(), vec!["alice@example.com"]);
        s.remove_user("alice@example.com").unwrap();
        assert!(s.user("alice@example.com").unwrap().is_none());
        assert!(matches!(
            s.remove_user("alice@example.com"),
            Err(StoreError::NoSuchUser(_))
        ));
        assert!(matches!(
            s.add_user("nodomain", "x"),
            Err(StoreError::BadAddress(_))
        ));
    }

    #[test]
    fn bindings_round_trip_and_expire() {
        let s = SqliteStore::in_memory().unwrap();
        s.save_binding(&binding("h1", 100)).unwrap();
        s.save_binding(&binding("h2", 200)).unwrap();
        assert_eq!(s.bindings(50).unwrap().len(), 2);
        assert_eq!(s.bindings(150).unwrap(), vec![binding("h2", 200)]);
        assert_eq!(s.purge_expired(150).unwrap(), 1);
        s.remove_binding("alice@example.com", "h2").unwrap();
        assert!(s.bindings(0).unwrap().is_empty());
    }

    #[test]
    fn data_survives_reopening_the_file() {
        let dir = std::env::temp_dir().join(format!("confab-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("confab.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.add_user("bob@example.com", "pw").unwrap();
            s.save_binding(&binding("h1", i64::MAX)).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert!(s.user("bob@example.com").unwrap().is_some());
        assert_eq!(s.bindings(0).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
