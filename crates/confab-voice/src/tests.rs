//! The voice model on a configuration an administrator of Skype for Business Server would
//! write: a global and a site dial plan, a per-user policy, routes with two trunks.

use crate::*;

pub(crate) const SAMPLE: &str = include_str!("../../../examples/voice.toml");

fn voice() -> Voice {
    Voice::compile(VoiceConfig::from_toml(SAMPLE).unwrap()).unwrap()
}

fn anyone() -> Placement {
    Placement::default()
}

#[test]
fn dialled_numbers_normalize_by_the_first_matching_rule_of_the_plan_that_applies() {
    let v = voice();
    let n = v.normalize(&anyone(), "425-555-0123").unwrap();
    assert_eq!(n.number, "+14255550123");
    assert_eq!(n.rule.as_deref(), Some("National"));
    assert_eq!(n.plan.as_deref(), Some("Global"));
    let n = v.normalize(&anyone(), "0123").unwrap();
    assert_eq!(
        (n.number.as_str(), n.internal_extension),
        ("+14255550123", true)
    );
    assert_eq!(
        v.normalize(&anyone(), "+442071234567").unwrap().rule,
        None,
        "already E.164"
    );
    // a site's plan is more specific than the global one
    let london = Placement {
        site: Some("london".into()),
        ..Placement::default()
    };
    assert_eq!(
        v.normalize(&london, "02071234567").unwrap().number,
        "+442071234567"
    );
    // an assigned plan wins over the site's
    let assigned = Placement {
        dial_plan: Some("Global".into()),
        ..london
    };
    assert_eq!(
        v.normalize(&assigned, "5550123").unwrap().number,
        "+14255550123"
    );
}

#[test]
fn what_is_no_number_says_why() {
    let v = voice();
    assert_eq!(
        v.normalize(&anyone(), "call-me").unwrap_err(),
        Dialled::NotDigits("call-me".into())
    );
    let e = v.normalize(&anyone(), "12").unwrap_err();
    assert_eq!(
        e.to_string(),
        "no rule of dial plan Global matches 12 and it is not an E.164 number"
    );
}

#[test]
fn a_call_takes_the_routes_of_the_first_usage_in_policy_order_that_match() {
    let v = voice();
    let r = v.routes_for(&anyone(), "+14255550123").unwrap();
    assert_eq!(r.policy.as_deref(), Some("Global"));
    let order: Vec<(&str, Vec<&str>)> = r
        .candidates
        .iter()
        .map(|c| {
            (
                c.route.as_str(),
                c.trunks.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    // Local first (policy order), then LongDistance's route, its two trunks in order
    assert_eq!(
        order,
        vec![
            ("Redmond local", vec!["pbx"]),
            ("US", vec!["carrier-a", "carrier-b"])
        ]
    );
    let e = v.routes_for(&anyone(), "+442071234567").unwrap_err();
    assert_eq!(
        e.to_string(),
        "no route for +442071234567 in voice policy Global (PSTN usages: Local, LongDistance)"
    );
    let exec = Placement {
        voice_policy: Some("Executives".into()),
        ..Placement::default()
    };
    let r = v.routes_for(&exec, "+442071234567").unwrap();
    assert_eq!(r.candidates[0].route, "World");
    let missing = Placement {
        voice_policy: Some("Interns".into()),
        ..Placement::default()
    };
    assert_eq!(
        v.routes_for(&missing, "+14255550123").unwrap_err(),
        NoRoute::UnknownPolicy("Interns".into())
    );
}

#[test]
fn emergency_numbers_route_for_everyone_and_masks_stand_for_them() {
    let v = voice();
    for dialled in ["911", "9911"] {
        let (number, r) = v.emergency(&anyone(), dialled).unwrap();
        assert_eq!(number, "911");
        assert_eq!(r.policy, None, "no policy can block it");
        assert_eq!(r.candidates[0].route, "Emergency");
    }
    assert!(v.emergency(&anyone(), "4255550123").is_none());
}

#[test]
fn trunks_write_numbers_as_their_gateways_expect() {
    let v = voice();
    assert_eq!(
        v.on_trunk("carrier-a", "+14255550123", false),
        "14255550123"
    );
    assert_eq!(v.on_trunk("pbx", "+14255550123", false), "4255550123");
    assert_eq!(
        v.on_trunk("carrier-b", "+14255550123", false),
        "+14255550123",
        "no rule"
    );
    assert_eq!(v.from_trunk("carrier-a", "4255550123"), "+14255550123");
    assert_eq!(
        v.unassigned("+14255550042").map(|u| u.name.as_str()),
        Some("Lobby")
    );
    assert!(v.unassigned("+14255550142").is_none());
}

#[test]
fn the_document_reads_back_what_it_writes() {
    let cfg = VoiceConfig::from_toml(SAMPLE).unwrap();
    let again = VoiceConfig::from_toml(&cfg.to_toml()).unwrap();
    assert_eq!(cfg, again);
}

#[test]
fn every_mistake_is_named_with_its_object_and_what_to_fix() {
    let text = r#"
usages = ["Local", "Unused"]
[[dial_plan]]
name = "Global"
[[dial_plan.rule]]
name = "broken"
pattern = '^(\d{4}$'
translation = '$1'
[[dial_plan.rule]]
name = "missing group"
pattern = '^(\d{4})$'
translation = '+1425555$2'
[[policy]]
name = "Global"
usages = ["Local", "Nowhere"]
[[route]]
name = "No trunk"
pattern = '^\+1'
usages = ["Local"]
trunks = []
[[route]]
name = "Ghost trunk"
pattern = '^\+1'
usages = ["Local"]
trunks = ["imported"]
[[trunk]]
name = "imported"
gateway = { host = "" }
"#;
    let problems = Voice::compile(VoiceConfig::from_toml(text).unwrap()).unwrap_err();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let expect = [
        "dial plan \"Global\" rule \"broken\": the pattern \"^(\\\\d{4}$\" is not a valid regular expression",
        "dial plan \"Global\" rule \"missing group\": the translation \"+1425555$2\" names group $2, but the pattern has 1 group(s)",
        "voice policy \"Global\": names the PSTN usage \"Nowhere\", which does not exist",
        "route \"No trunk\": has no trunk",
        "trunk \"imported\": has no gateway",
        "PSTN usage \"Unused\": is used by no voice policy",
    ];
    for e in expect {
        assert!(
            text.iter().any(|t| t.starts_with(e)),
            "{e}\nnot in {text:#?}"
        );
    }
    assert!(
        !text.iter().any(|t| t.starts_with("route \"Ghost trunk\"")),
        "its trunk exists: {text:#?}"
    );
}
