//! What a user dials, made a number: the dial plan that applies to the user, its first rule
//! that matches, the E.164 result (or an internal extension).

use crate::model::{DialPlan, Scope};
use crate::{Placement, Voice};

/// A dialled string turned into a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The dial plan used (none when no plan applies and the string was already E.164).
    pub plan: Option<String>,
    /// The rule that matched (none: already E.164, no rule needed).
    pub rule: Option<String>,
    /// The result: E.164 (`+14255550123`), or an extension when `internal_extension`.
    pub number: String,
    pub internal_extension: bool,
}

/// Why a dialled string is no number (a call gets `484 Address Incomplete` with this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialled {
    /// Characters that are not dialled digits (letters, ...).
    NotDigits(String),
    /// No rule of the dial plan matches it, and it is not E.164.
    NoRule {
        plan: Option<String>,
        dialled: String,
    },
}

impl std::fmt::Display for Dialled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotDigits(d) => write!(
                f,
                "{d:?} is not a phone number: only digits, a leading + and * # are dialled"
            ),
            Self::NoRule {
                plan: Some(p),
                dialled,
            } => write!(
                f,
                "no rule of dial plan {p} matches {dialled} and it is not an E.164 number"
            ),
            Self::NoRule {
                plan: None,
                dialled,
            } => write!(
                f,
                "{dialled} is not an E.164 number and no dial plan applies"
            ),
        }
    }
}

/// A Line URI as written by an administrator (`tel:+1 (425) 555-0101;ext=101`, or without
/// `tel:`), in the form it is kept and compared in: `tel:+14255550101;ext=101`.
pub fn line_uri(text: &str) -> Result<String, String> {
    let t = text.trim();
    let t = t
        .strip_prefix("tel:")
        .or_else(|| t.strip_prefix("TEL:"))
        .unwrap_or(t);
    let (number, params) = t.split_once(';').unwrap_or((t, ""));
    let number = without_separators(number);
    if !is_e164(&number) {
        return Err(format!(
            "{text:?} is not a Line URI: write tel:+ and the E.164 number (7 to 15 digits), optionally ;ext=DIGITS"
        ));
    }
    match params.split_once('=') {
        None if params.is_empty() => Ok(format!("tel:{number}")),
        Some((k, ext))
            if k.eq_ignore_ascii_case("ext")
                && !ext.is_empty()
                && ext.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(format!("tel:{number};ext={ext}"))
        }
        _ => Err(format!(
            "{text:?}: the only parameter a Line URI takes is ;ext=DIGITS"
        )),
    }
}

/// `+` and 7 to 15 digits.
pub(crate) fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Without RFC 3966 visual separators (`-`, `.`, `(`, `)`, spaces).
pub(crate) fn without_separators(dialled: &str) -> String {
    dialled
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | ' '))
        .collect()
}

impl Voice {
    /// The dial plan that applies to a user: assigned, else the pool's, the site's, global.
    pub fn dial_plan_for(&self, at: &Placement) -> Option<&DialPlan> {
        let plans = &self.config().dial_plans;
        if let Some(name) = &at.dial_plan {
            return plans.iter().find(|p| &p.name == name);
        }
        most_specific(plans.iter().map(|p| (&p.scope, p)), at)
    }

    /// Normalizes `dialled` with the dial plan that applies to the user at `at`.
    pub fn normalize(&self, at: &Placement, dialled: &str) -> Result<Normalized, Dialled> {
        let plan = self.dial_plan_for(at);
        self.normalize_with(plan.map(|p| p.name.as_str()), dialled)
    }

    /// Normalizes `dialled` with the dial plan named `plan` (none: E.164 only).
    pub fn normalize_with(&self, plan: Option<&str>, dialled: &str) -> Result<Normalized, Dialled> {
        let d = without_separators(dialled);
        let digits = d.strip_prefix('+').unwrap_or(&d);
        if d.is_empty()
            || !digits
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        {
            return Err(Dialled::NotDigits(dialled.to_owned()));
        }
        let index = plan.and_then(|n| self.config().dial_plans.iter().position(|p| p.name == n));
        if let Some(i) = index {
            let p = &self.config().dial_plans[i];
            // the set says which rule matches first, in one pass; then only that one runs
            let from = match &self.plan_sets[i] {
                Some(set) => set.first(&d).unwrap_or(p.rules.len()),
                None => 0,
            };
            for (rule, compiled) in p.rules.iter().zip(&self.plans[i]).skip(from) {
                if let Some(number) = compiled.apply(&d) {
                    return Ok(Normalized {
                        plan: Some(p.name.clone()),
                        rule: Some(rule.name.clone()),
                        number,
                        internal_extension: rule.internal_extension,
                    });
                }
            }
        }
        if is_e164(&d) {
            return Ok(Normalized {
                plan: index.map(|i| self.config().dial_plans[i].name.clone()),
                rule: None,
                number: d,
                internal_extension: false,
            });
        }
        Err(Dialled::NoRule {
            plan: index.map(|i| self.config().dial_plans[i].name.clone()),
            dialled: dialled.to_owned(),
        })
    }
}

/// Of objects scoped `scope`, the one for `at`: pool, then site, then global (user-scoped ones
/// apply only when assigned).
pub(crate) fn most_specific<'a, T>(
    objects: impl Iterator<Item = (&'a Scope, T)> + Clone,
    at: &Placement,
) -> Option<T> {
    let find =
        |want: &dyn Fn(&Scope) -> bool| objects.clone().find(|(s, _)| want(s)).map(|(_, t)| t);
    at.pool
        .as_deref()
        .and_then(|pool| find(&|s| matches!(s, Scope::Pool(p) if p.eq_ignore_ascii_case(pool))))
        .or_else(|| {
            at.site
                .as_deref()
                .and_then(|site| find(&|s| matches!(s, Scope::Site(x) if x == site)))
        })
        .or_else(|| find(&|s| *s == Scope::Global))
}

#[cfg(test)]
mod tests {
    use super::line_uri;

    #[test]
    fn line_uris_are_kept_in_one_form() {
        assert_eq!(
            line_uri("tel:+1 (425) 555-0101").unwrap(),
            "tel:+14255550101"
        );
        assert_eq!(
            line_uri("+14255550100;EXT=101").unwrap(),
            "tel:+14255550100;ext=101"
        );
        for bad in [
            "tel:4255550101",
            "tel:+1425abc",
            "tel:+14255550101;phone-context=x",
            "tel:+1;ext=1",
        ] {
            assert!(line_uri(bad).is_err(), "{bad}");
        }
    }
}
