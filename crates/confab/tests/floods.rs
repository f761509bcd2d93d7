//! Floods: unauthenticated REGISTERs from several addresses at many times the legitimate rate,
//! and a mixed flood of our own (REGISTER, INVITE, junk from four addresses, in bursts), while
//! legitimate users keep signing in. Runs inside a private network namespace (crafted traffic
//! at full speed must not leave the machine).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, reexec_in_netns, repo_root, Server, Sipp, TempDir};

/// SIPp sending `flood_register.xml` from `address` at `rate` per second, `count` in all.
fn flood(server: &Server, address: &str, rate: u32, count: u32, dir: &TempDir) -> Child {
    Command::new("sipp")
        .arg("-sf")
        .arg(repo_root().join("tests/sipp/flood_register.xml"))
        .arg(server.addr())
        .args(["-i", address, "-p", &free_port().to_string()])
        .args([
            "-s",
            "alice",
            "-r",
            &rate.to_string(),
            "-m",
            &count.to_string(),
        ])
        .args(["-nostdin", "-timeout", "60s"])
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp")
}

/// Floods run one at a time: two side by side on a small machine slow each other's
/// legitimate sign-ins past SIPp's first retransmission, which measures the machine, not the
/// server.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static FLOODS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FLOODS.lock().unwrap_or_else(|e| e.into_inner())
}

/// "Successful call" and "Failed call" totals from a SIPp screen log.
fn totals(screen: &str) -> (u64, u64) {
    let count = |label: &str| {
        screen
            .lines()
            .rfind(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.rsplit('|').next()?.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("Successful call"), count("Failed call"))
}

#[test]
fn legitimate_sign_ins_get_through_a_register_flood() {
    let _one_flood_at_a_time = one_at_a_time();
    if reexec_in_netns("legitimate_sign_ins_get_through_a_register_flood") {
        return;
    }
    common::require("sipp");
    let server = Server::start_with(&["--per-source-rate", "200"]);
    let rss_before = server.rss_kib();

    // four flooding addresses, 2,000 REGISTERs a second each for 5 s: 40,000 in all
    let dirs: Vec<TempDir> = (0..4).map(|_| TempDir::new("flood")).collect();
    let mut floods: Vec<Child> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| flood(&server, &format!("127.0.0.{}", 21 + i), 2_000, 10_000, d))
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    // meanwhile alice signs in 200 times (20 a second) from her own address
    let legit = Sipp::new(&server, "register.xml")
        .args(["-key", "contact_port", "5999", "-s", "alice"])
        .args(["-m", "200", "-r", "20", "-trace_screen"])
        .auth("alice", &server.password("alice"))
        .run();
    let screen = std::fs::read_dir(&legit.dir.0)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with("_screen.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("SIPp screen log");
    for f in &mut floods {
        let _ = f.wait();
    }
    let (ok, failed) = totals(&screen);
    assert_eq!(ok + failed, 200, "every sign-in was tried:\n{screen}");
    assert!(
        ok * 100 >= 200 * 99,
        "at least 99% of legitimate sign-ins succeed under the flood: {ok} of 200\n{screen}"
    );
    let log = server.log_text();
    assert!(
        log.contains("sip.rate_limited"),
        "the flood was cut at the per-source limit:\n{log}"
    );
    let rss_after = server.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory stays bounded: {rss_before} KiB before, {rss_after} KiB after 40,000 flood REGISTERs"
    );
    assert!(common::answers_options(&server), "still serving");
    eprintln!(
        "flood: 40,000 REGISTERs from 4 addresses; legitimate sign-ins {ok}/200; RSS {rss_before} -> {rss_after} KiB"
    );
}

/// What one flooding address sends: REGISTER and INVITE without credentials (to a real and an
/// invented user) and junk, in bursts; what came back, by Call-ID.
struct FloodSource {
    sock: std::net::UdpSocket,
    answers: std::collections::HashMap<String, Vec<u16>>,
    unparsed_answers: usize,
    sent: [usize; 3],
}

impl FloodSource {
    fn new(address: &str) -> Self {
        let sock = std::net::UdpSocket::bind((address, 0)).unwrap();
        sock.set_nonblocking(true).unwrap();
        Self {
            sock,
            answers: Default::default(),
            unparsed_answers: 0,
            sent: [0; 3],
        }
    }

    fn message(&self, n: usize, server: &Server) -> (usize, Vec<u8>) {
        let local = self.sock.local_addr().unwrap();
        let to = ["alice", "nobody-here"][n % 2];
        let head = |method: &str, uri: &str| {
            format!("{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{to}@example.com>;tag=f{n}\r\nTo: <sip:{to}@example.com>\r\nCall-ID: flood-{local}-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:{to}@{local}>\r\nContent-Length: 0\r\n\r\n")
        };
        match n % 10 {
            0..=3 => (0, head("REGISTER", "sip:example.com").into_bytes()),
            4..=6 => (
                1,
                head("INVITE", &format!("sip:{to}@{}", server.addr())).into_bytes(),
            ),
            7 => (2, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
            8 => (
                2,
                (0..200u8)
                    .map(|b| b.wrapping_mul(31).wrapping_add(n as u8))
                    .collect(),
            ),
            _ => (2, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec()),
        }
    }

    fn read(&mut self) {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, _)) = self.sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]);
            let code = text
                .strip_prefix("SIP/2.0 ")
                .and_then(|r| r.get(..3))
                .and_then(|c| c.parse::<u16>().ok());
            let call_id = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .map(str::to_owned);
            match (code, call_id) {
                (Some(c), Some(id)) => self.answers.entry(id).or_default().push(c),
                _ => self.unparsed_answers += 1,
            }
        }
    }

    /// Sends `count` messages in bursts of 50, 20 bursts a second, reading answers as it goes.
    fn run(mut self, server: &Server, count: usize) -> Self {
        for burst in 0..count.div_ceil(50) {
            for n in burst * 50..((burst + 1) * 50).min(count) {
                let (kind, bytes) = self.message(n, server);
                let _ = self.sock.send_to(&bytes, server.addr());
                self.sent[kind] += 1;
            }
            self.read();
            std::thread::sleep(Duration::from_millis(50));
        }
        // long enough for any retransmission of a challenge (T1 = 500 ms, then 1 s, 2 s)
        let until = std::time::Instant::now() + Duration::from_secs(4);
        while std::time::Instant::now() < until {
            self.read();
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }
}

#[test]
fn a_mixed_flood_gets_one_answer_per_request_and_nothing_for_junk() {
    let _one_flood_at_a_time = one_at_a_time();
    if reexec_in_netns("a_mixed_flood_gets_one_answer_per_request_and_nothing_for_junk") {
        return;
    }
    common::require("sipp");
    let server = Server::start();
    let users = TempDir::new("flood-users");
    let (import, csv) = common::load_users(200, &users);
    let out = server.cli(&["user", "import", &import.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    assert!(common::answers_options(&server));
    let rss_before = server.rss_kib();

    // four addresses, 5,000 messages each at 1,000 a second: 40% REGISTER, 30% INVITE, 30% junk
    let flood = std::thread::scope(|s| {
        let floods: Vec<_> = (0..4)
            .map(|i| {
                let server = &server;
                s.spawn(move || FloodSource::new(&format!("127.0.0.{}", 66 + i)).run(server, 5_000))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // meanwhile 200 users sign in, 20 a second
        let legit = common::register_load(&server, &csv, 200, 20);
        let trace = legit.wait();
        let signed_in = common::acknowledged(&trace).len();
        let sources: Vec<FloodSource> = floods.into_iter().map(|f| f.join().unwrap()).collect();
        (signed_in, sources)
    });
    let (signed_in, sources) = flood;
    assert!(
        signed_in * 100 >= 200 * 99,
        "at least 99% of legitimate sign-ins succeed during the flood: {signed_in} of 200"
    );
    let mut answered = [0usize; 2];
    for src in &sources {
        assert_eq!(src.unparsed_answers, 0, "junk is never answered");
        for (call_id, codes) in &src.answers {
            assert_eq!(
                codes.len(),
                1,
                "{call_id}: one answer, no 100 Trying before a challenge, no retransmission: {codes:?}"
            );
            let kind = usize::from(codes[0] == 407);
            assert!(matches!(codes[0], 401 | 407), "{call_id}: {codes:?}");
            answered[kind] += 1;
        }
    }
    let sent: [usize; 3] = sources.iter().fold([0; 3], |mut a, s| {
        (0..3).for_each(|k| a[k] += s.sent[k]);
        a
    });
    // what arrives is answered once; how much arrives depends on the machine: the kernel
    // drops what does not fit, and on a busy machine the overload guard holds each flooding
    // address to its share
    assert!(
        answered[0] * 20 >= sent[0],
        "REGISTERs challenged: {answered:?} of {sent:?}"
    );
    assert!(
        answered[1] * 20 >= sent[1],
        "INVITEs challenged: {answered:?} of {sent:?}"
    );
    let rss_after = server.rss_kib();
    let log_path = server.log.clone();
    let _dir = server.stop();
    let log = std::fs::read_to_string(log_path).unwrap();
    let stopped = log
        .lines()
        .find(|l| l.contains("server.stopped"))
        .expect("server.stopped logged");
    assert!(stopped.contains("not_sip="), "{stopped}");
    assert!(!stopped.contains("not_sip=0 "), "junk counted: {stopped}");
    assert!(stopped.contains("kernel_udp_drops="), "{stopped}");
    assert!(
        rss_after < rss_before * 2,
        "memory after the flood stays within twice its level before: {rss_before} -> {rss_after} KiB"
    );
    eprintln!(
        "mixed flood: sent {sent:?} (REGISTER, INVITE, junk), challenged {answered:?}; legitimate {signed_in}/200; RSS {rss_before} -> {rss_after} KiB; {stopped}"
    );
}
