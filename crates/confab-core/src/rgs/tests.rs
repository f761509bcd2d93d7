//! The response-group application in the simulated world (`engine::sim`): SIP in and out of
//! a real engine, media as the commands it gives, time advanced by the test (alert times,
//! IVR waits, queue time-outs).

use std::time::Duration;

use confab_media::MediaEvent;
use sip_proto::dialog::Dialog;
use sip_proto::{Limits, Message, Writer};

use crate::apps::MediaCommand;
use crate::engine::sim::{reply, Sim, ALICE};

const AGENT1: &str = "127.0.0.21:5070";
const AGENT2: &str = "127.0.0.22:5070";

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
const AGENT_SDP: &str = "v=0\r\no=g 1 1 IN IP4 127.0.0.21\r\ns=-\r\nc=IN IP4 127.0.0.21\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";

fn doc(routing: &str, extra_queue: &str, workflow: &str) -> String {
    format!(
        r#"[[group]]
name = "Desk"
pool = "p"
routing = "{routing}"
alert_time = 5
agents = ["agent1@example.com", "agent2@example.com"]
[[queue]]
name = "Desk"
pool = "p"
groups = ["Desk"]
{extra_queue}
[[workflow]]
name = "Help Desk"
pool = "p"
address = "sip:helpdesk@example.com"
{workflow}
"#
    )
}

/// A server with alice and two registered agents serving `doc` (read at the first
/// housekeeping round).
fn sim(doc: &str) -> Sim {
    let doc = doc.to_owned();
    let mut sim = Sim::new(crate::config::EngineConfig::default(), move |s| {
        crate::engine::sim::add_users(
            s,
            &["alice", "agent1", "agent2"],
            &[("agent1", AGENT1), ("agent2", AGENT2)],
        );
        s.set_setting(confab_rgs::RGS_SETTING, Some(&doc)).unwrap();
    });
    sim.advance(Duration::from_secs(3));
    sim
}

/// Alice calls the help desk: her dialog, and the media commands so far.
fn call(sim: &mut Sim) -> (Dialog, Vec<MediaCommand>) {
    call_n(sim, 1)
}

/// Alice's call number `n` (its own Call-ID, tag and branch).
fn call_n(sim: &mut Sim, n: u32) -> (Dialog, Vec<MediaCommand>) {
    let invite = format!("INVITE sip:helpdesk@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKr{n}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a{n}\r\nTo: <sip:helpdesk@example.com>\r\nCall-ID: rgs-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{ALICE}>\r\n{{auth}}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}", SDP.len());
    let answers = sim.send_authenticated(ALICE, "alice", &invite);
    let ok = answers.last().expect("an answer").clone();
    assert_eq!(ok.status(), 200, "the workflow answers");
    let sent = invite
        .replace("{auth}", "")
        .replacen("z9hG4bK", "z9hG4bK2-", 1)
        .replacen("CSeq: 1 ", "CSeq: 2 ", 1);
    let sent = Message::parse(sent.into_bytes(), &Limits::default()).unwrap();
    let mut alice = Dialog::as_uac(&sent, &ok).expect("a dialog");
    send_in(sim, ALICE, alice.ack(2), &format!("ack{n}"));
    let media = media(sim);
    let _ = &mut alice;
    (alice, media)
}

fn media(sim: &mut Sim) -> Vec<MediaCommand> {
    std::iter::from_fn(|| sim.engine.poll_media().map(|(_, c)| c)).collect()
}

fn send_in(sim: &mut Sim, from: &str, w: Writer, branch: &str) {
    let mut w = w;
    w.header("Via", format!("SIP/2.0/UDP {from};branch=z9hG4bK{branch}"));
    w.header("Max-Forwards", "70");
    sim.send(from, &String::from_utf8(w.finish(b"")).unwrap());
}

/// The INVITE an agent's device got (and only that).
fn invite_to(sim: &mut Sim, agent: &str) -> Message {
    let got = sim.take_to(agent);
    let invites: Vec<_> = got
        .into_iter()
        .filter(|m| m.method_str() == "INVITE")
        .collect();
    assert_eq!(invites.len(), 1, "one INVITE to {agent}");
    invites.into_iter().next().unwrap()
}

/// The first `method` request sent to `to` (the others taken too).
fn first_to(sim: &mut Sim, to: &str, method: &str) -> Option<Message> {
    sim.take_to(to)
        .into_iter()
        .find(|m| m.method_str() == method)
}

/// `agent` answers `offered` (its To tag `tag`) with its media; the re-INVITE alice gets.
fn agent_answers(sim: &mut Sim, agent: &str, offered: &Message, tag: &str) -> Message {
    sim.send(agent, &with_sdp(reply(offered, 200, "OK", tag), AGENT_SDP));
    first_to(sim, ALICE, "INVITE").expect("alice re-INVITEd with the agent's media")
}

fn with_sdp(text: String, sdp: &str) -> String {
    text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Contact: <sip:agent@127.0.0.21:5070>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()),
    )
}

#[test]
fn serial_hunt_moves_on_at_the_alert_time_and_connects_the_agent_who_answers_by_reinvite() {
    let mut sim = sim(&doc("serial", "", "queue = \"Desk\""));
    let (_alice, started) = call(&mut sim);
    assert!(
        matches!(started[0], MediaCommand::Open { .. }),
        "{started:?}"
    );
    assert!(
        matches!(started[1], MediaCommand::Play { looped: true, .. }),
        "music on hold: {started:?}"
    );
    let first = invite_to(&mut sim, AGENT1);
    assert!(
        first.body().starts_with(b"v=0"),
        "the agent is offered the caller's media"
    );
    assert!(String::from_utf8_lossy(first.body()).contains("m=audio 4000"));
    sim.advance(Duration::from_millis(4_900));
    assert!(
        sim.take_to(AGENT1)
            .iter()
            .all(|m| m.method_str() != "CANCEL"),
        "not before the alert time"
    );
    sim.advance(Duration::from_millis(200));
    let cancel = first_to(&mut sim, AGENT1, "CANCEL").expect("agent1 CANCELled after 5 s");
    sim.send(AGENT1, &reply(&cancel, 200, "OK", "g1"));
    sim.send(AGENT1, &reply(&first, 487, "Request Terminated", "g1"));
    let second = invite_to(&mut sim, AGENT2);
    let reinvite = agent_answers(&mut sim, AGENT2, &second, "g2");
    let body = String::from_utf8_lossy(reinvite.body()).into_owned();
    assert!(
        body.contains("m=audio 7000") && body.contains("c=IN IP4 127.0.0.21"),
        "the agent's media: {body}"
    );
    assert!(body.contains("o=confab "), "under our session: {body}");
    assert!(
        matches!(media(&mut sim)[..], [MediaCommand::Stop { .. }]),
        "music stops"
    );
    sim.send(ALICE, &with_sdp(reply(&reinvite, 200, "OK", "a1"), SDP));
    assert!(
        matches!(media(&mut sim)[..], [MediaCommand::Close { .. }]),
        "our stream closes"
    );
    let stats = sim.engine.rgs_stats();
    assert_eq!(
        (stats.callers, stats.waiting, stats.ringing, stats.ports),
        (1, 0, 0, 0)
    );
}

#[test]
fn a_caller_hanging_up_while_an_agent_rings_leaves_nothing_behind() {
    let mut sim = sim(&doc("parallel", "", "queue = \"Desk\""));
    let (mut alice, _) = call(&mut sim);
    let (a1, a2) = (invite_to(&mut sim, AGENT1), invite_to(&mut sim, AGENT2));
    assert_eq!(sim.engine.rgs_stats().ringing, 2, "parallel: both at once");
    send_in(&mut sim, ALICE, alice.request("BYE"), "bye");
    assert!(
        sim.take_to(ALICE).iter().any(|m| m.status() == 200),
        "the BYE answered"
    );
    for (agent, inv) in [(AGENT1, a1), (AGENT2, a2)] {
        let cancel = first_to(&mut sim, agent, "CANCEL");
        assert!(cancel.is_some(), "{agent} CANCELled");
        sim.send(agent, &reply(&inv, 487, "Request Terminated", "x"));
    }
    let closed = media(&mut sim);
    assert!(
        closed
            .iter()
            .any(|c| matches!(c, MediaCommand::Close { .. })),
        "{closed:?}"
    );
    assert_eq!(sim.engine.rgs_stats(), crate::rgs::RgsStats::default());
    sim.advance(Duration::from_secs(60));
    assert!(
        sim.take_to(AGENT1)
            .iter()
            .all(|m| m.method_str() != "INVITE"),
        "no agent rung again"
    );
}

#[test]
fn an_ivr_asks_three_times_without_a_key_then_lets_the_caller_go_and_a_key_picks_the_queue() {
    let ivr = "[workflow.ivr]\nquestion = { text = \"Press one.\" }\nwait = 10\n[[workflow.ivr.option]]\ndigit = \"1\"\nqueue = \"Desk\"\n";
    let mut sim = sim(&doc("serial", "", ivr));
    let (_alice, _) = call(&mut sim);
    sim.advance(Duration::from_secs(29));
    assert!(
        sim.take_to(ALICE).iter().all(|m| m.method_str() != "BYE"),
        "asked at 0, 10 and 20 s"
    );
    sim.advance(Duration::from_secs(2));
    assert!(
        sim.take_to(ALICE).iter().any(|m| m.method_str() == "BYE"),
        "let go after the third wait"
    );
    // a second caller presses 1
    let mut sim2 = self::sim(&doc("serial", "", ivr));
    let (_alice, started) = call(&mut sim2);
    let stream = started[0].stream();
    sim2.media(0, stream, MediaEvent::Digit('7'));
    assert!(sim2.take_to(AGENT1).is_empty(), "an unknown key asks again");
    sim2.media(0, stream, MediaEvent::Digit('1'));
    let _ = invite_to(&mut sim2, AGENT1);
}

#[test]
fn the_queue_time_out_disconnects_and_the_overflow_takes_the_newest_caller() {
    let queue = "timeout = { after = 10, then = \"disconnect\" }\noverflow = { callers = 1, then = \"disconnect\" }";
    let mut sim = sim(&doc("serial", queue, "queue = \"Desk\""));
    let (_alice, _) = call(&mut sim);
    sim.advance(Duration::from_millis(9_900));
    assert!(sim.take_to(ALICE).iter().all(|m| m.method_str() != "BYE"));
    sim.advance(Duration::from_millis(200));
    assert!(
        sim.take_to(ALICE).iter().any(|m| m.method_str() == "BYE"),
        "disconnected at the time-out"
    );
    assert_eq!(sim.engine.rgs_stats().waiting, 0, "out of the queue");
}

#[test]
fn a_queue_offers_its_groups_in_order_and_its_time_out_can_send_callers_to_another_queue() {
    let doc = r#"[[group]]
name = "First"
pool = "p"
alert_time = 5
agents = ["agent1@example.com"]
[[group]]
name = "Second"
pool = "p"
alert_time = 5
agents = ["agent2@example.com"]
[[queue]]
name = "Desk"
pool = "p"
groups = ["First"]
timeout = { after = 12, then = "queue:Backup" }
[[queue]]
name = "Backup"
pool = "p"
groups = ["Second", "First"]
[[workflow]]
name = "Help Desk"
pool = "p"
address = "sip:helpdesk@example.com"
queue = "Desk"
anonymous = true
"#;
    let mut sim = sim(doc);
    let (_alice, _) = call(&mut sim);
    // Desk: agent1 alone, again and again until the time-out
    let first = invite_to(&mut sim, AGENT1);
    sim.advance(Duration::from_secs(5));
    let cancel = first_to(&mut sim, AGENT1, "CANCEL").expect("CANCEL");
    sim.send(AGENT1, &reply(&cancel, 200, "OK", "g1"));
    sim.send(AGENT1, &reply(&first, 487, "Request Terminated", "g1"));
    assert!(
        sim.take_to(AGENT2).is_empty(),
        "agent2 is not in Desk's groups"
    );
    sim.advance(Duration::from_secs(8));
    // Backup: the Second group first
    // (sent at 12 s, and again at 12.5 s: Timer A)
    let second = first_to(&mut sim, AGENT2, "INVITE").expect("agent2 rung");
    let reinvite = agent_answers(&mut sim, AGENT2, &second, "g2");
    let text = String::from_utf8_lossy(reinvite.as_bytes()).into_owned();
    assert!(
        !text.contains("P-Asserted-Identity"),
        "an anonymous workflow does not tell who answered:\n{text}"
    );
    assert!(!text.contains("agent2"), "{text}");
}

#[test]
fn a_waiting_caller_is_offered_to_an_agent_as_soon_as_the_agent_is_free() {
    let doc = doc("serial", "", "queue = \"Desk\"").replace(
        "agents = [\"agent1@example.com\", \"agent2@example.com\"]",
        "agents = [\"agent1@example.com\"]",
    );
    let mut sim = sim(&doc);
    let (mut first, _) = call_n(&mut sim, 1);
    let offered = invite_to(&mut sim, AGENT1);
    let reinvite = agent_answers(&mut sim, AGENT1, &offered, "g1");
    sim.send(ALICE, &with_sdp(reply(&reinvite, 200, "OK", "a1"), SDP));
    // a second caller: the only agent is talking with the first
    let (_second, _) = call_n(&mut sim, 2);
    sim.advance(Duration::from_millis(1_000));
    assert!(
        sim.take_to(AGENT1)
            .iter()
            .all(|m| m.method_str() != "INVITE"),
        "the agent is busy"
    );
    assert_eq!(sim.engine.rgs_stats().waiting, 1);
    // the first caller hangs up at 1 s: the agent is offered the second at once, not at the
    // next retry (3 s)
    send_in(&mut sim, ALICE, first.request("BYE"), "bye1");
    let again: Vec<_> = sim
        .take_to(AGENT1)
        .into_iter()
        .filter(|m| m.method_str() == "INVITE")
        .collect();
    assert_eq!(again.len(), 1, "offered the waiting caller when free");
}

#[test]
fn a_caller_answering_the_reinvite_from_elsewhere_moves_the_agents_media_too() {
    let mut sim = sim(&doc("serial", "", "queue = \"Desk\""));
    let (_alice, _) = call(&mut sim);
    let offered = invite_to(&mut sim, AGENT1);
    let reinvite = agent_answers(&mut sim, AGENT1, &offered, "g1");
    sim.send(
        ALICE,
        &with_sdp(
            reply(&reinvite, 200, "OK", "a1"),
            &SDP.replace("4000", "4100"),
        ),
    );
    let to_agent = first_to(&mut sim, AGENT1, "INVITE").expect("the agent re-INVITEd");
    let body = String::from_utf8_lossy(to_agent.body()).into_owned();
    assert!(
        body.contains("m=audio 4100"),
        "the caller's new port: {body}"
    );
    assert_eq!(
        to_agent.to().unwrap().tag(),
        Some("g1"),
        "within the agent's dialog"
    );
}

#[test]
fn a_caller_answering_from_where_it_was_leaves_the_agent_alone() {
    let mut sim = sim(&doc("serial", "", "queue = \"Desk\""));
    let (_alice, _) = call(&mut sim);
    let offered = invite_to(&mut sim, AGENT1);
    let reinvite = agent_answers(&mut sim, AGENT1, &offered, "g1");
    sim.send(ALICE, &with_sdp(reply(&reinvite, 200, "OK", "a1"), SDP));
    assert!(sim
        .take_to(AGENT1)
        .iter()
        .all(|m| m.method_str() != "INVITE"));
}
