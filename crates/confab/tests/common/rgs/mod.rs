//! Response-group test parts: SIPp callers and agents written for each test (DTMF played from
//! SIPp's own RFC 4733 recordings, agent audio from its G.711 recording), the caller's RTP
//! received by the test to tell music from the agent's voice, and the server's log read for
//! the order agents were offered calls.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{free_port, text, Server, Sipp, SippChild, TempDir};

mod fixtures;
mod scenarios;

// not every test binary uses them all
#[allow(unused_imports)]
pub(crate) use fixtures::*;
#[allow(unused_imports)]
pub(crate) use scenarios::*;

/// Where Debian's SIPp keeps its recordings.
pub(crate) const PCAPS: &str = "/usr/share/sip-tester";

/// Writes a scenario into `dir` and returns its path.
pub(crate) fn scenario(dir: &TempDir, name: &str, xml: &str) -> PathBuf {
    let p = dir.0.join(name);
    std::fs::write(&p, xml).unwrap();
    p
}

/// A SIPp with its own media ports (recordings are played from the first; SIPp binds four:
/// audio RTP and RTCP, video RTP and RTCP, all checked free and handed to no other test).
pub(crate) fn sipp(server: &Server, sf: &Path) -> Sipp {
    let (first, _) = super::free_udp_range(4);
    Sipp::with_file(server, sf).args(["-mp".to_owned(), first.to_string()])
}

/// Starts agent `user` (password `pw`) running scenario `sf`, registered.
pub(crate) fn agent(server: &Server, user: &str, pw: &str, sf: &Path) -> SippChild {
    agent_for_calls(server, user, pw, sf, 1)
}

/// Starts agent `user` running scenario `sf` for `calls` calls, registered.
pub(crate) fn agent_for_calls(
    server: &Server,
    user: &str,
    pw: &str,
    sf: &Path,
    calls: u32,
) -> SippChild {
    let port = free_port();
    let uas = sipp(server, sf)
        .args([
            "-s",
            user,
            "-p",
            &port.to_string(),
            "-m",
            &calls.to_string(),
        ])
        .spawn();
    super::wait_udp_bound(port);
    super::register_with(server, user, pw, port, "u1");
    uas
}

/// One RTP packet the caller received.
#[derive(Debug, Clone)]
pub(crate) struct Heard {
    pub(crate) at: Instant,
    pub(crate) from: SocketAddr,
    pub(crate) payload_type: u8,
    pub(crate) ssrc: u32,
    pub(crate) payload: Vec<u8>,
}

/// The caller's RTP port (even) and RTCP port (the next): sockets the test reads on threads
/// of their own.
pub(crate) struct Ear {
    pub(crate) port: u16,
    heard: Arc<Mutex<Vec<Heard>>>,
    reports: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Ear {
    pub(crate) fn new() -> Self {
        let (sock, control) = loop {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let port = sock.local_addr().unwrap().port();
            if port.is_multiple_of(2) && port < 65_000 {
                if let Ok(c) = UdpSocket::bind(("127.0.0.1", port + 1)) {
                    break (sock, c);
                }
            }
        };
        let port = sock.local_addr().unwrap().port();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let reports = Arc::new(Mutex::new(Vec::new()));
        let h = heard.clone();
        listen(sock, move |from, bytes| {
            if bytes.len() >= 12 {
                h.lock().unwrap().push(Heard {
                    at: Instant::now(),
                    from,
                    payload_type: bytes[1] & 0x7F,
                    ssrc: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
                    payload: bytes[12..].to_vec(),
                });
            }
        });
        let r = reports.clone();
        listen(control, move |_, bytes| {
            r.lock().unwrap().push(bytes.to_vec())
        });
        Self {
            port,
            heard,
            reports,
        }
    }

    pub(crate) fn heard(&self) -> Vec<Heard> {
        self.heard.lock().unwrap().clone()
    }

    /// The RTCP packets that reached the RTCP port.
    pub(crate) fn reports(&self) -> Vec<Vec<u8>> {
        self.reports.lock().unwrap().clone()
    }
}

/// Reads `sock` on a thread of its own for two minutes at most.
fn listen(sock: UdpSocket, mut got: impl FnMut(SocketAddr, &[u8]) + Send + 'static) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                got(from, &buf[..n]);
            }
        }
    });
}

/// The RTP payloads of a recording (Ethernet, IPv4, UDP, RTP).
pub(crate) fn pcap_payloads(path: &str) -> Vec<Vec<u8>> {
    let d = std::fs::read(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run ./scripts/test: it installs sip-tester)"));
    let mut off = 24;
    let mut out = Vec::new();
    while off + 16 <= d.len() {
        let incl = u32::from_le_bytes(d[off + 8..off + 12].try_into().unwrap()) as usize;
        off += 16;
        let frame = &d[off..off + incl];
        off += incl;
        let ihl = usize::from(frame[14] & 15) * 4;
        let rtp = &frame[14 + ihl + 8..];
        out.push(rtp[12..].to_vec());
    }
    out
}

/// The agents offered calls, in order, from the server's log.
pub(crate) fn offers(server: &Server) -> Vec<String> {
    server
        .log_text()
        .lines()
        .filter(|l| l.contains("event=\"rgs.offer\""))
        .filter_map(|l| {
            let (_, rest) = l.split_once("agent=")?;
            Some(
                rest.trim_start_matches('"')
                    .split(['"', ' '])
                    .next()?
                    .to_owned(),
            )
        })
        .collect()
}

/// Applies a response-group document and waits until the server serves it.
pub(crate) fn import(server: &Server, toml: &str) {
    let dir = TempDir::new("rgs-doc");
    let file = dir.0.join("rgs.toml");
    std::fs::write(&file, toml).unwrap();
    let before = server.log_text().matches("event=\"rgs.config\"").count();
    let o = server.cli(&["rgs", "import", file.to_str().unwrap()]);
    assert!(o.status.success(), "rgs import: {}", text(&o));
    wait_log_count(server, "event=\"rgs.config\"", before + 1);
}

/// Waits until `needle` appears `n` times in the server's log.
pub(crate) fn wait_log_count(server: &Server, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log_text().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "{needle} did not appear {n} times:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A caller (demo user `alice`) to `service` running `xml`, its RTP to `ear`.
pub(crate) fn caller(
    server: &Server,
    dir: &TempDir,
    name: &str,
    service: &str,
    xml: &str,
    ear: &Ear,
) -> Sipp {
    let sf = scenario(dir, name, xml);
    sipp(server, &sf)
        .args([
            "-s",
            service,
            "-key",
            "caller",
            "alice",
            "-key",
            "rtp_port",
            &ear.port.to_string(),
        ])
        .auth("alice", &server.password("alice"))
}

/// `user` publishes its presence as `activity` (busy, dnd, ...) from a device of its own.
pub(crate) fn publish_activity(server: &Server, user: &str, pw: &str, activity: &str) {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:{user}@example.com"><tuple id="t"><status><basic>open</basic></status></tuple><dm:person id="p"><rpid:activities><rpid:{activity}/></rpid:activities></dm:person></presence>"#
    );
    Sipp::new(server, "publish.xml")
        .args(["-s", user, "-key", "caller", user])
        .args([
            "-key",
            "event",
            "presence",
            "-key",
            "ctype",
            "application/pidf+xml",
            "-key",
            "body",
            &body,
        ])
        .auth(user, pw)
        .run()
        .assert_success(&format!("PUBLISH by {user}"));
}

/// Runs `confab rgs ARGS` on the server and waits until it serves the change.
pub(crate) fn rgs_cli(server: &Server, args: &[&str]) {
    let before = server.log_text().matches("event=\"rgs.config\"").count();
    let mut all = vec!["rgs"];
    all.extend_from_slice(args);
    let o = server.cli(&all);
    assert!(o.status.success(), "confab rgs {args:?}: {}", text(&o));
    wait_log_count(server, "event=\"rgs.config\"", before + 1);
}

/// Waits until the server has offered `n` calls in all.
pub(crate) fn wait_offers(server: &Server, n: usize) {
    wait_log_count(server, "event=\"rgs.offer\"", n);
}
