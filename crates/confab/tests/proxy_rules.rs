//! Proxy behaviour seen from outside: parallel forking with CANCEL of the losing branches,
//! loop detection, Max-Forwards, other domains, keep-alive pongs and TLS 1.2.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{device, message, register, udp_client, udp_exchange, Server, Sipp};

#[test]
fn a_message_forks_to_every_device_of_the_user() {
    let server = Server::start();
    let phone = device(&server, "bob", "uas_message.xml");
    let laptop = device(&server, "bob", "uas_message.xml");
    let trace = message(&server, "alice", "bob");
    assert!(trace.contains("SIP/2.0 200 OK"));
    phone.assert_success("first device got the MESSAGE");
    laptop.assert_success("second device got the MESSAGE");
}

#[test]
fn an_answered_call_cancels_the_other_ringing_device() {
    let server = Server::start();
    let desk = device(&server, "bob", "uas_call.xml");
    let mobile = device(&server, "bob", "uas_ring.xml");
    Sipp::new(&server, "uac_call.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run()
        .assert_success("call answered by one device");
    desk.assert_success("desk phone answered and hung up");
    mobile.assert_success("mobile got CANCEL, answered 487 and got the ACK");
}

#[test]
fn a_request_that_comes_back_unchanged_is_a_loop() {
    let server = Server::start();
    // bob's "device" is the server itself: the MESSAGE spirals once, then loops
    register(&server, "bob", server.port, "u1");
    let trace = message(&server, "alice", "bob");
    assert!(trace.contains("SIP/2.0 482 Loop Detected"), "{trace}");
}

#[test]
fn exhausted_max_forwards_is_483_and_other_domains_are_refused() {
    let server = Server::start();
    let s = udp_client();
    let req = |uri: &str, id: &str| {
        format!("OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{id};rport\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <{uri}>\r\nCall-ID: {id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n")
    };
    let r = udp_exchange(
        &s,
        &server,
        req("sip:bob@example.com", "mf-user").as_bytes(),
    )
    .unwrap();
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops"), "{r}");
    let r = udp_exchange(
        &s,
        &server,
        req(&format!("sip:{}", server.addr()), "mf-server").as_bytes(),
    )
    .unwrap();
    assert!(
        r.starts_with("SIP/2.0 200 OK"),
        "the server itself still answers OPTIONS: {r}"
    );
    let r = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .domain("elsewhere.org")
        .auth("alice", &server.password("alice"))
        .run();
    r.assert_success("MESSAGE to another domain");
    assert!(r.trace().contains("SIP/2.0 403 Forbidden (federation is not enabled: domain elsewhere.org is not served here)"), "{}", r.trace());
    let foreign = "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKfed;rport\r\nFrom: <sip:mallory@elsewhere.org>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: fed\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let r = udp_exchange(&s, &server, foreign.as_bytes()).unwrap();
    assert!(r.starts_with("SIP/2.0 403 Forbidden (federation is not enabled: requests from elsewhere.org are not accepted)"), "{r}");
}

#[test]
fn a_crlf_ping_on_tcp_gets_a_pong() {
    let server = Server::start();
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"\r\n\r\n").unwrap();
    let mut buf = [0u8; 8];
    let n = tcp.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"\r\n");
}

/// Sends `msg` to the server's TLS port with openssl (TLS `version`, verifying the server's
/// certificate against the data dir's CA) and returns the first answer.
fn over_tls(server: &Server, version: &str, msg: &str) -> String {
    let mut child = common::tls_client(server, Some(version));
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(msg.as_bytes())
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 4096];
    let n = out.read(&mut buf).unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn request(method: &str, server: &Server, transport: &str, tag: &str) -> String {
    let to = if method == "REGISTER" {
        "sip:alice@example.com".to_owned()
    } else {
        format!("sip:{}", server.addr())
    };
    format!("{method} sip:{} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK{tag};rport\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <{to}>\r\nCall-ID: {tag}\r\nCSeq: 1 {method}\r\nContact: <sip:alice@127.0.0.1:9>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", server.addr())
}

#[test]
fn tls_1_2_and_1_3_both_serve_sip() {
    let server = Server::start();
    for version in ["-tls1_2", "-tls1_3"] {
        let text = over_tls(
            &server,
            version,
            &request("OPTIONS", &server, "TLS", version),
        );
        assert!(text.starts_with("SIP/2.0 200 OK"), "{version}: {text}");
    }
}

#[test]
fn plain_transports_and_digest_over_them_can_be_switched_off() {
    let server = Server::start_with(&["--transports", "udp,tls", "--digest-over-plain", "false"]);
    assert!(
        TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "no TCP listener"
    );
    // over UDP: answered, but no challenge for a password
    let sock = udp_client();
    let answer = udp_exchange(
        &sock,
        &server,
        request("REGISTER", &server, "UDP", "plain").as_bytes(),
    )
    .unwrap();
    assert!(
        answer.starts_with("SIP/2.0 403 Forbidden (sign in over TLS: digest over UDP and TCP is switched off here)"),
        "{answer}"
    );
    // over TLS: challenged as usual
    let answer = over_tls(
        &server,
        "-tls1_3",
        &request("REGISTER", &server, "TLS", "secure"),
    );
    assert!(answer.starts_with("SIP/2.0 401"), "{answer}");
}
