//! Confab's durable store: users with their hashed credentials, and registrations (so a restart
//! loses none). Storage sits behind [`Store`]; [`SqliteStore`] is the embedded default,
//! [`PgStore`] the shared back end of a pool; both pass one conformance suite
//! (`tests/conformance.rs`). Passwords are never stored: only HA1 = H(user:realm:password) per
//! digest algorithm.

#![forbid(unsafe_code)]

mod postgres;
mod sqlite;

pub use crate::postgres::PgStore;
/// PostgreSQL helpers other stores on the same server use (the archive): an error's whole
/// cause, where a configuration points, a URL without its password.
pub use crate::postgres::{
    cause as postgres_error_text, describe as describe_postgres, redact as redact_password,
};
pub use sqlite::SqliteStore;

use sip_auth::{ha1, Algorithm};

/// A store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused a query; the text says why.
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot be reached (down, restarting, network): retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The user already exists.
    #[error("user {0} already exists")]
    UserExists(String),
    /// No such user.
    #[error("no user {0}")]
    NoSuchUser(String),
    /// A value was refused; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// The address is not `user@domain`.
    #[error("'{0}' is not an address of the form user@domain")]
    BadAddress(String),
    /// A Line URI another user already has.
    #[error("{number} is already the Line URI of {holder}")]
    NumberTaken { number: String, holder: String },
}

impl StoreError {
    /// Whether the database is unreachable rather than refusing (answer 503, not 500).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            // busy, or a full disk: nothing was written, the same request may succeed later
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::DiskFull,
            ) => Self::Unavailable(e.to_string()),
            _ => Self::Database(e.to_string()),
        }
    }
}

/// The change-log entry (`unlock:<aor>`) that tells running servers to lift a user's lockout.
pub const UNLOCK_CHANGE: &str = "unlock:";
/// The setting (`drain:<ip:port>`) that drains a server of its pool (`confab pool drain`).
pub const DRAIN_SETTING: &str = "drain:";

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Opens the store `database` names: a `postgres://` or `postgresql://` URL, else an SQLite
/// file path.
pub fn open(database: &str) -> Result<Box<dyn Store>> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        Ok(Box::new(PgStore::open(database)?))
    } else {
        Ok(Box::new(SqliteStore::open(std::path::Path::new(database))?))
    }
}

/// A user and the HA1 of its password for the realm (its domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `user@domain`, lower-case domain.
    pub aor: String,
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    /// The FQDN of the pool the user is homed on; `None` when it has none yet.
    pub pool: Option<String>,
    /// The user's own external access policy; `None` follows the deployment's default.
    pub access: Access,
    /// The user's enterprise voice settings.
    pub voice: Telephony,
}

/// A user's external access policy (`confab user set --remote-access/--federation`): each
/// `None` follows the deployment's default (`[external_access]` in the topology).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    /// May sign in from outside through an Edge.
    pub remote: Option<bool>,
    /// May talk to users of federated organisations.
    pub federation: Option<bool>,
}

/// A user's enterprise voice settings (`confab user set --line-uri/--voice/--voice-policy/
/// --dial-plan`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Telephony {
    /// The user's number: `tel:+14255550101`, or `tel:+14255550100;ext=101`; unique.
    pub line_uri: Option<String>,
    /// Enabled for enterprise voice (calls to and from the phone network).
    pub enabled: bool,
    /// The assigned voice policy (none: the pool's, the site's or the global one).
    pub voice_policy: Option<String>,
    /// The assigned dial plan (none: the pool's, the site's or the global one).
    pub dial_plan: Option<String>,
    /// Call forwarding and simultaneous ring, as `confab_voice::Forwarding` writes it
    /// (`noanswer=tel:+14255550100,noanswer-after=20`); none: calls ring the user's devices.
    pub forwarding: Option<String>,
}

/// One registered contact of a user (a device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub aor: String,
    /// Identity within the AOR: `+sip.instance`/reg-id for outbound, else the contact URI.
    pub key: String,
    /// The contact URI.
    pub contact: String,
    /// Contact header parameters to echo back (q, +sip.instance, reg-id, ...), without expires.
    pub params: String,
    /// Unix time the binding expires.
    pub expires_at: i64,
    pub call_id: String,
    pub cseq: u32,
    /// Path header values (RFC 3327), in order.
    pub path: Vec<String>,
    /// Transport the REGISTER came over (`udp`, `tcp`, `tls`).
    pub transport: String,
    /// `ip:port` the REGISTER came from.
    pub source: String,
    /// Whether the client asked for RFC 5626 outbound (the binding lives as long as its flow).
    pub outbound: bool,
    /// The server that took the registration and holds its connection (`host:port` of its SIP
    /// listener); other servers reach the device through it. Empty in a one-server deployment.
    pub server: String,
}

/// Where Confab keeps durable data.
pub trait Store: Send {
    /// Where the data is, for people (a file path, or `PostgreSQL at host:port/db`), never
    /// with a password.
    fn describe(&self) -> String;
    /// Adds a user homed on `pool` (a pool FQDN); its realm is its domain.
    fn add_user(&self, aor: &str, password: &str, pool: Option<&str>) -> Result<()>;
    /// Adds every (address, password) not already a user, homed on `pool`, all or none;
    /// returns how many were added. Existing users keep their password and pool.
    fn import_users(&self, users: &[(String, String)], pool: Option<&str>) -> Result<usize>;
    /// Homes the user on `pool`. Its registrations and soft state (bound to the servers of the
    /// old pool) are dropped in the same transaction; its contact list and privacy go with it.
    fn set_home_pool(&self, aor: &str, pool: &str) -> Result<()>;
    /// Sets the user's external access policy (logged, so that running servers apply it at
    /// the user's next request).
    fn set_access(&self, aor: &str, access: Access) -> Result<()>;
    /// Sets the user's enterprise voice settings; a Line URI another user has is refused
    /// ([`StoreError::NumberTaken`], naming the holder).
    fn set_telephony(&self, aor: &str, voice: &Telephony) -> Result<()>;
    /// Who has `line_uri` (`tel:+14255550101`): a dialled number's owner.
    fn number_owner(&self, line_uri: &str) -> Result<Option<String>>;
    /// The users homed on `pool`, sorted.
    fn users_in_pool(&self, pool: &str) -> Result<Vec<String>>;
    /// Homes every user without a pool on `pool`; returns how many.
    fn home_unhomed(&self, pool: &str) -> Result<usize>;
    fn set_password(&self, aor: &str, password: &str) -> Result<()>;
    fn remove_user(&self, aor: &str) -> Result<()>;
    fn user(&self, aor: &str) -> Result<Option<User>>;
    fn list_users(&self) -> Result<Vec<String>>;
    /// Inserts or replaces the binding with the same (aor, key).
    fn save_binding(&self, b: &Binding) -> Result<()>;
    /// Saves several bindings in one transaction: all or none.
    fn save_bindings(&self, bs: &[Binding]) -> Result<()>;
    fn remove_binding(&self, aor: &str, key: &str) -> Result<()>;
    /// Every binding not expired at `now` (unix seconds), or only `aor`'s.
    fn bindings(&self, now: i64, aor: Option<&str>) -> Result<Vec<Binding>>;
    /// Sets (`Some`) or removes (`None`) a deployment setting.
    fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()>;
    /// Every setting whose name starts with `prefix`, sorted by name.
    fn settings(&self, prefix: &str) -> Result<Vec<(String, String)>>;
    /// The setting `name` itself (not those it is a prefix of), if set.
    fn setting(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .settings(name)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v))
    }
    /// A value every server of the deployment shares: the stored one, or `candidate` when
    /// there is none yet (the first server to ask sets it; the others get the same).
    fn shared_setting(&self, name: &str, candidate: &str) -> Result<String>;

    /// Another handle on the same database, for a thread of its own, when a call may wait on
    /// the network (PostgreSQL): a server then makes its request-path reads there and serves
    /// other requests meanwhile. `None` for an embedded database, whose calls are quick enough
    /// to make inline.
    fn worker_handle(&self) -> Option<Box<dyn Store>> {
        None
    }

    /// Another handle on the same connection, for another engine of this process (a shard):
    /// the engines then take turns on one connection, so that a database outage and its end
    /// are the same for all, and SQLite's writers do not wait on its file lock. `None` where
    /// a store cannot share its connection.
    fn handle(&self) -> Option<Box<dyn Store>> {
        None
    }

    /// The secret every server of the deployment shares (digest nonces, branch seals), made on
    /// first use.
    fn deployment_secret(&self) -> Result<[u8; 32]> {
        parse_secret(&self.shared_setting("secret", &new_secret()?)?)
    }
    /// Deletes bindings and soft state expired at `now`; returns how many bindings.
    fn purge_expired(&self, now: i64) -> Result<usize>;

    // ---- contact lists and privacy (durable; every change is logged, see `changes_since`) ----

    /// The owner's contacts in the order added, each with its groups.
    fn contacts(&self, owner: &str) -> Result<Vec<ContactEntry>>;
    /// Adds `contact` to the owner's list (in `group` when given; the group is created).
    fn add_contact(&self, owner: &str, contact: &str, group: Option<&str>) -> Result<()>;
    /// Removes `contact` from the list (every group); false when it was not there.
    fn remove_contact(&self, owner: &str, contact: &str) -> Result<bool>;
    /// The owner's groups, sorted.
    fn groups(&self, owner: &str) -> Result<Vec<String>>;
    fn add_group(&self, owner: &str, group: &str) -> Result<()>;
    /// Removes a group; its contacts stay on the list. False when there was no such group.
    fn remove_group(&self, owner: &str, group: &str) -> Result<bool>;
    fn privacy(&self, owner: &str) -> Result<Privacy>;
    fn set_visibility(&self, owner: &str, visibility: Visibility) -> Result<()>;
    /// Blocks (`true`) or unblocks a watcher.
    fn set_blocked(&self, owner: &str, watcher: &str, blocked: bool) -> Result<()>;
    /// Users whose password, home pool, list, privacy or existence changed after revision `rev`, and the newest
    /// revision. Lets a running server pick up changes made by another process.
    fn changes_since(&self, rev: i64) -> Result<(i64, Vec<String>)>;

    // ---- soft state: publications and subscriptions, kept so a restart loses none ----

    /// Inserts or replaces soft state `(kind, key)` about `aor`, valid until `expires_at`.
    fn save_state(
        &self,
        kind: &str,
        key: &str,
        aor: &str,
        expires_at: i64,
        data: &str,
    ) -> Result<()>;
    fn remove_state(&self, kind: &str, key: &str) -> Result<()>;
    /// `(key, data)` of every unexpired entry of `kind`, or only of those about `aor`, oldest
    /// first.
    fn states(&self, kind: &str, now: i64, aor: Option<&str>) -> Result<Vec<(String, String)>>;
    /// Appends `entry` to the change log, for the running servers to act on (`presence:<aor>`:
    /// look at that user's presence again; `unlock:<aor>`: lift its lockout).
    fn note_change(&self, entry: &str) -> Result<()>;
}

/// One entry of a contact list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactEntry {
    /// `user@domain`.
    pub aor: String,
    /// Groups it is in, sorted; empty when ungrouped.
    pub groups: Vec<String>,
}

/// Who may see a user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Everyone in the organisation (every user of the served domains). The default.
    #[default]
    Everyone,
    /// Only users on the owner's contact list.
    Contacts,
}

impl Visibility {
    pub fn name(self) -> &'static str {
        match self {
            Self::Everyone => "everyone",
            Self::Contacts => "contacts",
        }
    }
}

/// A user's presence privacy: visibility and the blocked watchers (who see Offline).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Privacy {
    pub visibility: Visibility,
    /// Sorted `user@domain` of blocked watchers.
    pub blocked: Vec<String>,
}

/// Checks and normalises `user@domain` (lower-case domain).
pub fn normalize_aor(aor: &str) -> Result<String> {
    let aor = aor.trim().trim_start_matches("sip:");
    match aor.split_once('@') {
        Some((u, d))
            if !u.is_empty()
                && !d.is_empty()
                && !u.contains(|c: char| c.is_whitespace() || c == ':' || c == '@')
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
        {
            Ok(format!("{u}@{}", d.to_ascii_lowercase()))
        }
        _ => Err(StoreError::BadAddress(aor.to_owned())),
    }
}

/// The realm (the domain) and both HA1s of `aor`'s password.
fn hashes(aor: &str, password: &str) -> Result<(String, String, String)> {
    let aor = normalize_aor(aor)?;
    let (user, realm) = aor.split_once('@').expect("normalized");
    Ok((
        realm.to_owned(),
        ha1(Algorithm::Md5, user, realm, password),
        ha1(Algorithm::Sha256, user, realm, password),
    ))
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

/// Contact-list rows `(contact, group)` in the order added → one entry per contact with its
/// groups sorted (`""` is "no group").
fn group_contacts(rows: impl IntoIterator<Item = (String, String)>) -> Vec<ContactEntry> {
    let mut out: Vec<ContactEntry> = Vec::new();
    for (aor, grp) in rows {
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
    out
}

/// Change-log rows `(rev, aor)` after `rev` → the newest revision and each user once.
fn fold_changes(rev: i64, rows: impl IntoIterator<Item = (i64, String)>) -> (i64, Vec<String>) {
    let mut newest = rev;
    let mut aors: Vec<String> = Vec::new();
    for (r, aor) in rows {
        newest = newest.max(r);
        if !aors.contains(&aor) {
            aors.push(aor);
        }
    }
    (newest, aors)
}

/// A new random secret, as stored (hex).
fn new_secret() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| {
        StoreError::Invalid(format!("no randomness for the deployment secret: {e}"))
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The stored (hex) secret as bytes.
fn parse_secret(hex: &str) -> Result<[u8; 32]> {
    let bad = || StoreError::Invalid("the stored deployment secret is damaged".into());
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return Err(bad());
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// A stored path column back into its entries.
fn split_path(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('\n').map(str::to_owned).collect()
    }
}
