//! What the response-group tests share: a server with agents and media ports of its own, the
//! documents they import, agents that answer or ring, sounds to play, and the checks that a
//! call left nothing behind.

use std::time::Duration;

use super::{agent_answering_xml, agent_for_calls, caller, caller_xml, scenario, Ear, End};
use crate::common::{free_udp_range, repo_root, text, Server, SippChild, TempDir};

/// The agents' password.
pub(crate) const PW: &str = "agent-pw";

/// A server with media ports of its own and agents `agent1`..`agentN`.
pub(crate) fn server(agents: usize) -> (Server, (u16, u16)) {
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
pub(crate) fn hunt_group(routing: &str, alert: u32, agents: &[&str], extra: &str) -> String {
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

/// The server holds no UDP socket in its media range any more: no stream left open. Only the
/// server's own sockets count: the range lies among the ephemeral ports, which a SIPp or a
/// baresip of another test may be given while this one runs.
pub(crate) fn assert_ports_free(server: &Server, ports: (u16, u16)) {
    let Some(pid) = server.pid() else {
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let busy = udp_ports_of(pid, ports);
        if busy.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "media ports still bound by the server after the call: {busy:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The local UDP ports within `range` of the sockets process `pid` holds, from /proc.
fn udp_ports_of(pid: u32, range: (u16, u16)) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut busy = Vec::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(inode)) = (f.get(1), f.get(9)) else {
                continue;
            };
            let port = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if let Some(port) = port {
                if (range.0..=range.1).contains(&port) && inodes.contains(*inode) {
                    busy.push(port);
                }
            }
        }
    }
    busy
}

/// The last `rgs.call_ended` line says no caller, no queue entry, no ringing agent and no
/// port is held.
pub(crate) fn assert_nothing_held(server: &Server) {
    let log = server.log_text();
    let last = log
        .lines()
        .rfind(|l| l.contains("event=\"rgs.call_ended\""))
        .unwrap_or_default();
    for held in ["callers=0", "waiting=0", "ringing=0", "ports=0"] {
        assert!(last.contains(held), "after the call: {last}");
    }
}

/// A WAV file of `seconds` of a chord at `rate` Hz, 16-bit mono (resampled to 8 kHz when
/// played).
pub(crate) fn sine_wav(rate: u32, seconds: u32) -> Vec<u8> {
    let samples: Vec<i16> = (0..rate * seconds)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            let v = (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * 660.0 * t).sin();
            (v * 9000.0) as i16
        })
        .collect();
    wav(rate, &samples)
}

/// A WAV file (16-bit mono PCM at `rate` Hz) of `samples`.
pub(crate) fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
    let n = samples.len() as u32;
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + n * 2).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(n * 2).to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

/// The tune's 160-byte frames (what music on hold sends when none is configured).
pub(crate) fn tune_frames() -> Vec<Vec<u8>> {
    confab_media::Clip::tune()
        .ulaw()
        .chunks(160)
        .map(<[u8]>::to_vec)
        .collect()
}

/// An agent that answers every call (`calls` of them) and talks.
pub(crate) fn answering(s: &Server, dir: &TempDir, user: &str, calls: u32) -> SippChild {
    let sf = scenario(dir, &format!("{user}.xml"), &agent_answering_xml(200));
    agent_for_calls(s, user, PW, &sf, calls)
}

/// An agent that rings for every call (`calls` of them) and never answers.
pub(crate) fn ringing(s: &Server, user: &str, calls: u32) -> SippChild {
    agent_for_calls(
        s,
        user,
        PW,
        &repo_root().join("tests/sipp/uas_ring.xml"),
        calls,
    )
}

/// One call to the hunt group that an agent answers; returns when it is over.
pub(crate) fn answered_call(s: &Server, dir: &TempDir, name: &str) {
    let ear = Ear::new();
    let xml = caller_xml(&[], 0, End::Connected { talk_ms: 1200 });
    caller(s, dir, name, "helpdesk", &xml, &ear)
        .run()
        .assert_success(name);
}

/// `HH:MM-HH:MM` of a one-minute range an hour from now (UTC): closed now.
pub(crate) fn hours_not_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let m = ((secs / 60) % 1440 + 60) % 1439;
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        m / 60,
        m % 60,
        (m + 1) / 60,
        (m + 1) % 60
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A voice configuration with trunk `carrier` (its gateway at `gateway`, calls in) and trunk
/// `out` (to the UAS at `out`, port `out_port`) for numbers of area code 206.
pub(crate) fn voice_with_trunks(gateway: &str, out: &str, out_port: u16) -> String {
    format!(
        r#"usages = ["Local"]
[[dial_plan]]
name = "Global"
[[policy]]
name = "Global"
usages = ["Local"]
[[route]]
name = "Seattle"
pattern = '^\+1206\d{{7}}$'
usages = ["Local"]
trunks = ["out"]
[[trunk]]
name = "carrier"
gateway = {{ host = "{gateway}", port = 5060, transport = "udp" }}
[[trunk]]
name = "out"
gateway = {{ host = "{out}", port = {out_port}, transport = "udp" }}
"#
    )
}
