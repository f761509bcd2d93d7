//! Response groups with real peers: SIPp callers that send RFC 4733 digits (SIPp's own
//! recordings) and whose RTP the test receives, SIPp agents that ring, decline or answer and
//! talk (SIPp's G.711 recording). Each test shows which agent rings in which order (the
//! server's log and the agents' own traces), what the caller hears (the music's packets and
//! payload, then the agent's), and that a call leaves nothing behind (no RTP port bound, no
//! caller held).

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::rgs::{
    agent, agent_answering_xml, caller_xml, import, offers, pcap_payloads, scenario, sipp, Ear,
    End, PCAPS,
};
use common::{free_udp_range, repo_root, text, Server, TempDir};

const PW: &str = "agent-pw";

/// A server with media ports of its own and agents `agent1`..`agentN`.
fn server(agents: usize) -> (Server, (u16, u16)) {
    let ports = free_udp_range(20);
    let range = format!("{}-{}", ports.0, ports.1);
    let s = Server::start_with(&["--media-ports", &range]);
    for i in 1..=agents {
        let o = s.cli(&[
            "user",
            "add",
            &format!("agent{i}@example.com"),
            "--password",
            PW,
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    (s, ports)
}

/// The response-group objects common to the tests: group `Desk` (routing, alert time and
/// agents given), queue `Desk`, hunt group `helpdesk`.
fn hunt_group(routing: &str, alert: u32, agents: &[&str], extra: &str) -> String {
    let agents: Vec<String> = agents
        .iter()
        .map(|a| format!("\"{a}@example.com\""))
        .collect();
    format!(
        r#"[[group]]
name = "Desk"
pool = "pool1.example.com"
routing = "{routing}"
alert_time = {alert}
agents = [{}]

[[queue]]
name = "Desk"
pool = "pool1.example.com"
groups = ["Desk"]

[[workflow]]
name = "Help Desk"
pool = "pool1.example.com"
address = "sip:helpdesk@example.com"
queue = "Desk"
{extra}
"#,
        agents.join(", ")
    )
}

/// Every port of the media range can be bound again: no stream left open.
fn assert_ports_free(ports: (u16, u16)) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let busy: Vec<u16> = (ports.0..=ports.1)
            .filter(|p| UdpSocket::bind(("127.0.0.1", *p)).is_err())
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "media ports still bound after the call: {busy:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `rgs.call_ended` line says no caller and no port is held.
fn assert_nothing_held(server: &Server) {
    let log = server.log_text();
    let last = log
        .lines()
        .filter(|l| l.contains("event=\"rgs.call_ended\""))
        .last()
        .unwrap_or_default();
    assert!(
        last.contains("callers=0") && last.contains("ports=0"),
        "after the call: {last}"
    );
}

/// The tune's 160-byte frames (what music on hold sends when none is configured).
fn tune_frames() -> Vec<Vec<u8>> {
    confab_media::Clip::tune()
        .ulaw()
        .chunks(160)
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn a_caller_hears_music_while_agents_ring_one_by_one_then_talks_with_the_one_who_answers() {
    let (s, ports) = server(2);
    import(&s, &hunt_group("serial", 5, &["agent1", "agent2"], ""));
    let dir = TempDir::new("rgs-serial");
    let ringing = agent(
        &s,
        "agent1",
        PW,
        &repo_root().join("tests/sipp/uas_ring.xml"),
    );
    let answering = agent(
        &s,
        "agent2",
        PW,
        &scenario(&dir, "agent2.xml", &agent_answering_xml(500)),
    );
    let ear = Ear::new();
    let caller = scenario(
        &dir,
        "caller.xml",
        &caller_xml(&[], 0, End::Connected { talk_ms: 3000 }),
    );
    let r = sipp(&s, &caller)
        .args([
            "-s",
            "helpdesk",
            "-key",
            "caller",
            "alice",
            "-key",
            "rtp_port",
            &ear.port.to_string(),
        ])
        .auth("alice", &s.password("alice"))
        .run();
    r.assert_success("the caller's call");
    ringing.assert_success("agent1 rang and was cancelled after its alert time");
    answering.assert_success("agent2 answered, talked, and got the BYE");
    assert_eq!(
        offers(&s),
        ["agent1@example.com", "agent2@example.com"],
        "serial: in the group's order"
    );
    // the caller was re-INVITEd with the agent's description and told who answered
    let trace = r.trace();
    let reinvite = trace
        .split("INVITE sip:alice")
        .nth(1)
        .expect("a re-INVITE to the caller");
    assert!(
        reinvite.contains("P-Asserted-Identity: <sip:agent2@example.com>"),
        "{reinvite}"
    );
    // what the caller heard: the tune from the server's media port, then the agent's voice
    let heard = ear.heard();
    let tune = tune_frames();
    let music: Vec<_> = heard
        .iter()
        .filter(|h| (ports.0..=ports.1).contains(&h.from.port()))
        .collect();
    assert!(
        music.len() >= 150,
        "about five seconds of music: {} packets",
        music.len()
    );
    assert!(
        music.iter().all(|h| h.payload_type == 0),
        "PCMU, as offered"
    );
    let in_tune = music.iter().filter(|h| tune.contains(&h.payload)).count();
    assert!(
        in_tune * 10 >= music.len() * 9,
        "the tune's frames, not silence: {in_tune} of {}",
        music.len()
    );
    let agent_audio = pcap_payloads(&format!("{PCAPS}/g711a.pcap"));
    let voice: Vec<_> = heard
        .iter()
        .filter(|h| agent_audio.contains(&h.payload))
        .collect();
    assert!(
        voice.len() >= 50,
        "the agent's recording reached the caller: {} packets",
        voice.len()
    );
    assert!(
        voice
            .iter()
            .all(|h| !(ports.0..=ports.1).contains(&h.from.port())),
        "straight from the agent, not through the server"
    );
    let last_music = music.last().unwrap().at;
    assert!(
        voice.iter().filter(|h| h.at > last_music).count() >= 40,
        "the agent talks after the music stopped"
    );
    assert_ports_free(ports);
    assert_nothing_held(&s);
}
