//! Which routes and trunks may carry a call to a number, for a user: the voice policy that
//! applies, its PSTN usages in order, and for each the routes (in their order) that serve the
//! usage and match the number. Emergency numbers bypass the policy. Trunks translate numbers
//! into their gateway's format.

use crate::model::{Emergency, Unassigned, VoicePolicy};
use crate::normalize::most_specific;
use crate::{Placement, Voice};

/// One route a call may take, with its trunks in the order they are tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub usage: String,
    pub route: String,
    pub trunks: Vec<String>,
}

/// How a call to a number is routed: the policy that allowed it, and every route it may take,
/// in the order they are tried (a route's trunks, then the next route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The voice policy; none for an emergency call (no policy can block it).
    pub policy: Option<String>,
    pub candidates: Vec<Candidate>,
}

/// Why a call to a number has no route (`403`/`404` with this in the reason phrase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRoute {
    /// No voice policy applies to the user (none assigned, none for the pool, site or global).
    NoPolicy,
    /// The user's policy names one that does not exist.
    UnknownPolicy(String),
    /// None of the policy's usages has a route that matches the number.
    NoMatch {
        policy: String,
        number: String,
        usages: Vec<String>,
    },
}

impl std::fmt::Display for NoRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoPolicy => f.write_str("no voice policy applies to the caller"),
            Self::UnknownPolicy(p) => write!(f, "the caller's voice policy {p} does not exist"),
            Self::NoMatch {
                policy,
                number,
                usages,
            } => write!(
                f,
                "no route for {number} in voice policy {policy} (PSTN usages: {})",
                if usages.is_empty() {
                    "none".to_owned()
                } else {
                    usages.join(", ")
                }
            ),
        }
    }
}

impl Voice {
    /// The voice policy that applies to a user: assigned, else the pool's, the site's, global.
    pub fn policy_for(&self, at: &Placement) -> Result<&VoicePolicy, NoRoute> {
        let policies = &self.config().policies;
        if let Some(name) = &at.voice_policy {
            return policies
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| NoRoute::UnknownPolicy(name.clone()));
        }
        most_specific(policies.iter().map(|p| (&p.scope, p)), at).ok_or(NoRoute::NoPolicy)
    }

    /// The routes a call from the user at `at` to `number` (E.164, normalized) may take.
    pub fn routes_for(&self, at: &Placement, number: &str) -> Result<Routing, NoRoute> {
        let policy = self.policy_for(at)?;
        let matching = self.matching_routes(number);
        let candidates: Vec<Candidate> = policy
            .usages
            .iter()
            .flat_map(|usage| self.routes_in(usage, &matching))
            .collect();
        if candidates.is_empty() {
            return Err(NoRoute::NoMatch {
                policy: policy.name.clone(),
                number: number.to_owned(),
                usages: policy.usages.clone(),
            });
        }
        Ok(Routing {
            policy: Some(policy.name.clone()),
            candidates,
        })
    }

    /// The routes whose pattern matches `number`, in order (one pass over them all).
    fn matching_routes(&self, number: &str) -> Vec<usize> {
        match &self.route_set {
            Some(set) => set.all(number),
            None => (self.routes.iter().enumerate())
                .filter(|(_, p)| p.is_match(number))
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// Of the routes in `matching`, those that serve `usage`, in order.
    fn routes_in(&self, usage: &str, matching: &[usize]) -> Vec<Candidate> {
        let routes = &self.config().routes;
        matching
            .iter()
            .map(|&i| &routes[i])
            .filter(|r| r.usages.iter().any(|u| u == usage))
            .map(|r| Candidate {
                usage: usage.to_owned(),
                route: r.name.clone(),
                trunks: r.trunks.clone(),
            })
            .collect()
    }

    /// When `dialled` is an emergency number (or a mask of one) at the user's site: the number
    /// to call and its routes, whatever the user's policy (none when no route serves it).
    pub fn emergency(&self, at: &Placement, dialled: &str) -> Option<(String, Routing)> {
        let own = |e: &&Emergency| e.site.is_some() && e.site == at.site;
        let all = &self.config().emergency;
        let e = all
            .iter()
            .find(own)
            .or_else(|| all.iter().find(|e| e.site.is_none()))?;
        let d = crate::normalize::without_separators(dialled);
        let number = e
            .numbers
            .iter()
            .find(|n| **n == d)
            .or_else(|| {
                e.masks
                    .iter()
                    .position(|m| *m == d)
                    .and_then(|i| e.numbers.get(i))
            })?
            .clone();
        let candidates = self.routes_in(&e.usage, &self.matching_routes(&number));
        Some((
            number,
            Routing {
                policy: None,
                candidates,
            },
        ))
    }

    /// `number` as trunk `trunk` writes it toward its gateway (the called number, or with
    /// `calling` the caller's): its first rule that matches, else unchanged.
    pub fn on_trunk(&self, trunk: &str, number: &str, calling: bool) -> String {
        let Some(i) = self.config().trunks.iter().position(|t| t.name == trunk) else {
            return number.to_owned();
        };
        let rules = if calling {
            &self.trunks[i].calling
        } else {
            &self.trunks[i].called
        };
        rules
            .iter()
            .find_map(|r| r.apply(number))
            .unwrap_or_else(|| number.to_owned())
    }

    /// A number arriving from trunk `trunk`'s gateway, after the trunk's inbound rules.
    pub fn from_trunk(&self, trunk: &str, number: &str) -> String {
        let Some(i) = self.config().trunks.iter().position(|t| t.name == trunk) else {
            return number.to_owned();
        };
        self.trunks[i]
            .inbound
            .iter()
            .find_map(|r| r.apply(number))
            .unwrap_or_else(|| number.to_owned())
    }

    /// The unassigned range `number` (E.164) falls in, if any.
    pub fn unassigned(&self, number: &str) -> Option<&Unassigned> {
        self.config().unassigned.iter().find(|u| {
            u.first.len() == number.len() && u.first.as_str() <= number && number <= u.last.as_str()
        })
    }
}
