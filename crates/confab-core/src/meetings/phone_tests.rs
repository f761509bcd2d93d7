//! The focus's callers by phone, meet-now and session timers in the simulated world (the
//! helpers are `tests.rs`'s).

use std::time::Duration;

use confab_media::MediaEvent;

use super::tests::{
    body, call, join, join_with, media, requests, send_in, sim, ALICE, BOB, CAROL, FOCUS, SDP,
};
use crate::apps::MediaCommand;
use crate::engine::sim::{reply, Sim};

/// `user` at `addr` calls the attendant: the stream opened for the call.
fn call_attendant(sim: &mut Sim, user: &str, addr: &str) -> u64 {
    call(sim, (user, addr), "meet-attendant@example.com", "");
    media(sim)
        .iter()
        .find_map(|c| match c {
            MediaCommand::Open { stream, .. } => Some(*stream),
            _ => None,
        })
        .expect("a stream for the caller")
}

fn press(sim: &mut Sim, stream: u64, keys: &str) {
    for k in keys.chars() {
        sim.media(FOCUS, stream, MediaEvent::Digit(k));
    }
}

#[test]
fn the_attendant_admits_with_id_and_pin_and_says_goodbye_after_three_wrong_entries() {
    let hash = confab_meetings::pin_hash("24680", &[7; 16]);
    let mut sim = Sim::new(crate::config::EngineConfig::default(), move |s| {
        crate::engine::sim::add_users(s, &["alice", "bob"], &[]);
        let doc = "[[meeting]]\nid = \"1234567\"\norganizer = \"alice@example.com\"\npin_required = true\n";
        s.set_setting(confab_meetings::MEETINGS_SETTING, Some(doc))
            .unwrap();
        s.set_setting("pin:alice@example.com", Some(&hash)).unwrap();
    });
    sim.advance(Duration::from_secs(3));
    let stream = call_attendant(&mut sim, "bob", BOB);
    press(&mut sim, stream, "1234567#");
    let asked = media(&mut sim);
    assert!(
        asked.iter().any(|c| matches!(c, MediaCommand::Play { .. })),
        "asked for the PIN"
    );
    press(&mut sim, stream, "13579#");
    assert!(
        !media(&mut sim)
            .iter()
            .any(|c| matches!(c, MediaCommand::Join { .. })),
        "a wrong PIN"
    );
    press(&mut sim, stream, "24680#");
    let joined = media(&mut sim);
    assert!(
        joined
            .iter()
            .any(|c| matches!(c, MediaCommand::Join { stream: s, .. } if *s == stream)),
        "the right PIN: into the mix: {joined:?}"
    );
    assert_eq!(sim.engine.meeting_stats().participants, 1);

    // another caller gets it wrong three times (one of them a silence): goodbye, then BYE
    let mut sim2 = sim;
    let s2 = call_attendant(&mut sim2, "alice", CAROL);
    press(&mut sim2, s2, "7654321#");
    sim2.advance(Duration::from_secs(60)); // no keys at all: the second failure
    press(&mut sim2, s2, "#");
    let goodbye = media(&mut sim2)
        .into_iter()
        .rev()
        .find_map(|c| match c {
            MediaCommand::Play { tag, .. } => Some(tag),
            _ => None,
        })
        .expect("a goodbye");
    sim2.take_all();
    sim2.media(FOCUS, s2, MediaEvent::Finished(goodbye));
    assert_eq!(
        requests(&mut sim2, CAROL, "BYE").len(),
        1,
        "hung up after the goodbye"
    );
}

#[test]
fn a_call_to_the_factory_makes_a_meeting_and_a_refer_brings_someone_in() {
    let mut sim = Sim::new(crate::config::EngineConfig::default(), |s| {
        crate::engine::sim::add_users(s, &["alice", "bob"], &[("bob", BOB)]);
    });
    sim.advance(Duration::from_secs(3));
    let (mut alice, _) = call(&mut sim, ("alice", ALICE), "meet-now@example.com", "");
    assert_eq!(
        sim.engine.meeting_stats().participants,
        1,
        "alice is in her new meeting"
    );

    // nobody outside the organisation is called: the focus is no way to call anywhere
    let mut w = alice.request("REFER");
    w.header("Refer-To", "<sip:victim@198.51.100.7:5060>");
    send_in(&mut sim, ALICE, w, "refer0");
    let refused = sim.take_to(ALICE);
    assert!(
        refused.iter().any(|m| m.status() == 403
            && m.reason() == "Forbidden (a meeting calls in users of its organizer's domain only)"),
        "{refused:?}"
    );
    assert!(sim
        .take_all()
        .iter()
        .all(|(_, m)| m.method_str() != "INVITE"));

    // alice brings bob in: the focus calls bob's phone
    let mut w = alice.request("REFER");
    w.header("Refer-To", "<sip:bob@example.com>");
    send_in(&mut sim, ALICE, w, "refer1");
    let to_alice = sim.take_to(ALICE);
    assert!(to_alice.iter().any(|m| m.status() == 202), "{to_alice:?}");
    let invite = requests(&mut sim, BOB, "INVITE");
    assert_eq!(invite.len(), 1, "bob's phone rings");
    assert!(invite[0]
        .header_str(sip_proto::HeaderName::From)
        .unwrap()
        .unwrap()
        .contains("sip:meet-"));
    let answer = reply(&invite[0], 200, "OK", "bobtag").replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Contact: <sip:bob@{BOB}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}", SDP.len()),
    );
    sim.send(BOB, &answer);
    assert_eq!(
        sim.engine.meeting_stats().participants,
        2,
        "bob answered: in the mix"
    );
    let told: Vec<String> = requests(&mut sim, ALICE, "NOTIFY")
        .iter()
        .map(body)
        .collect();
    assert!(
        told.iter().any(|b| b.starts_with("SIP/2.0 200 OK")),
        "{told:?}"
    );

    // both leave: the ad-hoc meeting is gone
    send_in(&mut sim, ALICE, alice.request("BYE"), "byenow");
    assert_eq!(sim.engine.meeting_stats().participants, 1);
}

#[test]
fn a_session_timer_the_participant_asked_for_ends_a_call_it_stops_refreshing() {
    let mut sim = sim("");
    let timer = "Supported: timer\r\nSession-Expires: 120\r\n";
    let (_, ok) = join_with(&mut sim, "alice", ALICE, timer);
    assert_eq!(
        ok.header_named("Session-Expires"),
        Some("120;refresher=uac")
    );
    let (mut bob, _) = join_with(&mut sim, "bob", BOB, timer);
    join(&mut sim, "carol", CAROL); // asks for none: no timer
    sim.advance(Duration::from_secs(60));
    // bob refreshes with an UPDATE; alice never does
    let mut w = bob.request("UPDATE");
    w.header("Supported", "timer");
    w.header("Session-Expires", "120;refresher=uac");
    send_in(&mut sim, BOB, w, "upd1");
    let refreshed = sim.take_to(BOB);
    assert!(
        refreshed
            .iter()
            .any(|m| m.status() == 200
                && m.header_named("Session-Expires") == Some("120;refresher=uac")),
        "{refreshed:?}"
    );
    sim.advance(Duration::from_secs(61));
    let byes = requests(&mut sim, ALICE, "BYE");
    let branches: std::collections::HashSet<String> = byes
        .iter()
        .map(|m| m.top_via().unwrap().branch().unwrap().to_owned())
        .collect();
    assert_eq!(
        branches.len(),
        1,
        "alice's session expired: one BYE (and its retransmissions)"
    );
    assert!(
        requests(&mut sim, BOB, "BYE").is_empty(),
        "bob's was refreshed"
    );
    assert_eq!(sim.engine.meeting_stats().participants, 2);
}
