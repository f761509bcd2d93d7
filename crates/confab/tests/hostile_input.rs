//! Bad input gets a precise answer or is dropped and counted, and never stalls or crashes the
//! server. Every test here runs inside a private network namespace (see `reexec_in_netns`).

mod common;

use std::io::ErrorKind;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{answers_options, reexec_in_netns, udp_client, udp_exchange, Server, Sipp};

const DOUBLE_SPACE: &[u8] = b"OPTIONS  sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: bad1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn options_with(extra: &str, n: u32) -> String {
    format!("OPTIONS sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx{n};rport\r\nFrom: <sip:alice@example.com>;tag={n}\r\nTo: <sip:bob@example.com>\r\nCall-ID: hostile-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n")
}

#[test]
fn malformed_datagrams_get_a_400_naming_the_problem_or_are_dropped() {
    if reexec_in_netns("malformed_datagrams_get_a_400_naming_the_problem_or_are_dropped") {
        return;
    }
    let server = Server::start();
    let s = udp_client();
    let r = udp_exchange(&s, &server, DOUBLE_SPACE).expect("an answer to a malformed request line");
    assert!(
        r.starts_with("SIP/2.0 400 Malformed Request-URI\r\n"),
        "{r}"
    );
    let r = udp_exchange(
        &s,
        &server,
        options_with("CSeq: 2 OPTIONS\r\n", 2).as_bytes(),
    )
    .unwrap();
    assert!(r.starts_with("SIP/2.0 400 Multiple CSeq headers"), "{r}");
    let r = udp_exchange(
        &s,
        &server,
        options_with("Max-Forwards: 300\r\n", 3)
            .replace("Max-Forwards: 70\r\n", "")
            .as_bytes(),
    )
    .unwrap();
    assert!(
        r.starts_with("SIP/2.0 400 Malformed Max-Forwards header"),
        "{r}"
    );
    let r = udp_exchange(&s, &server, b"INVITE sip:x@example.com SIP/7.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKv\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: v\r\nCSeq: 1 INVITE\r\n\r\n").unwrap();
    assert!(r.starts_with("SIP/2.0 505 Version Not Supported"), "{r}");
    // garbage and binary noise: nothing to answer, dropped
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"SIP/2.0 999\r\n\r\n",
        &[0xffu8; 700][..],
        b"INVITE\r\n\r\n",
    ] {
        assert_eq!(udp_exchange(&s, &server, junk), None);
    }
    assert!(answers_options(&server), "still serving after bad input");
    let dir = server.stop();
    let log = std::fs::read_dir(&dir.0)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("server-"))
        .unwrap();
    let log = std::fs::read_to_string(log.path()).unwrap();
    // three cannot be SIP at all and go before parsing; the broken status line is parsed
    assert!(
        log.contains("malformed_dropped=1") && log.contains("not_sip=3"),
        "drops are counted:\n{log}"
    );
}

#[test]
fn oversized_and_header_flooded_messages_are_refused() {
    if reexec_in_netns("oversized_and_header_flooded_messages_are_refused") {
        return;
    }
    let server = Server::start_with(&["--max-message-size", "4096"]);
    let s = udp_client();
    let big = options_with(&format!("X-Pad: {}\r\n", "a".repeat(8000)), 1);
    assert_eq!(
        udp_exchange(&s, &server, big.as_bytes()),
        None,
        "an oversized datagram is dropped"
    );
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = udp_exchange(&s, &server, options_with(&many, 2).as_bytes()).expect("answered");
    assert!(r.starts_with("SIP/2.0 400 Too many header fields"), "{r}");
    // over TCP the message is answered when an answer can be built, then the connection is
    // closed once the message is known to be too large (the stream cannot be resynchronised)
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = tcp.write_all(big.as_bytes());
    let mut buf = [0u8; 1024];
    let mut answer = String::new();
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection was not closed: {answer}")
            }
            Err(_) => break, // reset: closed as well
            Ok(n) => answer.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        answer.is_empty() || answer.starts_with("SIP/2.0 513") || answer.starts_with("SIP/2.0 400"),
        "an answer, if any, refuses the message: {answer}"
    );
    assert!(answers_options(&server));
}

#[test]
fn a_tcp_peer_that_trickles_headers_is_disconnected() {
    if reexec_in_netns("a_tcp_peer_that_trickles_headers_is_disconnected") {
        return;
    }
    let server = Server::start_with(&["--header-timeout", "2"]);
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let msg = options_with("", 1);
    let mut closed = false;
    for b in msg.as_bytes().iter().take(60) {
        if tcp.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if matches!(tcp.read(&mut buf), Ok(0)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the server closed the slow connection");
    assert!(
        start.elapsed() < Duration::from_secs(11),
        "closed by the header timeout, not by chance"
    );
    assert!(answers_options(&server), "the worker was not stalled");
}

#[test]
fn repeated_wrong_passwords_lock_the_user_out_for_a_while() {
    if reexec_in_netns("repeated_wrong_passwords_lock_the_user_out_for_a_while") {
        return;
    }
    let server = Server::start_with(&["--lockout-failures", "3", "--lockout-seconds", "30"]);
    for _ in 0..3 {
        let r = Sipp::new(&server, "register_wrong_password.xml")
            .args(["-s", "bob"])
            .auth("bob", "wrong")
            .run();
        r.assert_success("refused");
    }
    // now even the right password is refused, with a reason that says why and for how long
    let r = Sipp::new(&server, "register_wrong_password.xml")
        .args(["-s", "bob"])
        .auth("bob", &server.password("bob"))
        .run();
    r.assert_success("locked out");
    assert!(
        r.trace()
            .contains("403 Forbidden (too many failed authentications for this user from this address; retry in"),
        "{}",
        r.trace()
    );
    assert!(
        server.log_text().contains("auth.lockout"),
        "the lockout is logged"
    );
}

/// Opens a TCP connection (from 127.0.0.1) and returns it when the server serves SIP on it
/// (an OPTIONS answered 200); a refused connection is closed without an answer.
fn served_over_tcp(server: &Server) -> Option<TcpStream> {
    let mut c = TcpStream::connect(server.addr()).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let local = c.local_addr().unwrap();
    let (to, port) = (server.addr(), local.port());
    let req = format!("OPTIONS sip:{to} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKconn{port};rport\r\nFrom: <sip:p@example.com>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: conn-{port}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    c.write_all(req.as_bytes()).ok()?;
    let mut buf = [0u8; 2048];
    let n = c.read(&mut buf).ok()?;
    buf[..n].starts_with(b"SIP/2.0 200").then_some(c)
}

#[test]
fn one_address_cannot_hold_more_connections_than_allowed() {
    if reexec_in_netns("one_address_cannot_hold_more_connections_than_allowed") {
        return;
    }
    let server = Server::start_with(&["--max-connections-per-source", "3"]);
    let held: Vec<TcpStream> = (0..3)
        .map(|i| served_over_tcp(&server).unwrap_or_else(|| panic!("connection {i}")))
        .collect();
    assert!(
        served_over_tcp(&server).is_none(),
        "a fourth connection from the same address is refused"
    );
    assert!(answers_options(&server), "UDP still served");
    drop(held);
    // the server sees them close, then takes new ones again
    let deadline = Instant::now() + Duration::from_secs(5);
    while served_over_tcp(&server).is_none() {
        assert!(
            Instant::now() < deadline,
            "connections freed by closing are not counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.log_text().contains("tcp.source_limit"));
}
