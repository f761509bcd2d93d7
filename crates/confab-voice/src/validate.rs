//! The checks a voice configuration must pass before anything uses it: every mistake is found
//! (not just the first), each named with its object and what to fix. A configuration that
//! fails is never applied (the seed's import once produced routes with an empty gateway,
//! silently: here that is a refusal).

use std::collections::HashSet;

use crate::model::{CallerId, NormalizationRule, Scope, VoiceConfig};
use crate::normalize::is_e164;
use crate::pattern::{Pattern, PatternSet};
use crate::{TrunkRules, Voice};

/// One mistake in a voice configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object: `route "US long distance"`, `dial plan "Redmond" rule "ext"`.
    pub object: String,
    /// What is wrong and what to do.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.what)
    }
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn add(&mut self, object: impl Into<String>, what: impl Into<String>) {
        self.problems.push(Problem {
            object: object.into(),
            what: what.into(),
        });
    }

    /// Each name once, and not empty.
    fn unique<'a>(&mut self, kind: &str, names: impl Iterator<Item = &'a str>) {
        let mut seen = HashSet::new();
        for n in names {
            if n.trim().is_empty() {
                self.add(kind.to_owned(), "has an empty name: give it one");
            } else if !seen.insert(n) {
                self.add(
                    format!("{kind} {n:?}"),
                    "is defined twice: names must be unique",
                );
            }
        }
    }

    fn rules(&mut self, object: &str, rules: &[NormalizationRule]) -> Vec<Pattern> {
        rules
            .iter()
            .filter_map(|r| match Pattern::new(&r.pattern, &r.translation) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.add(format!("{object} rule {:?}", r.name), e.to_string());
                    None
                }
            })
            .collect()
    }
}

impl Voice {
    /// Checks `config` and compiles its patterns; every problem found, when there are any.
    pub fn compile(config: VoiceConfig) -> Result<Self, Vec<Problem>> {
        let mut c = Checker {
            problems: Vec::new(),
        };
        let cfg = &config;
        c.unique("dial plan", cfg.dial_plans.iter().map(|p| p.name.as_str()));
        c.unique("PSTN usage", cfg.usages.iter().map(String::as_str));
        c.unique("voice policy", cfg.policies.iter().map(|p| p.name.as_str()));
        c.unique("route", cfg.routes.iter().map(|r| r.name.as_str()));
        c.unique("trunk", cfg.trunks.iter().map(|t| t.name.as_str()));
        c.unique(
            "unassigned range",
            cfg.unassigned.iter().map(|u| u.name.as_str()),
        );
        scopes_once(
            &mut c,
            "dial plan",
            cfg.dial_plans.iter().map(|p| (&p.name, &p.scope)),
        );
        scopes_once(
            &mut c,
            "voice policy",
            cfg.policies.iter().map(|p| (&p.name, &p.scope)),
        );

        let plans: Vec<Vec<Pattern>> = cfg
            .dial_plans
            .iter()
            .map(|p| c.rules(&format!("dial plan {:?}", p.name), &p.rules))
            .collect();
        let usage = |u: &str| cfg.usages.iter().any(|x| x == u);
        for p in &cfg.policies {
            let object = format!("voice policy {:?}", p.name);
            for u in p.usages.iter().filter(|u| !usage(u)) {
                c.add(&object, format!("names the PSTN usage {u:?}, which does not exist: add it to usages or remove it from the policy"));
            }
        }
        let routes = cfg
            .routes
            .iter()
            .filter_map(|r| {
                let object = format!("route {:?}", r.name);
                if r.trunks.is_empty() {
                    c.add(&object, "has no trunk: a route needs at least one trunk to carry its calls");
                }
                for t in r.trunks.iter().filter(|t| !cfg.trunks.iter().any(|x| &x.name == *t)) {
                    c.add(&object, format!("names the trunk {t:?}, which does not exist"));
                }
                if r.usages.is_empty() {
                    c.add(&object, "serves no PSTN usage: no policy can use it");
                }
                for u in r.usages.iter().filter(|u| !usage(u)) {
                    c.add(&object, format!("names the PSTN usage {u:?}, which does not exist"));
                }
                if let CallerId::Replace(n) = &r.caller_id {
                    if !n.strip_prefix("tel:").is_some_and(is_e164) {
                        c.add(&object, format!("replaces the caller's identity with {n:?}: write it tel:+<E.164 number>"));
                    }
                }
                Pattern::matcher(&r.pattern)
                    .map_err(|e| c.add(&object, e.to_string()))
                    .ok()
            })
            .collect::<Vec<_>>();
        let trunks = cfg
            .trunks
            .iter()
            .map(|t| {
                let object = format!("trunk {:?}", t.name);
                if t.gateway.host.trim().is_empty() {
                    c.add(
                        &object,
                        "has no gateway: set gateway.host to the gateway's address or FQDN",
                    );
                }
                if t.gateway.port == 0 {
                    c.add(&object, "has gateway port 0");
                }
                if t.failover_after == 0 {
                    c.add(
                        &object,
                        "fails over after 0 s: give the gateway time to answer (default 10)",
                    );
                }
                TrunkRules {
                    called: c.rules(&format!("{object} called"), &t.called),
                    calling: c.rules(&format!("{object} calling"), &t.calling),
                    inbound: c.rules(&format!("{object} inbound"), &t.inbound),
                }
            })
            .collect();
        for e in &cfg.emergency {
            let object = match &e.site {
                Some(s) => format!("emergency numbers of site {s:?}"),
                None => "emergency numbers".to_owned(),
            };
            if !usage(&e.usage) {
                c.add(
                    &object,
                    format!("use the PSTN usage {:?}, which does not exist", e.usage),
                );
            }
            if e.numbers.is_empty() {
                c.add(&object, "list no number");
            }
            if e.masks.len() > e.numbers.len() {
                c.add(
                    &object,
                    "have more masks than numbers: each mask stands for the number at its position",
                );
            }
        }
        for u in &cfg.usages {
            let used = cfg.policies.iter().any(|p| p.usages.contains(u))
                || cfg.emergency.iter().any(|e| &e.usage == u);
            if !used {
                c.add(
                    format!("PSTN usage {u:?}"),
                    "is used by no voice policy: add it to one or remove it",
                );
            }
        }
        for u in &cfg.unassigned {
            let object = format!("unassigned range {:?}", u.name);
            if !is_e164(&u.first)
                || !is_e164(&u.last)
                || u.first.len() != u.last.len()
                || u.first > u.last
            {
                c.add(
                    &object,
                    "needs first and last E.164 numbers of the same length, first <= last",
                );
            }
            if let Some(d) = &u.destination {
                if !is_e164(d.strip_prefix("tel:").unwrap_or(d)) {
                    c.add(
                        &object,
                        format!("sends calls to {d:?}: write an E.164 number"),
                    );
                }
            }
        }
        if !c.problems.is_empty() {
            return Err(c.problems);
        }
        let plan_sets = config
            .dial_plans
            .iter()
            .map(|p| PatternSet::new(p.rules.iter().map(|r| r.pattern.as_str())))
            .collect();
        let route_set = PatternSet::new(config.routes.iter().map(|r| r.pattern.as_str()));
        Ok(Self {
            plans,
            routes,
            trunks,
            plan_sets,
            route_set,
            config,
        })
    }
}

/// At most one object per scope (but any number assigned per user).
fn scopes_once<'a>(
    c: &mut Checker,
    kind: &str,
    objects: impl Iterator<Item = (&'a String, &'a Scope)>,
) {
    let mut seen: Vec<(&Scope, &String)> = Vec::new();
    for (name, scope) in objects {
        if *scope == Scope::User {
            continue;
        }
        match seen.iter().find(|(s, _)| *s == scope) {
            Some((_, other)) => c.add(
                format!("{kind} {name:?}"),
                format!("has scope {scope}, as {kind} {other:?} does: one per scope"),
            ),
            None => seen.push((scope, name)),
        }
    }
}
