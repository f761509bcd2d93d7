//! Enterprise voice through the engine: numbers dialled out through routes and trunks (serial
//! failover, caller identity), a colleague's number kept inside, emergency calls, refusals with
//! their reasons, calls from gateways, loops, probes and a configuration changed while running.

use std::time::Duration;

use confab_store::Telephony;
use sip_proto::Message;

use crate::config::EngineConfig;
use crate::engine::sim::{add_users, reply, Sim, ALICE, BOB};

const GW1: &str = "127.0.0.61:5060";
const GW2: &str = "127.0.0.62:5060";

const VOICE: &str = r#"
usages = ["Local", "Emergency"]
[[dial_plan]]
name = "Global"
[[dial_plan.rule]]
name = "Extensions"
pattern = '^(\d{4})$'
translation = '+1425555$1'
internal_extension = true
[[dial_plan.rule]]
name = "National"
pattern = '^1?(\d{10})$'
translation = '+1$1'
[[policy]]
name = "Global"
usages = ["Local"]
[[route]]
name = "US"
pattern = '^\+1\d{10}$'
usages = ["Local"]
trunks = ["one", "two"]
[[route]]
name = "Emergency"
pattern = '^911$'
usages = ["Emergency"]
trunks = ["two"]
[[trunk]]
name = "one"
gateway = { host = "127.0.0.61", port = 5060, transport = "udp" }
failover_after = 3
[[trunk.called]]
name = "No +1"
pattern = '^\+1(\d{10})$'
translation = '$1'
[[trunk.inbound]]
name = "Ten digits"
pattern = '^(\d{10})$'
translation = '+1$1'
[[trunk]]
name = "two"
gateway = { host = "127.0.0.62", port = 5060, transport = "udp" }
[[emergency]]
numbers = ["911"]
masks = ["9911"]
usage = "Emergency"
[[unassigned]]
name = "Lobby"
first = "+14255550000"
last = "+14255550009"
"#;

/// alice (+14255550101, voice) and bob (+14255550199, voice) with devices; carol without voice.
fn world(voice: &str, probe: bool) -> Sim {
    let cfg = EngineConfig {
        gateway_probe: if probe {
            Duration::from_secs(30)
        } else {
            Duration::ZERO
        },
        ..EngineConfig::default()
    };
    let voice = voice.to_owned();
    Sim::new(cfg, move |s| {
        add_users(s, &["alice", "bob", "carol"], &[("bob", BOB)]);
        for (user, number) in [("alice", "tel:+14255550101"), ("bob", "tel:+14255550199")] {
            let t = Telephony {
                line_uri: Some(number.into()),
                enabled: true,
                ..Telephony::default()
            };
            s.set_telephony(&format!("{user}@example.com"), &t).unwrap();
        }
        s.set_setting(crate::VOICE_SETTING, Some(&voice)).unwrap();
    })
}

/// alice's INVITE to `uri` (call `n`), with a P-Asserted-Identity of her own invention.
fn invite(uri: &str, n: u32, from: &str) -> String {
    format!("INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKv{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}@example.com>;tag=a{n}\r\nTo: <{uri}>\r\nCall-ID: voice-{n}\r\nCSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:ceo@example.com>\r\nContact: <sip:{from}@{ALICE}>\r\n{{auth}}Content-Length: 0\r\n\r\n")
}

fn finals(ms: &[Message]) -> Vec<(u16, String)> {
    ms.iter()
        .filter(|m| m.status() >= 200)
        .map(|m| (m.status(), m.reason().to_owned()))
        .collect()
}

fn header<'a>(m: &'a Message, name: &str) -> Vec<&'a str> {
    m.fields()
        .filter(|(_, n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, _, v)| std::str::from_utf8(v).unwrap())
        .collect()
}

#[test]
fn a_national_number_goes_out_in_the_trunks_format_as_the_caller_and_fails_over_on_503() {
    let mut sim = world(VOICE, false);
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:425-555-0123@example.com;user=phone", 1, "alice"),
    );
    let at_one = sim.take_to(GW1);
    assert_eq!(at_one.len(), 1, "one INVITE, to trunk one only: {at_one:?}");
    let inv = &at_one[0];
    assert_eq!(inv.uri_str(), "sip:4255550123@127.0.0.61:5060;user=phone");
    assert_eq!(
        header(inv, "P-Asserted-Identity"),
        ["<sip:+14255550101@example.com;user=phone>"],
        "alice's Line URI, and not the identity she claimed"
    );
    assert!(
        sim.take_to(GW2).is_empty(),
        "trunks are tried one after another"
    );

    sim.send(GW1, &reply(inv, 503, "Service Unavailable", "g1"));
    let at_two = sim.take_to(GW2);
    assert_eq!(at_two.len(), 1, "failed over to trunk two");
    assert_eq!(
        at_two[0].uri_str(),
        "sip:+14255550123@127.0.0.62:5060;user=phone",
        "trunk two keeps the +"
    );
    assert!(
        finals(&sim.take_to(ALICE)).is_empty(),
        "the 503 is not the answer yet"
    );

    // a final answer from the far end is final
    sim.send(GW2, &reply(&at_two[0], 486, "Busy Here", "g2"));
    assert_eq!(finals(&sim.take_to(ALICE)), [(486, "Busy Here".into())]);
    assert!(sim.take_to(GW1).iter().all(|m| m.method_str() == "ACK"));
    assert_eq!(sim.engine.in_flight(), 0);
}

#[test]
fn a_silent_gateway_is_failed_over_after_its_failover_time_and_turns_share_the_load() {
    let mut sim = world(VOICE, false);
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550123@example.com", 1, "alice"),
    );
    assert_eq!(sim.take_to(GW1).len(), 1);
    sim.advance(Duration::from_millis(2_900));
    assert!(sim.take_to(GW2).is_empty(), "trunk one still has time");
    sim.advance(Duration::from_millis(200));
    let at_two = sim.take_to(GW2);
    assert_eq!(at_two.len(), 1, "after 3 s of silence: trunk two");
    sim.send(GW2, &reply(&at_two[0], 200, "OK", "g2"));
    assert_eq!(finals(&sim.take_to(ALICE)), [(200, "OK".into())]);

    // the next call starts at the route's next trunk
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550124@example.com", 2, "alice"),
    );
    assert_eq!(sim.take_to(GW2).len(), 1, "trunk two first this time");
}

#[test]
fn a_colleagues_number_never_leaves_the_server() {
    let mut sim = world(VOICE, false);
    for (n, dialled) in [
        (1, "sip:4255550199@example.com"),
        (2, "tel:+14255550199"),
        (3, "sip:0199@example.com"),
    ] {
        sim.send_authenticated(ALICE, "alice", &invite(dialled, n, "alice"));
        let to_bob = sim.take_to(BOB);
        assert_eq!(to_bob.len(), 1, "{dialled} rings bob");
        assert_eq!(to_bob[0].uri_str(), "sip:bob@127.0.0.3:5064");
        assert!(sim.take_to(GW1).is_empty() && sim.take_to(GW2).is_empty());
    }
}

#[test]
fn refusals_name_the_reason_and_emergency_calls_always_go_out() {
    let mut sim = world(VOICE, false);
    let answer = |sim: &mut Sim, user: &str, uri: &str, n: u32| {
        finals(&sim.send_authenticated(ALICE, user, &invite(uri, n, user)))
    };
    let letters = answer(&mut sim, "alice", "sip:555CALL@example.com;user=phone", 1);
    assert_eq!(letters[0].0, 484, "{letters:?}");
    assert!(letters[0].1.contains("not a phone number"), "{letters:?}");
    let short = answer(&mut sim, "alice", "tel:12", 2);
    assert_eq!(short[0].0, 484);
    assert!(
        short[0]
            .1
            .contains("no rule of dial plan Global matches 12"),
        "{short:?}"
    );
    let abroad = answer(&mut sim, "alice", "tel:+442071234567", 3);
    assert_eq!(abroad[0].0, 404);
    assert!(
        abroad[0]
            .1
            .contains("no route for +442071234567 in voice policy Global"),
        "{abroad:?}"
    );
    let unassigned = answer(&mut sim, "alice", "tel:+14255550005", 4);
    assert_eq!(unassigned[0].0, 404);
    assert!(
        unassigned[0].1.contains("unassigned number, range Lobby"),
        "{unassigned:?}"
    );
    let no_voice = answer(&mut sim, "carol", "sip:4255550123@example.com", 5);
    assert_eq!(no_voice[0].0, 403);
    assert!(no_voice[0]
        .1
        .contains("carol@example.com is not enabled for enterprise voice"));
    assert!(sim.take_to(GW1).is_empty() && sim.take_to(GW2).is_empty());

    // carol has no voice, no Line URI: 9911 still reaches 911, on the emergency route
    sim.send_authenticated(ALICE, "carol", &invite("sip:9911@example.com", 6, "carol"));
    let out = sim.take_to(GW2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].uri_str(), "sip:911@127.0.0.62:5060;user=phone");
    assert!(
        header(&out[0], "P-Asserted-Identity").is_empty(),
        "carol has no number to show"
    );
}

/// A call from trunk one's gateway to `called`.
fn from_gateway(called: &str, n: u32) -> String {
    format!("INVITE sip:{called}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {GW1};branch=z9hG4bKgw{n}\r\nMax-Forwards: 70\r\nFrom: <sip:2065550100@127.0.0.61>;tag=g{n}\r\nTo: <sip:{called}@127.0.0.1>\r\nCall-ID: in-{n}\r\nCSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:2065550100@127.0.0.61;user=phone>\r\nContact: <sip:gw@{GW1}>\r\nContent-Length: 0\r\n\r\n")
}

#[test]
fn a_gateway_calls_in_without_credentials_and_a_stranger_is_challenged() {
    let mut sim = world(VOICE, false);
    sim.send(GW1, &from_gateway("4255550199", 1));
    let to_bob = sim.take_to(BOB);
    assert_eq!(
        to_bob.len(),
        1,
        "ten digits, the trunk's inbound rule, bob's number"
    );
    assert_eq!(
        header(&to_bob[0], "P-Asserted-Identity"),
        ["<sip:2065550100@127.0.0.61;user=phone>"],
        "a gateway's identity is believed"
    );
    sim.send(GW1, &from_gateway("4255550177", 2));
    let nobody = finals(&sim.take_to(GW1));
    assert_eq!(
        nobody,
        [(
            404,
            "Not Found (+14255550177 is not assigned to anyone)".into()
        )]
    );

    // the same request from another address (posing as one of our users): challenged
    let stranger = "127.0.0.66:5060";
    let posing = from_gateway("4255550199", 3)
        .replace(GW1, stranger)
        .replace(
            "<sip:2065550100@127.0.0.61>",
            "<sip:2065550100@example.com>",
        );
    sim.send(stranger, &posing);
    let answer = sim.take_to(stranger);
    assert_eq!(
        answer.iter().map(Message::status).collect::<Vec<_>>(),
        [407]
    );
    assert!(sim.take_to(BOB).is_empty());
}

#[test]
fn a_trunk_pointing_back_at_this_server_ends_with_482() {
    let looped = VOICE.replace(
        "gateway = { host = \"127.0.0.61\", port = 5060, transport = \"udp\" }",
        "gateway = { host = \"127.0.0.1\", port = 5060, transport = \"udp\" }",
    );
    let mut sim = world(&looped, false);
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550123@example.com", 1, "alice"),
    );
    let sent_to_us = sim.take_to("127.0.0.1:5060");
    assert_eq!(sent_to_us.len(), 1);
    let text = String::from_utf8_lossy(sent_to_us[0].as_bytes()).into_owned();
    sim.send("127.0.0.1:5060", &text);
    let answers = finals(&sim.take_to("127.0.0.1:5060"));
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].0, 482);
    assert!(answers[0].1.contains("trunk one"), "{answers:?}");
}

#[test]
fn a_gateway_that_stops_answering_probes_is_skipped_and_a_new_configuration_applies_without_restart(
) {
    let mut sim = world(VOICE, true);
    sim.advance(Duration::from_secs(3));
    let probes = sim.take_to(GW1);
    assert!(
        !probes.is_empty(),
        "a probe (and its retransmissions over UDP)"
    );
    assert!(probes.iter().all(|m| m.method_str() == "OPTIONS"));
    let answered = sim.take_to(GW2);
    sim.send(GW2, &reply(&answered[0], 200, "OK", "p"));
    sim.advance(Duration::from_secs(33)); // trunk one never answers: Timer F
    sim.take_all();
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550123@example.com", 1, "alice"),
    );
    assert!(sim.take_to(GW1).is_empty(), "trunk one is down");
    assert_eq!(sim.take_to(GW2).len(), 1);

    // a new configuration (trunk two's route gone) is in force at the next housekeeping
    let without_us = VOICE.replace("pattern = '^\\+1\\d{10}$'", "pattern = '^\\+1206\\d{7}$'");
    sim.engine
        .store
        .set_setting(crate::VOICE_SETTING, Some(&without_us))
        .unwrap();
    sim.advance(Duration::from_secs(3));
    let refused = finals(&sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550123@example.com", 2, "alice"),
    ));
    assert_eq!(refused[0].0, 404, "{refused:?}");
    let reason = &refused[0].1;
    assert!(reason.contains("no route for +14255550123"), "{reason}");
}

/// The world with `user`'s call forwarding set to `settings` (and carol with a device when
/// `carol_device`).
fn forwarding(user: &str, settings: &str, carol_device: bool) -> Sim {
    let mut sim = world(VOICE, false);
    let aor = format!("{user}@example.com");
    let mut voice = sim.engine.store.user(&aor).unwrap().unwrap().voice;
    voice.forwarding = Some(settings.into());
    sim.engine.store.set_telephony(&aor, &voice).unwrap();
    if carol_device {
        add_users(sim.engine.store.as_ref(), &[], &[("carol", CAROL)]);
        // the engine restored registrations at start: carol's arrives like any other
        let register = format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL};branch=z9hG4bKcr\r\nMax-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=cr\r\nTo: <sip:carol@example.com>\r\nCall-ID: carol-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@{CAROL}>\r\n{{auth}}Content-Length: 0\r\n\r\n");
        let ok = sim.send_authenticated(CAROL, "carol", &register);
        assert_eq!(ok.last().map(Message::status), Some(200));
    }
    sim
}

const CAROL: &str = "127.0.0.4:5066";

#[test]
fn immediate_forwarding_to_a_number_goes_out_as_the_forwarding_user() {
    let mut sim = forwarding("bob", "immediate=tel:+12065550123", false);
    sim.send_authenticated(ALICE, "alice", &invite("sip:bob@example.com", 1, "alice"));
    assert!(sim.take_to(BOB).is_empty(), "bob's phone does not ring");
    let out = sim.take_to(GW1);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].uri_str(),
        "sip:2065550123@127.0.0.61:5060;user=phone"
    );
    assert_eq!(
        header(&out[0], "P-Asserted-Identity"),
        ["<sip:+14255550199@example.com;user=phone>"],
        "bob's number: his policy carries the call"
    );
}

#[test]
fn simultaneous_ring_rings_the_devices_and_the_number_together() {
    let mut sim = forwarding("bob", "simring=tel:+12065550123", false);
    sim.send_authenticated(ALICE, "alice", &invite("sip:bob@example.com", 1, "alice"));
    let at_bob = sim.take_to(BOB);
    let at_gw = sim.take_to(GW1);
    assert_eq!((at_bob.len(), at_gw.len()), (1, 1));
    sim.send(BOB, &reply(&at_bob[0], 180, "Ringing", "b"));
    sim.send(GW1, &reply(&at_gw[0], 180, "Ringing", "g"));
    sim.send(GW1, &reply(&at_gw[0], 200, "OK", "g"));
    assert_eq!(finals(&sim.take_to(ALICE)), [(200, "OK".into())]);
    assert!(
        sim.take_to(BOB).iter().any(|m| m.method_str() == "CANCEL"),
        "bob's device stops ringing"
    );
}

#[test]
fn an_unanswered_call_is_forwarded_after_the_users_time_and_a_busy_one_at_once() {
    let mut sim = forwarding(
        "bob",
        "noanswer=sip:carol@example.com,noanswer-after=5,busy=tel:+12065550123",
        true,
    );
    sim.send_authenticated(ALICE, "alice", &invite("sip:bob@example.com", 1, "alice"));
    let inv = sim.take_to(BOB).pop().expect("bob's device rings first");
    sim.send(BOB, &reply(&inv, 180, "Ringing", "b"));
    sim.advance(Duration::from_millis(4_900));
    assert!(sim.take_to(CAROL).is_empty());
    sim.advance(Duration::from_millis(200));
    assert!(sim.take_to(BOB).iter().any(|m| m.method_str() == "CANCEL"));
    let at_carol = sim.take_to(CAROL);
    assert_eq!(at_carol.len(), 1, "after 5 s: carol");
    assert!(
        sim.take_to(GW1).is_empty(),
        "not busy: the busy target is not called"
    );
    // bob's phone confirms the CANCEL; carol cannot take it: the caller hears carol's
    // answer, not the 487 of the phone the call was forwarded away from
    sim.send(BOB, &reply(&inv, 487, "Request Terminated", "b"));
    sim.send(CAROL, &reply(&at_carol[0], 503, "Service Unavailable", "c"));
    assert_eq!(
        finals(&sim.take_to(ALICE)),
        [(500, "Server Internal Error (downstream 503)".into())],
        "a proxy passes a 503 on as 500 (RFC 3261 §16.7)"
    );

    // busy: bob's device answers 486, the call goes to the busy target at once
    sim.send_authenticated(ALICE, "alice", &invite("sip:bob@example.com", 2, "alice"));
    let inv = sim.take_to(BOB).pop().expect("bob's device rings");
    sim.send(BOB, &reply(&inv, 486, "Busy Here", "b2"));
    let out = sim.take_to(GW1).len() + sim.take_to(GW2).len();
    assert_eq!(out, 1, "busy: the number, on the route's next trunk");
    assert!(
        finals(&sim.take_to(ALICE)).is_empty(),
        "the 486 is not the answer"
    );
}

#[test]
fn offline_forwarding_and_two_users_forwarding_to_each_other_make_no_loop() {
    let mut sim = forwarding("carol", "offline=sip:bob@example.com", false);
    sim.send_authenticated(ALICE, "alice", &invite("sip:carol@example.com", 1, "alice"));
    assert_eq!(sim.take_to(BOB).len(), 1, "carol has no device: bob rings");

    let mut sim = forwarding("bob", "immediate=sip:carol@example.com", true);
    let mut voice = sim
        .engine
        .store
        .user("carol@example.com")
        .unwrap()
        .unwrap()
        .voice;
    voice.forwarding = Some("immediate=sip:bob@example.com".into());
    sim.engine
        .store
        .set_telephony("carol@example.com", &voice)
        .unwrap();
    sim.send_authenticated(ALICE, "alice", &invite("sip:bob@example.com", 2, "alice"));
    assert_eq!(
        sim.take_to(CAROL).len(),
        1,
        "bob's calls ring carol, not back to bob"
    );
    assert!(sim.take_to(BOB).is_empty());
}

#[test]
fn a_call_to_an_unassigned_range_with_a_destination_rings_the_destinations_holder() {
    let with_operator = VOICE.replace(
        "last = \"+14255550009\"\n",
        "last = \"+14255550009\"\ndestination = \"tel:+14255550199\"\n",
    );
    let mut sim = world(&with_operator, false);
    sim.send_authenticated(ALICE, "alice", &invite("tel:+14255550005", 1, "alice"));
    assert_eq!(
        sim.take_to(BOB).len(),
        1,
        "bob holds the range's destination"
    );
    sim.send(GW1, &from_gateway("4255550003", 2));
    assert_eq!(sim.take_to(BOB).len(), 1, "from the phone network too");
}

#[test]
fn a_route_replaces_or_withholds_the_callers_identity_and_a_trunk_may_show_it_in_from() {
    let replaced = VOICE
        .replace(
            "trunks = [\"one\", \"two\"]\n",
            "trunks = [\"one\", \"two\"]\ncaller_id = { replace = \"tel:+14255550100\" }\n",
        )
        .replace(
            "failover_after = 3\n",
            "failover_after = 3\ncaller_in_from = true\n",
        );
    let mut sim = world(&replaced, false);
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550123@example.com", 1, "alice"),
    );
    let out = sim.take_to(GW1).pop().expect("to trunk one");
    assert_eq!(
        header(&out, "P-Asserted-Identity"),
        ["<sip:+14255550100@example.com;user=phone>"],
        "the main number instead of alice's"
    );
    let from = out.from().unwrap();
    assert_eq!(from.uri.as_sip().unwrap().user, Some("+14255550100"));
    assert_eq!(from.tag(), Some("a1"), "the caller's tag kept: her dialog");

    let withheld = VOICE.replace(
        "trunks = [\"one\", \"two\"]\n",
        "trunks = [\"one\", \"two\"]\ncaller_id = \"suppress\"\n",
    );
    let mut sim = world(&withheld, false);
    sim.send_authenticated(
        ALICE,
        "alice",
        &invite("sip:4255550123@example.com", 1, "alice"),
    );
    let out = sim.take_to(GW1).pop().expect("to trunk one");
    assert!(header(&out, "P-Asserted-Identity").is_empty());
    assert_eq!(header(&out, "Privacy"), ["id"]);
}

#[test]
fn a_phone_cancelled_for_no_answer_is_not_cancelled_again_when_the_target_answers() {
    let mut sim = forwarding(
        "bob",
        "noanswer=sip:carol@example.com,noanswer-after=5",
        true,
    );
    sim.send_authenticated(ALICE, "alice", &invite("sip:bob@example.com", 1, "alice"));
    let inv = sim.take_to(BOB).pop().expect("bob's phone rings");
    sim.send(BOB, &reply(&inv, 180, "Ringing", "b"));
    sim.advance(Duration::from_millis(5_100));
    let cancels = |sim: &mut Sim| {
        (sim.take_to(BOB).iter())
            .filter(|m| m.method_str() == "CANCEL")
            .count()
    };
    assert_eq!(cancels(&mut sim), 1);
    // carol answers before bob's phone confirms its CANCEL
    let at_carol = sim.take_to(CAROL).pop().expect("carol's phone rings");
    sim.send(CAROL, &reply(&at_carol, 200, "OK", "c"));
    assert_eq!(finals(&sim.take_to(ALICE)), [(200, "OK".into())]);
    assert_eq!(cancels(&mut sim), 0, "one CANCEL per branch");
}
