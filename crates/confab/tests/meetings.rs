//! Meetings with real peers: SIPp participants join a meeting created with `confab meeting
//! create`, play tones (recordings the test writes) and press keys (SIPp's RFC 4733
//! recordings); the test receives each participant's RTP and tells by frequency who heard
//! whom. A SIPp watcher follows the roster (RFC 4575 NOTIFYs); SIPp participants write and
//! read the meeting's instant messages; baresip and PJSIP (`pjsua2`) participants play and
//! record audio; meet-now and REFER bring a colleague in; the CLI refuses what it cannot serve.

mod common;

use common::meetings::{
    assert_heard, create_meeting, heard_power, join, participant_hung_up_xml, participant_xml,
    reader_xml, recorded_power, referrer_xml, tone_pcap, tone_wav, writer_xml, Step,
};
use common::rgs::{assert_ports_free, scenario, server, sipp, wait_log_count, Ear, PW};
use common::{text, Sipp, TempDir};

fn add_user(s: &common::Server, user: &str) {
    let o = s.cli(&[
        "user",
        "add",
        &format!("{user}@example.com"),
        "--password",
        PW,
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn each_participant_hears_the_others_and_not_itself_and_the_roster_follows() {
    let (s, ports) = server(0);
    add_user(&s, "dave");
    let id = create_meeting(&s, "alice@example.com", &["--subject", "Budget"]);
    let dir = TempDir::new("meeting-mix");
    // dave watches the roster from before anyone joins
    let mut watcher = Sipp::new(&s, "subscribe.xml")
        .args(["-s", &format!("meet-{id}"), "-key", "caller", "dave"])
        .args(["-key", "event", "conference", "-key", "expires", "60"])
        .auth("dave", PW)
        .spawn();
    watcher.wait_for("<user-count>0</user-count>", "the first roster, empty");

    let (low, high) = (tone_pcap(&dir, 440.0, 4), tone_pcap(&dir, 1000.0, 4));
    let (a, b, c) = (Ear::new(), Ear::new(), Ear::new());
    let talk = |tone| participant_xml(&[Step::Pause(1000), Step::Play(tone), Step::Pause(5000)]);
    let alice = join(&s, &dir, &id, "alice", &talk(&low), &a);
    let bob = join(&s, &dir, &id, "bob", &talk(&high), &b);
    let carol = join(
        &s,
        &dir,
        &id,
        "carol",
        &participant_xml(&[Step::Pause(6000)]),
        &c,
    );
    watcher.wait_for("<user-count>3</user-count>", "all three in the roster");
    alice.assert_success("alice joined, talked, left");
    bob.assert_success("bob joined, talked, left");
    carol.assert_success("carol joined, listened, left");
    // everyone left: an empty roster again
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while watcher
        .trace()
        .matches("<user-count>0</user-count>")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no empty roster at the end:\n{}",
            watcher.trace()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let roster = watcher.trace();
    assert!(roster.contains("<subject>Budget</subject>"), "{roster}");
    assert!(
        roster.contains(
            "<user entity=\"sip:alice@example.com\" state=\"full\"><roles><entry>organizer</entry>"
        ),
        "alice is the organizer:\n{roster}"
    );

    // alice says 440 Hz, bob 1000 Hz, carol listens
    let freqs = [440.0, 1000.0];
    assert_heard("alice", &heard_power(&a, &freqs), Some(0));
    assert_heard("bob", &heard_power(&b, &freqs), Some(1));
    assert_heard("carol", &heard_power(&c, &freqs), None);
    assert_ports_free(&s, ports);
}

#[test]
fn star_six_mutes_a_participant_for_everyone_else_until_pressed_again() {
    let (s, ports) = server(0);
    let id = create_meeting(&s, "alice@example.com", &[]);
    let dir = TempDir::new("meeting-mute");
    let (tone1, tone2) = (tone_pcap(&dir, 1000.0, 3), tone_pcap(&dir, 1600.0, 3));
    let (a, b) = (Ear::new(), Ear::new());
    // bob mutes himself, talks (1000 Hz), unmutes, talks again (1600 Hz)
    let bob = join(
        &s,
        &dir,
        &id,
        "bob",
        &participant_xml(&[
            Step::Pause(1000),
            Step::Keys(&["star", "6"]),
            Step::Play(&tone1),
            Step::Pause(3500),
            Step::Keys(&["star", "6"]),
            Step::Play(&tone2),
            Step::Pause(3500),
        ]),
        &b,
    );
    let alice = join(
        &s,
        &dir,
        &id,
        "alice",
        &participant_xml(&[Step::Pause(13_000)]),
        &a,
    );
    bob.assert_success("bob muted, talked, unmuted, talked");
    alice.assert_success("alice listened");
    let [a1000, a1600] = heard_power(&a, &[1000.0, 1600.0])[..] else {
        unreachable!()
    };
    assert!(a1600 > 1e7, "alice hears bob once he unmuted: {a1600:e}");
    assert!(
        a1000 < a1600 / 100.0,
        "and not while he was muted: {a1000:e} {a1600:e}"
    );
    // bob heard the two beeps: muted (400 Hz), unmuted (800 Hz)
    let [b400, b800] = heard_power(&b, &[400.0, 800.0])[..] else {
        unreachable!()
    };
    assert!(b400 > 1e6 && b800 > 1e6, "bob was told: {b400:e} {b800:e}");
    let log = s.log_text();
    assert!(log.contains("event=\"meeting.joined\""), "{log}");
    assert_ports_free(&s, ports);
}

#[test]
fn messages_reach_every_other_participant_in_order_and_not_those_who_left() {
    let (s, _ports) = server(0);
    add_user(&s, "dave");
    let id = create_meeting(&s, "alice@example.com", &[]);
    // meeting IM is archived like one-to-one IM
    let policies_read = s.log_text().matches("archive.policies").count();
    let o = s.cli(&["archive", "policy", "set", "global", "--internal", "on"]);
    assert!(o.status.success(), "{}", text(&o));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.log_text().matches("archive.policies").count() <= policies_read {
        assert!(std::time::Instant::now() < deadline, "archiving on");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let dir = TempDir::new("meeting-im");
    let ears: Vec<Ear> = (0..4).map(|_| Ear::new()).collect();
    let carol = join(
        &s,
        &dir,
        &id,
        "carol",
        &participant_xml(&[Step::Pause(200)]),
        &ears[2],
    );
    carol.assert_success("carol joined and left before anyone wrote");
    let bob = join(&s, &dir, &id, "bob", &reader_xml(), &ears[1]);
    let dave = join(&s, &dir, &id, "dave", &reader_xml(), &ears[3]);
    let alice = join(&s, &dir, &id, "alice", &writer_xml(2000), &ears[0]);
    let alice = alice.assert_success("alice wrote twice");
    for (who, r) in [("bob", bob), ("dave", dave)] {
        let trace = r.assert_success(&format!("{who} read both"));
        let first = trace.find("first words").expect("the first message");
        let second = trace.find("second words").expect("the second message");
        assert!(first < second, "{who}: in order:\n{trace}");
        assert_eq!(trace.matches("first words").count(), 1, "{who}: once");
        assert!(
            trace.contains("From: <sip:alice@example.com>\r\n")
                || trace.contains("From: <sip:alice@example.com>\n"),
            "{who}: the sender is named:\n{trace}"
        );
        assert!(trace.contains("Content-Type: message/cpim"), "{trace}");
    }
    assert_eq!(
        alice.matches("first words").count(),
        1,
        "alice is not sent her own"
    );
    let o = s.cli(&["archive", "search", "--user", "alice@example.com"]);
    let found = text(&o);
    for words in ["first words", "second words"] {
        let lines: Vec<&str> = found.lines().filter(|l| l.contains(words)).collect();
        assert_eq!(lines.len(), 1, "archived once: {found}");
        assert!(
            lines[0].contains(&format!("alice@example.com -> meet-{id}@")),
            "to the meeting: {found}"
        );
    }
    // an unknown meeting
    let stranger = Sipp::new(&s, "uac_message.xml")
        .args(["-s", "meet-1", "-key", "caller", "alice"])
        .auth("alice", &s.password("alice"))
        .run();
    assert!(
        stranger.trace().contains("404 Not Found (no such meeting)"),
        "{}",
        stranger.trace()
    );
}

#[test]
fn a_participant_gone_without_a_bye_is_hung_up_when_its_media_stops() {
    let (s, ports) = server(0);
    let o = s.cli(&["meeting", "settings", "--media-timeout", "2"]);
    assert!(
        o.status.success() && text(&o).contains("media time-out:    2 s"),
        "{}",
        text(&o)
    );
    let id = create_meeting(&s, "alice@example.com", &[]);
    let dir = TempDir::new("meeting-gone");
    let tone = tone_pcap(&dir, 440.0, 1);
    let ear = Ear::new();
    // bob talks for a second, then his phone goes silent for good (no RTP, no BYE)
    let bob = join(
        &s,
        &dir,
        &id,
        "bob",
        &participant_hung_up_xml(&[Step::Play(&tone)]),
        &ear,
    );
    bob.assert_success("the server hung up on bob once his media stopped");
    let log = s.log_text();
    assert!(log.contains("event=\"meeting.media_lost\""), "{log}");
    let o = s.cli(&["meeting", "settings", "--participant-limit", "0"]);
    assert!(
        !o.status.success() && text(&o).contains("at least 1"),
        "{}",
        text(&o)
    );
    assert_ports_free(&s, ports);
}

/// Carol (SIPp) joins meeting `id`, says 440 Hz for 4 s, leaves: her call and her ear.
fn carol_says_440(s: &common::Server, dir: &TempDir, id: &str) -> (common::SippChild, Ear) {
    let ear = Ear::new();
    let low = tone_pcap(dir, 440.0, 4);
    let xml = participant_xml(&[Step::Pause(1000), Step::Play(&low), Step::Pause(5000)]);
    (join(s, dir, id, "carol", &xml, &ear), ear)
}

#[test]
fn baresips_and_sipp_in_one_meeting_each_hear_the_others_and_not_themselves() {
    use common::baresip::{command, Baresip};
    let (s, ports) = server(0);
    let id = create_meeting(&s, "alice@example.com", &[]);
    let dir = TempDir::new("meeting-baresip");
    let (rec_a, rec_b) = (dir.0.join("alice"), dir.0.join("bob"));
    std::fs::create_dir_all(&rec_a).unwrap();
    std::fs::create_dir_all(&rec_b).unwrap();
    // alice's baresip says 1000 Hz, bob's is silent, carol (SIPp) says 440 Hz; each baresip
    // hangs up when its file ends
    let (cons_a, cons_b) = (common::free_port(), common::free_port());
    let alice = Baresip::with_audio(&s, "alice", cons_a, &tone_wav(&dir, 1000.0, 7), &rec_a);
    let bob = Baresip::with_audio(&s, "bob", cons_b, &tone_wav(&dir, 0.0, 7), &rec_b);
    let (carol, ear) = carol_says_440(&s, &dir, &id);
    for cons in [cons_a, cons_b] {
        command(cons, &format!("dial sip:meet-{id}@example.com"));
    }
    alice.wait_for("Call established", "alice's baresip joins");
    bob.wait_for("Call established", "bob's baresip joins");
    carol.assert_success("carol joined, talked, left");
    alice.wait_for("terminated", "alice's baresip leaves when its file ends");
    bob.wait_for("terminated", "bob's baresip leaves when its file ends");
    let freqs = [1000.0, 440.0];
    assert_heard("alice", &recorded_power(&rec_a, &freqs), Some(0));
    assert_heard("bob", &recorded_power(&rec_b, &freqs), None);
    assert_heard("carol", &heard_power(&ear, &freqs), Some(1));
    assert_ports_free(&s, ports);
}

#[test]
fn a_call_to_meet_now_makes_a_meeting_and_a_refer_brings_a_colleague_in() {
    let (s, ports) = server(0);
    let o = s.cli(&["meeting", "settings", "--media-timeout", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_log_count(&s, "media_timeout=2", 1);
    // bob's phone (SIPp) answers with audio, sends none, and waits for a BYE
    let bob_port = common::free_port();
    let bob = Sipp::new(&s, "uas_call.xml")
        .args(["-s", "bob", "-p", &bob_port.to_string()])
        .spawn();
    common::wait_udp_bound(bob_port);
    common::register(&s, "bob", bob_port, "u1");
    let dir = TempDir::new("meeting-adhoc");
    let ear = Ear::new();
    let sf = scenario(&dir, "alice.xml", &referrer_xml());
    let alice = sipp(&s, &sf)
        .args([
            "-s",
            "meet-now",
            "-key",
            "caller",
            "alice",
            "-key",
            "refer_to",
            "bob@example.com",
        ])
        .args(["-key", "rtp_port", &ear.port.to_string()])
        .auth("alice", &s.password("alice"))
        .run();
    alice.assert_success("alice made a meeting and brought bob in");
    let trace = alice.trace();
    assert!(
        trace.contains("SIP/2.0 100 Trying") && trace.contains("SIP/2.0 200 OK\r\n"),
        "{trace}"
    );
    assert!(trace.contains("Content-Type: message/sipfrag"), "{trace}");
    let bob_trace =
        bob.assert_success("the focus called bob; his silent phone was hung up on later");
    assert!(
        bob_trace.contains("From: \"Meeting "),
        "bob sees the meeting calling:\n{bob_trace}"
    );
    let log = s.log_text();
    assert!(
        log.contains("event=\"meeting.adhoc\"") && log.contains("event=\"meeting.invite_out\""),
        "{log}"
    );
    assert_ports_free(&s, ports);
}

#[test]
fn the_meeting_commands_refuse_what_cannot_be_served_and_directories_move_whole() {
    let s = common::Server::start();
    let cli = |args: &[&str]| {
        let o = s.cli(args);
        (o.status.code(), text(&o))
    };
    // a directory for a pool the topology does not have
    let (code, out) = cli(&["meeting", "directory", "add", "--pool", "pool9.example.com"]);
    assert_eq!(code, Some(64), "{out}");
    assert!(
        out.contains("not a pool that hosts users") && out.contains("pool01.example.com"),
        "{out}"
    );
    let (code, out) = cli(&[
        "meeting",
        "directory",
        "add",
        "--pool",
        "pool01.example.com",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("conference IDs 1000000 to 1099999"), "{out}");
    // alice's meetings take their IDs in her pool's directory
    let (_, out) = cli(&["meeting", "create", "--organizer", "alice@example.com"]);
    let id: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("created meeting "))
        .and_then(|i| i.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((1_000_000..=1_099_999).contains(&id), "{id}");
    assert!(
        out.contains("directory:      1 (pool pool01.example.com)"),
        "{out}"
    );
    let (code, out) = cli(&["meeting", "directory", "remove", "1"]);
    assert_eq!(code, Some(64));
    assert!(out.contains("holds 1 meeting(s)"), "{out}");
    let (code, out) = cli(&[
        "meeting",
        "directory",
        "move",
        "1",
        "--to",
        "nowhere.example.com",
    ]);
    assert_eq!(code, Some(64), "{out}");
    // bad dial-in objects: each refused with the fix, nothing changed
    let (code, out) = cli(&[
        "meeting",
        "region",
        "add",
        "Redmond",
        "--dial-plan",
        "NoSuchPlan",
    ]);
    assert_eq!(code, Some(64));
    assert!(
        out.contains("dial plan \"NoSuchPlan\" does not exist"),
        "{out}"
    );
    let (code, out) = cli(&[
        "meeting",
        "access-number",
        "add",
        "5550199",
        "--display",
        "555-0199",
        "--region",
        "Redmond",
    ]);
    assert_eq!(code, Some(64));
    assert!(
        out.contains("is not E.164")
            && out.contains("names region \"Redmond\", which does not exist"),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    let (code, out) = cli(&["meeting", "show", "123"]);
    assert_eq!(code, Some(64));
    assert!(out.contains("no meeting 123"), "{out}");
    let (code, out) = cli(&[
        "user",
        "add",
        "meet-42@example.com",
        "--password",
        "long-enough-1",
    ]);
    assert_eq!(code, Some(64));
    assert!(out.contains("meetings' addresses"), "{out}");
    let (code, out) = cli(&["user", "set", "alice@example.com", "--pin", "12ab"]);
    assert_eq!(code, Some(64));
    assert!(out.contains("4 to 12 digits"), "{out}");
}

#[test]
fn pjsip_participants_and_sipp_each_hear_the_others_and_not_themselves() {
    let (s, ports) = server(0);
    let id = create_meeting(&s, "alice@example.com", &[]);
    let dir = TempDir::new("meeting-pjsip");
    let (rec_a, rec_b) = (dir.0.join("alice.wav"), dir.0.join("bob.wav"));
    let alice = common::meetings::pjsua(&s, "alice", &id, &tone_wav(&dir, 1000.0, 8), &rec_a, 6);
    let bob = common::meetings::pjsua(&s, "bob", &id, &tone_wav(&dir, 0.0, 8), &rec_b, 6);
    let (carol, ear) = carol_says_440(&s, &dir, &id);
    carol.assert_success("carol joined, talked, left");
    for (who, p) in [("alice", alice), ("bob", bob)] {
        let out = p.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("joined") && text.contains("done ok"),
            "{who}'s PJSIP: {text}"
        );
    }
    let freqs = [1000.0, 440.0];
    assert_heard(
        "alice",
        &common::meetings::wav_power(&rec_a, &freqs),
        Some(0),
    );
    assert_heard("bob", &common::meetings::wav_power(&rec_b, &freqs), None);
    assert_heard("carol", &heard_power(&ear, &freqs), Some(1));
    assert_ports_free(&s, ports);
}
