//! Users: list, read, add, import, change, move, remove, passwords, unlock.

use confab_store::{Access, Store, User};
use confab_topology::Topology;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::{audit, Actor, AdminError, Kind, Result, Right};

/// A per-user switch that may follow the deployment's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    On,
    Off,
    /// Follows the deployment's default (`[external_access]` in the topology).
    Default,
}

impl Switch {
    fn from_option(v: Option<bool>) -> Self {
        match v {
            Some(true) => Self::On,
            Some(false) => Self::Off,
            None => Self::Default,
        }
    }

    fn to_option(self) -> Option<bool> {
        match self {
            Self::On => Some(true),
            Self::Off => Some(false),
            Self::Default => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Default => "default",
        }
    }
}

/// A user as administrators see it (no credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// `user@domain`.
    pub address: String,
    /// The pool the user is homed on (none until a server homes it).
    pub pool: Option<String>,
    /// May sign in from outside through an Edge.
    pub remote_access: Switch,
    /// May talk with federated organisations.
    pub federation: Switch,
    /// The user's number (`tel:+14255550101`).
    pub line_uri: Option<String>,
    /// Enabled for enterprise voice.
    pub enterprise_voice: bool,
    pub voice_policy: Option<String>,
    pub dial_plan: Option<String>,
}

impl UserView {
    fn of(u: &User) -> Self {
        Self {
            address: u.aor.clone(),
            pool: u.pool.clone(),
            remote_access: Switch::from_option(u.access.remote),
            federation: Switch::from_option(u.access.federation),
            line_uri: u.voice.line_uri.clone(),
            enterprise_voice: u.voice.enabled,
            voice_policy: u.voice.voice_policy.clone(),
            dial_plan: u.voice.dial_plan.clone(),
        }
    }

    /// The version of this user's settings, as an HTTP entity tag (quoted): an edit made with
    /// an older one is refused.
    pub fn etag(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let digest = Sha256::digest(&json);
        let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("\"{hex}\"")
    }
}

/// A user to add.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// `user@domain`.
    pub address: String,
    pub password: String,
    /// A pool of the topology that hosts users; may be left out when there is only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// Users to add in one go: all or none.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Import {
    pub users: Vec<ImportedUser>,
    /// Their home pool; may be left out when the topology has only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// One user of an [`Import`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportedUser {
    pub address: String,
    pub password: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Imported {
    /// Users added.
    pub added: usize,
    /// Users that were there already (left as they were).
    pub existing: usize,
}

/// Changes to a user's settings; what is left out stays as it is (so sending the same change
/// twice leaves the same user).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Moves the user to this pool (its devices sign in again there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_access: Option<Switch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<Switch>,
}

/// Which users to list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Only users homed on this pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Only addresses containing this text.
    #[serde(default)]
    pub q: Option<String>,
    /// The address after which the page starts (the previous page's `next`).
    #[serde(default)]
    pub after: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// A page of users, in address order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The users `filter` selects, one page.
pub fn list(store: &dyn Store, actor: &Actor, filter: &UserFilter) -> Result<UserPage> {
    actor.require(Right::Read)?;
    let limit = filter.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AdminError::invalid("limit: give 1 to 1000"));
    }
    let mut all = match &filter.pool {
        Some(pool) => store.users_in_pool(&pool.trim_end_matches('.').to_ascii_lowercase())?,
        None => store.list_users()?,
    };
    all.sort();
    let q = filter.q.as_deref().map(str::to_ascii_lowercase);
    let mut chosen = all
        .into_iter()
        .filter(|a| {
            filter
                .after
                .as_deref()
                .is_none_or(|after| a.as_str() > after)
        })
        .filter(|a| q.as_deref().is_none_or(|q| a.contains(q)));
    let mut items = Vec::new();
    for aor in chosen.by_ref().take(limit as usize) {
        if let Some(u) = store.user(&aor)? {
            items.push(UserView::of(&u));
        }
    }
    let next = match chosen.next() {
        Some(_) => items.last().map(|u| u.address.clone()),
        None => None,
    };
    Ok(UserPage { items, next })
}

fn normalize(address: &str) -> Result<String> {
    Ok(confab_store::normalize_aor(address)?)
}

/// One user.
pub fn get(store: &dyn Store, actor: &Actor, address: &str) -> Result<UserView> {
    actor.require(Right::Read)?;
    let aor = normalize(address)?;
    let user = store.user(&aor)?.ok_or_else(|| no_user(&aor))?;
    Ok(UserView::of(&user))
}

fn no_user(aor: &str) -> AdminError {
    AdminError::not_found(format!(
        "no such user: {aor} (add it with: confab user add {aor} --password ...)"
    ))
}

/// Refuses when `if_match` (an entity tag) is not the user's current version.
fn check_version(current: &UserView, if_match: Option<&str>) -> Result<()> {
    match if_match {
        Some(tag) if tag.trim() != "*" && tag.trim() != current.etag() => Err(AdminError::new(
            Kind::Stale,
            format!(
                "{} was changed since version {}: read it again (its version is now {}) and redo the edit",
                current.address,
                tag.trim(),
                current.etag()
            ),
        )),
        _ => Ok(()),
    }
}

/// Adds a user.
pub fn add(
    store: &dyn Store,
    topology: Option<&Topology>,
    actor: &Actor,
    new: &NewUser,
) -> Result<UserView> {
    actor.require(Right::ManageUsers)?;
    check_password(&new.password)?;
    let aor = normalize(&new.address)?;
    let pool = home_pool(topology, new.pool.as_deref())?;
    refuse_service_name(store, &aor)?;
    store.add_user(&aor, &new.password, pool.as_deref())?;
    audit::record(
        store,
        actor,
        "user.add",
        &aor,
        pool.as_deref().unwrap_or(""),
    )?;
    get(store, actor, &aor)
}

/// Adds every user of `import` not already there, all or none.
pub fn import(
    store: &dyn Store,
    topology: Option<&Topology>,
    actor: &Actor,
    import: &Import,
) -> Result<Imported> {
    actor.require(Right::ManageUsers)?;
    let pool = home_pool(topology, import.pool.as_deref())?;
    let mut users = Vec::with_capacity(import.users.len());
    for u in &import.users {
        check_password(&u.password)
            .map_err(|e| AdminError::invalid(format!("{}: {}", u.address, e.detail)))?;
        let aor = normalize(&u.address)?;
        refuse_service_name(store, &aor)?;
        users.push((aor, u.password.clone()));
    }
    let added = store.import_users(&users, pool.as_deref())?;
    audit::record(
        store,
        actor,
        "user.import",
        pool.as_deref().unwrap_or(""),
        &format!("{added} added of {}", users.len()),
    )?;
    Ok(Imported {
        added,
        existing: users.len() - added,
    })
}

/// Changes a user's settings (`if_match`: the version the change was made against).
pub fn change(
    store: &dyn Store,
    topology: Option<&Topology>,
    actor: &Actor,
    address: &str,
    change: &UserChange,
    if_match: Option<&str>,
) -> Result<UserView> {
    actor.require(Right::ManageUsers)?;
    let aor = normalize(address)?;
    let user = store.user(&aor)?.ok_or_else(|| no_user(&aor))?;
    let before = UserView::of(&user);
    check_version(&before, if_match)?;
    let mut done = Vec::new();
    if let Some(p) = &change.pool {
        let pool = home_pool(topology, Some(p))?.unwrap_or_else(|| p.to_ascii_lowercase());
        if before.pool.as_deref() != Some(pool.as_str()) {
            store.set_home_pool(&aor, &pool)?;
            done.push(format!("pool={pool}"));
        }
    }
    if change.remote_access.is_some() || change.federation.is_some() {
        let access = Access {
            remote: change
                .remote_access
                .map_or(user.access.remote, Switch::to_option),
            federation: change
                .federation
                .map_or(user.access.federation, Switch::to_option),
        };
        if access != user.access {
            store.set_access(&aor, access)?;
            done.push(format!(
                "remote_access={} federation={}",
                Switch::from_option(access.remote).name(),
                Switch::from_option(access.federation).name()
            ));
        }
    }
    if !done.is_empty() {
        audit::record(store, actor, "user.change", &aor, &done.join(" "))?;
    }
    get(store, actor, &aor)
}

/// Removes a user.
pub fn remove(
    store: &dyn Store,
    actor: &Actor,
    address: &str,
    if_match: Option<&str>,
) -> Result<()> {
    actor.require(Right::ManageUsers)?;
    let current = get(store, actor, address)?;
    check_version(&current, if_match)?;
    store.remove_user(&current.address)?;
    audit::record(store, actor, "user.remove", &current.address, "")
}

/// Sets a user's password.
pub fn set_password(store: &dyn Store, actor: &Actor, address: &str, password: &str) -> Result<()> {
    actor.require(Right::ManageUsers)?;
    check_password(password)?;
    let aor = normalize(address)?;
    store.set_password(&aor, password)?;
    audit::record(store, actor, "user.password", &aor, "")
}

/// Lifts a user's sign-in lockout (running servers see it within their 2 s round).
pub fn unlock(store: &dyn Store, actor: &Actor, address: &str) -> Result<()> {
    actor.require(Right::Unlock)?;
    let current = get(store, actor, address)?;
    store.note_change(&format!(
        "{}{}",
        confab_store::UNLOCK_CHANGE,
        current.address
    ))?;
    audit::record(store, actor, "user.unlock", &current.address, "")
}

fn check_password(p: &str) -> Result<()> {
    if p.is_empty() {
        return Err(AdminError::invalid("the password must not be empty"));
    }
    if p.len() > 256 {
        return Err(AdminError::invalid("a password has at most 256 bytes"));
    }
    Ok(())
}

/// The home pool for new or moved users: `asked` when the topology has it as a pool that
/// hosts users, else the only such pool. Without a topology the name is taken as given, or
/// left for the server to fill in.
pub fn home_pool(topology: Option<&Topology>, asked: Option<&str>) -> Result<Option<String>> {
    let Some(topology) = topology else {
        return Ok(asked.map(str::to_ascii_lowercase));
    };
    let pools: Vec<&str> = topology.user_pools().map(|p| p.fqdn.as_str()).collect();
    match asked {
        Some(p) => {
            let p = p.trim_end_matches('.').to_ascii_lowercase();
            if pools.contains(&p.as_str()) {
                Ok(Some(p))
            } else {
                Err(AdminError::invalid(format!(
                    "{p} is not a pool that hosts users in the topology; choose one of: {}",
                    pools.join(", ")
                )))
            }
        }
        None if pools.len() == 1 => Ok(pools.first().map(|p| (*p).to_owned())),
        None => Err(AdminError::invalid(format!(
            "this deployment has several pools for users: say which with --pool (`pool` in the API): {}",
            pools.join(", ")
        ))),
    }
}

/// Refuses an address a service answers at: a meeting's (`meet-<digits>`) or a response-group
/// workflow's.
pub fn refuse_service_name(store: &dyn Store, aor: &str) -> Result<()> {
    let user = aor
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or_default();
    if confab_meetings::conference_id(user).is_some() {
        return Err(AdminError::new(
            Kind::Conflict,
            format!(
                "{aor}: names of the form {}<digits> are meetings' addresses; choose another name",
                confab_meetings::URI_PREFIX
            ),
        ));
    }
    let doc = store.setting(confab_rgs::RGS_SETTING)?.unwrap_or_default();
    let config = confab_rgs::RgsConfig::from_toml(&doc).map_err(|e| {
        AdminError::new(
            Kind::Internal,
            format!("the stored response-group configuration cannot be read: {e}"),
        )
    })?;
    let taken = config.workflows.iter().find(|w| {
        w.address
            .trim_start_matches("sip:")
            .split('@')
            .next()
            .is_some_and(|u| u.eq_ignore_ascii_case(user))
    });
    match taken {
        Some(w) => Err(AdminError::new(
            Kind::Conflict,
            format!(
                "{aor}: {} is response-group workflow {:?}'s address; choose another name",
                w.address, w.name
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
