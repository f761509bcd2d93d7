//! The Front End against SIPp (Debian's sip-tester): sign-in with digest, messages and calls
//! between registered devices, and the refusals a user should see.

mod common;

use common::{device, free_port, register, Server, Sipp};

#[test]
fn register_with_digest_challenge_succeeds_over_udp_and_tcp() {
    let server = Server::start();
    for t in ["u1", "t1"] {
        let r = Sipp::new(&server, "register.xml")
            .args(["-s", "alice", "-key", "contact_port", "5999", "-t", t])
            .auth("alice", &server.password("alice"))
            .run();
        r.assert_success(t);
        let trace = r.trace();
        assert!(
            trace.contains("SIP/2.0 401 Unauthorized"),
            "challenged first"
        );
        assert!(
            trace.contains("algorithm=MD5") && trace.contains("algorithm=SHA-256"),
            "both algorithms offered"
        );
        assert!(trace.contains("SIP/2.0 200 OK"));
        assert!(
            trace.contains(";expires=3600"),
            "binding echoed with its lifetime"
        );
    }
}

#[test]
fn a_wrong_password_never_gets_200() {
    let server = Server::start();
    let r = Sipp::new(&server, "register_wrong_password.xml")
        .args(["-s", "bob"])
        .auth("bob", "not-the-password")
        .run();
    r.assert_success("wrong password refused");
    assert!(
        !r.trace().contains("SIP/2.0 200"),
        "a wrong password must never be accepted:\n{}",
        r.trace()
    );
}

#[test]
fn message_reaches_a_registered_device() {
    let server = Server::start();
    let bob = device(&server, "bob", "uas_message.xml");
    let r = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    r.assert_success("MESSAGE alice -> bob");
    assert!(
        r.trace().contains("SIP/2.0 407"),
        "the sender was challenged"
    );
    assert!(
        r.trace().contains("SIP/2.0 200 OK"),
        "bob's 200 came back:\n{}",
        r.trace()
    );
    bob.assert_success("bob received the MESSAGE");
}

#[test]
fn message_to_unknown_user_is_404_and_to_user_without_device_is_480() {
    let server = Server::start();
    let to = |target: &str| {
        let r = Sipp::new(&server, "uac_message.xml")
            .args(["-s", target, "-key", "caller", "alice"])
            .auth("alice", &server.password("alice"))
            .run();
        r.assert_success(target);
        r.trace()
    };
    let unknown = to("nobody");
    assert!(
        unknown.contains("SIP/2.0 404 Not Found (no such user)"),
        "{unknown}"
    );
    let offline = to("carol");
    assert!(
        offline.contains("SIP/2.0 480 Temporarily Unavailable (no device registered)"),
        "{offline}"
    );
}

#[test]
fn call_rings_is_answered_acked_and_hung_up_through_the_proxy() {
    let server = Server::start();
    let bob = device(&server, "bob", "uas_call.xml");
    let r = Sipp::new(&server, "uac_call.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    r.assert_success("call alice -> bob");
    let trace = r.trace();
    assert!(trace.contains("SIP/2.0 180 Ringing"));
    assert!(
        trace.contains("Record-Route: <sip:127.0.0.1:"),
        "the proxy stays on the dialog path"
    );
    bob.assert_success("bob answered, got ACK and BYE");
    let uas = bob_trace_has_route(&trace);
    assert!(uas, "ACK and BYE were sent with the recorded Route");
}

fn bob_trace_has_route(uac_trace: &str) -> bool {
    uac_trace
        .lines()
        .any(|l| l.starts_with("Route: <sip:127.0.0.1:"))
}

#[test]
fn cancel_of_a_ringing_call_reaches_the_device_and_ends_with_487() {
    let server = Server::start();
    let bob = device(&server, "bob", "uas_ring.xml");
    let r = Sipp::new(&server, "uac_cancel.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    r.assert_success("cancel");
    assert!(r.trace().contains("SIP/2.0 487"));
    bob.assert_success("bob saw the CANCEL");
}

#[test]
fn a_user_added_while_the_server_runs_can_sign_in_at_once() {
    let server = Server::start();
    let out = server.cli(&["user", "add", "dave@example.com", "--password", "d4ve-pass"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Sipp::new(&server, "register.xml")
        .args(["-s", "dave", "-key", "contact_port", "5999"])
        .auth("dave", "d4ve-pass")
        .run()
        .assert_success("new user signs in");
}

#[test]
fn registrations_survive_a_restart() {
    let server = Server::start();
    let port = free_port();
    register(&server, "bob", port, "u1");
    let dir = server.stop();
    let server = Server::start_in(dir, &[]);
    assert!(
        server.log_text().contains("bindings=1"),
        "the binding was restored:\n{}",
        server.log_text()
    );
    // and the restored binding is used: a MESSAGE to bob reaches the device on that port
    let bob = Sipp::new(&server, "uas_message.xml")
        .args(["-s", "bob", "-p", &port.to_string()])
        .spawn();
    common::wait_udp_bound(port);
    Sipp::new(&server, "uac_message.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run()
        .assert_success("MESSAGE after restart");
    bob.assert_success("bob reached through the restored registration");
}

#[test]
fn an_answered_call_shows_in_a_call_to_watchers_until_bye() {
    let server = Server::start();
    let bob = device(&server, "bob", "uas_call.xml");
    let mut carol = Sipp::new(&server, "subscribe.xml")
        .args(["-s", "bob", "-key", "caller", "carol"])
        .args(["-key", "event", "presence", "-key", "expires", "600"])
        .auth("carol", &server.password("carol"))
        .spawn();
    carol.wait_for(
        "<note>Available</note>",
        "bob's registered device: Available",
    );
    let r = Sipp::new(&server, "uac_call.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run();
    r.assert_success("call alice -> bob");
    bob.assert_success("bob answered");
    carol.wait_for("<rpid:on-the-phone/>", "In a call while the call is up");
    let after_call = |t: &str| {
        t.rfind("<rpid:on-the-phone/>")
            .is_some_and(|i| t[i..].contains("<note>Available</note>"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !after_call(&carol.trace()) {
        assert!(
            std::time::Instant::now() < deadline,
            "BYE did not clear In a call:\n{}",
            carol.trace()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sigterm_drains_requests_in_flight_and_refuses_new_ones() {
    let mut server = Server::start();
    let mut bob = device(&server, "bob", "uas_message_slow.xml");
    let alice = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "bob", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .spawn();
    bob.wait_for(
        "MESSAGE sip:",
        "bob's device has the MESSAGE (its answer is 2 s away)",
    );
    server.sigterm();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // a new request meanwhile is refused, and says when to come back
    let r = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "bob", "-key", "caller", "carol"])
        .auth("carol", &server.password("carol"))
        .run();
    let trace = r.trace();
    assert!(
        trace.contains("SIP/2.0 503 Service Unavailable (server shutting down)")
            && trace.contains("Retry-After: 5"),
        "{trace}"
    );
    assert!(
        !server.exited(),
        "still running while bob's answer is pending"
    );
    // bob's late 200 still reaches alice; then the server exits by itself
    alice.assert_success("alice got bob's 200 after SIGTERM");
    bob.assert_success("bob answered");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !server.exited() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit after draining"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        server.log_text().contains("server.drained"),
        "{}",
        server.log_text()
    );
}

#[test]
fn sipp_signs_in_and_sends_a_message_over_ipv6() {
    let server = Server::start_with(&["--bind", "::1"]);
    assert_eq!(server.addr(), format!("[::1]:{}", server.port));
    let bob = device(&server, "bob", "uas_message.xml");
    let trace = common::message(&server, "alice", "bob");
    assert!(
        trace.contains("Via: SIP/2.0/UDP [::1]:"),
        "IPv6 all the way:\n{trace}"
    );
    bob.assert_success("bob's device reached over IPv6");
}
