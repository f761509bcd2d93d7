//! Summaries of the call records, as the monitoring reports of the seeds' systems gave them:
//! per day or per user, counts, durations and failures by response code.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::db::{Db, Result};
use crate::query::Query;
use crate::time::day_of;

/// How a report groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Day,
    /// Calls under their caller; sign-ins under their user.
    User,
}

impl std::str::FromStr for By {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "day" => Ok(Self::Day),
            "user" => Ok(Self::User),
            other => Err(format!("cannot group by '{other}': use day or user")),
        }
    }
}

/// One line of the calls report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Calls {
    pub calls: u64,
    pub answered: u64,
    pub seconds: i64,
    /// Unanswered calls by final response code.
    pub failures: BTreeMap<u16, u64>,
}

/// One line of the sign-ins report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SignIns {
    pub sign_ins: u64,
    pub sign_outs: u64,
    pub expired: u64,
    pub clients: BTreeMap<String, u64>,
}

/// The calls report.
pub fn calls(db: &mut Db, q: &Query, by: By) -> Result<BTreeMap<String, Calls>> {
    let mut out: BTreeMap<String, Calls> = BTreeMap::new();
    db.calls(q, &mut |c| {
        let key = match by {
            By::Day => day_of(c.start_ms),
            By::User => c.caller.clone(),
        };
        let line = out.entry(key).or_default();
        line.calls += 1;
        if c.answer_ms.is_some() {
            line.answered += 1;
            line.seconds += c.duration_s();
        } else {
            *line.failures.entry(c.status).or_default() += 1;
        }
        true
    })?;
    Ok(out)
}

/// The sign-ins report.
pub fn sign_ins(db: &mut Db, q: &Query, by: By) -> Result<BTreeMap<String, SignIns>> {
    let mut out: BTreeMap<String, SignIns> = BTreeMap::new();
    db.registrations(q, &mut |r| {
        let key = match by {
            By::Day => day_of(r.at_ms),
            By::User => r.user.clone(),
        };
        let line = out.entry(key).or_default();
        match r.event.as_str() {
            "sign-in" => {
                line.sign_ins += 1;
                *line.clients.entry(r.client.clone()).or_default() += 1;
            }
            "expired" => line.expired += 1,
            _ => line.sign_outs += 1,
        }
        true
    })?;
    Ok(out)
}

/// The calls report as a table.
pub fn render_calls(by: By, lines: &BTreeMap<String, Calls>) -> String {
    let head = if by == By::Day { "day" } else { "caller" };
    let mut s = format!(
        "{head:<32} {:>7} {:>8} {:>10} {:>10}  failures\n",
        "calls", "answered", "minutes", "avg s"
    );
    for (k, l) in lines {
        let avg = if l.answered > 0 {
            l.seconds / l.answered as i64
        } else {
            0
        };
        let failures: Vec<String> = l.failures.iter().map(|(c, n)| format!("{c}x{n}")).collect();
        let _ = writeln!(
            s,
            "{k:<32} {:>7} {:>8} {:>10.1} {:>10}  {}",
            l.calls,
            l.answered,
            l.seconds as f64 / 60.0,
            avg,
            if failures.is_empty() {
                "-".into()
            } else {
                failures.join(" ")
            }
        );
    }
    s
}

/// The sign-ins report as a table.
pub fn render_sign_ins(by: By, lines: &BTreeMap<String, SignIns>) -> String {
    let head = if by == By::Day { "day" } else { "user" };
    let mut s = format!(
        "{head:<32} {:>8} {:>9} {:>7}  clients\n",
        "sign-ins", "sign-outs", "expired"
    );
    for (k, l) in lines {
        let clients: Vec<String> = l
            .clients
            .iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        let _ = writeln!(
            s,
            "{k:<32} {:>8} {:>9} {:>7}  {}",
            l.sign_ins,
            l.sign_outs,
            l.expired,
            if clients.is_empty() {
                "-".into()
            } else {
                clients.join(", ")
            }
        );
    }
    s
}
