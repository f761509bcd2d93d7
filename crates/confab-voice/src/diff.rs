//! What applying a voice configuration changes: each object added, removed or changed, by kind
//! and name (what `confab voice apply --dry-run` prints).

use crate::model::VoiceConfig;

/// The changes from `old` to `new`, one line each: `+ route "US"`, `- trunk "old-pbx"`,
/// `~ voice policy "Global"`.
pub fn changes(old: &VoiceConfig, new: &VoiceConfig) -> Vec<String> {
    let mut out = Vec::new();
    kind(
        &mut out,
        "dial plan",
        &old.dial_plans,
        &new.dial_plans,
        |p| &p.name,
    );
    kind(&mut out, "PSTN usage", &old.usages, &new.usages, |u| u);
    kind(
        &mut out,
        "voice policy",
        &old.policies,
        &new.policies,
        |p| &p.name,
    );
    kind(&mut out, "route", &old.routes, &new.routes, |r| &r.name);
    kind(&mut out, "trunk", &old.trunks, &new.trunks, |t| &t.name);
    kind(
        &mut out,
        "unassigned range",
        &old.unassigned,
        &new.unassigned,
        |u| &u.name,
    );
    let site = |e: &crate::Emergency| e.site.clone().unwrap_or_else(|| "(every site)".into());
    let (old_e, new_e): (Vec<_>, Vec<_>) = (
        old.emergency.iter().map(|e| (site(e), e)).collect(),
        new.emergency.iter().map(|e| (site(e), e)).collect(),
    );
    kind(&mut out, "emergency numbers of", &old_e, &new_e, |(s, _)| s);
    let names = |c: &VoiceConfig| c.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    let (a, b) = (names(old), names(new));
    let common = |x: &[String], y: &[String]| -> Vec<String> {
        x.iter().filter(|n| y.contains(n)).cloned().collect()
    };
    if common(&a, &b) != common(&b, &a) {
        out.push("~ route order".to_owned());
    }
    out
}

fn kind<T: PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
) {
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => out.push(format!("+ {what} {:?}", name(n))),
            Some(o) if o != n => out.push(format!("~ {what} {:?}", name(n))),
            Some(_) => {}
        }
    }
    for o in old
        .iter()
        .filter(|o| !new.iter().any(|n| name(n) == name(o)))
    {
        out.push(format!("- {what} {:?}", name(o)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_each_object_added_removed_or_changed() {
        let old = VoiceConfig::from_toml(crate::tests::SAMPLE).unwrap();
        let mut new = old.clone();
        new.routes.retain(|r| r.name != "World");
        new.trunks[2].gateway.port = 5080;
        new.usages.push("Premium".into());
        new.routes.swap(0, 1);
        let c = changes(&old, &new);
        assert_eq!(
            c,
            vec![
                "+ PSTN usage \"Premium\"",
                "- route \"World\"",
                "~ trunk \"carrier-b\"",
                "~ route order"
            ]
        );
        assert!(changes(&old, &old).is_empty());
    }
}
