//! `confab rgs` refuses what cannot be served — naming the object and the fix, changing
//! nothing — and moves a pool's response groups in one piece that stays editable, with its
//! numbers and addresses (the seed's migration lost every workflow's number and left objects
//! with an empty owner pool).

mod common;

use common::{text, Server, TempDir};

/// Runs `confab rgs ARGS`; its exit status and output.
fn rgs(s: &Server, args: &[&str]) -> (bool, String) {
    let mut all = vec!["rgs"];
    all.extend_from_slice(args);
    let o = s.cli(&all);
    (o.status.success(), text(&o))
}

fn ok(s: &Server, args: &[&str]) {
    let (good, out) = rgs(s, args);
    assert!(good, "confab rgs {args:?}: {out}");
}

/// Refused, saying all of `says`, and the document unchanged.
fn refused(s: &Server, args: &[&str], says: &[&str]) {
    let before = rgs(s, &["export"]).1;
    let (good, out) = rgs(s, args);
    assert!(!good, "confab rgs {args:?} was accepted: {out}");
    for w in says {
        assert!(
            out.contains(w),
            "confab rgs {args:?} should say {w:?}: {out}"
        );
    }
    assert!(
        out.contains("nothing was changed") || !out.contains("saved"),
        "{out}"
    );
    assert_eq!(rgs(s, &["export"]).1, before, "nothing changed");
}

const P: &str = "pool01.example.com";

#[test]
fn objects_that_cannot_be_served_are_refused_with_their_name_and_the_fix() {
    let s = Server::start();
    let o = s.cli(&[
        "user",
        "set",
        "alice@example.com",
        "--line-uri",
        "tel:+14255550101",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    refused(
        &s,
        &["group", "add", "Empty", "--pool", P],
        &["group \"Empty\"", "has no agent", "--agents"],
    );
    ok(
        &s,
        &[
            "group",
            "add",
            "Desk",
            "--pool",
            P,
            "--agents",
            "bob@example.com,carol@example.com",
            "--routing",
            "serial",
        ],
    );
    refused(
        &s,
        &["queue", "add", "Lonely", "--pool", P],
        &["queue \"Lonely\"", "has no agent group", "--groups"],
    );
    ok(
        &s,
        &[
            "queue",
            "add",
            "Desk",
            "--pool",
            P,
            "--groups",
            "Desk",
            "--timeout",
            "30",
            "--timeout-then",
            "forward:sip:alice@example.com",
        ],
    );
    refused(
        &s,
        &[
            "workflow",
            "add",
            "Nowhere",
            "--pool",
            P,
            "--address",
            "sip:nowhere@example.com",
        ],
        &["workflow \"Nowhere\"", "has no queue", "--queue"],
    );
    refused(
        &s,
        &[
            "workflow",
            "add",
            "Taken",
            "--pool",
            P,
            "--address",
            "sip:taken@example.com",
            "--queue",
            "Desk",
            "--number",
            "tel:+14255550101",
        ],
        &[
            "workflow \"Taken\"",
            "+14255550101",
            "alice@example.com",
            "its own number",
        ],
    );
    refused(
        &s,
        &[
            "workflow",
            "add",
            "Night",
            "--pool",
            P,
            "--address",
            "sip:night@example.com",
            "--queue",
            "Desk",
            "--hours",
            "UTC;mon=17:00-08:00",
        ],
        &["workflow \"Night\"", "hours mon", "ends before it starts"],
    );
    refused(
        &s,
        &[
            "workflow",
            "add",
            "Twice",
            "--pool",
            P,
            "--address",
            "sip:twice@example.com",
            "--queue",
            "Desk",
            "--hours",
            "Europe/Paris;mon-fri=08:00-12:00,11:00-13:00",
        ],
        &["workflow \"Twice\"", "overlap", "merge them"],
    );
    let dir = TempDir::new("rgs-wav");
    let wav = dir.0.join("float.wav");
    // a WAV of 32-bit floating-point samples (format 3)
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(36u32 + 8).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&3u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&8000u32.to_le_bytes());
    bytes.extend_from_slice(&32000u32.to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&32u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&8u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    std::fs::write(&wav, bytes).unwrap();
    refused(
        &s,
        &[
            "workflow",
            "add",
            "Music",
            "--pool",
            P,
            "--address",
            "sip:music@example.com",
            "--queue",
            "Desk",
            "--music-file",
            wav.to_str().unwrap(),
        ],
        &["workflow \"Music\"", "float.wav", "sox INPUT -r 8000 -c 1"],
    );
    ok(
        &s,
        &[
            "workflow",
            "add",
            "Help Desk",
            "--pool",
            P,
            "--address",
            "sip:helpdesk@example.com",
            "--queue",
            "Desk",
            "--number",
            "tel:+14255550100",
        ],
    );
    refused(
        &s,
        &[
            "workflow",
            "add",
            "Copy",
            "--pool",
            P,
            "--address",
            "sip:copy@example.com",
            "--queue",
            "Desk",
            "--number",
            "tel:+14255550100",
        ],
        &[
            "workflow \"Copy\"",
            "+14255550100",
            "also workflow \"Help Desk\"",
        ],
    );
    let o = s.cli(&[
        "user",
        "set",
        "bob@example.com",
        "--line-uri",
        "tel:+14255550100",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("workflow \"Help Desk\""),
        "a user cannot take a workflow's number: {}",
        text(&o)
    );
    let o = s.cli(&[
        "user",
        "add",
        "HelpDesk@example.com",
        "--password",
        "a-long-password-1",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("workflow \"Help Desk\"'s address"),
        "a user cannot take a workflow's address: {}",
        text(&o)
    );
    refused(&s, &["queue", "remove", "Desk"], &["no queue `Desk`"]);
    refused(
        &s,
        &["group", "set", "Desk", "--agents", "nobody@example.com"],
        &["nobody@example.com is not a user"],
    );
}

#[test]
fn moving_a_pool_keeps_every_object_whole_and_editable() {
    let s = Server::start();
    ok(
        &s,
        &[
            "group",
            "add",
            "Desk",
            "--pool",
            P,
            "--agents",
            "bob@example.com",
        ],
    );
    ok(
        &s,
        &["queue", "add", "Desk", "--pool", P, "--groups", "Desk"],
    );
    ok(
        &s,
        &[
            "workflow",
            "add",
            "Help Desk",
            "--pool",
            P,
            "--address",
            "sip:helpdesk@example.com",
            "--queue",
            "Desk",
            "--number",
            "tel:+14255550100",
        ],
    );
    ok(
        &s,
        &[
            "workflow",
            "add",
            "Reception",
            "--pool",
            "pool02.example.com",
            "--address",
            "sip:reception@example.com",
            "--queue",
            "Desk",
            "--number",
            "tel:+14255550199",
        ],
    );
    refused(&s, &["move", "--from", P, "--to", ""], &["--to is empty"]);
    refused(
        &s,
        &["move", "--from", "pool09.example.com", "--to", P],
        &["no response-group object belongs to pool pool09.example.com"],
    );
    let (good, out) = rgs(&s, &["move", "--from", P, "--to", "pool03.example.com"]);
    assert!(good && out.contains("moved 3 object(s)"), "{out}");
    let doc = rgs(&s, &["export"]).1;
    assert!(
        !doc.contains(&format!("pool = \"{P}\"")),
        "nothing left in the old pool:\n{doc}"
    );
    assert_eq!(
        doc.matches("pool = \"pool03.example.com\"").count(),
        3,
        "{doc}"
    );
    assert!(
        doc.contains("pool = \"pool02.example.com\""),
        "another pool's workflow stays:\n{doc}"
    );
    assert!(
        doc.contains("number = \"tel:+14255550100\"")
            && doc.contains("address = \"sip:helpdesk@example.com\""),
        "numbers and addresses kept:\n{doc}"
    );
    // still editable, and listed with its new owner
    ok(
        &s,
        &[
            "workflow",
            "set",
            "Help Desk",
            "--display-name",
            "IT Help Desk",
        ],
    );
    ok(&s, &["queue", "set", "Desk", "--timeout", "60"]);
    let (_, list) = rgs(&s, &["workflow", "list"]);
    assert!(
        list.contains("Help Desk\tpool03.example.com\tsip:helpdesk@example.com\ttel:+14255550100"),
        "{list}"
    );
    // export and import round-trip
    let dir = TempDir::new("rgs-export");
    let file = dir.0.join("rgs.toml");
    ok(&s, &["export", file.to_str().unwrap()]);
    let (good, out) = rgs(&s, &["import", file.to_str().unwrap(), "--dry-run"]);
    assert!(
        good && out.contains("2 workflow(s), 1 queue(s), 1 group(s): no problem found"),
        "{out}"
    );
}
