//! Administrators and their API tokens, kept as deployment settings: `admin/<name>` holds an
//! administrator's roles, `admin-token/<id>` a token's SHA-256 (never the token), its owner
//! and expiry. A token reads `confab_<id>.<secret>`: the id finds its record, the 256-bit
//! secret proves it (a fast hash suffices for a random secret of that length; the comparison
//! takes the same time whatever matches).

use base64::Engine as _;
use confab_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{audit, Actor, AdminError, Kind, Result, Role};

const ADMIN_PREFIX: &str = "admin/";
const TOKEN_PREFIX: &str = "admin-token/";
/// How a token starts (so that it is recognisable in a configuration file or a leak scan).
pub const TOKEN_START: &str = "confab_";

/// An administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admin {
    pub name: String,
    pub roles: Vec<Role>,
    /// Unix seconds.
    pub created: i64,
}

/// A token's record (what is stored: its hash, not the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub admin: String,
    pub sha256: String,
    pub created: i64,
    pub expires: i64,
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AdminError::invalid(format!(
            "{name:?} is not an administrator name: use 1 to 64 letters, digits and - _ . @"
        )))
    }
}

/// Refuses unless `actor` is an administrator: only they manage administrators and tokens.
fn only_administrators(actor: &Actor, what: &str) -> Result<()> {
    if actor.roles.contains(&Role::Administrator) {
        Ok(())
    } else {
        Err(AdminError::new(
            Kind::Forbidden,
            format!("only an administrator {what}"),
        ))
    }
}

/// The administrator `name`, if there is one.
pub fn admin(store: &dyn Store, name: &str) -> Result<Option<Admin>> {
    match store.setting(&format!("{ADMIN_PREFIX}{name}"))? {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json).map(Some).map_err(|e| {
            AdminError::new(
                Kind::Internal,
                format!("the stored administrator {name} cannot be read: {e}"),
            )
        }),
    }
}

/// Every administrator, by name.
pub fn admins(store: &dyn Store) -> Result<Vec<Admin>> {
    let mut out = Vec::new();
    for (key, _) in store.settings(ADMIN_PREFIX)? {
        if let Some(a) = admin(store, &key[ADMIN_PREFIX.len()..])? {
            out.push(a);
        }
    }
    Ok(out)
}

/// Adds an administrator with `roles`, or sets the roles of an existing one.
pub fn add(store: &dyn Store, actor: &Actor, name: &str, roles: &[Role]) -> Result<Admin> {
    only_administrators(actor, "names administrators")?;
    check_name(name)?;
    if roles.is_empty() {
        return Err(AdminError::invalid("give at least one role"));
    }
    let created = admin(store, name)?.map_or_else(crate::unix_now, |a| a.created);
    let a = Admin {
        name: name.to_owned(),
        roles: roles.to_vec(),
        created,
    };
    let json = serde_json::to_string(&a).unwrap_or_default();
    store.set_setting(&format!("{ADMIN_PREFIX}{name}"), Some(&json))?;
    let roles: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    audit::record(store, actor, "admin.add", name, &roles.join(","))?;
    Ok(a)
}

/// Removes an administrator and every token of theirs.
pub fn remove(store: &dyn Store, actor: &Actor, name: &str) -> Result<usize> {
    only_administrators(actor, "removes administrators")?;
    if admin(store, name)?.is_none() {
        return Err(AdminError::not_found(format!(
            "no administrator {name} (see `confab admin list`)"
        )));
    }
    let mut revoked = 0;
    for t in tokens(store)?.into_iter().filter(|t| t.admin == name) {
        store.set_setting(&format!("{TOKEN_PREFIX}{}", t.id), None)?;
        revoked += 1;
    }
    store.set_setting(&format!("{ADMIN_PREFIX}{name}"), None)?;
    audit::record(
        store,
        actor,
        "admin.remove",
        name,
        &format!("{revoked} tokens revoked"),
    )?;
    Ok(revoked)
}

/// Every token's record.
pub fn tokens(store: &dyn Store) -> Result<Vec<TokenRecord>> {
    let mut out = Vec::new();
    for (key, json) in store.settings(TOKEN_PREFIX)? {
        let t: TokenRecord = serde_json::from_str(&json).map_err(|e| {
            AdminError::new(
                Kind::Internal,
                format!("the stored token {key} cannot be read: {e}"),
            )
        })?;
        out.push(t);
    }
    Ok(out)
}

/// Makes a token for administrator `name`, valid for `days`; returns the token (shown once:
/// only its hash is kept) and its record.
pub fn issue(
    store: &dyn Store,
    actor: &Actor,
    name: &str,
    days: u32,
) -> Result<(String, TokenRecord)> {
    only_administrators(actor, "issues tokens")?;
    if admin(store, name)?.is_none() {
        return Err(AdminError::not_found(format!(
            "no administrator {name}: add one with `confab admin add {name} --role ROLE`"
        )));
    }
    if !(1..=3650).contains(&days) {
        return Err(AdminError::invalid("a token lasts 1 to 3650 days"));
    }
    let mut raw = [0u8; 38];
    getrandom::getrandom(&mut raw)
        .map_err(|e| AdminError::new(Kind::Internal, format!("no randomness for a token: {e}")))?;
    let id: String = raw[..6].iter().map(|b| format!("{b:02x}")).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[6..]);
    let now = crate::unix_now();
    let record = TokenRecord {
        id: id.clone(),
        admin: name.to_owned(),
        sha256: hash(&secret),
        created: now,
        expires: now + i64::from(days) * 86_400,
    };
    let json = serde_json::to_string(&record).unwrap_or_default();
    store.set_setting(&format!("{TOKEN_PREFIX}{id}"), Some(&json))?;
    audit::record(
        store,
        actor,
        "admin.token",
        name,
        &format!("token {id}, {days} days"),
    )?;
    Ok((format!("{TOKEN_START}{id}.{secret}"), record))
}

/// Revokes token `id`.
pub fn revoke(store: &dyn Store, actor: &Actor, id: &str) -> Result<()> {
    only_administrators(actor, "revokes tokens")?;
    let key = format!("{TOKEN_PREFIX}{id}");
    if store.setting(&key)?.is_none() {
        return Err(AdminError::not_found(format!(
            "no token {id} (see `confab admin list`)"
        )));
    }
    store.set_setting(&key, None)?;
    audit::record(store, actor, "admin.revoke", id, "")?;
    Ok(())
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The administrator a bearer token stands for, acting from `from`. Every failure reads the
/// same to the caller (no telling a wrong secret from an unknown id); the token is never part
/// of an error.
pub fn authenticate(store: &dyn Store, token: &str, from: &str, now: i64) -> Result<Actor> {
    let refused = || {
        AdminError::new(
            Kind::Unauthorized,
            "the token is unknown, revoked or expired: ask an administrator for one (confab admin token NAME)",
        )
    };
    let (id, secret) = token
        .strip_prefix(TOKEN_START)
        .and_then(|t| t.split_once('.'))
        .ok_or_else(refused)?;
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    let Some(json) = store.setting(&format!("{TOKEN_PREFIX}{id}"))? else {
        return Err(refused());
    };
    let record: TokenRecord = serde_json::from_str(&json).map_err(|_| refused())?;
    if !same(hash(secret).as_bytes(), record.sha256.as_bytes()) || record.expires <= now {
        return Err(refused());
    }
    let admin = admin(store, &record.admin)?.ok_or_else(refused)?;
    Ok(Actor {
        name: admin.name,
        from: from.to_owned(),
        roles: admin.roles,
    })
}

/// Equal, in a time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Box<dyn Store> {
        crate::test_store()
    }

    #[test]
    fn a_token_authenticates_its_admin_until_it_expires_or_is_revoked() {
        let s = store();
        let root = Actor::console();
        add(s.as_ref(), &root, "hd", &[Role::Helpdesk]).unwrap();
        let (token, rec) = issue(s.as_ref(), &root, "hd", 1).unwrap();
        assert!(token.starts_with("confab_"));
        let stored = s.settings("admin-token/").unwrap();
        assert!(
            !stored[0].1.contains(token.split('.').nth(1).unwrap()),
            "only the hash is kept"
        );
        let now = crate::unix_now();
        let a = authenticate(s.as_ref(), &token, "127.0.0.1:1", now).unwrap();
        assert_eq!(
            (a.name.as_str(), a.roles.clone()),
            ("hd", vec![Role::Helpdesk])
        );
        let err = authenticate(s.as_ref(), &token, "x", rec.expires).unwrap_err();
        assert_eq!(err.kind, Kind::Unauthorized);
        let mut wrong = token.clone();
        wrong.pop();
        wrong.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            authenticate(s.as_ref(), &wrong, "x", now).unwrap_err().kind,
            Kind::Unauthorized
        );
        for junk in [
            "",
            "confab_",
            "confab_zz.y",
            "Bearer x",
            "confab_../../etc.x",
        ] {
            assert_eq!(
                authenticate(s.as_ref(), junk, "x", now).unwrap_err().kind,
                Kind::Unauthorized
            );
        }
        revoke(s.as_ref(), &root, &rec.id).unwrap();
        assert_eq!(
            authenticate(s.as_ref(), &token, "x", now).unwrap_err().kind,
            Kind::Unauthorized
        );
    }

    #[test]
    fn removing_an_admin_revokes_their_tokens_and_only_administrators_manage_admins() {
        let s = store();
        let root = Actor::console();
        add(s.as_ref(), &root, "ua", &[Role::UserAdministrator]).unwrap();
        let (token, _) = issue(s.as_ref(), &root, "ua", 30).unwrap();
        let ua = authenticate(s.as_ref(), &token, "x", crate::unix_now()).unwrap();
        let err = add(s.as_ref(), &ua, "me2", &[Role::Administrator]).unwrap_err();
        assert_eq!(err.kind, Kind::Forbidden);
        assert_eq!(
            issue(s.as_ref(), &ua, "ua", 1).unwrap_err().kind,
            Kind::Forbidden
        );
        assert_eq!(remove(s.as_ref(), &root, "ua").unwrap(), 1);
        assert!(tokens(s.as_ref()).unwrap().is_empty());
        assert_eq!(
            remove(s.as_ref(), &root, "ua").unwrap_err().kind,
            Kind::NotFound
        );
        assert_eq!(
            add(s.as_ref(), &root, "a/b", &[Role::Helpdesk])
                .unwrap_err()
                .kind,
            Kind::Invalid
        );
    }
}
