//! RFC 4475 torture messages sent over the wire, as they are, to a running server — over UDP
//! and over TCP — inside a private network namespace (they name 192.0.2.x and the broadcast
//! address). Every invalid message gets 400 or is dropped; every valid one is processed; the
//! §3.2–3.4 messages get the answer EXPECTED.tsv gives; nothing stalls or crashes the server.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{answers_options, reexec_in_netns, Server};

struct Case {
    file: String,
    valid: bool,
    behaviour: String,
    bytes: Vec<u8>,
}

fn fixtures() -> PathBuf {
    common::repo_root().join("crates/sip-proto/tests/fixtures/rfc4475")
}

fn cases() -> Vec<Case> {
    let tsv = std::fs::read_to_string(fixtures().join("EXPECTED.tsv")).unwrap();
    let cases: Vec<Case> = tsv
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Case {
                file: cols[0].to_owned(),
                valid: cols[2] == "valid",
                behaviour: cols[3].to_owned(),
                bytes: std::fs::read(fixtures().join(cols[0])).unwrap(),
            }
        })
        .collect();
    assert_eq!(cases.len(), 50, "the whole RFC 4475 set");
    cases
}

/// What a case must get, from EXPECTED.tsv's expected_behaviour column.
#[derive(Debug)]
enum Expect {
    /// 400, or dropped.
    Reject,
    /// One of these status codes.
    Code(&'static [u16]),
    /// Processed: any answer but 400 (a proxy's answer counts), or none (ACK, responses).
    Processed,
    /// Either processed or 400; never a crash.
    Any,
}

fn expectation(c: &Case) -> Expect {
    if c.file == "TC_BADVERS_V.dat" {
        // RFC 4475 §3.1.2.16 itself asks for 505 Version Not Supported here.
        return Expect::Code(&[505, 400]);
    }
    if !c.valid {
        return Expect::Reject;
    }
    match c.file.as_str() {
        "TC_INSUF_I.dat" | "TC_MULTI01_I.dat" | "TC_MCL01_I.dat" => Expect::Code(&[400]),
        "TC_UNKSCM_V.dat" | "TC_NOVELSC_V.dat" => Expect::Code(&[416]),
        "TC_BEXT01_V.dat" => Expect::Code(&[420]),
        "TC_REGAUT01_V.dat" | "TC_CPARAM01_V.dat" | "TC_CPARAM02_V.dat" | "TC_REGESCRT_V.dat" => {
            Expect::Code(&[401])
        }
        "TC_ZEROMF_V.dat" => Expect::Code(&[483]),
        // A proxy forwards these. They come from example.net, and Confab refuses requests from
        // other domains until federation exists (403, saying so); otherwise its proxy answer.
        "TC_INVUT_V.dat" | "TC_SDP01_V.dat" => Expect::Code(&[415, 406, 404, 480, 403]),
        "TC_INV2543_I.dat" | "TC_BCAST_V.dat" => Expect::Any,
        _ => Expect::Processed,
    }
}

fn status(response: &str) -> Option<u16> {
    response.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn check(c: &Case, response: Option<&str>, transport: &str) -> Result<(), String> {
    let code = response.and_then(status);
    let ok = match (expectation(c), code) {
        (Expect::Reject, None | Some(400)) => true,
        (Expect::Code(codes), Some(code)) => codes.contains(&code),
        (Expect::Processed, None) => true,
        // Anything the request's processing decided (including 503 for a next hop that cannot
        // be resolved) but a rejection as malformed or an internal error.
        (Expect::Processed, Some(code)) => code != 400 && code != 500,
        (Expect::Any, _) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} over {transport}: expected {:?} ({}), got {}",
            c.file,
            expectation(c),
            c.behaviour,
            response.map_or("no answer".into(), |r| r
                .lines()
                .next()
                .unwrap_or("")
                .to_owned())
        ))
    }
}

fn header<'a>(text: &'a str, names: &[&str]) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        names
            .iter()
            .any(|n| name.trim().eq_ignore_ascii_case(n))
            .then(|| value.trim())
    })
}

/// What identifies a server transaction (branch, sent-by, method): two cases sharing it are,
/// by RFC 3261 §17.2.3, one transaction, and the second gets the first one's answer. The
/// torture set reuses branches, so such a case is sent to a fresh server.
fn transaction_key(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let method = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let via = header(&text, &["via", "v"]).unwrap_or_default();
    format!("{method} {via}")
}

/// The final answer among the responses in `text` (several may arrive together), else the
/// last provisional one.
fn final_answer(text: &str, call_id: Option<&str>) -> Option<String> {
    let mut answers: Vec<String> = text
        .split("SIP/2.0 ")
        .filter(|chunk| {
            chunk
                .get(..3)
                .is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|chunk| format!("SIP/2.0 {chunk}"))
        .filter(|r| call_id.is_none() || header(r, &["call-id", "i"]) == call_id)
        .collect();
    let final_index = answers
        .iter()
        .rposition(|r| status(r).is_some_and(|c| c >= 200));
    match final_index {
        Some(i) => Some(answers.swap_remove(i)),
        None => answers.pop(),
    }
}

/// Top Via port of a message (where a UDP response goes without rport), default 5060.
fn via_port(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("via:") || l.starts_with("v:")
        })
        .and_then(|l| {
            let sent_by = l.split_whitespace().nth(2)?;
            let host_port = sent_by.split(';').next()?;
            host_port.rsplit_once(':')?.1.parse().ok()
        })
        .unwrap_or(5060)
}

/// Sends `bytes` over UDP to `to` and collects what answers it (same Call-ID) until a final
/// response or 700 ms pass; gives the last answer (a 100 Trying may come first).
fn exchange(sock: &UdpSocket, bytes: &[u8], to: &str) -> Option<String> {
    sock.send_to(bytes, to).unwrap();
    let text = String::from_utf8_lossy(bytes).into_owned();
    let call_id = header(&text, &["call-id", "i"]).map(str::to_owned);
    let mut got = String::new();
    let until = Instant::now() + Duration::from_millis(700);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < until {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
            if final_answer(&got, call_id.as_deref())
                .and_then(|r| status(&r))
                .is_some_and(|c| c >= 200)
            {
                break;
            }
        }
    }
    final_answer(&got, call_id.as_deref())
}

#[test]
fn rfc4475_over_udp() {
    if reexec_in_netns("rfc4475_over_udp") {
        return;
    }
    let mut server = Server::start();
    let mut seen = std::collections::HashSet::new();
    // Responses go to the source address at the Via port: listen on every Via port used.
    let mut sockets: HashMap<u16, UdpSocket> = HashMap::new();
    let mut failures = Vec::new();
    for c in cases() {
        if !seen.insert(transaction_key(&c.bytes)) {
            server = Server::start();
        }
        let port = via_port(&c.bytes);
        let sock = sockets.entry(port).or_insert_with(|| {
            let s = UdpSocket::bind(("127.0.0.1", port)).expect("bind a Via port in the namespace");
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        });
        let response = exchange(sock, &c.bytes, &server.addr());
        if let Err(e) = check(&c, response.as_deref(), "UDP") {
            failures.push(e);
        }
    }
    assert!(
        answers_options(&server),
        "the server still answers after the whole set"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rfc4475_over_tcp() {
    if reexec_in_netns("rfc4475_over_tcp") {
        return;
    }
    let mut server = Server::start();
    let mut seen = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for c in cases() {
        if !seen.insert(transaction_key(&c.bytes)) {
            server = Server::start();
        }
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        stream.write_all(&c.bytes).unwrap();
        let mut got = String::new();
        let until = Instant::now() + Duration::from_millis(700);
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < until {
            match stream.read(&mut buf) {
                Ok(0) => break, // closed by the server
                Ok(n) => {
                    got.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if final_answer(&got, None)
                        .and_then(|r| status(&r))
                        .is_some_and(|c| c >= 200)
                    {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        let response = final_answer(&got, None);
        if let Err(e) = check(&c, response.as_deref(), "TCP") {
            failures.push(e);
        }
    }
    assert!(
        answers_options(&server),
        "the server still answers after the whole set"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The RFC 5118 IPv6 set (crates/sip-proto/tests/fixtures/rfc5118) sent over IPv6 to a server
/// listening on both families: invalid messages get 400 or nothing, valid ones any other
/// answer (or none, for those a proxy forwards to an address that does not exist here); the
/// server answers on both families afterwards.
#[test]
fn rfc5118_over_ipv6() {
    if reexec_in_netns("rfc5118_over_ipv6") {
        return;
    }
    let server = Server::start_with(&["--bind6", "::1"]);
    let dir = common::repo_root().join("crates/sip-proto/tests/fixtures/rfc5118");
    let tsv = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    let sock = UdpSocket::bind("[::1]:0").expect("IPv6 loopback in the namespace");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let target = format!("[::1]:{}", server.port);
    let mut failures = Vec::new();
    let mut answered = 0;
    for row in tsv.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = row.split('\t').collect();
        let bytes = std::fs::read(dir.join(cols[0])).unwrap();
        let answer = exchange(&sock, &bytes, &target);
        let code = answer.as_deref().and_then(status);
        answered += usize::from(code.is_some());
        let ok = match (cols[1], code) {
            ("invalid", None | Some(400)) => true,
            ("valid", Some(c)) => c != 400,
            _ => false,
        };
        if !ok {
            failures.push(format!("{} ({}): got {:?}", cols[0], cols[1], answer));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(answered >= 9, "answers came back over IPv6 ({answered})");
    assert!(answers_options(&server), "IPv4 still served");
}
