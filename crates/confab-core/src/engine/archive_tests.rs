//! Archiving and call records in the engine: what is recorded, once, and critical mode's
//! refusal when the archive cannot take a message.

use confab_archive::policy::{Policies, Policy, GLOBAL, SETTING};
use confab_archive::Record;

use super::relay_tests::{bye_from_bob, call, first_record_route};
use super::sim::{Sim, ALICE, BOB};
use super::{ArchiveItem, Fetched};

const MESSAGE_BOB: &str = "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain;charset=UTF-8\r\n{auth}Content-Length: 9\r\n\r\ncaf\u{e9} \u{2603}";

fn with_policy(sim: &mut Sim, critical: bool, internal: bool) {
    let mut p = Policies {
        critical,
        ..Policies::default()
    };
    p.policies.insert(
        GLOBAL.into(),
        Policy {
            internal,
            external: false,
            retention_days: 30,
        },
    );
    sim.engine
        .store
        .set_setting(SETTING, Some(&p.render()))
        .unwrap();
    sim.engine.read_archiving();
}

fn records(sim: &mut Sim) -> Vec<ArchiveItem> {
    std::iter::from_fn(|| sim.engine.poll_archive()).collect()
}

fn send_message(sim: &mut Sim) {
    sim.send_authenticated(ALICE, "alice", MESSAGE_BOB);
}

#[test]
fn a_message_the_policy_keeps_is_recorded_once_exactly_as_sent() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    with_policy(&mut sim, false, true);
    send_message(&mut sim);
    assert_eq!(sim.take_to(BOB).len(), 1, "delivered");
    let got = records(&mut sim);
    assert_eq!(got.len(), 1, "{got:?}");
    let Record::Message(m) = &got[0].record else {
        panic!("{got:?}")
    };
    assert!(got[0].token.is_none(), "normal mode: to the local queue");
    assert_eq!(m.sender, "alice@example.com");
    assert_eq!(m.recipients, ["bob@example.com"]);
    assert_eq!(m.content_type, "text/plain;charset=UTF-8");
    assert_eq!(
        m.body,
        "caf\u{e9} \u{2603}".as_bytes(),
        "the bytes as they came"
    );
    assert_eq!(m.conversation, "pair:alice@example.com bob@example.com");
    assert_eq!(m.keep_until - sim.now().unix, 30 * 86_400);
}

#[test]
fn nothing_is_archived_when_no_policy_asks() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    with_policy(&mut sim, false, false);
    send_message(&mut sim);
    assert_eq!(sim.take_to(BOB).len(), 1);
    let messages = records(&mut sim)
        .into_iter()
        .filter(|i| matches!(i.record, Record::Message(_)))
        .count();
    assert_eq!(messages, 0);
}

#[test]
fn in_critical_mode_a_message_waits_for_the_archive_and_is_refused_when_it_fails() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    with_policy(&mut sim, true, true);
    send_message(&mut sim);
    assert!(
        sim.take_to(BOB).is_empty(),
        "not delivered before it is archived"
    );
    let got = records(&mut sim);
    let token = got[0].token.expect("critical: the driver answers");
    sim.finish_job(Fetched::archived(token, Ok(())));
    assert_eq!(sim.take_to(BOB).len(), 1, "delivered once archived");

    let second = MESSAGE_BOB
        .replace("z9hG4bKm1", "z9hG4bKm2")
        .replace("msg-1", "msg-2");
    sim.send_authenticated(ALICE, "alice", &second);
    let token = records(&mut sim)[0].token.unwrap();
    sim.finish_job(Fetched::archived(
        token,
        Err("archive database unavailable".into()),
    ));
    assert!(sim.take_to(BOB).is_empty(), "never delivered");
    let refused = sim.take_to(ALICE);
    let last = refused.last().unwrap();
    assert_eq!(last.status(), 503);
    assert!(
        last.reason().contains("archiving is critical"),
        "{}",
        last.reason()
    );
}

#[test]
fn a_call_is_recorded_at_its_bye_with_who_hung_up() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    let (ok, _) = call(&mut sim);
    assert!(
        records(&mut sim).is_empty(),
        "no record before the call ends"
    );
    let rr = first_record_route(&ok);
    sim.send(BOB, &bye_from_bob(&rr, "bye1"));
    let got = records(&mut sim);
    let calls: Vec<_> = got
        .iter()
        .filter_map(|i| match &i.record {
            Record::Call(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "{got:?}");
    let c = calls[0];
    assert_eq!(
        (c.caller.as_str(), c.callee.as_str()),
        ("alice@example.com", "bob@example.com")
    );
    assert_eq!((c.status, c.ended_by.as_str()), (200, "callee"));
    assert!(c.answer_ms.is_some());
}

#[test]
fn a_sign_in_is_recorded_with_its_client_and_address() {
    let mut sim = Sim::with_users(&["alice"], &[]);
    let register = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKw1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=w1\r\nTo: <sip:alice@example.com>\r\nCall-ID: w1\r\nCSeq: 1 REGISTER\r\nUser-Agent: Test/1.0\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{auth}Content-Length: 0\r\n\r\n";
    sim.send_authenticated(ALICE, "alice", register);
    let got = records(&mut sim);
    let Some(Record::Registration(r)) = got.first().map(|i| &i.record) else {
        panic!("{got:?}")
    };
    assert_eq!(
        (
            r.user.as_str(),
            r.event.as_str(),
            r.client.as_str(),
            r.address.as_str()
        ),
        ("alice@example.com", "sign-in", "Test/1.0", ALICE)
    );
    // a refresh is not a sign-in
    let refresh = register
        .replace("CSeq: 1", "CSeq: 3")
        .replace("z9hG4bKw1", "z9hG4bKw3");
    let ok = sim.send_authenticated(ALICE, "alice", &refresh);
    assert_eq!(ok.last().map(|m| m.status()), Some(200));
    assert!(records(&mut sim).is_empty());
    // signing out is
    let out = register
        .replace("CSeq: 1", "CSeq: 5")
        .replace("z9hG4bKw1", "z9hG4bKw5")
        .replace("Content-Length: 0", "Expires: 0\r\nContent-Length: 0");
    sim.send_authenticated(ALICE, "alice", &out);
    let got = records(&mut sim);
    let Some(Record::Registration(r)) = got.first().map(|i| &i.record) else {
        panic!("{got:?}")
    };
    assert_eq!((r.event.as_str(), r.address.as_str()), ("sign-out", ALICE));
}

#[test]
fn a_message_to_a_partner_is_external_and_kept_only_where_external_is_archived() {
    let to_partner = MESSAGE_BOB.replace("bob@example.com", "sam@fabrikam.test");
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    with_policy(&mut sim, false, true); // internal only
    sim.send_authenticated(ALICE, "alice", &to_partner);
    let external = |sim: &mut Sim| {
        records(sim)
            .into_iter()
            .filter_map(|i| match i.record {
                Record::Message(m) => Some(m),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(
        external(&mut sim).is_empty(),
        "the policy keeps internal only"
    );
    let mut p = Policies::default();
    p.policies.insert(
        GLOBAL.into(),
        Policy {
            internal: false,
            external: true,
            retention_days: 7,
        },
    );
    sim.engine
        .store
        .set_setting(SETTING, Some(&p.render()))
        .unwrap();
    sim.engine.read_archiving();
    let again = to_partner
        .replace("z9hG4bKm1", "z9hG4bKm3")
        .replace("msg-1", "msg-3");
    sim.send_authenticated(ALICE, "alice", &again);
    let kept = external(&mut sim);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].direction, confab_archive::Direction::Federated);
    assert_eq!(kept[0].recipients, ["sam@fabrikam.test"]);
}

#[test]
fn a_message_a_remote_user_sent_through_the_edge_is_remote() {
    let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
    with_policy(&mut sim, false, true);
    // the Edge's mark, believed from a deployment server's connection only
    sim.arriving_from_peers(true);
    let marked = MESSAGE_BOB.replace(
        "Call-ID: msg-1\r\n",
        "Call-ID: msg-1\r\nConfab-Origin: remote;addr=198.51.100.7\r\n",
    );
    sim.send_authenticated(ALICE, "alice", &marked);
    let got: Vec<_> = records(&mut sim)
        .into_iter()
        .filter_map(|i| match i.record {
            Record::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].direction, confab_archive::Direction::Remote);
}
