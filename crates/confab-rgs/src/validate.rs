//! The checks of a response-group document: every problem named with its object and what to
//! do, all of them at once. Checks needing the rest of the deployment (users' numbers and
//! addresses, pools of the topology, stored sounds) are the caller's.

use std::collections::HashMap;

use crate::hours::Calendar;
use crate::model::{Ivr, Prompt, RgsConfig, Then};

/// A mistake in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object: `workflow "Help Desk"`, `queue "Tier 1"`.
    pub object: String,
    /// What is wrong and what to do.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.what)
    }
}

/// Alert times and waits allowed, in seconds.
const ALERT: std::ops::RangeInclusive<u32> = 5..=600;
const WAIT: std::ops::RangeInclusive<u32> = 10..=65_535;

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn add(&mut self, object: &str, what: impl Into<String>) {
        self.problems.push(Problem {
            object: object.to_owned(),
            what: what.into(),
        });
    }

    fn names<'a>(&mut self, kind: &str, names: impl Iterator<Item = (&'a str, &'a str)>) {
        let mut seen = HashMap::new();
        for (name, pool) in names {
            let object = format!("{kind} \"{name}\"");
            if name.trim().is_empty() {
                self.add(&object, "has no name; give it one");
            }
            if pool.trim().is_empty() {
                self.add(
                    &object,
                    "has no owner pool; every object belongs to one (--pool FQDN)",
                );
            }
            if seen.insert(name.to_ascii_lowercase(), ()).is_some() {
                self.add(&object, "is defined twice; names are unique: rename one");
            }
        }
    }
}

impl RgsConfig {
    /// Every problem of the document; empty when it can be served.
    pub fn check(&self) -> Vec<Problem> {
        let mut c = Checker::default();
        c.names("group", self.groups.iter().map(|g| (&*g.name, &*g.pool)));
        c.names("queue", self.queues.iter().map(|q| (&*q.name, &*q.pool)));
        c.names(
            "workflow",
            self.workflows.iter().map(|w| (&*w.name, &*w.pool)),
        );
        c.names(
            "holiday set",
            self.holiday_sets.iter().map(|h| (&*h.name, &*h.pool)),
        );
        for g in &self.groups {
            let object = format!("group \"{}\"", g.name);
            if g.agents.is_empty() {
                c.add(
                    &object,
                    "has no agent; add members with --agents user@domain,...",
                );
            }
            for a in &g.agents {
                if !a.contains('@') || a.starts_with("sip:") {
                    c.add(&object, format!("agent `{a}` is not a user@domain address"));
                }
            }
            if !ALERT.contains(&g.alert_time) {
                c.add(
                    &object,
                    format!(
                        "alert time {} s is out of range; use {} to {} seconds",
                        g.alert_time,
                        ALERT.start(),
                        ALERT.end()
                    ),
                );
            }
        }
        for q in &self.queues {
            let object = format!("queue \"{}\"", q.name);
            if q.groups.is_empty() {
                c.add(&object, "has no agent group; add one with --groups NAME");
            }
            for g in &q.groups {
                if self.group(g).is_none() {
                    c.add(
                        &object,
                        format!("no agent group `{g}`: create it first or remove it"),
                    );
                }
            }
            if let Some(t) = &q.timeout {
                if !WAIT.contains(&t.after) {
                    c.add(
                        &object,
                        format!(
                            "time-out {} s is out of range; use 10 seconds or more",
                            t.after
                        ),
                    );
                }
                self.check_then(&mut c, &object, &t.then, Some(&q.name));
            }
            if let Some(o) = &q.overflow {
                self.check_then(&mut c, &object, &o.then, Some(&q.name));
            }
        }
        let mut numbers: HashMap<String, &str> = HashMap::new();
        let mut addresses: HashMap<String, &str> = HashMap::new();
        for w in &self.workflows {
            let object = format!("workflow \"{}\"", w.name);
            self.check_workflow(&mut c, &object, w);
            if let Some(n) = &w.number {
                let bare = n.strip_prefix("tel:").unwrap_or(n);
                let bare = bare.split(';').next().unwrap_or(bare);
                if !n.starts_with("tel:+")
                    || bare.len() < 3
                    || !bare[1..].bytes().all(|b| b.is_ascii_digit())
                {
                    c.add(
                        &object,
                        format!("number `{n}` is not an E.164 Line URI like tel:+14255550100"),
                    );
                } else if let Some(other) = numbers.insert(bare.to_owned(), &w.name) {
                    c.add(
                        &object,
                        format!("number {bare} is also workflow \"{other}\"'s; give each its own"),
                    );
                }
            }
            let key = w.address.to_ascii_lowercase();
            if let Some(other) = addresses.insert(key, &w.name) {
                c.add(
                    &object,
                    format!("address {} is also workflow \"{other}\"'s", w.address),
                );
            }
        }
        c.problems
    }

    fn check_workflow(&self, c: &mut Checker, object: &str, w: &crate::Workflow) {
        let user = w
            .address
            .strip_prefix("sip:")
            .and_then(|a| a.split_once('@'))
            .filter(|(u, d)| !u.is_empty() && !d.is_empty());
        if user.is_none() {
            c.add(
                object,
                format!("address `{}` is not a sip:name@domain address", w.address),
            );
        }
        match (&w.queue, &w.ivr) {
            (None, None) => c.add(
                object,
                "has no queue; give it one (--queue NAME) or an IVR whose options lead to queues",
            ),
            (Some(_), Some(_)) => c.add(
                object,
                "has both a queue and an IVR; a hunt group has a queue, an interactive workflow an IVR",
            ),
            (Some(q), None) => self.check_queue_ref(c, object, q),
            (None, Some(ivr)) => self.check_ivr(c, object, ivr, 1),
        }
        if let Err(e) = Calendar::of(w, &self.holiday_sets) {
            c.add(object, e);
        }
        for closed in [&w.after_hours, &w.holiday].into_iter().flatten() {
            self.check_then(c, object, &closed.then, None);
            check_prompt(c, object, "message", closed.message.as_ref());
        }
        check_prompt(c, object, "welcome", w.welcome.as_ref());
        check_prompt(c, object, "music", w.music.as_ref());
    }

    fn check_ivr(&self, c: &mut Checker, object: &str, ivr: &Ivr, level: u32) {
        if level > 2 {
            c.add(
                object,
                "an IVR has two levels at most; send the third level's options to queues",
            );
            return;
        }
        check_prompt(c, object, "IVR question", Some(&ivr.question));
        if ivr.options.is_empty() {
            c.add(
                object,
                format!("IVR level {level} has no option; add one key leading to a queue"),
            );
        }
        if !WAIT.contains(&ivr.wait) {
            c.add(
                object,
                format!(
                    "IVR wait {} s is out of range; use 10 seconds or more",
                    ivr.wait
                ),
            );
        }
        let mut keys = Vec::new();
        for o in &ivr.options {
            let ok = o.digit.len() == 1
                && o.digit
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
            if !ok {
                c.add(
                    object,
                    format!("IVR key `{}` is not one of 0-9, * or #", o.digit),
                );
            }
            if keys.contains(&o.digit) {
                c.add(
                    object,
                    format!("IVR key {} is used twice on level {level}", o.digit),
                );
            }
            keys.push(o.digit.clone());
            match (&o.queue, &o.ivr) {
                (Some(q), None) => self.check_queue_ref(c, object, q),
                (None, Some(next)) => self.check_ivr(c, object, next, level + 1),
                _ => c.add(
                    object,
                    format!(
                        "IVR key {} must lead to exactly one queue or one next level",
                        o.digit
                    ),
                ),
            }
        }
    }

    fn check_queue_ref(&self, c: &mut Checker, object: &str, q: &str) {
        if self.queue(q).is_none() {
            c.add(
                object,
                format!("no queue `{q}`: create it first (confab rgs queue add)"),
            );
        }
    }

    fn check_then(&self, c: &mut Checker, object: &str, then: &Then, from: Option<&str>) {
        if let Then::Queue(q) = then {
            if Some(q.as_str()) == from {
                c.add(
                    object,
                    format!(
                        "sends callers to itself (queue:{q}); choose another queue or disconnect"
                    ),
                );
            } else {
                self.check_queue_ref(c, object, q);
            }
        }
    }
}

fn check_prompt(c: &mut Checker, object: &str, what: &str, p: Option<&Prompt>) {
    if let Some(p) = p {
        if p.text.is_none() && p.file.is_none() && p.audio.is_none() {
            c.add(object, format!("{what} has neither text nor file"));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::RgsConfig;

    const GOOD: &str = r#"
[[group]]
name = "Help Desk Agents"
pool = "pool1.example.com"
routing = "round-robin"
alert_time = 15
agents = ["alice@example.com", "bob@example.com"]

[[queue]]
name = "Help Desk"
pool = "pool1.example.com"
groups = ["Help Desk Agents"]
timeout = { after = 60, then = "forward:sip:carol@example.com" }
overflow = { callers = 5, candidate = "oldest", then = "queue:Second line" }

[[queue]]
name = "Second line"
pool = "pool1.example.com"
groups = ["Help Desk Agents"]

[[workflow]]
name = "Help Desk"
pool = "pool1.example.com"
address = "sip:helpdesk@example.com"
number = "tel:+14255550100"
welcome = { text = "Welcome to the help desk." }
hours = { zone = "Europe/Paris", mon = ["08:00-17:00"] }

[workflow.ivr]
question = { text = "For hardware press 1, for software press 2." }
[[workflow.ivr.option]]
digit = "1"
queue = "Help Desk"
[[workflow.ivr.option]]
digit = "2"
ivr = { question = { text = "Windows 1, Linux 2" }, option = [{ digit = "1", queue = "Second line" }] }
"#;

    #[test]
    fn a_good_document_passes_and_round_trips() {
        let c = RgsConfig::from_toml(GOOD).unwrap();
        assert_eq!(c.check(), vec![]);
        assert_eq!(RgsConfig::from_toml(&c.to_toml()).unwrap(), c);
        assert_eq!(
            c.queues[0].timeout.as_ref().unwrap().then.to_string(),
            "forward:sip:carol@example.com"
        );
    }

    fn problems(edit: impl FnOnce(&mut RgsConfig)) -> Vec<String> {
        let mut c = RgsConfig::from_toml(GOOD).unwrap();
        edit(&mut c);
        c.check().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn mistakes_are_named_with_their_object_and_fix() {
        let p = problems(|c| {
            c.workflows[0].ivr = None;
        });
        assert_eq!(p, ["workflow \"Help Desk\": has no queue; give it one (--queue NAME) or an IVR whose options lead to queues"]);
        let p = problems(|c| c.queues[1].groups.clear());
        assert_eq!(
            p,
            ["queue \"Second line\": has no agent group; add one with --groups NAME"]
        );
        let p = problems(|c| c.groups[0].agents.clear());
        assert_eq!(p, ["group \"Help Desk Agents\": has no agent; add members with --agents user@domain,..."]);
        let p = problems(|c| {
            let mut w = c.workflows[0].clone();
            w.name = "Reception".into();
            w.address = "sip:reception@example.com".into();
            c.workflows.push(w);
        });
        assert_eq!(p, ["workflow \"Reception\": number +14255550100 is also workflow \"Help Desk\"'s; give each its own"]);
        let p =
            problems(|c| c.workflows[0].hours.as_mut().unwrap().mon = vec!["17:00-08:00".into()]);
        assert!(
            p[0].starts_with(
                "workflow \"Help Desk\": hours mon: `17:00-08:00` ends before it starts"
            ),
            "{p:?}"
        );
        let p = problems(|c| c.queues[0].pool.clear());
        assert_eq!(
            p,
            ["queue \"Help Desk\": has no owner pool; every object belongs to one (--pool FQDN)"]
        );
        let p = problems(|c| {
            c.queues[1].timeout = Some(crate::Timeout {
                after: 30,
                then: crate::Then::Queue("Second line".into()),
            })
        });
        assert!(p[0].contains("sends callers to itself"), "{p:?}");
        let p = problems(|c| {
            let o = &mut c.workflows[0].ivr.as_mut().unwrap().options[1];
            let level2 = o.ivr.as_mut().unwrap();
            level2.options[0].queue = None;
            level2.options[0].ivr = Some(Box::new(crate::Ivr {
                question: crate::Prompt {
                    text: Some("deeper".into()),
                    ..Default::default()
                },
                options: vec![],
                wait: 10,
            }));
        });
        assert!(p[0].contains("two levels at most"), "{p:?}");
        assert!(
            RgsConfig::from_toml("[[group]]\nname='x'\npool='p'\ncolour='red'\n")
                .unwrap_err()
                .contains("colour")
        );
        assert!(RgsConfig::from_toml(
            "[[queue]]\nname='x'\npool='p'\ntimeout={after=10,then='explode'}\n"
        )
        .unwrap_err()
        .contains("not an action"));
    }

    #[test]
    fn moving_a_pool_moves_every_object_and_keeps_numbers_and_addresses() {
        let mut c = RgsConfig::from_toml(GOOD).unwrap();
        c.groups[0].pool = "pool2.example.com".into();
        assert_eq!(c.move_pool("POOL1.example.com", "pool3.example.com"), 3);
        assert!(c
            .queues
            .iter()
            .chain([])
            .all(|q| q.pool == "pool3.example.com"));
        assert_eq!(c.workflows[0].pool, "pool3.example.com");
        assert_eq!(
            c.groups[0].pool, "pool2.example.com",
            "another pool's group stays"
        );
        assert_eq!(c.workflows[0].number.as_deref(), Some("tel:+14255550100"));
        assert_eq!(c.workflows[0].address, "sip:helpdesk@example.com");
        assert_eq!(c.check(), vec![]);
    }
}
