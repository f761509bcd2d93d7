//! The PostgreSQL store: the shared back end of a pool, where several servers (and the CLI) use
//! one database.
//!
//! [`Store`] is synchronous and the engine calls it from a tokio task, where the blocking
//! `postgres` client may not run its own runtime. So one thread per store owns the connection
//! and runs queries sent to it as closures; a caller waits for the answer at most
//! [`ANSWER_WITHIN`]. A lost connection makes calls fail with [`StoreError::Unavailable`]
//! (the engine answers 503 with Retry-After) and is re-opened by the next call, at most once a
//! second, so service resumes by itself when the database returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement};

use crate::{
    check_group, fold_changes, group_contacts, hashes, normalize_aor, split_path, Binding,
    ContactEntry, Privacy, Result, Store, StoreError, User, Visibility,
};

/// Schema versions, applied in order under an advisory lock (servers of a pool may start at
/// once).
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
        expires_at BIGINT NOT NULL,
        call_id TEXT NOT NULL,
        cseq BIGINT NOT NULL,
        path TEXT NOT NULL,
        transport TEXT NOT NULL,
        source TEXT NOT NULL,
        outbound BOOLEAN NOT NULL,
        PRIMARY KEY (aor, key)
    );
    CREATE INDEX bindings_expiry ON bindings (expires_at);
    CREATE TABLE contacts (
        id BIGSERIAL,
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
    CREATE SEQUENCE soft_state_seq;
    CREATE TABLE soft_state (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        aor TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        data TEXT NOT NULL,
        seq BIGINT NOT NULL DEFAULT nextval('soft_state_seq'),
        PRIMARY KEY (kind, key)
    );
    CREATE INDEX soft_state_expiry ON soft_state (expires_at);
    CREATE TABLE changes (
        rev BIGSERIAL PRIMARY KEY,
        aor TEXT NOT NULL
    );",
    "ALTER TABLE users ADD COLUMN pool TEXT;",
    "ALTER TABLE bindings ADD COLUMN server TEXT NOT NULL DEFAULT '';
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);",
    "ALTER TABLE users ADD COLUMN remote_access BOOLEAN;
    ALTER TABLE users ADD COLUMN federation BOOLEAN;",
    "ALTER TABLE users ADD COLUMN line_uri TEXT;
    ALTER TABLE users ADD COLUMN voice BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE users ADD COLUMN voice_policy TEXT;
    ALTER TABLE users ADD COLUMN dial_plan TEXT;
    CREATE UNIQUE INDEX users_line_uri ON users (line_uri);",
    "ALTER TABLE users ADD COLUMN forwarding TEXT;",
];

/// How long a caller waits for the database before answering "unavailable".
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// How long connecting may take (less than [`ANSWER_WITHIN`], so the caller hears why).
const CONNECT_WITHIN: Duration = Duration::from_secs(3);
/// How often a lost connection is tried again (calls in between fail at once).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// How many change-log entries are kept (servers poll every few seconds).
const CHANGES_KEPT: i64 = 10_000;
/// Any number: the advisory lock key that serialises schema migrations.
const MIGRATION_LOCK: i64 = 0x0c0f_ab00;

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// PostgreSQL-backed [`Store`]. Cheap to share between threads; every call is a round trip to
/// the store's connection thread.
#[derive(Debug)]
pub struct PgStore {
    jobs: mpsc::Sender<Job>,
    /// Since when the connection thread has been busy with one call (see [`Busy`]).
    busy: Arc<Busy>,
    /// `host:port/dbname`, for messages (never the password).
    target: String,
}

#[derive(Debug)]
/// When the connection thread started the call it is still making: milliseconds since
/// `epoch`, 0 when idle.
struct Busy {
    epoch: Instant,
    since: AtomicU64,
}

impl Busy {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            since: AtomicU64::new(0),
        }
    }
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
    fn start(&self) {
        self.since.store(self.now_ms(), Ordering::Relaxed);
    }
    fn stop(&self) {
        self.since.store(0, Ordering::Relaxed);
    }
    /// One call has been running for longer than a caller waits.
    fn stuck(&self) -> bool {
        let since = self.since.load(Ordering::Relaxed);
        let limit = u64::try_from(ANSWER_WITHIN.as_millis()).unwrap_or(u64::MAX);
        since != 0 && self.now_ms().saturating_sub(since) > limit
    }
}

/// The connection thread's state.
struct Session {
    config: Config,
    target: String,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    last_attempt: Option<Instant>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/dbname[?options]`), brings the
    /// schema up to date, and starts the connection thread. Fails when the database cannot be
    /// reached now.
    pub fn open(url: &str) -> Result<Self> {
        let mut config: Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "'{}' is not a PostgreSQL URL ({e}); expected postgres://USER@HOST:PORT/DATABASE",
                redact(url)
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_WITHIN);
        }
        config.tcp_user_timeout(ANSWER_WITHIN);
        config.keepalives_idle(Duration::from_secs(10));
        let target = describe(&config);
        let mut session = Session {
            config,
            target: target.clone(),
            client: None,
            statements: HashMap::new(),
            last_attempt: None,
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        let busy = Arc::new(Busy::new());
        let marks = busy.clone();
        std::thread::Builder::new()
            .name("confab-postgres".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    marks.start();
                    job(&mut session);
                    marks.stop();
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start a thread: {e}")))?;
        let store = Self { jobs, busy, target };
        // even the first connection is made on the store's thread: `open` may be called
        // from async code, where the blocking client cannot run
        store.call(Session::migrate)?;
        Ok(store)
    }

    /// Runs `f` on the connection thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.busy.stuck() {
            // a database that hangs (frozen, or a network that drops without a reset) holds
            // the connection thread; every call queued behind it would wait its full time in
            // turn, so calls fail at once until the hung one returns
            return Err(StoreError::Unavailable(format!(
                "{} has not answered for over {} s",
                self.target,
                ANSWER_WITHIN.as_secs()
            )));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |s| {
            let out = f(s);
            if let Err(e) = &out {
                if e.is_unavailable() {
                    s.lost();
                }
            }
            let _ = tx.send(out);
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Unavailable("the database thread stopped".into()))?;
        rx.recv_timeout(ANSWER_WITHIN).map_err(|_| {
            StoreError::Unavailable(format!(
                "{} did not answer within {} s",
                self.target,
                ANSWER_WITHIN.as_secs()
            ))
        })?
    }
}

const SAVE_BINDING: &str = "INSERT INTO bindings (aor, key, contact, params, expires_at, call_id, cseq, path, transport, source, outbound, server)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
     ON CONFLICT (aor, key) DO UPDATE SET contact = EXCLUDED.contact,
       params = EXCLUDED.params, expires_at = EXCLUDED.expires_at,
       call_id = EXCLUDED.call_id, cseq = EXCLUDED.cseq, path = EXCLUDED.path,
       transport = EXCLUDED.transport, source = EXCLUDED.source,
       outbound = EXCLUDED.outbound, server = EXCLUDED.server";

/// [`SAVE_BINDING`]'s parameters, with `path` joined by newlines and `cseq` widened.
fn binding_params<'a>(
    b: &'a Binding,
    path: &'a String,
    cseq: &'a i64,
) -> [&'a (dyn ToSql + Sync); 12] {
    [
        &b.aor,
        &b.key,
        &b.contact,
        &b.params,
        &b.expires_at,
        &b.call_id,
        cseq,
        path,
        &b.transport,
        &b.source,
        &b.outbound,
        &b.server,
    ]
}

impl Session {
    /// The open connection, opening it when there is none (at most once per
    /// [`RECONNECT_EVERY`]).
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.lost();
        }
        if self.client.is_none() {
            if let Some(t) = self.last_attempt {
                if t.elapsed() < RECONNECT_EVERY {
                    return Err(StoreError::Unavailable(format!(
                        "{} is not reachable (retrying every second)",
                        self.target
                    )));
                }
            }
            self.last_attempt = Some(Instant::now());
            let client = self.config.connect(NoTls).map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to {}: {}", self.target, cause(&e)))
            })?;
            self.last_attempt = None;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    /// Forgets a broken connection (and its prepared statements).
    fn lost(&mut self) {
        self.client = None;
        self.statements.clear();
    }

    fn migrate(&mut self) -> Result<()> {
        let client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);",
        )?;
        let version: i32 = tx
            .query_one("SELECT version FROM schema_version", &[])?
            .try_get(0)?;
        let known = MIGRATIONS.len() as i32;
        if version > known {
            return Err(StoreError::Invalid(format!(
                "the database schema is version {version}, newer than this Confab knows ({known}): upgrade Confab"
            )));
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(m)?;
            tx.execute("UPDATE schema_version SET version = $1", &[&(i as i32 + 1)])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// A statement prepared once per connection.
    fn prepared(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client()?.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let st = self.prepared(sql)?;
        Ok(self.client()?.execute(&st, params)?)
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let st = self.prepared(sql)?;
        Ok(self.client()?.query(&st, params)?)
    }

    /// Runs `f` in a transaction that logs a change of `owner` (see [`Store::changes_since`]).
    fn change<T>(
        &mut self,
        owner: &str,
        f: impl FnOnce(&mut postgres::Transaction<'_>, &str) -> Result<T>,
    ) -> Result<T> {
        let owner = normalize_aor(owner)?;
        let mut tx = self.client()?.transaction()?;
        let out = f(&mut tx, &owner)?;
        log_change(&mut tx, &owner)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Appends `aor` to the change log. The table lock makes revisions commit in order, so a
/// reader that saw revision N has seen every revision below N.
fn log_change(tx: &mut postgres::Transaction<'_>, aor: &str) -> Result<()> {
    tx.batch_execute("LOCK TABLE changes IN EXCLUSIVE MODE")?;
    let rev: i64 = tx
        .query_one(
            "INSERT INTO changes (aor) VALUES ($1) RETURNING rev",
            &[&aor],
        )?
        .try_get(0)?;
    if rev % 100 == 0 {
        tx.execute(
            "DELETE FROM changes WHERE rev <= $1",
            &[&(rev - CHANGES_KEPT)],
        )?;
    }
    Ok(())
}

fn insert_user(
    tx: &mut postgres::Transaction<'_>,
    aor: &str,
    password: &str,
    pool: Option<&str>,
) -> Result<()> {
    let norm = normalize_aor(aor)?;
    let (realm, md5, sha) = hashes(&norm, password)?;
    let n = tx.execute(
        "INSERT INTO users (aor, realm, ha1_md5, ha1_sha256, pool) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
        &[&norm, &realm, &md5, &sha, &pool],
    )?;
    if n == 0 {
        return Err(StoreError::UserExists(norm));
    }
    log_change(tx, &norm)
}

impl Store for PgStore {
    fn worker_handle(&self) -> Option<Box<dyn Store>> {
        // the same connection thread: its jobs queue behind each other, not behind the engine
        self.handle()
    }

    fn handle(&self) -> Option<Box<dyn Store>> {
        Some(Box::new(Self {
            jobs: self.jobs.clone(),
            busy: self.busy.clone(),
            target: self.target.clone(),
        }))
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn add_user(&self, aor: &str, password: &str, pool: Option<&str>) -> Result<()> {
        let (aor, password) = (aor.to_owned(), password.to_owned());
        let pool = pool.map(str::to_owned);
        self.call(move |s| {
            let mut tx = s.client()?.transaction()?;
            insert_user(&mut tx, &aor, &password, pool.as_deref())?;
            Ok(tx.commit()?)
        })
    }

    fn import_users(&self, users: &[(String, String)], pool: Option<&str>) -> Result<usize> {
        let users = users.to_vec();
        let pool = pool.map(str::to_owned);
        self.call(move |s| {
            let mut tx = s.client()?.transaction()?;
            let mut added = 0;
            for (aor, password) in &users {
                match insert_user(&mut tx, aor, password, pool.as_deref()) {
                    Ok(()) => added += 1,
                    Err(StoreError::UserExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            tx.commit()?;
            Ok(added)
        })
    }

    fn set_home_pool(&self, aor: &str, pool: &str) -> Result<()> {
        let (aor, pool) = (aor.to_owned(), pool.to_owned());
        self.call(move |s| {
            s.change(&aor, |tx, aor| {
                let n = tx.execute("UPDATE users SET pool = $2 WHERE aor = $1", &[&aor, &pool])?;
                if n == 0 {
                    return Err(StoreError::NoSuchUser(aor.to_owned()));
                }
                tx.execute("DELETE FROM bindings WHERE aor = $1", &[&aor])?;
                tx.execute("DELETE FROM soft_state WHERE aor = $1", &[&aor])?;
                Ok(())
            })
        })
    }

    fn set_access(&self, aor: &str, access: crate::Access) -> Result<()> {
        let aor = aor.to_owned();
        self.call(move |s| {
            s.change(&aor, |tx, aor| {
                let n = tx.execute(
                    "UPDATE users SET remote_access = $2, federation = $3 WHERE aor = $1",
                    &[&aor, &access.remote, &access.federation],
                )?;
                if n == 0 {
                    return Err(StoreError::NoSuchUser(aor.to_owned()));
                }
                Ok(())
            })
        })
    }

    fn set_telephony(&self, aor: &str, voice: &crate::Telephony) -> Result<()> {
        let (aor, voice) = (aor.to_owned(), voice.clone());
        self.call(move |s| {
            s.change(&aor, |tx, aor| {
                if let Some(uri) = &voice.line_uri {
                    let rows = tx.query(
                        "SELECT aor FROM users WHERE line_uri = $1 AND aor <> $2",
                        &[uri, &aor],
                    )?;
                    if let Some(r) = rows.first() {
                        return Err(StoreError::NumberTaken {
                            number: uri.clone(),
                            holder: r.try_get(0)?,
                        });
                    }
                }
                let n = tx.execute(
                    "UPDATE users SET line_uri = $2, voice = $3, voice_policy = $4, dial_plan = $5, forwarding = $6 WHERE aor = $1",
                    &[&aor, &voice.line_uri, &voice.enabled, &voice.voice_policy, &voice.dial_plan, &voice.forwarding],
                )?;
                if n == 0 {
                    return Err(StoreError::NoSuchUser(aor.to_owned()));
                }
                Ok(())
            })
        })
    }

    fn number_owner(&self, line_uri: &str) -> Result<Option<String>> {
        let uri = line_uri.to_owned();
        self.call(move |s| {
            s.query("SELECT aor FROM users WHERE line_uri = $1", &[&uri])?
                .first()
                .map(|r| Ok(r.try_get(0)?))
                .transpose()
        })
    }

    fn users_in_pool(&self, pool: &str) -> Result<Vec<String>> {
        let pool = pool.to_owned();
        self.call(move |s| {
            strings(&s.query(
                "SELECT aor FROM users WHERE pool = $1 ORDER BY aor",
                &[&pool],
            )?)
        })
    }

    fn home_unhomed(&self, pool: &str) -> Result<usize> {
        let pool = pool.to_owned();
        self.call(move |s| {
            Ok(s.execute("UPDATE users SET pool = $1 WHERE pool IS NULL", &[&pool])? as usize)
        })
    }

    fn set_password(&self, aor: &str, password: &str) -> Result<()> {
        let norm = normalize_aor(aor)?;
        let (_, md5, sha) = hashes(&norm, password)?;
        // logged, so that running servers drop the hashes they keep in memory
        self.call(move |s| {
            s.change(&norm, |tx, aor| {
                let n = tx.execute(
                    "UPDATE users SET ha1_md5 = $2, ha1_sha256 = $3 WHERE aor = $1",
                    &[&aor, &md5, &sha],
                )?;
                if n == 0 {
                    return Err(StoreError::NoSuchUser(aor.to_owned()));
                }
                Ok(())
            })
        })
    }

    fn remove_user(&self, aor: &str) -> Result<()> {
        let norm = normalize_aor(aor)?;
        self.call(move |s| {
            let mut tx = s.client()?.transaction()?;
            let n = tx.execute("DELETE FROM users WHERE aor = $1", &[&norm])?;
            tx.execute("DELETE FROM bindings WHERE aor = $1", &[&norm])?;
            tx.execute("DELETE FROM soft_state WHERE aor = $1", &[&norm])?;
            for table in ["contacts", "contact_groups", "privacy", "blocked"] {
                tx.execute(&format!("DELETE FROM {table} WHERE owner = $1"), &[&norm])?;
            }
            log_change(&mut tx, &norm)?;
            if n == 0 {
                return Err(StoreError::NoSuchUser(norm));
            }
            Ok(tx.commit()?)
        })
    }

    fn user(&self, aor: &str) -> Result<Option<User>> {
        let aor = aor.to_owned();
        self.call(move |s| {
            s.query(
                "SELECT aor, realm, ha1_md5, ha1_sha256, pool, remote_access, federation, line_uri, voice, voice_policy, dial_plan, forwarding FROM users WHERE aor = $1",
                &[&aor],
            )?
            .first()
            .map(|r| {
                Ok(User {
                    aor: r.try_get(0)?,
                    realm: r.try_get(1)?,
                    ha1_md5: r.try_get(2)?,
                    ha1_sha256: r.try_get(3)?,
                    pool: r.try_get(4)?,
                    access: crate::Access {
                        remote: r.try_get(5)?,
                        federation: r.try_get(6)?,
                    },
                    voice: crate::Telephony {
                        line_uri: r.try_get(7)?,
                        enabled: r.try_get(8)?,
                        voice_policy: r.try_get(9)?,
                        dial_plan: r.try_get(10)?,
                        forwarding: r.try_get(11)?,
                    },
                })
            })
            .transpose()
        })
    }

    fn list_users(&self) -> Result<Vec<String>> {
        self.call(|s| strings(&s.query("SELECT aor FROM users ORDER BY aor", &[])?))
    }

    fn save_binding(&self, b: &Binding) -> Result<()> {
        let b = b.clone();
        self.call(move |s| {
            let (path, cseq) = (b.path.join("\n"), i64::from(b.cseq));
            s.execute(SAVE_BINDING, &binding_params(&b, &path, &cseq))?;
            Ok(())
        })
    }

    fn save_bindings(&self, bs: &[Binding]) -> Result<()> {
        let bs = bs.to_vec();
        self.call(move |s| {
            let st = s.prepared(SAVE_BINDING)?;
            let mut tx = s.client()?.transaction()?;
            for b in &bs {
                let (path, cseq) = (b.path.join("\n"), i64::from(b.cseq));
                tx.execute(&st, &binding_params(b, &path, &cseq))?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn remove_binding(&self, aor: &str, key: &str) -> Result<()> {
        let (aor, key) = (aor.to_owned(), key.to_owned());
        self.call(move |s| {
            s.execute(
                "DELETE FROM bindings WHERE aor = $1 AND key = $2",
                &[&aor, &key],
            )?;
            Ok(())
        })
    }

    fn bindings(&self, now: i64, aor: Option<&str>) -> Result<Vec<Binding>> {
        let aor = aor.map(str::to_owned);
        self.call(move |s| {
            s.query(
                "SELECT aor, key, contact, params, expires_at, call_id, cseq, path, transport, source, outbound, server
                 FROM bindings WHERE expires_at > $1 AND ($2::text IS NULL OR aor = $2)",
                &[&now, &aor],
            )?
            .iter()
            .map(|r| {
                let cseq: i64 = r.try_get(6)?;
                Ok(Binding {
                    aor: r.try_get(0)?,
                    key: r.try_get(1)?,
                    contact: r.try_get(2)?,
                    params: r.try_get(3)?,
                    expires_at: r.try_get(4)?,
                    call_id: r.try_get(5)?,
                    cseq: u32::try_from(cseq).unwrap_or(u32::MAX),
                    path: split_path(r.try_get(7)?),
                    transport: r.try_get(8)?,
                    source: r.try_get(9)?,
                    outbound: r.try_get(10)?,
                    server: r.try_get(11)?,
                })
            })
            .collect()
        })
    }

    fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        let (name, value) = (name.to_owned(), value.map(str::to_owned));
        self.call(move |s| {
            match value {
                Some(v) => s.execute(
                    "INSERT INTO settings (name, value) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                    &[&name, &v],
                )?,
                None => s.execute("DELETE FROM settings WHERE name = $1", &[&name])?,
            };
            Ok(())
        })
    }

    fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        let prefix = prefix.to_owned();
        self.call(move |s| {
            s.query(
                "SELECT name, value FROM settings WHERE left(name, length($1)) = $1 ORDER BY name",
                &[&prefix],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn shared_setting(&self, name: &str, candidate: &str) -> Result<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.call(move |s| {
            s.execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&name, &candidate],
            )?;
            s.query("SELECT value FROM settings WHERE name = $1", &[&name])?
                .first()
                .ok_or_else(|| StoreError::Database(format!("setting {name} vanished")))?
                .try_get(0)
                .map_err(Into::into)
        })
    }

    fn purge_expired(&self, now: i64) -> Result<usize> {
        self.call(move |s| {
            s.execute("DELETE FROM soft_state WHERE expires_at <= $1", &[&now])?;
            Ok(s.execute("DELETE FROM bindings WHERE expires_at <= $1", &[&now])? as usize)
        })
    }

    fn contacts(&self, owner: &str) -> Result<Vec<ContactEntry>> {
        let owner = normalize_aor(owner)?;
        self.call(move |s| {
            let rows = s.query(
                "SELECT contact, grp FROM contacts WHERE owner = $1 ORDER BY id",
                &[&owner],
            )?;
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(group_contacts(rows))
        })
    }

    fn add_contact(&self, owner: &str, contact: &str, group: Option<&str>) -> Result<()> {
        let contact = normalize_aor(contact)?;
        let owner = owner.to_owned();
        let group = group.map(check_group).transpose()?.map(str::to_owned);
        self.call(move |s| {
            s.change(&owner, |tx, owner| {
                if contact == owner {
                    return Err(StoreError::Invalid(
                        "a user cannot be on its own contact list".into(),
                    ));
                }
                match &group {
                    Some(g) => {
                        tx.execute(
                            "INSERT INTO contact_groups (owner, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            &[&owner, g],
                        )?;
                        tx.execute(
                            "DELETE FROM contacts WHERE owner = $1 AND contact = $2 AND grp = ''",
                            &[&owner, &contact],
                        )?;
                        tx.execute(
                            "INSERT INTO contacts (owner, contact, grp) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            &[&owner, &contact, g],
                        )?;
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO contacts (owner, contact, grp)
                             SELECT $1, $2, '' WHERE NOT EXISTS
                               (SELECT 1 FROM contacts WHERE owner = $1 AND contact = $2)",
                            &[&owner, &contact],
                        )?;
                    }
                }
                Ok(())
            })
        })
    }

    fn remove_contact(&self, owner: &str, contact: &str) -> Result<bool> {
        let contact = normalize_aor(contact)?;
        let owner = owner.to_owned();
        self.call(move |s| {
            s.change(&owner, |tx, owner| {
                Ok(tx.execute(
                    "DELETE FROM contacts WHERE owner = $1 AND contact = $2",
                    &[&owner, &contact],
                )? > 0)
            })
        })
    }

    fn groups(&self, owner: &str) -> Result<Vec<String>> {
        let owner = normalize_aor(owner)?;
        self.call(move |s| {
            strings(&s.query(
                "SELECT name FROM contact_groups WHERE owner = $1 ORDER BY name",
                &[&owner],
            )?)
        })
    }

    fn add_group(&self, owner: &str, group: &str) -> Result<()> {
        let g = check_group(group)?.to_owned();
        let owner = owner.to_owned();
        self.call(move |s| {
            s.change(&owner, |tx, owner| {
                tx.execute(
                    "INSERT INTO contact_groups (owner, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&owner, &g],
                )?;
                Ok(())
            })
        })
    }

    fn remove_group(&self, owner: &str, group: &str) -> Result<bool> {
        let (owner, group) = (owner.to_owned(), group.to_owned());
        self.call(move |s| {
            s.change(&owner, |tx, owner| {
                let n = tx.execute(
                    "DELETE FROM contact_groups WHERE owner = $1 AND name = $2",
                    &[&owner, &group],
                )?;
                // members of only this group stay on the list, ungrouped
                tx.execute(
                    "UPDATE contacts SET grp = '' WHERE owner = $1 AND grp = $2 AND NOT EXISTS
                       (SELECT 1 FROM contacts c WHERE c.owner = $1 AND c.contact = contacts.contact
                        AND c.grp <> $2)",
                    &[&owner, &group],
                )?;
                tx.execute(
                    "DELETE FROM contacts WHERE owner = $1 AND grp = $2",
                    &[&owner, &group],
                )?;
                Ok(n > 0)
            })
        })
    }

    fn privacy(&self, owner: &str) -> Result<Privacy> {
        let owner = normalize_aor(owner)?;
        self.call(move |s| {
            let visibility = s
                .query("SELECT visibility FROM privacy WHERE owner = $1", &[&owner])?
                .first()
                .map(|r| r.try_get::<_, String>(0))
                .transpose()?;
            let blocked = strings(&s.query(
                "SELECT watcher FROM blocked WHERE owner = $1 ORDER BY watcher",
                &[&owner],
            )?)?;
            Ok(Privacy {
                visibility: if visibility.as_deref() == Some("contacts") {
                    Visibility::Contacts
                } else {
                    Visibility::Everyone
                },
                blocked,
            })
        })
    }

    fn set_visibility(&self, owner: &str, visibility: Visibility) -> Result<()> {
        let owner = owner.to_owned();
        self.call(move |s| {
            s.change(&owner, |tx, owner| {
                tx.execute(
                    "INSERT INTO privacy (owner, visibility) VALUES ($1, $2)
                     ON CONFLICT (owner) DO UPDATE SET visibility = EXCLUDED.visibility",
                    &[&owner, &visibility.name()],
                )?;
                Ok(())
            })
        })
    }

    fn set_blocked(&self, owner: &str, watcher: &str, blocked: bool) -> Result<()> {
        let watcher = normalize_aor(watcher)?;
        let owner = owner.to_owned();
        self.call(move |s| {
            s.change(&owner, |tx, owner| {
                let sql = if blocked {
                    "INSERT INTO blocked (owner, watcher) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM blocked WHERE owner = $1 AND watcher = $2"
                };
                tx.execute(sql, &[&owner, &watcher])?;
                Ok(())
            })
        })
    }

    fn changes_since(&self, rev: i64) -> Result<(i64, Vec<String>)> {
        self.call(move |s| {
            let rows = s.query(
                "SELECT rev, aor FROM changes WHERE rev > $1 ORDER BY rev",
                &[&rev],
            )?;
            let rows = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>>>()?;
            Ok(fold_changes(rev, rows))
        })
    }

    fn save_state(
        &self,
        kind: &str,
        key: &str,
        aor: &str,
        expires_at: i64,
        data: &str,
    ) -> Result<()> {
        let [kind, key, aor, data] = [kind, key, aor, data].map(str::to_owned);
        self.call(move |s| {
            s.execute(
                "INSERT INTO soft_state (kind, key, aor, expires_at, data) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (kind, key) DO UPDATE SET aor = EXCLUDED.aor,
                   expires_at = EXCLUDED.expires_at, data = EXCLUDED.data,
                   seq = nextval('soft_state_seq')",
                &[&kind, &key, &aor, &expires_at, &data],
            )?;
            Ok(())
        })
    }

    fn remove_state(&self, kind: &str, key: &str) -> Result<()> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        self.call(move |s| {
            s.execute(
                "DELETE FROM soft_state WHERE kind = $1 AND key = $2",
                &[&kind, &key],
            )?;
            Ok(())
        })
    }

    fn states(&self, kind: &str, now: i64, aor: Option<&str>) -> Result<Vec<(String, String)>> {
        let kind = kind.to_owned();
        let aor = aor.map(str::to_owned);
        self.call(move |s| {
            s.query(
                "SELECT key, data FROM soft_state WHERE kind = $1 AND expires_at > $2
                 AND ($3::text IS NULL OR aor = $3) ORDER BY seq",
                &[&kind, &now, &aor],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
        })
    }

    fn note_change(&self, aor: &str) -> Result<()> {
        let aor = aor.to_owned();
        self.call(move |s| {
            let mut tx = s.client()?.transaction()?;
            log_change(&mut tx, &aor)?;
            Ok(tx.commit()?)
        })
    }
}

fn strings(rows: &[Row]) -> Result<Vec<String>> {
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        match e.as_db_error() {
            // class 08: connection exception; class 57: operator intervention (shutdown, ...)
            Some(db) if matches!(&db.code().code()[..2], "08" | "57") => {
                Self::Unavailable(db.message().to_owned())
            }
            Some(db) => Self::Database(db.message().to_owned()),
            None => Self::Unavailable(cause(&e)),
        }
    }
}

/// The error and its innermost cause ("connection refused" rather than "error connecting").
pub fn cause(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// `host:port/dbname` of a configuration.
pub fn describe(c: &Config) -> String {
    let host = match c.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL at {host}:{port}/{}",
        c.get_dbname().unwrap_or("postgres")
    )
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact("postgres://confab:hunter2@db.example.com/confab"),
            "postgres://confab:***@db.example.com/confab"
        );
        assert_eq!(
            redact("postgres://confab@db/confab"),
            "postgres://confab@db/confab"
        );
    }

    #[test]
    fn a_bad_url_says_what_is_expected() {
        let e = PgStore::open("postgres://u:secret@host:notaport/db").unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("postgres://USER@HOST:PORT/DATABASE"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_named() {
        // port 1 on loopback: nothing listens there, the connection is refused at once
        let e = PgStore::open("postgres://confab@127.0.0.1:1/confab").unwrap_err();
        assert!(e.is_unavailable(), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1/confab"), "{e}");
    }
}
