//! The audit log: every change made through the command line or the API, with who made it,
//! from where and when. Entries are kept in the store's soft-state table (kind `audit`) for
//! [`KEEP_DAYS`] days, in the order made.

use confab_store::Store;
use serde::{Deserialize, Serialize};

use crate::{Actor, AdminError, Kind, Result, Right};

const KIND: &str = "audit";
/// How long an entry is kept.
pub const KEEP_DAYS: i64 = 400;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// Unix milliseconds.
    pub at: i64,
    /// The administrator (`cli:<login>` at the console).
    pub who: String,
    /// `ip:port` of an API client, or `local`.
    pub from: String,
    /// What was done: `user.add`, `user.update`, `admin.token`, ...
    pub action: String,
    /// What it was done to (a user's address, an administrator's name).
    pub target: String,
    /// The change in short (never a password or a token).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Records a change `actor` made.
pub fn record(
    store: &dyn Store,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: &str,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut nonce = [0u8; 4];
    let _ = getrandom::getrandom(&mut nonce);
    let key = format!("{now:013}-{:08x}", u32::from_be_bytes(nonce));
    let entry = Entry {
        at: now,
        who: actor.name.clone(),
        from: actor.from.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        detail: detail.to_owned(),
    };
    let json = serde_json::to_string(&entry).unwrap_or_default();
    store.save_state(
        KIND,
        &key,
        &actor.name,
        now / 1000 + KEEP_DAYS * 86_400,
        &json,
    )?;
    Ok(())
}

/// The entries, oldest first, only `who`'s when given.
pub fn entries(store: &dyn Store, actor: &Actor, who: Option<&str>) -> Result<Vec<Entry>> {
    actor.require(Right::ReadAudit)?;
    let mut out = Vec::new();
    for (key, json) in store.states(KIND, crate::unix_now(), who)? {
        let e: Entry = serde_json::from_str(&json).map_err(|e| {
            AdminError::new(
                Kind::Internal,
                format!("audit entry {key} cannot be read: {e}"),
            )
        })?;
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn entries_come_back_in_order_and_only_administrators_read_them() {
        let s = crate::test_store();
        let root = Actor::console();
        record(s.as_ref(), &root, "user.add", "a@example.com", "").unwrap();
        let other = Actor {
            name: "ua".into(),
            from: "127.0.0.1:9".into(),
            roles: vec![Role::UserAdministrator],
        };
        record(s.as_ref(), &other, "user.remove", "a@example.com", "").unwrap();
        let all = entries(s.as_ref(), &root, None).unwrap();
        let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["user.add", "user.remove"]);
        assert_eq!(all[1].from, "127.0.0.1:9");
        assert_eq!(entries(s.as_ref(), &root, Some("ua")).unwrap().len(), 1);
        assert_eq!(
            entries(s.as_ref(), &other, None).unwrap_err().kind,
            Kind::Forbidden
        );
    }
}
