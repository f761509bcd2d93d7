//! Administration as both the command line and the REST API do it: one implementation, so
//! the two cannot disagree. Each operation takes the store, the acting administrator
//! ([`Actor`]) and typed input; it checks the actor's rights ([`roles`]), does the change,
//! records it in the audit log ([`audit`]) and returns typed output or an [`AdminError`]
//! whose [`Kind`] maps onto an exit status or an HTTP status.

#![forbid(unsafe_code)]

pub mod audit;
pub mod contacts;
pub mod deployment;
mod error;
pub mod roles;
pub mod tokens;
pub mod users;

pub use error::{AdminError, Kind, Result};
pub use roles::{Right, Role};

/// Who is acting, from where, with which roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The administrator's name (`cli:<login>` for someone at the server's console).
    pub name: String,
    /// Where the request came from (`ip:port`, or `local`).
    pub from: String,
    pub roles: Vec<Role>,
}

impl Actor {
    /// Someone working on the database directly with the command line: whoever can open it
    /// can change anything, so the console acts as an administrator.
    pub fn console() -> Self {
        let login = ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(login_of_uid);
        Self {
            name: format!("cli:{login}"),
            from: "local".into(),
            roles: vec![Role::Administrator],
        }
    }

    /// Refuses (403, naming the right and the roles that have it) unless a role grants `right`.
    pub fn require(&self, right: Right) -> Result<()> {
        if self.roles.iter().any(|r| r.allows(right)) {
            return Ok(());
        }
        let holders: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| r.allows(right))
            .map(|r| r.name())
            .collect();
        Err(AdminError::new(
            Kind::Forbidden,
            format!(
                "{} may not {} (a right of: {})",
                self.name,
                right.describe(),
                holders.join(", ")
            ),
        ))
    }
}

/// The login name of this process's user, from `/proc` and `/etc/passwd` (`uid <n>` when it
/// has none).
fn login_of_uid() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid).then(|| f[0].to_owned())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A store of its own in a fresh temporary file, for unit tests.
#[cfg(test)]
pub(crate) fn test_store() -> Box<dyn confab_store::Store> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "confab-admin-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Box::new(confab_store::SqliteStore::open(&dir.join("store.db")).unwrap())
}
