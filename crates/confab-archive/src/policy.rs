//! Archiving policies: which conversations are kept, for how long, and what happens when the
//! archive cannot take a message (critical mode). One document for the deployment, kept as the
//! store's `archiving` setting and edited with `confab archive policy`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::record::Direction;

/// The store setting the document lives in.
pub const SETTING: &str = "archiving";

/// Retention when a policy names none: as the seed's archiving server kept it.
pub const DEFAULT_RETENTION_DAYS: u32 = 60;

/// The policy every user has unless a site or the user is given another.
pub const GLOBAL: &str = "global";

/// What a policy archives and how long it keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Conversations between users of the deployment (inside or signed in remotely).
    #[serde(default)]
    pub internal: bool,
    /// Conversations with users of federated partners.
    #[serde(default)]
    pub external: bool,
    #[serde(default = "default_days")]
    pub retention_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            internal: false,
            external: false,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

impl Policy {
    pub fn archives(&self, direction: Direction) -> bool {
        if direction.is_external() {
            self.external
        } else {
            self.internal
        }
    }
}

fn default_days() -> u32 {
    DEFAULT_RETENTION_DAYS
}

fn yes() -> bool {
    true
}

/// The deployment's archiving document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// A message that cannot be archived is not delivered (the sender gets a 503).
    #[serde(default)]
    pub critical: bool,
    /// Named policies; `global` applies to everybody without another.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// Site name to policy name.
    #[serde(default)]
    pub sites: BTreeMap<String, String>,
    /// User address to policy name.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Users on legal hold: nothing they took part in is purged.
    #[serde(default)]
    pub holds: BTreeSet<String>,
    /// Call detail records (calls and sign-ins) are kept.
    #[serde(default = "yes")]
    pub cdr: bool,
    #[serde(default = "default_days")]
    pub cdr_retention_days: u32,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            critical: false,
            policies: BTreeMap::new(),
            sites: BTreeMap::new(),
            users: BTreeMap::new(),
            holds: BTreeSet::new(),
            cdr: true,
            cdr_retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// A party of a conversation as policies see it: a user of the deployment and its site.
#[derive(Debug, Clone, Copy)]
pub struct Party<'a> {
    pub user: &'a str,
    pub site: Option<&'a str>,
}

impl Policies {
    /// The stored document (empty: the defaults, nothing archived but call records).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let p: Self = serde_json::from_str(text)
            .map_err(|e| format!("the archiving settings are damaged: {e}"))?;
        p.check()?;
        Ok(p)
    }

    pub fn render(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every assignment names a policy that exists; retention between 1 day and 100 years.
    pub fn check(&self) -> Result<(), String> {
        for (what, name) in self
            .sites
            .iter()
            .map(|(s, n)| (format!("site {s}"), n))
            .chain(self.users.iter().map(|(u, n)| (format!("user {u}"), n)))
        {
            if name != GLOBAL && !self.policies.contains_key(name) {
                return Err(format!(
                    "{what} is assigned policy '{name}', which does not exist (create it with `confab archive policy set {name} ...`)"
                ));
            }
        }
        for (name, p) in &self.policies {
            check_days(&format!("policy {name}"), p.retention_days)?;
        }
        check_days("call records", self.cdr_retention_days)
    }

    /// The policy `name` (`global` exists even when never set: archiving nothing).
    pub fn named(&self, name: &str) -> Policy {
        self.policies.get(name).copied().unwrap_or_default()
    }

    /// The policy that applies to a user: the user's own, else its site's, else the global one.
    pub fn for_party(&self, party: Party<'_>) -> Policy {
        let name = self
            .users
            .get(party.user)
            .or_else(|| party.site.and_then(|s| self.sites.get(s)))
            .map_or(GLOBAL, String::as_str);
        self.named(name)
    }

    /// Whether a conversation of `direction` between `parties` (the deployment's users among
    /// its parties) is archived, and then for how many days: the longest retention among the
    /// parties whose policy archives it.
    pub fn retention(&self, direction: Direction, parties: &[Party<'_>]) -> Option<u32> {
        parties
            .iter()
            .map(|p| self.for_party(*p))
            .filter(|p| p.archives(direction))
            .map(|p| p.retention_days)
            .max()
    }

    /// Whether anything is archived at all (no policy archives anything: nothing to decide).
    pub fn archives_anything(&self) -> bool {
        self.policies.values().any(|p| p.internal || p.external)
    }
}

fn check_days(what: &str, days: u32) -> Result<(), String> {
    if (1..=36_500).contains(&days) {
        Ok(())
    } else {
        Err(format!(
            "{what}: retention of {days} days is out of range (1 to 36500)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(user: &str) -> Party<'_> {
        Party { user, site: None }
    }

    #[test]
    fn the_user_policy_wins_over_the_site_and_the_site_over_global() {
        let mut p = Policies::default();
        p.policies.insert(
            GLOBAL.into(),
            Policy {
                internal: true,
                external: false,
                retention_days: 60,
            },
        );
        p.policies.insert(
            "legal".into(),
            Policy {
                internal: true,
                external: true,
                retention_days: 3650,
            },
        );
        p.policies.insert("none".into(), Policy::default());
        p.sites.insert("Redmond".into(), "legal".into());
        p.users.insert("carol@example.com".into(), "none".into());
        p.check().unwrap();
        let redmond = Party {
            user: "dave@example.com",
            site: Some("Redmond"),
        };
        assert_eq!(
            p.retention(Direction::Internal, &[party("alice@example.com")]),
            Some(60)
        );
        assert_eq!(
            p.retention(Direction::Federated, &[party("alice@example.com")]),
            None
        );
        assert_eq!(p.retention(Direction::Federated, &[redmond]), Some(3650));
        let carol = Party {
            user: "carol@example.com",
            site: Some("Redmond"),
        };
        assert_eq!(p.retention(Direction::Internal, &[carol]), None);
        // either party's policy keeps it, for the longer of the two
        assert_eq!(
            p.retention(Direction::Internal, &[carol, redmond]),
            Some(3650)
        );
    }

    #[test]
    fn an_assignment_to_a_missing_policy_is_refused_with_the_fix() {
        let mut p = Policies::default();
        p.users.insert("a@example.com".into(), "legal".into());
        let e = p.check().unwrap_err();
        assert!(e.contains("confab archive policy set legal"), "{e}");
        assert!(Policies::parse("{\"critical\": true, \"bogus\": 1}").is_err());
        assert_eq!(Policies::parse("").unwrap(), Policies::default());
    }
}
