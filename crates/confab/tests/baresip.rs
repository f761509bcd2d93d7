//! baresip (Debian's baresip-core, an unmodified SIP client) signs in over UDP, TCP and TLS
//! (trusting the demo CA) and receives a MESSAGE sent through the server; two baresips with
//! each other as contacts see each other's presence change (baresip's presence module); two
//! baresips call, hold and resume (re-INVITEs), and the callee hangs up.

mod common;

use std::time::{Duration, Instant};

use common::baresip::{command, Baresip};
use common::{free_port, Server, Sipp};

fn baresip_receives_a_message_over(transport: &str) {
    let server = Server::start();
    let alice = Baresip::sign_in(&server, "alice", transport);
    let r = Sipp::new(&server, "uac_message.xml")
        .args(["-s", "alice", "-key", "caller", "bob"])
        .auth("bob", &server.password("bob"))
        .run();
    r.assert_success("MESSAGE bob -> alice (baresip)");
    let trace = r.trace();
    // the 200 OK was written by baresip itself and came back through the proxy
    assert!(
        trace.contains("SIP/2.0 200 OK") && trace.contains("Server: baresip"),
        "{trace}"
    );
    drop(alice);
}

#[test]
fn baresip_signs_in_over_udp_and_receives_a_message() {
    baresip_receives_a_message_over("udp");
}

#[test]
fn baresip_signs_in_over_tcp_and_receives_a_message() {
    baresip_receives_a_message_over("tcp");
}

#[test]
fn baresip_signs_in_over_tls_trusting_the_demo_ca_and_receives_a_message() {
    baresip_receives_a_message_over("tls");
}

/// Sends a command to a baresip UDP console.
#[test]
fn two_baresips_see_each_others_presence_change() {
    let server = Server::start();
    let alice_cons = free_port();
    let bob_cons = common::free_port_except(&[alice_cons]);
    let alice = Baresip::with_presence(&server, "alice", "bob", alice_cons);
    let bob = Baresip::with_presence(&server, "bob", "alice", bob_cons);
    // each subscribes to the other through the server (both already published "open", so
    // baresip's first status is open and it logs nothing until a change)
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log_text().matches("presence.subscribed").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "baresips did not subscribe:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // bob goes offline: his device publishes "closed", and the server tells alice
    command(bob_cons, "presence_offline");
    alice.wait_for(
        "<sip:bob@example.com> changed status from Online to Offline",
        "alice sees bob offline",
    );
    command(bob_cons, "presence_online");
    alice.wait_for(
        "<sip:bob@example.com> changed status from Offline to Online",
        "alice sees bob back",
    );
    command(alice_cons, "presence_offline");
    bob.wait_for(
        "<sip:alice@example.com> changed status from Online to Offline",
        "bob sees alice offline",
    );
}

#[test]
fn two_baresips_call_hold_and_the_callee_hangs_up() {
    let server = Server::start();
    let alice_cons = free_port();
    let bob_cons = common::free_port_except(&[alice_cons]);
    let alice = Baresip::answering(&server, "alice", alice_cons);
    let bob = Baresip::answering(&server, "bob", bob_cons);
    command(alice_cons, "dial sip:bob@example.com");
    bob.wait_for("Call established", "bob answered alice's call");
    alice.wait_for("Call established", "alice hears bob's answer");
    // a re-INVITE (hold) and back, within the dialog through the server
    command(alice_cons, "hold");
    command(alice_cons, "resume");
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.log().matches("got re-INVITE").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "bob got alice's hold and resume re-INVITEs:\n{}",
            bob.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // the callee hangs up: his BYE follows the route the server sealed
    command(bob_cons, "hangup");
    alice.wait_for("session closed", "alice hears bob hang up");
    assert!(
        !server.log_text().contains("relay.unsealed"),
        "nothing in the call was refused as unsealed:\n{}",
        server.log_text()
    );
}
