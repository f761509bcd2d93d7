//! Response groups with real peers: SIPp callers that send RFC 4733 digits (SIPp's own
//! recordings) and whose RTP the test receives, SIPp agents that ring, decline or answer and
//! talk (SIPp's G.711 recording). Each test shows which agent rings in which order (the
//! server's log and the agents' own traces), what the caller hears (the music's packets and
//! payload, then the agent's), and that a call leaves nothing behind (no RTP port bound, no
//! caller held). baresip callers and agents are put through as SIPp ones are (its re-INVITE
//! handling included).

mod common;

use common::rgs::{
    agent, agent_answering_xml, answered_call, answering, assert_nothing_held, assert_ports_free,
    caller, caller_xml, civil, hours_not_now, hunt_group, import, offers, pcap_payloads,
    publish_activity, rgs_cli, ringing, scenario, server, sine_wav, sipp, trusted_caller_xml,
    tune_frames, voice_with_trunks, wait_log_count, wait_offers, Ear, End, PCAPS, PW,
};
use common::{repo_root, text, TempDir};

#[test]
fn a_caller_hears_music_while_agents_ring_one_by_one_then_talks_with_the_one_who_answers() {
    let (s, ports) = server(2);
    let dir = TempDir::new("rgs-serial");
    let music = dir.0.join("music.wav");
    let wav = sine_wav(16_000, 3);
    std::fs::write(&music, &wav).unwrap();
    let extra = format!(
        "display_name = \"IT Help Desk\"\nmusic = {{ file = \"{}\" }}",
        music.display()
    );
    import(&s, &hunt_group("serial", 5, &["agent1", "agent2"], &extra));
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
    let agent_trace = answering.assert_success("agent2 answered, talked, and got the BYE");
    assert!(
        agent_trace.contains("From: \"IT Help Desk\" <sip:helpdesk@example.com>;tag="),
        "the agent sees which workflow calls:\n{agent_trace}"
    );
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
    // what the caller heard: the configured music from the server's media port, paced, then
    // the agent's voice
    let heard = ear.heard();
    let frames: Vec<Vec<u8>> = confab_media::Clip::from_wav(&wav)
        .unwrap()
        .ulaw()
        .chunks(160)
        .map(<[u8]>::to_vec)
        .collect();
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
    let from_file = music.iter().filter(|h| frames.contains(&h.payload)).count();
    assert!(
        from_file * 10 >= music.len() * 9,
        "the file's frames, not silence: {from_file} of {}",
        music.len()
    );
    let span = music.last().unwrap().at - music[0].at;
    let paced = span.as_millis() as usize / 20 + 1;
    assert!(
        music.len() <= paced + 2 && music.len() * 2 >= paced,
        "one frame per 20 ms: {} packets over {span:?}",
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
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn round_robin_takes_turns_and_longest_idle_offers_the_agent_idle_longest_first() {
    let (s, ports) = server(3);
    import(
        &s,
        &hunt_group("round-robin", 10, &["agent1", "agent2", "agent3"], ""),
    );
    let dir = TempDir::new("rgs-turns");
    let a1 = answering(&s, &dir, "agent1", 2);
    let a2 = answering(&s, &dir, "agent2", 1);
    let a3 = answering(&s, &dir, "agent3", 1);
    answered_call(&s, &dir, "c1.xml");
    answered_call(&s, &dir, "c2.xml");
    assert_eq!(
        offers(&s),
        ["agent1@example.com", "agent2@example.com"],
        "round robin: each call to the next agent"
    );
    rgs_cli(&s, &["group", "set", "Desk", "--routing", "longest-idle"]);
    answered_call(&s, &dir, "c3.xml");
    answered_call(&s, &dir, "c4.xml");
    assert_eq!(
        offers(&s)[2..],
        ["agent3@example.com", "agent1@example.com"],
        "longest idle: agent3 never had a call, agent1's ended before agent2's"
    );
    for (a, who) in [(a1, "agent1"), (a2, "agent2"), (a3, "agent3")] {
        a.assert_success(who);
    }
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn parallel_skips_busy_and_offline_agents_and_attendant_rings_busy_ones_too() {
    let (s, ports) = server(4);
    import(
        &s,
        &hunt_group(
            "parallel",
            10,
            &["agent1", "agent2", "agent3", "agent4"],
            "",
        ),
    );
    let dir = TempDir::new("rgs-parallel");
    // agent1 is busy (its presence says so), agent4 has no device: Offline
    let busy = ringing(&s, "agent1", 1);
    publish_activity(&s, "agent1", PW, "busy");
    let rings = ringing(&s, "agent2", 2);
    let answers = answering(&s, &dir, "agent3", 2);
    answered_call(&s, &dir, "c1.xml");
    let mut first = offers(&s);
    first.sort();
    assert_eq!(
        first,
        ["agent2@example.com", "agent3@example.com"],
        "parallel: every available agent at once"
    );
    rgs_cli(&s, &["group", "set", "Desk", "--routing", "attendant"]);
    answered_call(&s, &dir, "c2.xml");
    let second = &offers(&s)[2..];
    assert!(
        second.contains(&"agent1@example.com".to_owned()),
        "attendant rings the busy agent: {second:?}"
    );
    assert!(
        second.contains(&"agent2@example.com".to_owned())
            && second.contains(&"agent3@example.com".to_owned()),
        "{second:?}"
    );
    busy.assert_success("agent1 rang for the attendant call, then was cancelled");
    rings.assert_success("agent2 rang twice and was cancelled twice");
    answers.assert_success("agent3 answered both calls");
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn a_caller_waiting_past_the_queue_time_out_is_forwarded() {
    let (s, ports) = server(2);
    let doc = hunt_group("serial", 600, &["agent1"], "").replace(
        "groups = [\"Desk\"]",
        "groups = [\"Desk\"]\ntimeout = { after = 10, then = \"forward:sip:agent2@example.com\" }",
    );
    import(&s, &doc);
    let dir = TempDir::new("rgs-timeout");
    let rings = ringing(&s, "agent1", 1);
    let target = answering(&s, &dir, "agent2", 1);
    let ear = Ear::new();
    let xml = caller_xml(&[], 0, End::Connected { talk_ms: 1000 });
    caller(&s, &dir, "c.xml", "helpdesk", &xml, &ear)
        .run()
        .assert_success("the forwarded call");
    rings.assert_success("agent1 rang until the time-out, then was cancelled");
    target.assert_success("the forward target answered");
    assert_eq!(offers(&s), ["agent1@example.com", "agent2@example.com"]);
    assert!(s.log_text().contains("event=\"rgs.timeout\""));
    // ten seconds of music: sender reports every five, from the stream the music came from
    let music_ssrc: Vec<u32> = ear
        .heard()
        .iter()
        .filter(|h| (ports.0..=ports.1).contains(&h.from.port()))
        .map(|h| h.ssrc)
        .collect();
    let reports = ear.reports();
    assert!(
        !reports.is_empty(),
        "RTCP sender reports reached the caller's RTCP port"
    );
    for r in &reports {
        assert_eq!((r[0] >> 6, r[1]), (2, 200), "an SR first: {r:02x?}");
        let ssrc = u32::from_be_bytes(r[4..8].try_into().unwrap());
        assert!(
            music_ssrc.contains(&ssrc),
            "the report is the music stream's"
        );
        assert!(r.windows(2).any(|w| w == [0x81, 202]), "with its SDES");
    }
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn overflow_takes_the_newest_caller_or_the_oldest_one() {
    let (s, ports) = server(1);
    let doc = hunt_group("serial", 600, &["agent1"], "")
        .replace("groups = [\"Desk\"]", "groups = [\"Desk\"]\noverflow = { callers = 1, candidate = \"newest\", then = \"disconnect\" }");
    import(&s, &doc);
    let dir = TempDir::new("rgs-overflow");
    let rings = ringing(&s, "agent1", 2);
    let (e1, e2, e3) = (Ear::new(), Ear::new(), Ear::new());
    let first = caller(
        &s,
        &dir,
        "first.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::ServerHangsUp),
        &e1,
    )
    .spawn();
    wait_offers(&s, 1);
    caller(
        &s,
        &dir,
        "second.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::ServerHangsUp),
        &e2,
    )
    .run()
    .assert_success("the newest caller overflowed: disconnected at once");
    rgs_cli(
        &s,
        &["queue", "set", "Desk", "--overflow-candidate", "oldest"],
    );
    let third = caller(
        &s,
        &dir,
        "third.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::HangUp { after_ms: 3000 }),
        &e3,
    )
    .spawn();
    first.assert_success("the oldest caller overflowed when the third arrived");
    third.assert_success("the third caller waited in the queue, then hung up");
    // with no music configured, the tune Confab makes
    let tune = tune_frames();
    let heard = e3.heard();
    let in_tune = heard.iter().filter(|h| tune.contains(&h.payload)).count();
    assert!(
        heard.len() >= 50 && in_tune * 10 >= heard.len() * 9,
        "the tune: {in_tune} of {}",
        heard.len()
    );
    rings.assert_success("agent1 rang for the first and the third caller");
    assert_eq!(s.log_text().matches("event=\"rgs.overflow\"").count(), 2);
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn outside_business_hours_and_on_holidays_callers_hear_the_message_and_get_the_action() {
    let (s, ports) = server(1);
    let dir = TempDir::new("rgs-hours");
    let week = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let closed_now: Vec<String> = week
        .iter()
        .map(|d| format!("{d} = [\"{}\"]", hours_not_now()))
        .collect();
    let extra = format!(
        "hours = {{ zone = \"UTC\", {} }}\nafter_hours = {{ message = {{ text = \"We are closed.\" }}, then = \"disconnect\" }}",
        closed_now.join(", ")
    );
    import(&s, &hunt_group("serial", 10, &["agent1"], &extra));
    let ear = Ear::new();
    caller(
        &s,
        &dir,
        "c1.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::ServerHangsUp),
        &ear,
    )
    .run()
    .assert_success("after hours: the message, then the server hangs up");
    let message: Vec<_> = ear
        .heard()
        .into_iter()
        .filter(|h| (ports.0..=ports.1).contains(&h.from.port()))
        .collect();
    assert!(
        message.len() >= 25,
        "the message was played: {} packets",
        message.len()
    );
    let tune = tune_frames();
    assert!(
        message.iter().all(|h| !tune.contains(&h.payload)),
        "the message, not music"
    );
    assert!(s.log_text().contains("state=\"after-hours\""));
    // a holiday today, within hours all day
    let today = {
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400;
        let (y, m, d) = civil(days as i64);
        format!("{y:04}-{m:02}-{d:02}")
    };
    let all_day: Vec<String> = week
        .iter()
        .map(|d| format!("{d} = [\"00:00-24:00\"]"))
        .collect();
    let extra = format!(
        "hours = {{ zone = \"UTC\", {} }}\nholidays = [\"Today\"]\nholiday = {{ message = {{ text = \"Happy holidays.\" }}, then = \"disconnect\" }}\n\n[[holidays]]\nname = \"Today\"\npool = \"pool1.example.com\"\nday = [{{ name = \"Today\", start = \"{today}T00:00\", end = \"{today}T23:59\" }}]",
        all_day.join(", ")
    );
    import(&s, &hunt_group("serial", 10, &["agent1"], &extra));
    let ear = Ear::new();
    caller(
        &s,
        &dir,
        "c2.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::ServerHangsUp),
        &ear,
    )
    .run()
    .assert_success("on a holiday: its message, then the server hangs up");
    assert!(s.log_text().contains("state=\"holiday\""));
    assert!(
        offers(&s).is_empty(),
        "no agent was offered a call while closed"
    );
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn an_ivr_sends_the_caller_to_the_queue_of_the_keys_pressed_on_two_levels() {
    let (s, ports) = server(3);
    let doc = r#"
[[group]]
name = "Sales"
pool = "pool1.example.com"
agents = ["agent1@example.com"]
[[group]]
name = "Hardware"
pool = "pool1.example.com"
agents = ["agent2@example.com"]
[[group]]
name = "Software"
pool = "pool1.example.com"
agents = ["agent3@example.com"]
[[queue]]
name = "Sales"
pool = "pool1.example.com"
groups = ["Sales"]
[[queue]]
name = "Hardware"
pool = "pool1.example.com"
groups = ["Hardware"]
[[queue]]
name = "Software"
pool = "pool1.example.com"
groups = ["Software"]
[[workflow]]
name = "Switchboard"
pool = "pool1.example.com"
address = "sip:switchboard@example.com"
welcome = { text = "Welcome." }
[workflow.ivr]
question = { text = "Sales, one. Support, two." }
[[workflow.ivr.option]]
digit = "1"
queue = "Sales"
[[workflow.ivr.option]]
digit = "2"
ivr = { question = { text = "Hardware, three. Software, four." }, option = [{ digit = "3", queue = "Hardware" }, { digit = "4", queue = "Software" }] }
"#;
    import(&s, doc);
    let dir = TempDir::new("rgs-ivr");
    let hardware = answering(&s, &dir, "agent2", 1);
    let ear = Ear::new();
    let xml = caller_xml(&["2", "3"], 2500, End::Connected { talk_ms: 1000 });
    caller(&s, &dir, "c.xml", "switchboard", &xml, &ear)
        .run()
        .assert_success("the IVR caller");
    hardware.assert_success("the hardware agent answered");
    assert_eq!(
        offers(&s),
        ["agent2@example.com"],
        "keys 2 then 3: the hardware queue"
    );
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn a_caller_hanging_up_during_the_welcome_or_while_an_agent_rings_leaves_nothing_behind() {
    let (s, ports) = server(1);
    let extra = "welcome = { text = \"Thank you for calling the help desk. All our agents are busy helping other callers. Please stay on the line.\" }";
    import(&s, &hunt_group("serial", 600, &["agent1"], extra));
    let dir = TempDir::new("rgs-hangup");
    let ear = Ear::new();
    caller(
        &s,
        &dir,
        "early.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::HangUp { after_ms: 1000 }),
        &ear,
    )
    .run()
    .assert_success("hung up during the welcome");
    assert!(offers(&s).is_empty(), "nobody was offered the call yet");
    assert_nothing_held(&s);
    let rings = ringing(&s, "agent1", 1);
    let ear = Ear::new();
    let c = caller(
        &s,
        &dir,
        "late.xml",
        "helpdesk",
        &caller_xml(&[], 0, End::HangUp { after_ms: 9000 }),
        &ear,
    )
    .spawn();
    wait_offers(&s, 1);
    c.assert_success("hung up while agent1 rang");
    rings.assert_success("agent1's ringing was cancelled");
    wait_log_count(&s, "event=\"rgs.call_ended\"", 2);
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn a_workflow_is_reached_by_its_number_through_enterprise_voice() {
    let (s, ports) = server(1);
    let dir = TempDir::new("rgs-number");
    let voice = dir.0.join("voice.toml");
    std::fs::write(
        &voice,
        "usages = [\"Local\"]\n[[dial_plan]]\nname = \"Global\"\n[[policy]]\nname = \"Global\"\nusages = [\"Local\"]\n",
    )
    .unwrap();
    let o = s.cli(&["voice", "apply", voice.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    import(
        &s,
        &hunt_group("serial", 10, &["agent1"], "number = \"tel:+14255550100\""),
    );
    wait_log_count(&s, "event=\"voice.config\"", 1);
    let a = answering(&s, &dir, "agent1", 1);
    let ear = Ear::new();
    let xml = caller_xml(&[], 0, End::Connected { talk_ms: 1000 });
    caller(&s, &dir, "c.xml", "+14255550100", &xml, &ear)
        .run()
        .assert_success("alice dialled the workflow's number");
    a.assert_success("the agent answered");
    assert_eq!(offers(&s), ["agent1@example.com"]);
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn a_formal_group_offers_calls_only_to_signed_in_agents() {
    let (s, ports) = server(2);
    let doc = hunt_group("serial", 10, &["agent1", "agent2"], "").replace(
        "routing = \"serial\"",
        "routing = \"serial\"\nparticipation = \"formal\"",
    );
    import(&s, &doc);
    rgs_cli(
        &s,
        &["agent", "sign-in", "--group", "Desk", "agent2@example.com"],
    );
    let dir = TempDir::new("rgs-formal");
    let a1 = answering(&s, &dir, "agent1", 1);
    let a2 = answering(&s, &dir, "agent2", 1);
    answered_call(&s, &dir, "c1.xml");
    rgs_cli(
        &s,
        &["agent", "sign-out", "--group", "Desk", "agent2@example.com"],
    );
    rgs_cli(
        &s,
        &["agent", "sign-in", "--group", "Desk", "agent1@example.com"],
    );
    answered_call(&s, &dir, "c2.xml");
    assert_eq!(
        offers(&s),
        ["agent2@example.com", "agent1@example.com"],
        "only the signed-in agent, whatever the group's order"
    );
    a1.assert_success("agent1");
    a2.assert_success("agent2");
    let o = s.cli(&[
        "rgs",
        "agent",
        "sign-in",
        "--group",
        "Desk",
        "carol@example.com",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("not an agent of group"),
        "{}",
        text(&o)
    );
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn a_gateway_reaches_a_workflow_by_its_number_and_a_queue_forwards_to_a_number_through_a_trunk() {
    let (gateway, out) = ("127.0.0.64", "127.0.0.65");
    let (s, ports) = server(1);
    let dir = TempDir::new("rgs-gateway");
    let out_port = common::free_port();
    let voice = dir.0.join("voice.toml");
    std::fs::write(&voice, voice_with_trunks(gateway, out, out_port)).unwrap();
    let o = s.cli(&["voice", "apply", voice.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    import(
        &s,
        &hunt_group("serial", 10, &["agent1"], "number = \"tel:+14255550100\""),
    );
    wait_log_count(&s, "event=\"voice.config\"", 1);
    let a = answering(&s, &dir, "agent1", 1);
    let ear = Ear::new();
    let sf = scenario(
        &dir,
        "gw.xml",
        &trusted_caller_xml(End::Connected { talk_ms: 1000 }),
    );
    sipp(&s, &sf)
        .source_ip(gateway)
        .args([
            "-s",
            "+14255550100",
            "-key",
            "caller",
            "+12065550123",
            "-key",
            "rtp_port",
            &ear.port.to_string(),
        ])
        .run()
        .assert_success("the gateway's call to the workflow's number");
    a.assert_success("the agent answered");
    assert_eq!(offers(&s), ["agent1@example.com"]);
    // a full queue forwards the next caller to a number: out through trunk `out`
    let full = hunt_group("serial", 10, &["agent1"], "number = \"tel:+14255550100\"").replace(
        "groups = [\"Desk\"]",
        "groups = [\"Desk\"]\noverflow = { callers = 0, then = \"forward:tel:+12065550199\" }",
    );
    import(&s, &full);
    let pstn = scenario(&dir, "pstn.xml", &agent_answering_xml(200));
    let far_end = sipp(&s, &pstn).source_ip(out).local_port(out_port).spawn();
    common::wait_udp_bound_on(out, out_port);
    let ear = Ear::new();
    let xml = caller_xml(&[], 0, End::Connected { talk_ms: 1000 });
    caller(&s, &dir, "c.xml", "helpdesk", &xml, &ear)
        .run()
        .assert_success("forwarded to a number");
    let trace = far_end.assert_success("the far end answered the forwarded call");
    assert!(
        trace.contains("INVITE sip:+12065550199@"),
        "the number as the trunk sends it:\n{trace}"
    );
    assert!(
        trace.contains("P-Asserted-Identity: <tel:+14255550100>")
            || trace.contains("P-Asserted-Identity: <sip:+14255550100"),
        "the workflow's number shown:\n{trace}"
    );
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn an_overflow_sends_callers_to_another_queue_and_an_anonymous_workflow_does_not_name_the_agent() {
    let (s, ports) = server(2);
    let doc = r#"
[[group]]
name = "First line"
pool = "pool1.example.com"
agents = ["agent1@example.com"]
[[group]]
name = "Second line"
pool = "pool1.example.com"
agents = ["agent2@example.com"]
[[queue]]
name = "First line"
pool = "pool1.example.com"
groups = ["First line"]
overflow = { callers = 0, then = "queue:Second line" }
[[queue]]
name = "Second line"
pool = "pool1.example.com"
groups = ["Second line"]
[[workflow]]
name = "Help Desk"
pool = "pool1.example.com"
address = "sip:helpdesk@example.com"
queue = "First line"
anonymous = true
"#;
    import(&s, doc);
    let dir = TempDir::new("rgs-queue-action");
    let second_line = answering(&s, &dir, "agent2", 1);
    let ear = Ear::new();
    let xml = caller_xml(&[], 0, End::Connected { talk_ms: 1000 });
    let r = caller(&s, &dir, "c.xml", "helpdesk", &xml, &ear).run();
    r.assert_success("the caller overflowed into the second queue and was answered there");
    second_line.assert_success("agent2 answered");
    assert_eq!(
        offers(&s),
        ["agent2@example.com"],
        "never offered to the first line"
    );
    let trace = r.trace();
    let reinvite = trace
        .split("INVITE sip:alice")
        .nth(1)
        .expect("a re-INVITE to the caller");
    let reinvite = reinvite.split("\n\n").next().unwrap_or_default();
    assert!(
        !reinvite.contains("P-Asserted-Identity") && !reinvite.contains("agent2"),
        "an anonymous workflow does not tell who answered:\n{reinvite}"
    );
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}

#[test]
fn baresip_callers_and_agents_are_put_through_as_sipp_ones_are() {
    use common::baresip::{command, Baresip};
    let (s, ports) = server(0);
    import(&s, &hunt_group("serial", 10, &["bob"], ""));
    let (alice_cons, bob_cons) = (common::free_port(), common::free_port());
    // bob, an agent, answers at once; alice calls the workflow from her baresip's console
    let bob = Baresip::answering(&s, "bob", bob_cons);
    let alice = Baresip::answering(&s, "alice", alice_cons);
    command(alice_cons, "dial helpdesk");
    alice.wait_for("Call established", "the workflow answers baresip's call");
    bob.wait_for("Call established", "bob's baresip answers the offered call");
    wait_log_count(&s, "event=\"rgs.connected\"", 1);
    command(alice_cons, "hangup");
    wait_log_count(&s, "event=\"rgs.call_ended\"", 1);
    assert_eq!(offers(&s), ["bob@example.com"]);
    assert_ports_free(&s, ports);
    assert_nothing_held(&s);
}
