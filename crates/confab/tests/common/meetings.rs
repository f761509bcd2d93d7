//! Meeting test parts: meetings created with the CLI, SIPp participants written for each test
//! (they join with the response-group caller's INVITE, then play tones, press keys, write or
//! read messages), tones as SIPp recordings, and what a participant heard analysed by
//! frequency (Goertzel, `confab_media::tone`).

use std::path::{Path, PathBuf};

use super::rgs::{trusted_head, Ear, CALLER_BYE, CALLER_HEAD, PCAPS, SERVER_BYE};
use super::{text, Server, SippChild, TempDir};

const WRITER: &str = include_str!("../../../../tests/sipp/meetings/writer.xml");
const READER: &str = include_str!("../../../../tests/sipp/meetings/reader.xml");
const REFER: &str = include_str!("../../../../tests/sipp/meetings/refer.xml");

/// What a participant does once in the meeting.
pub(crate) enum Step<'a> {
    Pause(u64),
    /// Plays a recording (a tone from [`tone_pcap`]) while the next steps go on.
    Play(&'a Path),
    /// Presses keys (SIPp's RFC 4733 recordings: "star", "6"), 0.4 s apart.
    Keys(&'a [&'a str]),
}

/// A participant: joins, does `steps`, hangs up.
pub(crate) fn participant_xml(steps: &[Step]) -> String {
    with_steps(CALLER_HEAD.to_owned(), steps, CALLER_BYE)
}

/// A participant that does `steps` and then waits for the server to hang up.
pub(crate) fn participant_hung_up_xml(steps: &[Step]) -> String {
    with_steps(CALLER_HEAD.to_owned(), steps, SERVER_BYE)
}

/// A caller by phone from a gateway (no credentials): calls, does `steps`, then hangs up, or
/// with `hung_up` waits for the server's BYE.
pub(crate) fn phone_caller_xml(steps: &[Step], hung_up: bool) -> String {
    let end = if hung_up { SERVER_BYE } else { CALLER_BYE };
    with_steps(trusted_head(), steps, end)
}

/// The keys of `text` as SIPp's recording names: digits, `star`, `pound`.
pub(crate) fn keys_of(text: &str) -> Vec<&'static str> {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    text.chars()
        .filter_map(|c| match c {
            '*' => Some("star"),
            '#' => Some("pound"),
            d => d.to_digit(10).map(|d| DIGITS[d as usize]),
        })
        .collect()
}

fn with_steps(head: String, steps: &[Step], end: &str) -> String {
    let mut s = head;
    for step in steps {
        match step {
            Step::Pause(ms) => s.push_str(&format!("  <pause milliseconds=\"{ms}\"/>\n")),
            Step::Play(p) => s.push_str(&format!(
                "  <nop><action><exec play_pcap_audio=\"{}\"/></action></nop>\n",
                p.display()
            )),
            Step::Keys(keys) => {
                for k in *keys {
                    // each recording lasts 140 ms
                    s.push_str(&format!(
                        "  <nop><action><exec play_pcap_audio=\"{PCAPS}/dtmf_2833_{k}.pcap\"/></action></nop>\n  <pause milliseconds=\"400\"/>\n"
                    ));
                }
            }
        }
    }
    s.push_str(end);
    s.push_str("</scenario>\n");
    s
}

/// A participant that writes two messages within its call after `wait_ms`, then hangs up.
pub(crate) fn writer_xml(wait_ms: u64) -> String {
    format!(
        "{CALLER_HEAD}{}</scenario>\n",
        WRITER.replace("{WAIT_MS}", &wait_ms.to_string())
    )
}

/// A participant that brings `-key refer_to USER@DOMAIN` in with a REFER, then hangs up.
pub(crate) fn referrer_xml() -> String {
    format!("{CALLER_HEAD}{REFER}</scenario>\n")
}

/// A participant that takes two messages, then hangs up.
pub(crate) fn reader_xml() -> String {
    format!("{CALLER_HEAD}{READER}{CALLER_BYE}</scenario>\n")
}

/// Creates a meeting organized by `organizer` and waits until the server serves it: its
/// conference ID.
pub(crate) fn create_meeting(server: &Server, organizer: &str, extra: &[&str]) -> String {
    let mut args = vec!["meeting", "create", "--organizer", organizer];
    args.extend_from_slice(extra);
    let o = server.cli(&args);
    assert!(o.status.success(), "meeting create: {}", text(&o));
    let out = text(&o);
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("created meeting "))
        .unwrap_or_else(|| panic!("no conference ID in:\n{out}"))
        .trim()
        .to_owned();
    assert!(
        out.contains(&format!("join (SIP):     sip:meet-{id}@example.com")),
        "{out}"
    );
    // served once a reading of the document holds as many meetings as are stored now
    let stored = text(&server.cli(&["meeting", "list"]))
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    let needle = format!("meetings={stored} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server
        .log_text()
        .lines()
        .any(|l| l.contains("event=\"meetings.config\"") && l.contains(&needle))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "meeting {id} never served"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    id
}

/// A SIPp recording of `seconds` of a `freq` Hz tone in G.711 µ-law (RTP payload 0, 20 ms
/// packets), for `play_pcap_audio`.
pub(crate) fn tone_pcap(dir: &TempDir, freq: f64, seconds: u32) -> PathBuf {
    let mut pcap = Vec::new();
    // magic, version 2.4 (two u16s), zone, accuracy, snapshot length, Ethernet
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        pcap.extend_from_slice(&v.to_le_bytes());
    }
    let frames = seconds as usize * 50;
    for n in 0..frames {
        let samples = confab_media::tone::sine(freq, 8000.0, n * 160);
        let payload: Vec<u8> = samples
            .iter()
            .map(|&x| confab_media::g711::ulaw_encode(x))
            .collect();
        let mut rtp = vec![0x80, 0];
        rtp.extend_from_slice(&(n as u16).to_be_bytes());
        rtp.extend_from_slice(&((n * 160) as u32).to_be_bytes());
        rtp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        rtp.extend_from_slice(&payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        frame.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let micros = n as u32 * 20_000;
        for v in [
            micros / 1_000_000,
            micros % 1_000_000,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            pcap.extend_from_slice(&v.to_le_bytes());
        }
        pcap.extend_from_slice(&frame);
    }
    let path = dir.0.join(format!("tone-{freq}.pcap"));
    std::fs::write(&path, pcap).unwrap();
    path
}

/// How much of each frequency a participant heard: the power summed over every 20 ms packet
/// (µ-law, payload 0) that reached its ear.
pub(crate) fn heard_power(ear: &Ear, freqs: &[f64]) -> Vec<f64> {
    let mut total = vec![0.0; freqs.len()];
    for h in ear.heard().iter().filter(|h| h.payload_type == 0) {
        let samples: Vec<i16> = h
            .payload
            .iter()
            .map(|&b| confab_media::g711::ulaw_decode(b))
            .collect();
        for (t, f) in total.iter_mut().zip(freqs) {
            *t += confab_media::tone::power(&samples, *f);
        }
    }
    total
}

/// A WAV file (8 kHz, 16-bit mono) of `seconds` of a `freq` Hz tone (0: silence).
pub(crate) fn tone_wav(dir: &TempDir, freq: f64, seconds: u32) -> PathBuf {
    let frames = seconds as usize * 50;
    let samples: Vec<i16> = (0..frames)
        .flat_map(|n| {
            if freq == 0.0 {
                [0; 160]
            } else {
                confab_media::tone::sine(freq, 8000.0, n * 160)
            }
        })
        .collect();
    let path = dir.0.join(format!("tone-{freq}-{seconds}.wav"));
    std::fs::write(&path, super::rgs::wav(8000, &samples)).unwrap();
    path
}

/// How much of each frequency the recordings baresip made in `dir` of what it heard
/// (`dump-*-dec.wav`, 16-bit mono at 8 kHz) hold, summed over 20 ms frames.
pub(crate) fn recorded_power(dir: &Path, freqs: &[f64]) -> Vec<f64> {
    let mut total = vec![0.0; freqs.len()];
    for f in std::fs::read_dir(dir).unwrap().flatten() {
        if f.file_name().to_string_lossy().ends_with("-dec.wav") {
            for (t, p) in total.iter_mut().zip(wav_power(&f.path(), freqs)) {
                *t += p;
            }
        }
    }
    total
}

/// Asserts what `who` heard of two talkers' tones (`power` in the talkers' order, as
/// [`heard_power`] gives it): both, for a listener; for talker `own`, the other's and not its
/// own (below a hundredth).
pub(crate) fn assert_heard(who: &str, power: &[f64], own: Option<usize>) {
    const LOUD: f64 = 1e7;
    match own {
        None => assert!(
            power.iter().all(|&p| p > LOUD),
            "{who} hears both talkers: {power:?}"
        ),
        Some(i) => {
            let other = power[1 - i];
            assert!(
                other > LOUD && power[i] < other / 100.0,
                "{who} hears the other talker, not itself: {power:?}"
            );
        }
    }
}

/// A PJSIP participant (tests/pjsua/participant.py, PyPI `pjsua2-python`) of meeting `id`:
/// plays `play`, records what it hears to `record`, stays `seconds`.
pub(crate) fn pjsua(
    s: &Server,
    user: &str,
    id: &str,
    play: &Path,
    record: &Path,
    seconds: u32,
) -> std::process::Child {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import pjsua2"])
        .output()
        .expect("python3");
    assert!(
        probe.status.success(),
        "pjsua2 (PJSIP's Python binding) is not installed: run ./scripts/test (it installs pjsua2-python from PyPI)"
    );
    std::process::Command::new("python3")
        .arg(super::repo_root().join("tests/pjsua/participant.py"))
        .args([
            "--proxy",
            &s.addr(),
            "--user",
            user,
            "--password",
            &s.password(user),
        ])
        .args([
            "--domain",
            "example.com",
            "--call",
            &format!("sip:meet-{id}@example.com"),
        ])
        .arg("--play")
        .arg(play)
        .arg("--record")
        .arg(record)
        .args(["--seconds", &seconds.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the PJSIP participant")
}

/// The power of `freqs` in a WAV recording (16-bit mono, 8 kHz), over 20 ms frames.
pub(crate) fn wav_power(path: &Path, freqs: &[f64]) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let data = bytes
        .windows(4)
        .position(|w| w == b"data")
        .map_or(44, |i| i + 8);
    let samples: Vec<i16> = bytes[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    freqs
        .iter()
        .map(|f| {
            samples
                .chunks_exact(160)
                .map(|fr| confab_media::tone::power(fr, *f))
                .sum()
        })
        .collect()
}

/// `user` joins meeting `id` running scenario `xml`, its audio to `ear`.
pub(crate) fn join(
    s: &Server,
    dir: &TempDir,
    id: &str,
    user: &str,
    xml: &str,
    ear: &Ear,
) -> SippChild {
    let sf = super::rgs::scenario(dir, &format!("{user}.xml"), xml);
    let pw = if ["alice", "bob", "carol"].contains(&user) {
        s.password(user)
    } else {
        super::rgs::PW.to_owned()
    };
    super::rgs::sipp(s, &sf)
        .args(["-s", &format!("meet-{id}"), "-key", "caller", user])
        .args(["-key", "rtp_port", &ear.port.to_string()])
        .auth(user, &pw)
        .spawn()
}
