//! Archiving and call records with real peers: SIPp sends numbered messages and baresip
//! calls; the archive and the records are compared with what the peers sent and received,
//! message for message, through a restart, a kill -9, and an archive database that goes away
//! (a PostgreSQL of the test's own, stopped and started); critical mode refuses what the
//! archive cannot take; bodies are archived byte for byte; the commands explain bad input.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::baresip::{command, Baresip};
use common::{free_port, register, wait_udp_bound, Postgres, Server, Sipp, SippChild, TempDir};

/// Runs `confab` with the server's data dir and `extra`; its stdout, asserting success.
fn cli_ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "confab {args:?}: {}{}",
        common::text(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the server's log has `needle` more than `before` times.
fn wait_log(server: &Server, needle: &str, before: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log_text().matches(needle).count() <= before {
        assert!(
            Instant::now() < deadline,
            "{what}: no '{needle}' in the log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Archives internal messages (and, with `critical`, refuses what cannot be archived), and
/// waits for the running server to pick it up.
fn archive_everything(server: &Server, critical: bool) {
    let before = server.log_text().matches("archive.policies").count();
    cli_ok(
        server,
        &[
            "archive",
            "policy",
            "set",
            "global",
            "--internal",
            "on",
            "--external",
            "on",
        ],
    );
    cli_ok(
        server,
        &["archive", "critical", if critical { "on" } else { "off" }],
    );
    wait_log(
        server,
        "archive.policies",
        before,
        "the server reads the new policies",
    );
    // both edits may land in one read or two: wait for the critical flag as set
    let flag = format!("critical={critical}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server
        .log_text()
        .lines()
        .rev()
        .find(|l| l.contains("archive.policies"))
        .is_some_and(|l| l.contains(&flag))
    {
        assert!(Instant::now() < deadline, "the server took {flag}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bob's device: a SIPp that answers every MESSAGE 200 and keeps what it received.
fn bob_receiving(server: &Server) -> SippChild {
    let port = free_port();
    let bob = Sipp::new(server, "uas_message.xml")
        .args(["-s", "bob", "-p", &port.to_string(), "-m", "100000"])
        .spawn();
    wait_udp_bound(port);
    register(server, "bob", port, "u1");
    bob
}

/// Alice sends `n` messages "archive RUN #i from alice" to bob, `rate` a second.
fn alice_sends(server: &Server, run: &str, n: usize, rate: u32) -> SippChild {
    Sipp::new(server, "uac_message_numbered.xml")
        .args(["-s", "bob", "-key", "caller", "alice", "-key", "run", run])
        .args(["-m", &n.to_string(), "-r", &rate.to_string()])
        .args(["-recv_timeout", "3000"])
        .auth("alice", &server.password("alice"))
        .spawn()
}

/// The message bodies in a SIPp trace (what it sent, or received), each once.
fn bodies(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter(|l| l.starts_with("archive "))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// The messages bob received: every distinct body his device logged.
fn received(bob: &SippChild) -> BTreeSet<String> {
    bodies(&bob.trace())
}

/// What the archive holds for alice, exported as JSON lines: (id, body) per message.
fn archived(server: &Server, extra: &[&str]) -> Vec<(String, String)> {
    let dir = TempDir::new("export");
    let out = dir.0.join("alice.jsonl");
    let out_s = out.display().to_string();
    let mut args = vec![
        "archive",
        "export",
        "--user",
        "alice@example.com",
        "--format",
        "jsonl",
        "--output",
        &out_s,
    ];
    args.extend_from_slice(extra);
    cli_ok(server, &args);
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["body"].as_str().unwrap_or_default().trim().to_owned(),
            )
        })
        .collect()
}

/// Waits until the archive holds every body of `expected`; returns what it holds.
fn archived_at_least(
    server: &Server,
    extra: &[&str],
    expected: &BTreeSet<String>,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = archived(server, extra);
        let have: BTreeSet<&String> = got.iter().map(|(_, b)| b).collect();
        if expected.iter().all(|e| have.contains(e)) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "the archive never held {} of what was delivered, e.g. {:?}",
            expected.iter().filter(|e| !have.contains(e)).count(),
            expected.iter().find(|e| !have.contains(e))
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_of(body: &str) -> &str {
    body.split_whitespace().nth(1).unwrap_or_default()
}

#[test]
fn every_message_delivered_is_archived_once_through_a_restart_and_a_kill() {
    let server = Server::start();
    archive_everything(&server, false);
    let bob = bob_receiving(&server);
    let a = alice_sends(&server, "A", 40, 40).assert_success("40 messages");

    // a clean restart: the queue and the archive carry on
    let port = server.port;
    let dir = server.stop();
    let mut server = Server::start_on(dir, port, &[]);
    let b = alice_sends(&server, "B", 40, 40).assert_success("40 messages after a restart");

    // kill -9 under load: what was appended to the local queue before it was sent survives
    let load = alice_sends(&server, "C", 300, 100);
    std::thread::sleep(Duration::from_millis(1500));
    server.kill9();
    let c = load.wait();
    let dir = std::mem::replace(&mut server.dir, TempDir(std::path::PathBuf::new()));
    drop(server);
    let server = Server::start_on(dir, port, &[]);
    let d = alice_sends(&server, "D", 20, 20).assert_success("20 messages after the kill");

    let sent: BTreeSet<String> = [&a, &b, &c, &d].iter().flat_map(|t| bodies(t)).collect();
    let got = received(&bob);
    let archive = archived_at_least(&server, &[], &got);
    let ids: BTreeSet<&String> = archive.iter().map(|(id, _)| id).collect();
    let kept: BTreeSet<String> = archive.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(ids.len(), archive.len(), "no record twice");
    assert_eq!(kept.len(), archive.len(), "no message archived twice");
    assert!(
        kept.is_subset(&sent),
        "nothing archived that alice did not send"
    );
    for run in ["A", "B", "D"] {
        let n = |s: &BTreeSet<String>| s.iter().filter(|b| run_of(b) == run).count();
        assert_eq!(n(&got), n(&kept), "run {run}: received and archived alike");
    }
    let (got_c, kept_c) = (
        got.iter().filter(|b| run_of(b) == "C").count(),
        kept.iter().filter(|b| run_of(b) == "C").count(),
    );
    // a message archived but never delivered is the kill between the queue and the socket
    assert!(
        kept_c >= got_c && kept_c - got_c <= 5,
        "run C: {got_c} received, {kept_c} archived"
    );
    eprintln!(
        "archive: {} sent, {} received, {} archived (run C, killed: {got_c} received, {kept_c} archived)",
        sent.len(),
        got.len(),
        kept.len()
    );

    // search finds them by words and by date, and every search is logged
    let found = cli_ok(
        &server,
        &[
            "archive",
            "search",
            "--user",
            "alice@example.com",
            "--with",
            "bob@example.com",
            "--text",
            "archive D #7 from",
            "--from",
            "2020-01-01",
        ],
    );
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.contains("archive D #7 from alice"), "{found}");
    let log = cli_ok(&server, &["archive", "access-log"]);
    assert!(
        log.contains("archive search") && log.contains("text=archive d #7 from"),
        "{log}"
    );
    assert!(log.contains("archive export"), "{log}");
}

#[test]
fn calls_and_sign_ins_are_recorded_with_real_clients_and_reported() {
    let server = Server::start();
    let alice_cons = free_port();
    let bob_cons = common::free_port_except(&[alice_cons]);
    let alice = Baresip::answering(&server, "alice", alice_cons);
    let bob = Baresip::answering(&server, "bob", bob_cons);
    // two calls: bob hangs up the first, alice the second
    for (n, hangs_up) in [(1, bob_cons), (2, alice_cons)] {
        command(alice_cons, "dial sip:bob@example.com");
        let established = |log: String| log.matches("Call established").count() >= n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !established(bob.log()) || !established(alice.log()) {
            assert!(Instant::now() < deadline, "call {n} established");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1200));
        command(hangs_up, "hangup");
        let deadline = Instant::now() + Duration::from_secs(20);
        while alice.log().matches("terminated (duration").count() < n
            || bob.log().matches("terminated (duration").count() < n
        {
            assert!(Instant::now() < deadline, "call {n} ended");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // a call nobody answers: carol has no device
    let unanswered = Sipp::new(&server, "uac_call.xml")
        .args(["-s", "carol", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    let deadline = Instant::now() + Duration::from_secs(30);
    let calls = loop {
        let out = cli_ok(&server, &["cdr", "search", "--user", "alice@example.com"]);
        if out.lines().count() >= 3 {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "three call records: {out}\n{}",
            unanswered.trace()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 3, "{calls}");
    assert!(
        lines[0].contains("alice@example.com -> bob@example.com  200 OK")
            && lines[0].contains("ended by callee"),
        "{calls}"
    );
    assert!(
        lines[1].contains("200 OK") && lines[1].contains("ended by caller"),
        "{calls}"
    );
    assert!(lines[2].contains("-> carol@example.com  480"), "{calls}");
    // the answered calls lasted about as long as they were held open
    for l in &lines[..2] {
        let secs: i64 = l
            .split("  ")
            .nth(3)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        assert!((0..=10).contains(&secs), "{l}");
    }

    let sign_ins = cli_ok(
        &server,
        &["cdr", "search", "--sign-ins", "--user", "bob@example.com"],
    );
    assert!(
        sign_ins.contains("sign-in") && sign_ins.contains("baresip"),
        "{sign_ins}"
    );
    let report = cli_ok(&server, &["report", "calls", "--by", "user"]);
    let row = report
        .lines()
        .find(|l| l.starts_with("alice@example.com"))
        .expect("alice's row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        (cells[1], cells[2]),
        ("3", "2"),
        "3 calls, 2 answered: {report}"
    );
    assert!(row.contains("480x1"), "{report}");
    let by_day = cli_ok(&server, &["report", "sign-ins", "--by", "day"]);
    assert_eq!(by_day.lines().count(), 2, "a header and today: {by_day}");

    // exported as CSV with a header and one row per call
    let cdr_dir = TempDir::new("cdr");
    let out = cdr_dir.0.join("calls.csv");
    cli_ok(
        &server,
        &[
            "cdr",
            "export",
            "--format",
            "csv",
            "--output",
            &out.display().to_string(),
        ],
    );
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.starts_with("id,call_id,caller,callee,start,answer,end,duration_s,status"),
        "{csv}"
    );
}

#[test]
fn an_archive_database_outage_loses_nothing_and_critical_mode_refuses_instead() {
    let pg = Postgres::start();
    let server = Server::start_with(&["--archive-database", &pg.url()]);
    let on_pg = ["--archive-database", pg.url().leak()];
    archive_everything(&server, false);
    let bob = bob_receiving(&server);
    alice_sends(&server, "A", 30, 30).assert_success("30 messages");
    archived_at_least(&server, &on_pg, &received(&bob));

    // the archive goes away: messages are delivered, and wait in the local queue
    pg.stop();
    let before = server.log_text().matches("archive.unavailable").count();
    alice_sends(&server, "B", 30, 30).assert_success("30 messages while the archive is away");
    wait_log(
        &server,
        "archive.unavailable",
        before,
        "the writer says the archive is away",
    );
    pg.resume();
    let got = received(&bob);
    assert_eq!(got.len(), 60);
    let archive = archived_at_least(&server, &on_pg, &got);
    assert_eq!(archive.len(), 60, "every message once, none lost");
    assert!(server.log_text().contains("archive.recovered"));

    // critical: with the archive away a message is refused, not delivered
    archive_everything(&server, true);
    pg.stop();
    let refused = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    let trace = refused.trace();
    assert!(
        trace.contains("SIP/2.0 503 Service Unavailable (archiving is critical"),
        "a 503 that says why:\n{trace}"
    );
    pg.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Sipp::new(&server, "uac_message.xml")
            .args(["-s", "bob", "-key", "caller", "alice"])
            .auth("alice", &server.password("alice"))
            .run();
        if ok.trace().contains("SIP/2.0 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivered again once the archive is back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let hello = |t: String| {
        t.lines()
            .filter(|l| l.starts_with("Hello from alice"))
            .count()
    };
    assert_eq!(
        hello(bob.trace()),
        1,
        "bob got the message sent once the archive was back, never the refused one"
    );
    let archive = archived(&server, &on_pg);
    assert_eq!(archive.len(), 61, "and the archive has it");
}

/// Sends a MESSAGE from alice to `to` over TCP with `body` (digest answered); the final
/// response's status line.
fn message_over_tcp(server: &Server, to: &str, content_type: &str, body: &[u8]) -> String {
    let mut sock = std::net::TcpStream::connect(server.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let uri = format!("sip:{to}");
    let request = |cseq: u32, auth: &str| {
        let mut m = format!(
            "MESSAGE {uri} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKbig{cseq}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=big\r\nTo: <{uri}>\r\nCall-ID: big-{}\r\nCSeq: {cseq} MESSAGE\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            local.port(),
            body.len()
        )
        .into_bytes();
        m.extend_from_slice(body);
        m
    };
    let read_final = |sock: &mut std::net::TcpStream| -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let head = text[..end].to_owned();
                buf.drain(..end + 4);
                if !head.starts_with("SIP/2.0 1") {
                    return head;
                }
                continue;
            }
            let n = sock.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return "(connection closed)".into();
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    sock.write_all(&request(1, "")).unwrap();
    let challenge = read_final(&mut sock);
    if !challenge.starts_with("SIP/2.0 407") {
        return challenge.lines().next().unwrap_or_default().to_owned();
    }
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a nonce");
    let alg = sip_auth::Algorithm::Md5;
    let ha1 = sip_auth::ha1(alg, "alice", "example.com", &server.password("alice"));
    let response = sip_auth::client_response(alg, &ha1, "MESSAGE", &uri, nonce, "00000001", "c1");
    let auth = format!("Proxy-Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c1\"\r\n");
    sock.write_all(&request(2, &auth)).unwrap();
    read_final(&mut sock)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn bodies_are_archived_byte_for_byte_or_refused_with_the_reason() {
    let server = Server::start();
    archive_everything(&server, false);
    // nobody is signed in: each is answered 480, and archived as sent
    let binary: Vec<u8> = (0..=255u8).cycle().take(1024).collect();
    let latin1 = b"caf\xe9 cr\xe8me br\xfbl\xe9e".to_vec();
    let huge = vec![b'x'; 60_000]; // the message just under the 64 KiB limit
    let cases: [(&str, &[u8]); 3] = [
        ("application/octet-stream", &binary),
        ("text/plain; charset=ISO-8859-1", &latin1),
        ("text/plain", &huge),
    ];
    for (ct, body) in cases {
        let status = message_over_tcp(&server, "bob@example.com", ct, body);
        assert!(status.starts_with("SIP/2.0 480"), "{ct}: {status}");
    }
    // over the limit: refused with the reason, nothing archived
    let too_big = vec![b'y'; 70_000];
    let status = message_over_tcp(&server, "bob@example.com", "text/plain", &too_big);
    assert!(status.contains("513"), "refused as too large: {status}");

    let export_dir = TempDir::new("export");
    let out = export_dir.0.join("all.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        let _ = std::fs::remove_file(&out);
        cli_ok(
            &server,
            &["archive", "export", "--output", &out.display().to_string()],
        );
        let text = std::fs::read_to_string(&out).unwrap();
        if text.lines().count() >= 3 {
            break text;
        }
        assert!(Instant::now() < deadline, "three messages archived: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        records.len(),
        3,
        "the oversized one is not archived: {lines}"
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body_of = |v: &serde_json::Value| -> Vec<u8> {
        match v["body"].as_str() {
            Some(t) => t.as_bytes().to_vec(),
            None => b64.decode(v["body_base64"].as_str().unwrap()).unwrap(),
        }
    };
    // found by type: records made in the same millisecond may come in either order
    for (ct, body) in cases {
        let v = records
            .iter()
            .find(|v| v["content_type"] == ct)
            .unwrap_or_else(|| panic!("no {ct} message: {lines}"));
        assert!(
            body_of(v) == body,
            "{ct}: the body comes back exactly ({} bytes)",
            body.len()
        );
        if ct.contains("8859") {
            assert!(
                v["body"].is_null(),
                "Latin-1 is exported as base64, not mangled"
            );
        }
    }
    // eml: one file per message, the body base64 under its own Content-Type
    let eml_tmp = TempDir::new("eml");
    let eml_dir = eml_tmp.0.join("out");
    cli_ok(
        &server,
        &[
            "archive",
            "export",
            "--format",
            "eml",
            "--output",
            &eml_dir.display().to_string(),
        ],
    );
    assert_eq!(std::fs::read_dir(&eml_dir).unwrap().count(), 3);

    // the archive (here the deployment's SQLite file) is its owner's alone
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.dir.0.join("confab.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");

    // the commands say what to fix
    let bad = server.cli(&[
        "archive",
        "search",
        "--from",
        "2026-12-02",
        "--to",
        "2026-12-01",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(64), "{err}");
    assert!(err.contains("swap them"), "{err}");
    let bad = server.cli(&["archive", "search", "--from", "yesterday"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("YYYY-MM-DD"));
    let bad = server.cli(&["archive", "export", "--output", "/proc/nowhere/out.jsonl"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(64), "{err}");
    assert!(
        err.contains("cannot write the export to /proc/nowhere/out.jsonl")
            && err.contains("--output"),
        "{err}"
    );
    let bad = server.cli(&[
        "archive",
        "policy",
        "assign",
        "legal",
        "--user",
        "alice@example.com",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("confab archive policy set legal"));
}

#[test]
fn retention_purges_what_is_old_except_legal_holds() {
    let server = Server::start_with(&["--archive-purge-every", "1"]);
    let before = server.log_text().matches("holds=1").count();
    cli_ok(
        &server,
        &[
            "archive",
            "policy",
            "set",
            "global",
            "--internal",
            "on",
            "--retention-days",
            "1",
        ],
    );
    cli_ok(&server, &["archive", "hold", "add", "carol@example.com"]);
    wait_log(&server, "holds=1", before, "policies read");
    for to in ["bob@example.com", "carol@example.com"] {
        let status = message_over_tcp(&server, to, "text/plain", b"kept a day");
        assert!(status.starts_with("SIP/2.0 480"), "{status}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while cli_ok(&server, &["archive", "search"]).lines().count() < 2 {
        assert!(Instant::now() < deadline, "both archived");
        std::thread::sleep(Duration::from_millis(200));
    }
    // nothing is past a day yet: the purge job (every second here) keeps both
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(cli_ok(&server, &["archive", "search"]).lines().count(), 2);
    let dry = cli_ok(&server, &["archive", "purge", "--dry-run"]);
    assert!(dry.contains("would delete 0 messages"), "{dry}");
    // in three days bob's goes; carol's stays while she is on hold
    let later = confab_archive::time::day_of(confab_archive::time::now_ms() + 3 * 86_400_000);
    let dry = cli_ok(
        &server,
        &["archive", "purge", "--dry-run", "--as-of", &later],
    );
    assert!(
        dry.contains("would delete 1 messages") && dry.contains("1 users on legal hold"),
        "{dry}"
    );
    cli_ok(&server, &["archive", "hold", "remove", "carol@example.com"]);
    let dry = cli_ok(
        &server,
        &["archive", "purge", "--dry-run", "--as-of", &later],
    );
    assert!(dry.contains("would delete 2 messages"), "{dry}");
    let bad = server.cli(&["archive", "purge", "--as-of", &later]);
    assert!(!bad.status.success(), "--as-of only previews");
}
