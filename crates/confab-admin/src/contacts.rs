//! A user's contact list, its groups, and who may see the user's presence.

use confab_store::{Store, Visibility};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{audit, Actor, AdminError, Result, Right};

/// A contact on a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    pub address: String,
    /// The groups it is in, sorted (none: ungrouped).
    pub groups: Vec<String>,
}

/// A user's list: contacts in the order added, and every group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
    pub groups: Vec<String>,
}

/// A contact to add.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    pub address: String,
    /// Put it in this group (made when missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Who sees a user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    /// Everyone in the organisation.
    Everyone,
    /// Only the user's contacts.
    Contacts,
}

/// A user's privacy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PrivacyView {
    pub visibility: Seen,
    /// Watchers who see the user as Offline, sorted.
    pub blocked: Vec<String>,
}

/// Changes to a user's privacy; what is left out stays.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrivacyChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Seen>,
    /// Watchers to block.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// Watchers to unblock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unblock: Vec<String>,
}

/// The normalized address of an existing user.
fn existing(store: &dyn Store, address: &str) -> Result<String> {
    let aor = confab_store::normalize_aor(address)?;
    if store.user(&aor)?.is_none() {
        return Err(AdminError::not_found(format!(
            "no user {aor} (add it with: confab user add {aor} --password ...)"
        )));
    }
    Ok(aor)
}

/// `owner`'s list.
pub fn list(store: &dyn Store, actor: &Actor, owner: &str) -> Result<ContactList> {
    actor.require(Right::Read)?;
    let owner = existing(store, owner)?;
    let contacts = store
        .contacts(&owner)?
        .into_iter()
        .map(|c| Contact {
            address: c.aor,
            groups: c.groups,
        })
        .collect();
    Ok(ContactList {
        contacts,
        groups: store.groups(&owner)?,
    })
}

/// Adds a contact to `owner`'s list.
pub fn add(store: &dyn Store, actor: &Actor, owner: &str, new: &NewContact) -> Result<ContactList> {
    actor.require(Right::ManageUsers)?;
    let owner = existing(store, owner)?;
    store.add_contact(&owner, &new.address, new.group.as_deref())?;
    audit::record(store, actor, "contact.add", &owner, &new.address)?;
    list(store, actor, &owner)
}

/// Removes a contact from every group of `owner`'s list.
pub fn remove(store: &dyn Store, actor: &Actor, owner: &str, contact: &str) -> Result<()> {
    actor.require(Right::ManageUsers)?;
    let owner = existing(store, owner)?;
    if !store.remove_contact(&owner, contact)? {
        return Err(AdminError::not_found(format!(
            "{contact} is not on {owner}'s list"
        )));
    }
    audit::record(store, actor, "contact.remove", &owner, contact)
}

/// Makes a group on `owner`'s list.
pub fn add_group(store: &dyn Store, actor: &Actor, owner: &str, group: &str) -> Result<()> {
    actor.require(Right::ManageUsers)?;
    let owner = existing(store, owner)?;
    store.add_group(&owner, group)?;
    audit::record(store, actor, "contact.group_add", &owner, group)
}

/// Removes a group (its contacts stay on the list).
pub fn remove_group(store: &dyn Store, actor: &Actor, owner: &str, group: &str) -> Result<()> {
    actor.require(Right::ManageUsers)?;
    let owner = existing(store, owner)?;
    if !store.remove_group(&owner, group)? {
        return Err(AdminError::not_found(format!(
            "{owner} has no group {group}"
        )));
    }
    audit::record(store, actor, "contact.group_remove", &owner, group)
}

/// `owner`'s privacy.
pub fn privacy(store: &dyn Store, actor: &Actor, owner: &str) -> Result<PrivacyView> {
    actor.require(Right::Read)?;
    let owner = existing(store, owner)?;
    let p = store.privacy(&owner)?;
    Ok(PrivacyView {
        visibility: match p.visibility {
            Visibility::Everyone => Seen::Everyone,
            Visibility::Contacts => Seen::Contacts,
        },
        blocked: p.blocked,
    })
}

/// Changes `owner`'s privacy.
pub fn set_privacy(
    store: &dyn Store,
    actor: &Actor,
    owner: &str,
    change: &PrivacyChange,
) -> Result<PrivacyView> {
    actor.require(Right::ManageUsers)?;
    let owner = existing(store, owner)?;
    let mut done = Vec::new();
    if let Some(v) = change.visibility {
        let v = match v {
            Seen::Everyone => Visibility::Everyone,
            Seen::Contacts => Visibility::Contacts,
        };
        store.set_visibility(&owner, v)?;
        done.push(format!("visible to {}", v.name()));
    }
    for (list, blocked) in [(&change.block, true), (&change.unblock, false)] {
        for w in list {
            store.set_blocked(&owner, w, blocked)?;
            done.push(format!("{} {w}", if blocked { "block" } else { "unblock" }));
        }
    }
    if !done.is_empty() {
        audit::record(store, actor, "privacy.change", &owner, &done.join(", "))?;
    }
    privacy(store, actor, &owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_and_privacy_round_trip_and_each_change_is_audited() {
        let s = crate::test_store();
        let root = Actor::console();
        for u in ["ann@example.com", "ben@example.com"] {
            s.add_user(u, "pw", None).unwrap();
        }
        let new = NewContact {
            address: "ben@example.com".into(),
            group: Some("Team".into()),
        };
        let l = add(s.as_ref(), &root, "ann@example.com", &new).unwrap();
        assert_eq!(l.contacts[0].groups, ["Team"]);
        assert_eq!(l.groups, ["Team"]);
        let change = PrivacyChange {
            visibility: Some(Seen::Contacts),
            block: vec!["eve@example.com".into()],
            unblock: vec![],
        };
        let p = set_privacy(s.as_ref(), &root, "ann@example.com", &change).unwrap();
        assert_eq!((p.visibility, p.blocked.len()), (Seen::Contacts, 1));
        let e = remove(s.as_ref(), &root, "ann@example.com", "zed@example.com").unwrap_err();
        assert_eq!(e.kind, crate::Kind::NotFound);
        let e = list(s.as_ref(), &root, "nobody@example.com").unwrap_err();
        assert_eq!(e.kind, crate::Kind::NotFound);
        let actions: Vec<String> = audit::entries(s.as_ref(), &root, None)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["contact.add", "privacy.change"]);
    }
}
