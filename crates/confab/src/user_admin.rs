//! Where `confab user` commands go: the database here (`confab_admin` called directly) or a
//! server's API (`--server`). Both sides run the same `confab_admin` functions; this is only
//! the way there.

use confab_admin::users::{Import, Imported, NewUser, UserChange, UserFilter, UserPage, UserView};
use confab_admin::{Actor, Result};
use confab_store::Store;
use confab_topology::Topology;

use crate::remote::{escape, Api};

/// User administration, here or there.
pub(crate) enum Users {
    Here {
        store: Box<dyn Store>,
        topology: Option<Box<Topology>>,
        me: Actor,
    },
    There(Api),
}

impl Users {
    pub(crate) fn add(&self, new: &NewUser) -> Result<UserView> {
        match self {
            Self::Here {
                store,
                topology,
                me,
            } => confab_admin::users::add(store.as_ref(), topology.as_deref(), me, new),
            Self::There(api) => api.json("POST", "/users", Some(new)),
        }
    }

    pub(crate) fn import(&self, import: &Import) -> Result<Imported> {
        match self {
            Self::Here {
                store,
                topology,
                me,
            } => confab_admin::users::import(store.as_ref(), topology.as_deref(), me, import),
            Self::There(api) => api.json("POST", "/users/import", Some(import)),
        }
    }

    pub(crate) fn list(&self, filter: &UserFilter) -> Result<UserPage> {
        match self {
            Self::Here { store, me, .. } => confab_admin::users::list(store.as_ref(), me, filter),
            Self::There(api) => {
                let mut q = Vec::new();
                if let Some(p) = &filter.pool {
                    q.push(format!("pool={}", escape(p)));
                }
                if let Some(t) = &filter.q {
                    q.push(format!("q={}", escape(t)));
                }
                if let Some(a) = &filter.after {
                    q.push(format!("after={}", escape(a)));
                }
                if let Some(l) = filter.limit {
                    q.push(format!("limit={l}"));
                }
                api.json("GET", &format!("/users?{}", q.join("&")), None::<&()>)
            }
        }
    }

    pub(crate) fn change(&self, address: &str, change: &UserChange) -> Result<UserView> {
        match self {
            Self::Here {
                store,
                topology,
                me,
            } => confab_admin::users::change(
                store.as_ref(),
                topology.as_deref(),
                me,
                address,
                change,
                None,
            ),
            Self::There(api) => {
                api.json("PUT", &format!("/users/{}", escape(address)), Some(change))
            }
        }
    }

    pub(crate) fn remove(&self, address: &str) -> Result<()> {
        match self {
            Self::Here { store, me, .. } => {
                confab_admin::users::remove(store.as_ref(), me, address, None)
            }
            Self::There(api) => api
                .call("DELETE", &format!("/users/{}", escape(address)), None)
                .map(drop),
        }
    }

    pub(crate) fn set_password(&self, address: &str, password: &str) -> Result<()> {
        match self {
            Self::Here { store, me, .. } => {
                confab_admin::users::set_password(store.as_ref(), me, address, password)
            }
            Self::There(api) => {
                let body = serde_json::json!({ "password": password }).to_string();
                api.call(
                    "PUT",
                    &format!("/users/{}/password", escape(address)),
                    Some(body.into_bytes()),
                )
                .map(drop)
            }
        }
    }

    pub(crate) fn unlock(&self, address: &str) -> Result<()> {
        match self {
            Self::Here { store, me, .. } => {
                confab_admin::users::unlock(store.as_ref(), me, address)
            }
            Self::There(api) => api
                .call("POST", &format!("/users/{}/unlock", escape(address)), None)
                .map(drop),
        }
    }
}
