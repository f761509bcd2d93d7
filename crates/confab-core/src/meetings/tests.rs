//! The focus in the simulated world (`engine::sim`): participants join by INVITE, subscribe to
//! the roster, write to the meeting and press keys; media are the commands the focus gives.

use std::time::Duration;

use confab_media::MediaEvent;
use sip_proto::dialog::Dialog;
use sip_proto::{Limits, Message, Writer};

use crate::apps::MediaCommand;
use crate::engine::sim::{reply, Sim};

pub(super) const ALICE: &str = "127.0.0.2:5062";
pub(super) const BOB: &str = "127.0.0.3:5064";
pub(super) const CAROL: &str = "127.0.0.4:5066";
const DAVE: &str = "127.0.0.5:5068";
const MEETING: &str = "meet-1234567@example.com";
/// The focus is the second application (after response groups).
pub(super) const FOCUS: usize = 1;

pub(super) const SDP: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

pub(super) fn sim(settings: &str) -> Sim {
    let doc = format!(
        "{settings}\n[[meeting]]\nid = \"1234567\"\norganizer = \"alice@example.com\"\nsubject = \"Budget\"\n"
    );
    let mut sim = Sim::new(crate::config::EngineConfig::default(), move |s| {
        crate::engine::sim::add_users(s, &["alice", "bob", "carol", "dave"], &[]);
        s.set_setting(confab_meetings::MEETINGS_SETTING, Some(&doc))
            .unwrap();
    });
    sim.advance(Duration::from_secs(3));
    sim
}

/// `user` at `addr` sends `request` to the meeting (text with `{auth}`); the final answer and
/// the request as sent the second time.
pub(super) fn ask(
    sim: &mut Sim,
    user: &str,
    addr: &str,
    method: &str,
    extra: &str,
    body: &str,
) -> (Message, Message) {
    let (last, sent, _) = ask_all(sim, user, addr, method, extra, body);
    (last, sent)
}

/// [`ask`], and the requests the focus sent `user` meanwhile.
pub(super) fn ask_all(
    sim: &mut Sim,
    user: &str,
    addr: &str,
    method: &str,
    extra: &str,
    body: &str,
) -> (Message, Message, Vec<Message>) {
    ask_to(sim, (user, addr), MEETING, method, extra, body)
}

/// [`ask_all`] to `to` (`user@domain`).
pub(super) fn ask_to(
    sim: &mut Sim,
    (user, addr): (&str, &str),
    to: &str,
    method: &str,
    extra: &str,
    body: &str,
) -> (Message, Message, Vec<Message>) {
    // each its own Call-ID and branch: a second try is not a retransmission of the first
    static ASKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = ASKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let n = format!("{user}{method}{k}");
    let text = format!("{method} sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{n}\r\nMax-Forwards: 70\r\nFrom: \"{user}\" <sip:{user}@example.com>;tag={n}\r\nTo: <sip:{to}>\r\nCall-ID: {n}\r\nCSeq: 1 {method}\r\nContact: <sip:{user}@{addr}>\r\n{extra}{{auth}}Content-Length: {}\r\n\r\n{body}", body.len());
    let (requests, answers): (Vec<Message>, Vec<Message>) = sim
        .send_authenticated(addr, user, &text)
        .into_iter()
        .partition(Message::is_request);
    let last = answers
        .into_iter()
        .rfind(|m| m.status() >= 200)
        .expect("a final answer");
    let sent = text
        .replace("{auth}", "")
        .replacen("z9hG4bK", "z9hG4bK2-", 1)
        .replacen("CSeq: 1 ", "CSeq: 2 ", 1);
    let sent = Message::parse(sent.into_bytes(), &Limits::default()).unwrap();
    (last, sent, requests)
}

/// `user` joins: their dialog with the focus.
pub(super) fn join(sim: &mut Sim, user: &str, addr: &str) -> Dialog {
    join_with(sim, user, addr, "").0
}

/// `user` joins with `extra` header lines: their dialog and the focus's 200.
pub(super) fn join_with(sim: &mut Sim, user: &str, addr: &str, extra: &str) -> (Dialog, Message) {
    call(sim, (user, addr), MEETING, extra)
}

/// `user` at `addr` calls `to` with `extra` header lines and an audio offer: their dialog
/// (acknowledged) and the 200.
pub(super) fn call(
    sim: &mut Sim,
    (user, addr): (&str, &str),
    to: &str,
    extra: &str,
) -> (Dialog, Message) {
    let extra = format!("{extra}Content-Type: application/sdp\r\n");
    let (ok, sent, _) = ask_to(sim, (user, addr), to, "INVITE", &extra, SDP);
    assert_eq!(ok.status(), 200, "{user} admitted: {}", ok.reason());
    let d = Dialog::as_uac(&sent, &ok).expect("a dialog");
    send_in(sim, addr, d.ack(2), &format!("ack{user}"));
    (d, ok)
}

pub(super) fn send_in(sim: &mut Sim, from: &str, mut w: Writer, branch: &str) {
    w.header("Via", format!("SIP/2.0/UDP {from};branch=z9hG4bK{branch}"));
    w.header("Max-Forwards", "70");
    sim.send(from, &String::from_utf8(w.finish(b"")).unwrap());
}

pub(super) fn media(sim: &mut Sim) -> Vec<MediaCommand> {
    std::iter::from_fn(|| sim.engine.poll_media().map(|(_, c)| c)).collect()
}

/// The requests of `method` sent to `to` (the rest taken too).
pub(super) fn requests(sim: &mut Sim, to: &str, method: &str) -> Vec<Message> {
    sim.take_to(to)
        .into_iter()
        .filter(|m| m.is_request() && m.method_str() == method)
        .collect()
}

/// Alice writes `text` to the meeting within her call.
fn send_alice(sim: &mut Sim, alice: &mut Dialog, text: &str, n: usize) {
    let mut w = alice.request("MESSAGE");
    w.header("Content-Type", "text/plain");
    w.header("Via", format!("SIP/2.0/UDP {ALICE};branch=z9hG4bKm{n}"));
    w.header("Max-Forwards", "70");
    sim.send(
        ALICE,
        &String::from_utf8(w.finish(text.as_bytes())).unwrap(),
    );
}

pub(super) fn body(m: &Message) -> String {
    String::from_utf8_lossy(m.body()).into_owned()
}

#[test]
fn participants_join_the_mix_and_subscribers_see_the_roster_change() {
    let mut sim = sim("");
    let alice = join(&mut sim, "alice", ALICE);
    let _ = alice;
    let started = media(&mut sim);
    let conf = match started.as_slice() {
        [MediaCommand::Open { .. }, MediaCommand::WatchMedia { .. }, MediaCommand::Join { conference, .. }] => {
            *conference
        }
        other => panic!("a stream opened, watched and joined: {other:?}"),
    };
    // bob subscribes to the roster: the first NOTIFY has alice as organizer
    let (ok, _, notify) = ask_all(
        &mut sim,
        "bob",
        BOB,
        "SUBSCRIBE",
        "Event: conference\r\nExpires: 600\r\n",
        "",
    );
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.expires().unwrap(), Some(600));
    assert_eq!(notify.len(), 1);
    let roster = body(&notify[0]);
    assert!(
        roster.contains("<user entity=\"sip:alice@example.com\""),
        "{roster}"
    );
    assert!(roster.contains("<entry>organizer</entry>"));
    assert!(roster.contains("<subject>Budget</subject>"));
    sim.send(BOB, &reply(&notify[0], 200, "OK", "x"));

    // carol joins: the same mix, and bob is told
    join(&mut sim, "carol", CAROL);
    let carol_media = media(&mut sim);
    assert!(
        carol_media
            .iter()
            .any(|c| matches!(c, MediaCommand::Join { conference, .. } if *conference == conf)),
        "carol joins alice's mix"
    );
    let notify = requests(&mut sim, BOB, "NOTIFY");
    assert_eq!(notify.len(), 1);
    let roster = body(&notify[0]);
    assert!(roster.contains("<user-count>2</user-count>"), "{roster}");
    assert!(
        roster.contains("sip:carol@example.com") && roster.contains("<entry>presenter</entry>")
    );
    sim.send(BOB, &reply(&notify[0], 200, "OK", "x"));

    // an unknown meeting, a method the focus does not take
    let text = "INVITE sip:meet-7654321@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.4:5066;branch=z9hG4bKx1\r\nMax-Forwards: 70\r\nFrom: <sip:carol@example.com>;tag=x1\r\nTo: <sip:meet-7654321@example.com>\r\nCall-ID: x1\r\nCSeq: 1 INVITE\r\n{auth}Content-Length: 0\r\n\r\n";
    let got = sim.send_authenticated(CAROL, "carol", text);
    assert!(
        got.iter()
            .any(|m| m.status() == 404 && m.reason() == "Not Found (no such meeting)"),
        "{got:?}"
    );
    let (bad, _) = ask(
        &mut sim,
        "carol",
        CAROL,
        "SUBSCRIBE",
        "Event: presence\r\n",
        "",
    );
    assert_eq!(bad.status(), 489);

    // the subscription runs out: a last NOTIFY says so, and the focus forgets it
    assert_eq!(sim.engine.meeting_stats().subscribers, 1);
    sim.advance(Duration::from_millis(600_010));
    let last = requests(&mut sim, BOB, "NOTIFY");
    assert_eq!(
        last.len(),
        1,
        "{:#?}",
        last.iter()
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .collect::<Vec<_>>()
    );
    assert!(last[0]
        .header_named("Subscription-State")
        .unwrap()
        .starts_with("terminated"));
    sim.send(BOB, &reply(&last[0], 200, "OK", "x"));
    assert_eq!(sim.engine.meeting_stats().subscribers, 0);
    assert_eq!(sim.engine.meeting_stats().participants, 2);
}

#[test]
fn messages_reach_every_other_participant_once_in_order_naming_the_sender() {
    let mut sim = sim("");
    let mut alice = join(&mut sim, "alice", ALICE);
    let mut bob = join(&mut sim, "bob", BOB);
    join(&mut sim, "carol", CAROL);
    sim.take_all();
    for (i, text) in ["first", "second"].iter().enumerate() {
        send_alice(&mut sim, &mut alice, text, i);
    }
    let answers = sim.take_to(ALICE);
    assert_eq!(
        answers.iter().filter(|m| m.status() == 200).count(),
        2,
        "both taken"
    );
    assert!(
        answers.iter().all(|m| !m.is_request()),
        "alice hears nothing of her own"
    );
    for who in [BOB, CAROL] {
        // one at a time: the second waits for the answer to the first
        let got = requests(&mut sim, who, "MESSAGE");
        assert_eq!(got.len(), 1, "one message on its way to {who}");
        let b = body(&got[0]);
        assert!(
            b.starts_with("From: \"alice\" <sip:alice@example.com>\r\n"),
            "{b}"
        );
        assert!(b.contains("Content-Type: text/plain\r\n\r\nfirst"), "{b}");
        assert_eq!(
            got[0]
                .header_str(sip_proto::HeaderName::ContentType)
                .ok()
                .flatten(),
            Some("message/cpim")
        );
        sim.send(who, &reply(&got[0], 200, "OK", "x"));
        let next = requests(&mut sim, who, "MESSAGE");
        assert_eq!(next.len(), 1);
        assert!(body(&next[0]).ends_with("second"));
        sim.send(who, &reply(&next[0], 200, "OK", "x"));
        assert!(requests(&mut sim, who, "MESSAGE").is_empty(), "each once");
    }
    // bob leaves: no more messages reach him; a stranger cannot write
    send_in(&mut sim, BOB, bob.request("BYE"), "byebob");
    assert!(sim.take_to(BOB).iter().any(|m| m.status() == 200));
    send_alice(&mut sim, &mut alice, "third", 9);
    assert!(requests(&mut sim, BOB, "MESSAGE").is_empty(), "bob left");
    assert_eq!(requests(&mut sim, CAROL, "MESSAGE").len(), 1);
    let (ok, _) = ask(
        &mut sim,
        "dave",
        DAVE,
        "MESSAGE",
        "Content-Type: text/plain\r\n",
        "hi",
    );
    assert_eq!(ok.status(), 403);
    assert_eq!(ok.reason(), "Forbidden (join the meeting to write in it)");
}

#[test]
fn star_six_mutes_and_unmutes_and_only_leaders_lock_the_meeting() {
    let mut sim = sim("[settings]\nparticipant_limit = 3\n");
    join(&mut sim, "alice", ALICE);
    join(&mut sim, "bob", BOB);
    let started = media(&mut sim);
    let stream_of = |i: usize| match started
        .iter()
        .filter(|c| matches!(c, MediaCommand::Open { .. }))
        .nth(i)
    {
        Some(MediaCommand::Open { stream, .. }) => *stream,
        _ => panic!("two streams"),
    };
    let (alice_s, bob_s) = (stream_of(0), stream_of(1));
    for k in ['*', '6'] {
        sim.media(FOCUS, bob_s, MediaEvent::Digit(k));
    }
    let got = media(&mut sim);
    assert!(
        got.iter()
            .any(|c| matches!(c, MediaCommand::Mute { stream, muted: true } if *stream == bob_s)),
        "*6 mutes bob: {got:?}"
    );
    assert!(
        got.iter()
            .any(|c| matches!(c, MediaCommand::Play { stream, .. } if *stream == bob_s)),
        "and tells him"
    );
    for k in ['*', '6'] {
        sim.media(FOCUS, bob_s, MediaEvent::Digit(k));
    }
    assert!(media(&mut sim)
        .iter()
        .any(|c| matches!(c, MediaCommand::Mute { muted: false, .. })));
    // a 6 alone does nothing
    sim.media(FOCUS, bob_s, MediaEvent::Digit('6'));
    assert!(media(&mut sim).is_empty());

    // alice (the organizer) locks: dave cannot join; she unlocks, he can; the limit holds
    for k in ['*', '7'] {
        sim.media(FOCUS, alice_s, MediaEvent::Digit(k));
    }
    let (no, _) = ask(
        &mut sim,
        "dave",
        DAVE,
        "INVITE",
        "Content-Type: application/sdp\r\n",
        SDP,
    );
    assert_eq!(
        (no.status(), no.reason()),
        (403, "Forbidden (the meeting is locked)")
    );
    for k in ['*', '7'] {
        sim.media(FOCUS, alice_s, MediaEvent::Digit(k));
    }
    join(&mut sim, "dave", DAVE);
    let (full, _) = ask(
        &mut sim,
        "carol",
        CAROL,
        "INVITE",
        "Content-Type: application/sdp\r\n",
        SDP,
    );
    assert_eq!(
        (full.status(), full.reason()),
        (486, "Busy Here (the meeting is full: 3 participants)")
    );
    assert_eq!(sim.engine.meeting_stats().participants, 3);
}

#[test]
fn a_participant_whose_media_stops_is_hung_up_and_leaves_the_roster() {
    let mut sim = sim("[settings]\nmedia_timeout = 5\n");
    join(&mut sim, "alice", ALICE);
    join(&mut sim, "bob", BOB);
    let started = media(&mut sim);
    assert!(
        started.iter().any(
            |c| matches!(c, MediaCommand::WatchMedia { after: Some(a), .. } if a.as_secs() == 5)
        ),
        "each sending participant's stream is watched: {started:?}"
    );
    let bob_s = started
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Open { stream, .. } => Some(*stream),
            _ => None,
        })
        .nth(1)
        .unwrap();
    sim.take_all();
    sim.media(FOCUS, bob_s, MediaEvent::Lost);
    assert_eq!(requests(&mut sim, BOB, "BYE").len(), 1, "bob is hung up on");
    assert!(media(&mut sim)
        .iter()
        .any(|c| matches!(c, MediaCommand::Close { stream } if *stream == bob_s)));
    assert_eq!(
        sim.engine.meeting_stats().participants,
        1,
        "and out of the meeting at once"
    );
}

#[test]
fn the_organizer_mutes_everyone_else_and_ejects_while_others_may_not() {
    let mut sim = sim("");
    let mut alice = join(&mut sim, "alice", ALICE);
    let mut bob = join(&mut sim, "bob", BOB);
    join(&mut sim, "carol", CAROL);
    let started = media(&mut sim);
    let streams: Vec<u64> = started
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Open { stream, .. } => Some(*stream),
            _ => None,
        })
        .collect();
    // bob (a presenter) presses *4: alice and carol are muted, bob is not
    for k in ['*', '4'] {
        sim.media(FOCUS, streams[1], MediaEvent::Digit(k));
    }
    let muted: Vec<u64> = media(&mut sim)
        .iter()
        .filter_map(|c| match c {
            MediaCommand::Mute {
                stream,
                muted: true,
            } => Some(*stream),
            _ => None,
        })
        .collect();
    assert_eq!(muted, [streams[0], streams[2]]);
    sim.take_all();

    // bob may not eject; alice (the organizer) ejects carol
    let mut w = bob.request("REFER");
    w.header("Refer-To", "<sip:carol@example.com;method=BYE>");
    send_in(&mut sim, BOB, w, "ref-bob");
    let no = sim.take_to(BOB);
    assert!(
        no.iter().any(|m| m.status() == 403
            && m.reason() == "Forbidden (only the organizer ejects participants)"),
        "{no:?}"
    );
    let mut w = alice.request("REFER");
    w.header("Refer-To", "<sip:carol@example.com;method=BYE>");
    send_in(&mut sim, ALICE, w, "ref-alice");
    assert!(sim.take_to(ALICE).iter().any(|m| m.status() == 202));
    assert_eq!(
        requests(&mut sim, CAROL, "BYE").len(),
        1,
        "carol is hung up on"
    );
}

#[test]
fn what_a_silent_client_and_a_subscription_flood_make_the_focus_keep_is_bounded() {
    let mut sim = sim("");
    let mut alice = join(&mut sim, "alice", ALICE);
    join(&mut sim, "bob", BOB);
    sim.take_all();
    // bob's client stops answering messages while alice writes 300
    for i in 0..300 {
        send_alice(&mut sim, &mut alice, &format!("line {i}"), 1000 + i);
    }
    let mut delivered = 0;
    loop {
        let got = requests(&mut sim, BOB, "MESSAGE");
        let Some(m) = got.first() else { break };
        delivered += 1;
        sim.send(BOB, &reply(m, 200, "OK", "x"));
    }
    assert_eq!(
        delivered,
        1 + 256,
        "one on its way and 256 waiting; the rest dropped"
    );
    // roster subscriptions: a meeting keeps 1,000 at most
    for i in 0..1_000 {
        let (ok, _) = ask(
            &mut sim,
            "carol",
            CAROL,
            "SUBSCRIBE",
            "Event: conference\r\n",
            "",
        );
        assert_eq!(ok.status(), 200, "subscription {i}");
    }
    let (full, _) = ask(
        &mut sim,
        "carol",
        CAROL,
        "SUBSCRIBE",
        "Event: conference\r\n",
        "",
    );
    assert_eq!(full.status(), 503, "{}", full.reason());
    assert_eq!(sim.engine.meeting_stats().subscribers, 1_000);
}
