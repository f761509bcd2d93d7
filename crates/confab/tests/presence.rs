//! Presence with real peers: SIPp publishes and subscribes (single users, contact lists with
//! `Supported: eventlist`, watcher information), the CLI edits lists and privacy while the
//! server runs, and malformed or unwanted requests get precise refusals.

mod common;

use common::{Server, Sipp, SippChild};

/// A server whose presence subscriptions may be as short as 5 s, so that expiry is tested.
fn server(extra: &[&str]) -> Server {
    let mut args = vec!["--presence-min-expires", "5"];
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

fn pidf(user: &str, activity: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:{user}@example.com"><tuple id="sipp"><status><basic>open</basic></status><note>note of {user}</note></tuple><dm:person id="p"><rpid:activities><rpid:{activity}/></rpid:activities></dm:person></presence>"#
    )
}

/// `user` publishes `body` for itself; returns the trace.
fn publish(server: &Server, user: &str, event: &str, ctype: &str, body: &str) -> String {
    let r = Sipp::new(server, "publish.xml")
        .args(["-s", user, "-key", "caller", user])
        .args([
            "-key", "event", event, "-key", "ctype", ctype, "-key", "body", body,
        ])
        .auth(user, &server.password(user))
        .run();
    r.assert_success(&format!("PUBLISH by {user}"));
    r.trace()
}

/// `watcher` subscribes to `resource` (a user part) for `event`, in the background.
fn subscribe(
    server: &Server,
    watcher: &str,
    resource: &str,
    event: &str,
    expires: u32,
) -> SippChild {
    Sipp::new(server, "subscribe.xml")
        .args(["-s", resource, "-key", "caller", watcher])
        .args([
            "-key",
            "event",
            event,
            "-key",
            "expires",
            &expires.to_string(),
        ])
        .auth(watcher, &server.password(watcher))
        .spawn()
}

/// The final response of a SIPp run (the last status line in its trace).
fn final_status(trace: &str) -> String {
    trace
        .lines()
        .rfind(|l| l.starts_with("SIP/2.0 ") && !l.starts_with("SIP/2.0 407"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn publish_then_subscribe_gets_state_then_changes_then_expiry() {
    let server = server(&[]);
    let t = publish(
        &server,
        "bob",
        "presence",
        "application/pidf+xml",
        &pidf("bob", "away"),
    );
    assert!(final_status(&t).starts_with("SIP/2.0 200"), "{t}");
    assert!(
        t.contains("SIP-ETag: "),
        "a publication gets an entity tag:\n{t}"
    );

    let mut alice = subscribe(&server, "alice", "bob", "presence", 8);
    // the immediate NOTIFY carries the current state: Away, with bob's note
    alice.wait_for("<rpid:away/>", "initial NOTIFY with bob's state");
    alice.wait_for("note of bob", "bob's note is kept");
    alice.wait_for("Subscription-State: active;expires=", "subscription active");

    // another device of bob publishes Busy: it takes precedence over Away
    publish(
        &server,
        "bob",
        "presence",
        "application/pidf+xml",
        &pidf("bob", "busy"),
    );
    alice.wait_for("<rpid:busy/>", "NOTIFY after the new PUBLISH");

    // nobody refreshes: the subscription ends by its own timer with the right reason
    alice.wait_for(
        "Subscription-State: terminated;reason=timeout",
        "final NOTIFY on expiry",
    );
    alice.assert_success("watcher");
}

#[test]
fn contact_list_subscription_with_eventlist_follows_cli_edits() {
    let server = server(&[]);
    for (contact, group) in [("bob", "Team"), ("carol", "Friends")] {
        let out = server.cli(&[
            "contacts",
            "add",
            "alice@example.com",
            &format!("{contact}@example.com"),
            "--group",
            group,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = server.cli(&["contacts", "list", "alice@example.com"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains("bob@example.com\tTeam") && listed.contains("carol@example.com\tFriends"),
        "{listed}"
    );
    publish(
        &server,
        "bob",
        "presence",
        "application/pidf+xml",
        &pidf("bob", "busy"),
    );

    let mut alice = subscribe(&server, "alice", "alice+contacts", "presence", 30);
    alice.wait_for("Require: eventlist", "200 OK names eventlist");
    alice.wait_for(
        "multipart/related;type=\"application/rlmi+xml\"",
        "list NOTIFY",
    );
    alice.wait_for("fullState=\"true\"", "full state first");
    alice.wait_for("<name>Team</name>", "groups shown");
    alice.wait_for("<rpid:busy/>", "bob's state in the list");
    alice.wait_for(
        "<resource uri=\"sip:carol@example.com\">",
        "carol in the list",
    );

    // a change made with the CLI reaches the subscribed device
    server.cli(&[
        "contacts",
        "remove",
        "alice@example.com",
        "carol@example.com",
    ]);
    server.cli(&["user", "add", "dave@example.com", "--password", "pw-dave"]);
    let out = server.cli(&["contacts", "add", "alice@example.com", "dave@example.com"]);
    assert!(out.status.success());
    alice.wait_for(
        "<resource uri=\"sip:dave@example.com\">",
        "list change pushed",
    );

    // a contact's change is a partial notification
    publish(
        &server,
        "bob",
        "presence",
        "application/pidf+xml",
        &pidf("bob", "on-the-phone"),
    );
    alice.wait_for("fullState=\"false\"", "partial NOTIFY");
    alice.wait_for("<rpid:on-the-phone/>", "bob in a call");
}

#[test]
fn blocked_watcher_sees_offline_never_an_error() {
    let server = server(&[]);
    publish(
        &server,
        "bob",
        "presence",
        "application/pidf+xml",
        &pidf("bob", "busy"),
    );
    let out = server.cli(&["privacy", "block", "bob@example.com", "carol@example.com"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut carol = subscribe(&server, "carol", "bob", "presence", 5);
    carol.wait_for("<basic>closed</basic>", "blocked watcher sees Offline");
    carol.wait_for("Subscription-State: terminated;reason=timeout", "expiry");
    let trace = carol.trace();
    assert!(
        trace.contains("SIP/2.0 200 OK"),
        "accepted, not refused:\n{trace}"
    );
    assert!(
        !trace.contains("busy"),
        "nothing of bob's real state leaks:\n{trace}"
    );
    carol.assert_success("blocked watcher");

    // alice is not blocked: she sees Busy
    let mut alice = subscribe(&server, "alice", "bob", "presence", 5);
    alice.wait_for("<rpid:busy/>", "permitted watcher sees the state");
}

#[test]
fn watcher_information_shows_who_watches() {
    let server = server(&[]);
    let mut bob = subscribe(&server, "bob", "bob", "presence.winfo", 30);
    bob.wait_for("application/watcherinfo+xml", "winfo NOTIFY");
    let _alice = subscribe(&server, "alice", "bob", "presence", 30);
    bob.wait_for(
        ">sip:alice@example.com</watcher>",
        "alice listed as a watcher",
    );
}

#[test]
fn bad_presence_requests_get_precise_refusals() {
    let server = server(&["--presence-max-body", "600"]);
    let cases = [
        (
            "presence",
            "application/pidf+xml",
            "<presence xmlns='urn:ietf:params:xml:ns:pidf'>".to_owned(),
            "SIP/2.0 400 Bad Request (PIDF",
        ),
        (
            "presence",
            "application/pidf+xml",
            "<presence xmlns='urn:ietf:params:xml:ns:pidf'/>".to_owned(),
            "no entity attribute",
        ),
        (
            "dialog",
            "application/pidf+xml",
            pidf("bob", "busy"),
            "SIP/2.0 489 Bad Event (unknown event package 'dialog'",
        ),
        ("presence", "text/plain", "hello".to_owned(), "SIP/2.0 415"),
        (
            "presence",
            "application/pidf+xml",
            format!("{}<!-- {} -->", pidf("bob", "busy"), "x".repeat(600)),
            "SIP/2.0 413 Request Entity Too Large (presence document over 600 bytes)",
        ),
    ];
    for (event, ctype, body, want) in cases {
        let t = publish(&server, "bob", event, ctype, &body);
        assert!(final_status(&t).contains(want), "{want}:\n{t}");
    }
    // unknown event package on SUBSCRIBE
    let mut s = subscribe(&server, "alice", "bob", "message-summary", 30);
    s.wait_for("489 Bad Event", "489 for an unknown package");
    s.wait_for(
        "Allow-Events: presence, presence.winfo",
        "Allow-Events names what is served",
    );
    // another domain, until federation exists
    let r = Sipp::new(&server, "subscribe.xml")
        .domain("fabrikam.com")
        .args([
            "-s", "bob", "-key", "caller", "alice", "-key", "event", "presence", "-key", "expires",
            "30",
        ])
        .auth("alice", &server.password("alice"))
        .run();
    assert!(
        r.trace()
            .contains("403 Forbidden (federation is not enabled"),
        "{}",
        r.trace()
    );
    // someone else's presence cannot be published
    let t = publish_as(&server, "alice", "bob");
    assert!(
        final_status(&t).contains("403 Forbidden (a user can publish only its own presence)"),
        "{t}"
    );
}

fn publish_as(server: &Server, user: &str, presentity: &str) -> String {
    let r = Sipp::new(server, "publish.xml")
        .args(["-s", presentity, "-key", "caller", user])
        .args([
            "-key",
            "event",
            "presence",
            "-key",
            "ctype",
            "application/pidf+xml",
            "-key",
            "body",
            &pidf(presentity, "busy"),
        ])
        .auth(user, &server.password(user))
        .run();
    r.trace()
}

#[test]
fn subscriptions_and_publications_survive_a_restart() {
    let server = server(&[]);
    publish(
        &server,
        "bob",
        "presence",
        "application/pidf+xml",
        &pidf("bob", "busy"),
    );
    let port = server.port;
    let dir = server.stop();
    let server = Server::start_on(dir, port, &["--presence-min-expires", "5"]);
    let mut alice = subscribe(&server, "alice", "bob", "presence", 5);
    alice.wait_for("<rpid:busy/>", "bob's publication kept across the restart");
}
