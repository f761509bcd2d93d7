//! Confab as an attacker on the internet would try it, every test inside a private network
//! namespace: forged in-dialog requests over UDP, TCP and TLS reach no listener on a foreign
//! address; SIPVicious (Debian's `sipvicious`: svwar, svcrack) cannot lock a user out of its
//! familiar addresses; the callee never sees the caller's credentials; and a whole dialog
//! (PRACK, UPDATE, re-INVITE, a BYE from the callee) still works, across a restart.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Where the forged requests want us to send.
const VICTIM: &str = "127.0.0.9:5999";
const VICTIM_TLS: &str = "127.0.0.9:6000";

const METHODS: [&str; 8] = [
    "BYE", "INFO", "NOTIFY", "UPDATE", "REFER", "PRACK", "MESSAGE", "ACK",
];

/// Listeners on foreign addresses: whatever reaches them was relayed.
struct Victims {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Victims {
    fn bind(server: &Server) -> Self {
        let mut addrs = vec![VICTIM];
        if server.port != 5060 {
            addrs.push("127.0.0.1:5060"); // where svwar's ACKs were sent
        }
        let udp = addrs
            .iter()
            .map(|a| {
                let s = UdpSocket::bind(a).unwrap();
                s.set_nonblocking(true).unwrap();
                s
            })
            .collect();
        let tcp = addrs
            .iter()
            .chain(&[VICTIM_TLS])
            .map(|a| {
                let l = TcpListener::bind(a).unwrap();
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        Self { udp, tcp }
    }

    /// What reached them: datagrams and connections.
    fn reached(&self) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        for s in &self.udp {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                got.push(format!("datagram from {from}: {text}"));
            }
        }
        for l in &self.tcp {
            while let Ok((_, from)) = l.accept() {
                got.push(format!("connection from {from} to {:?}", l.local_addr()));
            }
        }
        got
    }
}

fn forged(
    method: &str,
    transport: &str,
    from: &str,
    to_tag: bool,
    route: &str,
    n: usize,
) -> String {
    let tag = if to_tag { ";tag=t1" } else { "" };
    let route = if route.is_empty() {
        String::new()
    } else {
        format!("Route: {route}\r\n")
    };
    format!(
        "{method} sip:victim@{VICTIM} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bKforged{transport}{n};rport\r\nMax-Forwards: 70\r\n{route}From: <sip:{from}>;tag=x{n}\r\nTo: <sip:victim@{VICTIM}>{tag}\r\nCall-ID: forged-{transport}-{n}\r\nCSeq: 7 {method}\r\nEvent: presence\r\nRefer-To: <sip:victim@{VICTIM}>\r\nRAck: 1 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Every forged request for one transport, and how many claim a dialog (a To tag, not ACK).
fn forgeries(server: &Server, transport: &str) -> (Vec<(String, String)>, u64, u64) {
    let ours = server.addr();
    let routes = [
        String::new(),
        format!("<sip:{ours};lr>"),
        format!("<sip:{ours};lr;seal=0123456789abcdef>"),
        format!("<sip:{VICTIM};lr>"),
        format!("<sip:{VICTIM_TLS};transport=tls;lr>"),
    ];
    let (mut all, mut tagged, mut acks) = (Vec::new(), 0, 0);
    for method in METHODS {
        for from in ["mallory@evil.test", "alice@example.com"] {
            for to_tag in [true, false] {
                for route in &routes {
                    let n = all.len();
                    let case = format!("{method} from {from}, To tag: {to_tag}, Route: {route:?}");
                    all.push((case, forged(method, transport, from, to_tag, route, n)));
                    match (method, to_tag) {
                        ("ACK", _) => acks += 1,
                        (_, true) => tagged += 1,
                        _ => {}
                    }
                }
            }
        }
    }
    (all, tagged, acks)
}

/// The final responses in `text` (a stream of SIP messages), as `code reason`.
fn finals(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("SIP/2.0 "))
        .filter(|l| l.split(' ').next().and_then(|c| c.parse::<u16>().ok()) >= Some(300))
        .map(str::to_owned)
        .collect()
}

fn over_udp(server: &Server, msgs: &[(String, String)]) -> String {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut out = String::new();
    let mut buf = vec![0u8; 65_536];
    for (_, m) in msgs {
        s.send_to(m.as_bytes(), server.addr()).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    while let Ok((n, _)) = s.recv_from(&mut buf) {
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    out
}

fn over_tcp(server: &Server, msgs: &[(String, String)]) -> String {
    let mut c = TcpStream::connect(server.addr()).unwrap();
    for (_, m) in msgs {
        c.write_all(m.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    read_for(&mut c, Duration::from_secs(2))
}

fn over_tls(server: &Server, msgs: &[(String, String)]) -> String {
    let mut child = tls_client(server, None);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    });
    for (_, m) in msgs {
        stdin.write_all(m.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    reader.join().unwrap()
}

fn read_for(c: &mut TcpStream, quiet: Duration) -> String {
    c.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = c.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A counter from the `server.stopped` line of a stopped server's log.
fn stopped_stat(log: &str, name: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("server.stopped"))
        .unwrap_or_else(|| panic!("no server.stopped line:\n{log}"));
    let at = line.find(&format!("{name}=")).expect("counter logged") + name.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

#[test]
fn forged_in_dialog_requests_reach_no_listener_over_udp_tcp_and_tls() {
    if reexec_in_netns("forged_in_dialog_requests_reach_no_listener_over_udp_tcp_and_tls") {
        return;
    }
    let server = Server::start();
    let victims = Victims::bind(&server);
    let (mut expected_unsealed, mut expected_acks) = (0, 0);
    for transport in ["UDP", "TCP", "TLS"] {
        let (msgs, tagged, acks) = forgeries(&server, transport);
        expected_unsealed += tagged;
        expected_acks += acks;
        let text = match transport {
            "UDP" => over_udp(&server, &msgs),
            "TCP" => over_tcp(&server, &msgs),
            _ => over_tls(&server, &msgs),
        };
        assert!(
            text.contains("\r\nServer: Confab\r\n"),
            "{transport}: the Server header names the product, not its version:\n{text}"
        );
        let answers = finals(&text);
        let asked = msgs.len() as u64 - acks;
        assert_eq!(
            answers.len() as u64,
            asked,
            "{transport}: every forged request but the ACKs is answered once:\n{text}"
        );
        for a in &answers {
            assert!(
                a.starts_with("403 Forbidden (federation is not enabled")
                    || a.starts_with("407 Proxy Authentication Required"),
                "{transport}: refused or challenged, never relayed: {a}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
        let reached = victims.reached();
        assert!(reached.is_empty(), "{transport}: relayed: {reached:#?}");
    }
    let log_path = server.log.clone();
    let _dir = server.stop();
    let log = std::fs::read_to_string(log_path).unwrap();
    assert_eq!(stopped_stat(&log, "unsealed_in_dialog"), expected_unsealed);
    assert_eq!(stopped_stat(&log, "stray_acks"), expected_acks);
    for why in [
        "it has no Route naming this server",
        "its Route names this server without a valid seal",
        "its Route names another host",
    ] {
        assert!(log.contains(why), "the log says why: {why}");
    }
}

#[test]
fn svwar_enumerates_no_user_and_makes_us_send_nowhere() {
    if reexec_in_netns("svwar_enumerates_no_user_and_makes_us_send_nowhere") {
        return;
    }
    require("svwar");
    let server = Server::start();
    let victims = Victims::bind(&server);
    let scratch = TempDir::new("svwar");
    let names = scratch.0.join("names.txt");
    std::fs::write(&names, "alice\nbob\nnobody\nadmin\n100\n101\n").unwrap();
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        let out = Command::new("svwar")
            .arg("-d")
            .arg(&names)
            .args(["-m", method])
            .args(["-p", &server.port.to_string(), "--domain", "example.com"])
            .args(["--force", "--maximumtime", "5", "127.0.0.1"])
            .output()
            .expect("run svwar");
        assert!(out.status.success(), "svwar -m {method}: {out:?}");
        // existing and unknown users are answered alike: nothing to enumerate
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("found nothing"), "svwar -m {method}:\n{text}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let reached = victims.reached();
    assert!(
        reached.is_empty(),
        "svwar's scan made us send: {reached:#?}"
    );
    assert!(answers_options(&server));
}

/// Debian's svcrack, run with its `-b` honoured: sipvicious 0.3.3 parses the binding address
/// but does not hand it to its cracker, so every guess would come from 127.0.0.1. The wrapper
/// passes it on; everything else is svcrack's own code.
const SVCRACK: &str = r#"
import functools, sys
sys.path.insert(0, "/usr/share/sipvicious")
from sipvicious import svcrack
svcrack.ASipOfRedWine = functools.partial(svcrack.ASipOfRedWine, bindingip=sys.argv[1])
sys.argv = ["svcrack"] + sys.argv[2:]
svcrack.main()
"#;

/// svcrack guessing `user`'s password from `ip` with `guesses` wrong passwords. It stalls
/// once refused (403), so it is stopped after a while.
fn svcrack(server: &Server, dir: &TempDir, user: &str, ip: &str, guesses: usize) -> String {
    require("svcrack");
    let dict = dir.0.join(format!("guesses-{ip}.txt"));
    let words: Vec<String> = (0..guesses).map(|i| format!("guess{i}")).collect();
    std::fs::write(&dict, words.join("\n") + "\n").unwrap();
    let log = dir.0.join(format!("svcrack-{ip}.log"));
    let mut child = Command::new("python3")
        .args([
            "-c",
            SVCRACK,
            ip,
            "-b",
            ip,
            "-u",
            user,
            "--domain",
            "example.com",
        ])
        .arg("-d")
        .arg(&dict)
        .args(["-p", &server.port.to_string(), "127.0.0.1"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run svcrack");
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!out.contains("guess"), "svcrack found a password?\n{out}");
    out
}

/// A REGISTER of alice from `ip` with her right password: the SIPp trace.
fn alice_signs_in(server: &Server, ip: &str, expect_ok: bool) -> String {
    let scenario = if expect_ok {
        "register.xml"
    } else {
        "register_wrong_password.xml"
    };
    let r = Sipp::new(server, scenario)
        .source_ip(ip)
        .args([
            "-s",
            "alice",
            "-key",
            "contact_port",
            &free_port().to_string(),
        ])
        .auth("alice", &server.password("alice"))
        .run();
    r.assert_success(&format!(
        "alice from {ip}, expected to be {}",
        if expect_ok { "accepted" } else { "refused" }
    ));
    r.trace()
}

#[test]
fn svcrack_locks_the_attacker_not_the_user_and_unlock_lifts_it() {
    if reexec_in_netns("svcrack_locks_the_attacker_not_the_user_and_unlock_lifts_it") {
        return;
    }
    let server = Server::start_with(&["--lockout-failures", "4", "--lockout-seconds", "300"]);
    let scratch = TempDir::new("svcrack");
    // alice's desk phone: a familiar address
    alice_signs_in(&server, "127.0.0.2", true);
    svcrack(&server, &scratch, "alice", "127.0.0.66", 12);
    // the attacker's address is refused even with the right password ...
    let trace = alice_signs_in(&server, "127.0.0.66", false);
    assert!(
        trace.contains(
            "403 Forbidden (too many failed authentications for this user from this address"
        ),
        "{trace}"
    );
    // ... while alice's phone keeps working, and so does a device elsewhere
    alice_signs_in(&server, "127.0.0.2", true);
    alice_signs_in(&server, "127.0.0.3", true);
    let log = server.log_text();
    assert!(
        log.lines().any(|l| l.contains("auth.lockout")
            && l.contains("alice@example.com")
            && l.contains("127.0.0.66")),
        "the lockout is logged with user and source"
    );
    // an administrator lifts it
    let out = server.cli(&["user", "unlock", "alice@example.com"]);
    assert!(out.status.success(), "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("auth.unlocked") {
        assert!(Instant::now() < deadline, "unlock never reached the server");
        std::thread::sleep(Duration::from_millis(100));
    }
    alice_signs_in(&server, "127.0.0.66", true);
    let out = server.cli(&["user", "unlock", "nobody@example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such user: nobody@example.com"));
}

#[test]
fn a_guess_spread_over_addresses_delays_a_new_device_but_not_for_ever() {
    if reexec_in_netns("a_guess_spread_over_addresses_delays_a_new_device_but_not_for_ever") {
        return;
    }
    let server = Server::start_with(&[
        "--lockout-failures",
        "4",
        "--lockout-user-ceiling",
        "6",
        "--lockout-seconds",
        "3",
    ]);
    let scratch = TempDir::new("svcrack");
    alice_signs_in(&server, "127.0.0.2", true);
    svcrack(&server, &scratch, "alice", "127.0.0.66", 4);
    svcrack(&server, &scratch, "alice", "127.0.0.67", 4);
    // six failures from unfamiliar addresses: a new device waits ...
    let trace = alice_signs_in(&server, "127.0.0.77", false);
    assert!(
        trace.contains("403 Forbidden (too many failed authentications for this user from unfamiliar addresses"),
        "{trace}"
    );
    // ... the familiar phone does not ...
    alice_signs_in(&server, "127.0.0.2", true);
    // ... and the wait ends
    std::thread::sleep(Duration::from_millis(3500));
    alice_signs_in(&server, "127.0.0.77", true);
}

#[test]
fn a_whole_dialog_works_across_a_restart_and_the_callee_never_sees_credentials() {
    if reexec_in_netns(
        "a_whole_dialog_works_across_a_restart_and_the_callee_never_sees_credentials",
    ) {
        return;
    }
    let server = Server::start();
    let port = server.port;
    let bob_port = free_port();
    let mut bob = Sipp::new(&server, "uas_call_dialog.xml")
        .args(["-s", "bob", "-p", &bob_port.to_string(), "-d", "6000"])
        .spawn();
    wait_udp_bound(bob_port);
    register(&server, "bob", bob_port, "u1");
    let alice = Sipp::new(&server, "uac_call_dialog.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .spawn();
    // once the re-INVITE is acknowledged, the server restarts; bob's BYE comes after
    bob.wait_for("CSeq: 5 ACK", "the re-INVITE's ACK reached bob");
    let dir = server.stop();
    let server = Server::start_on(dir, port, &[]);
    alice.assert_success(
        "alice: 100rel, PRACK, UPDATE, re-INVITE, then bob's BYE after the restart",
    );
    let trace = bob
        .assert_success("bob: the same dialog, and his BYE answered through the restarted server");
    assert!(
        !trace.contains("Proxy-Authorization"),
        "the callee never sees the caller's credentials:\n{trace}"
    );
    assert!(answers_options(&server));
}

#[test]
fn a_presence_subscription_is_refreshed_and_ended_within_its_dialog() {
    let server = Server::start();
    let r = Sipp::new(&server, "subscribe_refresh.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    let trace = r.trace();
    r.assert_success("SUBSCRIBE, in-dialog refresh and unsubscribe");
    assert!(trace.contains("CSeq: 3 SUBSCRIBE"), "{trace}");
    assert!(trace.contains("Subscription-State: terminated"), "{trace}");
}
