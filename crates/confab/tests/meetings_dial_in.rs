//! Meetings by phone with real peers: a SIPp "gateway" (a trunk of enterprise voice) calls a
//! dial-in access number, enters the conference ID and PIN with SIPp's RFC 4733 recordings and
//! is heard in the meeting by a SIPp participant (by frequency); three wrong entries end the
//! call with a goodbye.

mod common;

use common::meetings::{
    create_meeting, heard_power, join, keys_of, participant_xml, phone_caller_xml, tone_pcap, Step,
};
use common::rgs::{
    assert_ports_free, scenario, server, sipp, voice_with_trunks, wait_log_count, Ear,
};
use common::{text, TempDir};

/// A deployment with a gateway trunk (calls from `gateway` are trusted), region Redmond over
/// the global dial plan, access number +14255550199, and alice's PIN.
fn dial_in_deployment(gateway: &str) -> (common::Server, (u16, u16)) {
    let (s, ports) = server(0);
    let dir = TempDir::new("dial-in-voice");
    let voice = dir.0.join("voice.toml");
    std::fs::write(
        &voice,
        voice_with_trunks(gateway, "127.0.0.67", common::free_port()),
    )
    .unwrap();
    for args in [
        vec!["voice", "apply", voice.to_str().unwrap()],
        vec![
            "meeting",
            "region",
            "add",
            "Redmond",
            "--dial-plan",
            "Global",
        ],
        vec![
            "meeting",
            "access-number",
            "add",
            "+14255550199",
            "--display",
            "+1 (425) 555-0199",
            "--region",
            "Redmond",
        ],
        vec!["user", "set", "alice@example.com", "--pin", "24680"],
    ] {
        let o = s.cli(&args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
    wait_log_count(&s, "event=\"voice.config\"", 1);
    (s, ports)
}

#[test]
fn a_caller_by_phone_enters_the_id_and_pin_and_is_heard_in_the_meeting() {
    let gateway = "127.0.0.66";
    let (s, ports) = dial_in_deployment(gateway);
    let id = create_meeting(&s, "alice@example.com", &["--pin-required"]);
    let show = text(&s.cli(&["meeting", "show", &id]));
    assert!(
        show.contains("dial-in:        +1 (425) 555-0199 (en-US)"),
        "{show}"
    );
    let dir = TempDir::new("meeting-dial-in");
    let tone = tone_pcap(&dir, 1000.0, 3);
    let (b, phone) = (Ear::new(), Ear::new());
    let bob = join(
        &s,
        &dir,
        &id,
        "bob",
        &participant_xml(&[Step::Pause(16_000)]),
        &b,
    );
    let keys = keys_of(&format!("{id}#24680#"));
    let xml = phone_caller_xml(
        &[
            Step::Pause(1000),
            Step::Keys(&keys),
            Step::Play(&tone),
            Step::Pause(3500),
        ],
        false,
    );
    let sf = scenario(&dir, "phone.xml", &xml);
    sipp(&s, &sf)
        .source_ip(gateway)
        .args(["-s", "+14255550199", "-key", "caller", "+12065550123"])
        .args(["-key", "rtp_port", &phone.port.to_string()])
        .run()
        .assert_success("the caller by phone entered the ID and PIN, talked, hung up");
    bob.assert_success("bob listened");
    let [b1000, chime] = heard_power(&b, &[1000.0, 1200.0])[..] else {
        unreachable!()
    };
    assert!(b1000 > 1e7, "bob hears the caller by phone: {b1000:e}");
    assert!(
        chime > 1e6,
        "and the chime when the caller joined: {chime:e}"
    );
    assert!(
        phone.heard().len() > 100,
        "the caller heard the attendant and the meeting"
    );
    let log = s.log_text();
    assert!(log.contains("event=\"meeting.dial_in\""), "{log}");
    assert_ports_free(&s, ports);
}

#[test]
fn three_wrong_conference_ids_end_the_call_with_a_goodbye() {
    let gateway = "127.0.0.68";
    let (s, ports) = dial_in_deployment(gateway);
    let id = create_meeting(&s, "alice@example.com", &[]);
    let wrong = if id == "1000000" {
        "1000001"
    } else {
        "1000000"
    };
    let keys = keys_of(&format!("{wrong}#9#{wrong}#"));
    let dir = TempDir::new("meeting-dial-in-wrong");
    let phone = Ear::new();
    let xml = phone_caller_xml(&[Step::Pause(500), Step::Keys(&keys)], true);
    let sf = scenario(&dir, "phone.xml", &xml);
    sipp(&s, &sf)
        .source_ip(gateway)
        .args(["-s", "+14255550199", "-key", "caller", "+12065550123"])
        .args(["-key", "rtp_port", &phone.port.to_string()])
        .run()
        .assert_success("the attendant hung up after three wrong entries");
    let refused = s
        .log_text()
        .matches("event=\"meeting.dial_in_refused\"")
        .count();
    assert_eq!(refused, 3, "each wrong entry logged");
    assert_ports_free(&s, ports);
}
