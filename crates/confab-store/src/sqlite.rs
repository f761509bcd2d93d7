//! The embedded SQLite store. WAL mode and a busy timeout let `confab user ...` write while the
//! server runs; the server sees a new user at its next lookup.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use sip_auth::{ha1, Algorithm};

use crate::{
    normalize_aor, Binding, ContactEntry, Privacy, Result, Store, StoreError, User, Visibility,
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
];

/// How many change-log entries are kept (a server polls every few seconds).
const CHANGES_KEPT: i64 = 10_000;

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
        let owner = normalize_aor(owner)?;
        let tx = self.conn.unchecked_transaction()?;
        let out = f(&tx, &owner)?;
        self.log_change(&tx, &owner)?;
        tx.commit()?;
        Ok(out)
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
        self.log_change(&self.conn, &norm)
    }

    fn import_users(&self, users: &[(String, String)]) -> Result<usize> {
        let tx = self.conn.unchecked_transaction()?;
        let mut added = 0;
        for (aor, password) in users {
            match self.add_user(aor, password) {
                Ok(()) => added += 1,
                Err(StoreError::UserExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        tx.commit()?;
        Ok(added)
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
        self.conn
            .prepare_cached("DELETE FROM soft_state WHERE expires_at <= ?1")?
            .execute(params![now])?;
        Ok(self
            .conn
            .prepare_cached("DELETE FROM bindings WHERE expires_at <= ?1")?
            .execute(params![now])?)
    }

    fn contacts(&self, owner: &str) -> Result<Vec<ContactEntry>> {
        let owner = normalize_aor(owner)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT contact, grp FROM contacts WHERE owner = ?1 ORDER BY rowid")?;
        let rows = st.query_map(params![owner], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out: Vec<ContactEntry> = Vec::new();
        for row in rows {
            let (aor, grp) = row?;
            let i = match out.iter().position(|c| c.aor == aor) {
                Some(i) => i,
                None => {
                    out.push(ContactEntry {
                        aor,
                        groups: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            if !grp.is_empty() {
                out[i].groups.push(grp);
                out[i].groups.sort();
            }
        }
        Ok(out)
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
        let owner = normalize_aor(owner)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT name FROM contact_groups WHERE owner = ?1 ORDER BY name")?;
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
        let owner = normalize_aor(owner)?;
        let visibility: Option<String> = self
            .conn
            .prepare_cached("SELECT visibility FROM privacy WHERE owner = ?1")?
            .query_row(params![owner], |r| r.get(0))
            .optional()?;
        let mut st = self
            .conn
            .prepare_cached("SELECT watcher FROM blocked WHERE owner = ?1 ORDER BY watcher")?;
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
        let mut st = self
            .conn
            .prepare_cached("SELECT rev, aor FROM changes WHERE rev > ?1 ORDER BY rev")?;
        let mut newest = rev;
        let mut aors: Vec<String> = Vec::new();
        for row in st.query_map(params![rev], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })? {
            let (r, aor) = row?;
            newest = newest.max(r);
            if !aors.contains(&aor) {
                aors.push(aor);
            }
        }
        Ok((newest, aors))
    }

    fn save_state(
        &self,
        kind: &str,
        key: &str,
        aor: &str,
        expires_at: i64,
        data: &str,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO soft_state (kind, key, aor, expires_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![kind, key, aor, expires_at, data])?;
        Ok(())
    }

    fn remove_state(&self, kind: &str, key: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM soft_state WHERE kind = ?1 AND key = ?2")?
            .execute(params![kind, key])?;
        Ok(())
    }

    fn states(&self, kind: &str, now: i64) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT key, data FROM soft_state WHERE kind = ?1 AND expires_at > ?2 ORDER BY rowid",
        )?;
        let rows = st.query_map(params![kind, now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A group name: printable, at most 64 characters.
fn check_group(g: &str) -> Result<&str> {
    let g = g.trim();
    if g.is_empty() || g.chars().count() > 64 || g.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "'{g}' is not a group name (1 to 64 printable characters)"
        )));
    }
    Ok(g)
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
    fn importing_users_is_all_or_nothing_and_keeps_existing_passwords() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user("alice@example.com", "s3cret").unwrap();
        let u = s.user("alice@example.com").unwrap().unwrap();
        let batch = [("alice@example.com", "other"), ("bob@example.com", "b0b")]
            .map(|(a, p)| (a.to_owned(), p.to_owned()));
        assert_eq!(s.import_users(&batch).unwrap(), 1, "alice existed already");
        let alice = s.user("alice@example.com").unwrap().unwrap();
        assert_eq!(
            alice.ha1_md5, u.ha1_md5,
            "import keeps an existing password"
        );
        assert!(s.user("bob@example.com").unwrap().is_some());
        let bad = [("carol@example.com", "c"), ("no-domain", "x")]
            .map(|(a, p)| (a.to_owned(), p.to_owned()));
        assert!(s.import_users(&bad).is_err());
        assert!(
            s.user("carol@example.com").unwrap().is_none(),
            "all or none"
        );
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
    fn contact_lists_groups_and_privacy_are_kept_and_logged() {
        let s = SqliteStore::in_memory().unwrap();
        let (rev0, _) = s.changes_since(0).unwrap();
        s.add_contact("alice@example.com", "bob@example.com", None)
            .unwrap();
        s.add_contact("alice@example.com", "carol@example.com", Some("Team"))
            .unwrap();
        s.add_contact("alice@example.com", "bob@example.com", Some("Friends"))
            .unwrap();
        s.add_contact("alice@example.com", "bob@example.com", Some("Team"))
            .unwrap();
        let list = s.contacts("alice@example.com").unwrap();
        assert_eq!(
            list,
            vec![
                ContactEntry {
                    aor: "carol@example.com".into(),
                    groups: vec!["Team".into()]
                },
                ContactEntry {
                    aor: "bob@example.com".into(),
                    groups: vec!["Friends".into(), "Team".into()]
                },
            ]
        );
        assert_eq!(s.groups("alice@example.com").unwrap(), ["Friends", "Team"]);
        assert!(s.remove_group("alice@example.com", "Team").unwrap());
        let list = s.contacts("alice@example.com").unwrap();
        assert_eq!(list.len(), 2, "{list:?}");
        assert!(list
            .iter()
            .any(|c| c.aor == "carol@example.com" && c.groups.is_empty()));
        assert!(s
            .add_contact("alice@example.com", "alice@example.com", None)
            .is_err());
        assert!(s
            .remove_contact("alice@example.com", "bob@example.com")
            .unwrap());
        assert!(!s
            .remove_contact("alice@example.com", "bob@example.com")
            .unwrap());

        assert_eq!(s.privacy("bob@example.com").unwrap(), Privacy::default());
        s.set_visibility("bob@example.com", Visibility::Contacts)
            .unwrap();
        s.set_blocked("bob@example.com", "mallory@example.com", true)
            .unwrap();
        let p = s.privacy("bob@example.com").unwrap();
        assert_eq!(p.visibility, Visibility::Contacts);
        assert_eq!(p.blocked, ["mallory@example.com"]);
        s.set_blocked("bob@example.com", "mallory@example.com", false)
            .unwrap();
        assert!(s.privacy("bob@example.com").unwrap().blocked.is_empty());

        let (rev, changed) = s.changes_since(rev0).unwrap();
        assert!(rev > rev0);
        assert_eq!(changed, ["alice@example.com", "bob@example.com"]);
        assert_eq!(s.changes_since(rev).unwrap(), (rev, Vec::new()));
    }

    #[test]
    fn removing_a_user_removes_everything_of_it() {
        let s = SqliteStore::in_memory().unwrap();
        s.add_user("alice@example.com", "pw").unwrap();
        s.add_contact("alice@example.com", "bob@example.com", Some("G"))
            .unwrap();
        s.set_blocked("alice@example.com", "eve@example.com", true)
            .unwrap();
        s.save_state("pub", "e1", "alice@example.com", i64::MAX, "{}")
            .unwrap();
        s.remove_user("alice@example.com").unwrap();
        assert!(s.contacts("alice@example.com").unwrap().is_empty());
        assert!(s.groups("alice@example.com").unwrap().is_empty());
        assert_eq!(s.privacy("alice@example.com").unwrap(), Privacy::default());
        assert!(s.states("pub", 0).unwrap().is_empty());
    }

    #[test]
    fn soft_state_expires() {
        let s = SqliteStore::in_memory().unwrap();
        s.save_state("sub", "1", "a@example.com", 100, "one")
            .unwrap();
        s.save_state("sub", "2", "a@example.com", 200, "two")
            .unwrap();
        s.save_state("pub", "x", "a@example.com", 200, "p").unwrap();
        assert_eq!(s.states("sub", 150).unwrap(), [("2".into(), "two".into())]);
        s.purge_expired(150).unwrap();
        assert_eq!(s.states("sub", 0).unwrap().len(), 1);
        s.remove_state("sub", "2").unwrap();
        assert!(s.states("sub", 0).unwrap().is_empty());
        assert_eq!(s.states("pub", 0).unwrap().len(), 1);
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
