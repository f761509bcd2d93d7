//! `confab voice`: the enterprise voice configuration applied from a file (checked, all or
//! nothing, each change reported), exported, and tested without a running call: what a number
//! normalizes to, and how a call to it would be routed.

mod common;

use std::process::Command;

use common::{repo_root, text, Server, TempDir};

#[test]
fn a_voice_configuration_is_checked_applied_exported_and_tested() {
    let server = Server::start();
    let example = repo_root().join("examples/voice.toml");
    let example = example.to_str().unwrap();
    let run = |args: &[&str]| {
        let o = server.cli(args);
        (o.status.code(), text(&o))
    };

    // a broken file: every problem named, nothing applied
    let dir = TempDir::new("voice");
    let broken = dir.0.join("broken.toml");
    let good = std::fs::read_to_string(example).unwrap();
    std::fs::write(
        &broken,
        good.replace("trunks = [\"pbx\"]", "trunks = []")
            .replace("translation = '+1$1'", "translation = '+1$2'"),
    )
    .unwrap();
    let (code, out) = run(&["voice", "apply", broken.to_str().unwrap()]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(
        out.contains("route \"Redmond local\": has no trunk")
            && out.contains(
                "dial plan \"Global\" rule \"National\": the translation \"+1$2\" names group $2"
            ),
        "{out}"
    );
    let (_, exported) = run(&["voice", "export"]);
    assert!(exported.trim().is_empty(), "nothing stored: {exported}");

    // the example: dry run, then applied, then nothing left to change
    let (code, out) = run(&["voice", "apply", example, "--dry-run"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("+ route \"US\"") && out.contains("not applied (--dry-run)"),
        "{out}"
    );
    assert!(run(&["voice", "export"]).1.trim().is_empty());
    let (code, out) = run(&["voice", "apply", example]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("+ trunk \"carrier-a\"") && out.contains("change(s) applied"),
        "{out}"
    );
    assert!(run(&["voice", "apply", example]).1.contains("no change"));
    let (_, exported) = run(&["voice", "export"]);
    let again = dir.0.join("exported.toml");
    std::fs::write(&again, &exported).unwrap();
    assert!(run(&["voice", "apply", again.to_str().unwrap()])
        .1
        .contains("no change"));

    // what a number becomes, and by which rule
    let (code, out) = run(&["voice", "test-number", "425-555-0123"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("dial plan     Global, rule \"National\"")
            && out.contains("number        +14255550123"),
        "{out}"
    );
    let (_, out) = run(&["voice", "test-number", "--site", "london", "02071234567"]);
    assert!(
        out.contains("London, rule \"UK national\"") && out.contains("+442071234567"),
        "{out}"
    );
    let (code, out) = run(&["voice", "test-number", "dial-me"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not a phone number"), "{out}");

    // how a call would be routed: routes and trunks in the order tried, numbers as the trunk writes them
    let (code, out) = run(&["voice", "test-route", "4255550123"]);
    assert_eq!(code, Some(0), "{out}");
    let redmond = out
        .find("1. route \"Redmond local\" (usage Local)")
        .expect(&out);
    let us = out
        .find("2. route \"US\" (usage LongDistance)")
        .expect(&out);
    assert!(redmond < us, "{out}");
    assert!(
        out.contains("trunk carrier-a") && out.contains("called 14255550123"),
        "{out}"
    );
    let (code, out) = run(&["voice", "test-route", "011442071234567"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "no route for +442071234567 in voice policy Global (PSTN usages: Local, LongDistance)"
        ),
        "{out}"
    );
    let (_, out) = run(&[
        "voice",
        "test-route",
        "--policy",
        "Executives",
        "011442071234567",
    ]);
    assert!(out.contains("1. route \"World\""), "{out}");
    let (_, out) = run(&["voice", "test-route", "9911"]);
    assert!(
        out.contains("emergency     911") && out.contains("route \"Emergency\""),
        "{out}"
    );
    let (_, out) = run(&["voice", "test-route", "0123"]);
    assert!(out.contains("an internal extension stays inside"), "{out}");

    // the same from the file, without the database; and a file checked on its own
    let o = Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["voice", "check", example])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("4 routes, 3 trunks: no problem found"),
        "{}",
        text(&o)
    );
}

#[test]
fn users_get_numbers_and_voice_settings_and_calls_are_tested_as_theirs() {
    let server = Server::start();
    let run = |args: &[&str]| {
        let o = server.cli(args);
        (o.status.code(), text(&o))
    };
    let example = repo_root().join("examples/voice.toml");
    assert_eq!(
        run(&["voice", "apply", example.to_str().unwrap()]).0,
        Some(0)
    );
    for u in ["erin@example.com", "finn@example.com"] {
        assert_eq!(run(&["user", "add", u, "--password", "pw"]).0, Some(0));
    }

    let (code, out) = run(&[
        "user",
        "set",
        "erin@example.com",
        "--line-uri",
        "tel:+1 (425) 555-0101",
        "--voice",
        "on",
        "--voice-policy",
        "Executives",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("erin@example.com: line tel:+14255550101, enterprise voice on, voice policy Executives, dial plan default"),
        "{out}"
    );
    // one number, one holder
    let (code, out) = run(&[
        "user",
        "set",
        "finn@example.com",
        "--line-uri",
        "tel:+14255550101",
    ]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("tel:+14255550101 is already the Line URI of erin@example.com"),
        "{out}"
    );
    // what is not so is refused, saying what to do
    let (code, out) = run(&[
        "user",
        "set",
        "finn@example.com",
        "--voice-policy",
        "Interns",
    ]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("there is no voice policy \"Interns\""),
        "{out}"
    );
    let (code, out) = run(&["user", "set", "finn@example.com", "--voice", "on"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("has no Line URI"), "{out}");
    let (code, out) = run(&[
        "user",
        "set",
        "finn@example.com",
        "--line-uri",
        "4255550102",
    ]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("is not a Line URI"), "{out}");

    // erin's policy reaches abroad; a colleague's number stays inside; finn has no voice
    let (code, out) = run(&[
        "voice",
        "test-route",
        "--user",
        "erin@example.com",
        "011442071234567",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("voice policy  Executives") && out.contains("route \"World\""),
        "{out}"
    );
    let (_, out) = run(&[
        "voice",
        "test-route",
        "--user",
        "finn@example.com",
        "4255550101",
    ]);
    assert!(
        out.contains("owner         erin@example.com: the call stays inside"),
        "{out}"
    );
    let (code, out) = run(&[
        "voice",
        "test-route",
        "--user",
        "finn@example.com",
        "4255550123",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("finn@example.com is not enabled for enterprise voice"),
        "{out}"
    );
    let (code, out) = run(&["voice", "test-route", "--user", "finn@example.com", "911"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("emergency     911"), "{out}");
}

#[test]
fn voice_objects_are_added_listed_shown_and_removed_one_at_a_time() {
    let server = Server::start();
    let run = |args: &[&str]| {
        let o = server.cli(args);
        (o.status.code(), text(&o))
    };
    let ok = |args: &[&str]| {
        let (code, out) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {out}");
        out
    };
    let out = ok(&[
        "voice", "add", "policy", "Global", "--scope", "global", "--usages", "Local",
    ]);
    assert!(
        out.contains("+ PSTN usage \"Local\""),
        "the policy's usage comes with it: {out}"
    );
    ok(&[
        "voice",
        "add",
        "trunk",
        "pbx",
        "--gateway",
        "192.0.2.10:5070",
        "--transport",
        "udp",
    ]);
    let out = ok(&[
        "voice",
        "add",
        "route",
        "Redmond",
        "--pattern",
        r"^\+1425\d{7}$",
        "--usages",
        "Local",
        "--trunks",
        "pbx",
    ]);
    assert!(
        out.contains("running servers use them within seconds"),
        "{out}"
    );
    ok(&["voice", "add", "dialplan", "Global", "--scope", "global"]);
    ok(&[
        "voice",
        "add",
        "rule",
        "Extensions",
        "--dial-plan",
        "Global",
        "--pattern",
        r"^(\d{4})$",
        "--translation",
        "+1425555$1",
    ]);

    let (code, out) = run(&["voice", "add", "usage", "Abroad", "--policy", "Nobody"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("there is no voice policy \"Nobody\""), "{out}");
    ok(&["voice", "add", "usage", "Abroad", "--policy", "Global"]);
    let listed = ok(&["voice", "list"]);
    assert!(
        listed.contains("route (1)\n  Redmond")
            && listed.contains("Extensions (of dial plan Global)"),
        "{listed}"
    );
    let shown = ok(&["voice", "show", "trunk", "pbx"]);
    assert!(
        shown.contains("host = \"192.0.2.10\"") && shown.contains("port = 5070"),
        "{shown}"
    );
    assert!(ok(&["voice", "test-route", "0123"]).contains("1. route \"Redmond\""));

    // what would leave something pointing at nothing is refused, naming it
    let (code, out) = run(&["voice", "remove", "trunk", "pbx"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("route \"Redmond\"") && out.contains("nothing was changed"),
        "{out}"
    );
    let (code, out) = run(&["voice", "remove", "usage", "Local"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("voice policy \"Global\""), "{out}");
    let (code, out) = run(&[
        "voice",
        "add",
        "route",
        "Redmond",
        "--pattern",
        "^x$",
        "--usages",
        "Local",
        "--trunks",
        "pbx",
    ]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("there is a route \"Redmond\" already"),
        "{out}"
    );
    let (code, out) = run(&[
        "voice",
        "add",
        "rule",
        "Bad",
        "--dial-plan",
        "Global",
        "--pattern",
        "^(4$",
        "--translation",
        "$1",
    ]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("is not a valid regular expression"), "{out}");
    let (code, out) = run(&["voice", "remove", "route", "Nowhere"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(out.contains("there is no route \"Nowhere\""), "{out}");

    // removed in order, the configuration stays whole at every step
    ok(&["voice", "remove", "route", "Redmond"]);
    ok(&["voice", "remove", "trunk", "pbx"]);
    ok(&["voice", "remove", "rule", "Extensions", "--of", "Global"]);
    assert!(ok(&["voice", "list", "rule"]).contains("rule (0)"));
    let (code, out) = run(&["voice", "remove", "usage", "Abroad"]);
    assert_eq!(code, Some(64), "the policy still lists it: {out}");
}
