//! No open relay: requests that claim a dialog are forwarded as such only along a Route we
//! sealed; forged ones reach nobody. And our own credentials are never passed on.

use sip_proto::{HeaderName, Message, Writer};

use super::sim::{Sim, ALICE, BOB, INVITE_BOB, SERVER};

/// A listener on a foreign address the attacker wants us to send to.
const VICTIM: &str = "127.0.0.9:5999";
const ATTACKER: &str = "127.0.0.66:5070";

const METHODS: [&str; 8] = [
    "BYE", "INFO", "NOTIFY", "UPDATE", "REFER", "PRACK", "MESSAGE", "ACK",
];

fn forged(method: &str, from: &str, to_tag: bool, route: Option<&str>, n: usize) -> String {
    let tag = if to_tag { ";tag=t1" } else { "" };
    let route = route.map_or(String::new(), |r| format!("Route: {r}\r\n"));
    format!(
        "{method} sip:victim@{VICTIM} SIP/2.0\r\nVia: SIP/2.0/UDP {ATTACKER};branch=z9hG4bKforged{n}\r\nMax-Forwards: 70\r\n{route}From: <sip:{from}>;tag=x\r\nTo: <sip:victim@{VICTIM}>{tag}\r\nCall-ID: forged-{n}\r\nCSeq: 7 {method}\r\nEvent: presence\r\nRefer-To: <sip:victim@{VICTIM}>\r\nRAck: 1 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn forged_in_dialog_requests_reach_no_one_and_are_counted() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    let routes = [
        None,
        Some(format!("<sip:{SERVER};lr>")),
        Some(format!("<sip:{SERVER};lr;seal=0123456789abcdef>")),
        Some(format!("<sip:{VICTIM};lr>")),
    ];
    let mut n = 0;
    let mut expected_unsealed = 0;
    let mut expected_acks = 0;
    for method in METHODS {
        for from in ["mallory@evil.test", "alice@example.com"] {
            for to_tag in [true, false] {
                for route in &routes {
                    n += 1;
                    sim.send(ATTACKER, &forged(method, from, to_tag, route.as_deref(), n));
                    let case = format!("{method} from {from}, To tag {to_tag}, Route {route:?}");
                    let answers = sim.take_to(ATTACKER);
                    let elsewhere = sim.take_all();
                    assert!(elsewhere.is_empty(), "{case}: relayed to {elsewhere:?}");
                    if method == "ACK" {
                        assert!(answers.is_empty(), "{case}: an ACK is not answered");
                        expected_acks += 1;
                        continue;
                    }
                    let finals: Vec<_> = answers.iter().filter(|m| m.status() >= 300).collect();
                    assert_eq!(finals.len(), 1, "{case}: {answers:?}");
                    let (code, reason) = (finals[0].status(), finals[0].reason());
                    // challenged like any request from our domain, refused like any from
                    // outside (or a Route elsewhere refused outright)
                    assert!(
                        (from.ends_with("evil.test") && code == 403) || code == 407,
                        "{case}: {code} {reason}"
                    );
                    if to_tag {
                        expected_unsealed += 1;
                    }
                }
            }
        }
    }
    let stats = sim.engine.stats();
    assert_eq!(stats.unsealed_in_dialog, expected_unsealed);
    assert_eq!(stats.stray_acks, expected_acks);
}

/// alice calls bob; bob answers with the Record-Route the server added; returns the 200
/// alice received and the INVITE bob received.
pub(super) fn call(sim: &mut Sim) -> (Message, Message) {
    sim.send_authenticated(ALICE, "alice", INVITE_BOB);
    let invite = sim.take_to(BOB).pop().expect("INVITE forwarded to bob");
    let mut w = Writer::response_to(&invite, 200, "OK", "b1");
    for rr in invite
        .values(HeaderName::RecordRoute)
        .filter_map(Result::ok)
    {
        w.header("Record-Route", rr);
    }
    w.header("Contact", format!("<sip:bob@{BOB}>"));
    sim.send(BOB, &String::from_utf8(w.finish(b"")).unwrap());
    let ok = sim
        .take_to(ALICE)
        .into_iter()
        .find(|m| m.status() == 200)
        .expect("200 relayed to alice");
    (ok, invite)
}

pub(super) fn first_record_route(m: &Message) -> String {
    m.values(HeaderName::RecordRoute)
        .next()
        .and_then(Result::ok)
        .expect("record-routed")
        .to_owned()
}

pub(super) fn bye_from_bob(rr: &str, branch: &str) -> String {
    format!("BYE sip:alice@{ALICE} SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\nRoute: {rr}\r\nFrom: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>;tag=a1\r\nCall-ID: call-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n")
}

#[test]
fn a_dialog_we_record_routed_is_relayed_both_ways_and_a_tampered_seal_is_not() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    let rr = first_record_route(&call(&mut sim).0);
    assert!(rr.contains(";seal="), "{rr}");
    // alice's ACK follows the route to bob
    let ack = format!("ACK sip:bob@{BOB} SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKack1\r\nMax-Forwards: 70\r\nRoute: {rr}\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n");
    sim.send(ALICE, &ack);
    assert_eq!(sim.take_to(BOB).len(), 1, "ACK relayed");
    // a tampered seal: not relayed, handled as bob's out-of-dialog request (challenged)
    let seal_at = rr.find("seal=").unwrap() + 5;
    let mut bad = rr.clone();
    let flipped = if &rr[seal_at..=seal_at] == "0" {
        "1"
    } else {
        "0"
    };
    bad.replace_range(seal_at..=seal_at, flipped);
    sim.send(BOB, &bye_from_bob(&bad, "bye1"));
    assert!(sim.take_to(ALICE).is_empty(), "not relayed with a bad seal");
    assert_eq!(sim.take_to(BOB)[0].status(), 407);
    // the seal covers the dialog: the same Route on another Call-ID is not good either
    sim.send(
        BOB,
        &bye_from_bob(&rr, "bye2").replace("Call-ID: call-1", "Call-ID: other"),
    );
    assert!(sim.take_to(ALICE).is_empty());
    // bob's BYE with the real Route goes through
    sim.send(BOB, &bye_from_bob(&rr, "bye3"));
    let to_alice = sim.take_to(ALICE);
    assert_eq!(to_alice.len(), 1);
    assert_eq!(to_alice[0].method_str(), "BYE");
}

#[test]
fn a_seal_outlives_the_process_that_made_it() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    let rr = first_record_route(&call(&mut sim).0);
    // a new engine on the same deployment secret (a restart, or another server of the pool)
    let mut restarted = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    restarted.send(BOB, &bye_from_bob(&rr, "bye4"));
    assert_eq!(restarted.take_to(ALICE).len(), 1, "relayed after a restart");
}

#[test]
fn our_credentials_are_consumed_and_others_travel_on() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    let other = "Proxy-Authorization: Digest username=\"a\", realm=\"carrier.test\", nonce=\"n\", uri=\"sip:x\", response=\"00\"\r\n";
    let invite = INVITE_BOB.replace("{auth}", &format!("{other}{{auth}}"));
    sim.send_authenticated(ALICE, "alice", &invite);
    let to_bob = sim.take_to(BOB).pop().expect("forwarded");
    let creds: Vec<_> = to_bob
        .values(HeaderName::ProxyAuthorization)
        .filter_map(Result::ok)
        .collect();
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert!(creds[0].contains("carrier.test"), "{creds:?}");
}
