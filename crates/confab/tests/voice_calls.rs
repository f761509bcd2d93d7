//! Enterprise voice with real peers: SIPp as PSTN gateways (one silent, one answering 503, one
//! answering; each INVITE's Request-URI and P-Asserted-Identity checked as the gateway got
//! it), a SIPp call and a baresip call dialling numbers out, and a gateway calling a user's
//! number in, ringing her baresip.

mod common;

use common::baresip::{command, Baresip};
use common::{free_port, text, wait_udp_bound_on, Server, Sipp, TempDir};

const SILENT: &str = "127.0.0.61";
const BUSY: &str = "127.0.0.62";
const PBX: &str = "127.0.0.63";

/// The configuration: Redmond numbers to the PBX (ten digits), other US numbers through the
/// silent trunk, the busy one, then the PBX; 911 (or 9911) to the PBX for everyone.
fn voice_config(silent: u16, busy: u16, pbx: u16) -> String {
    format!(
        r#"usages = ["Local", "Emergency"]
[[dial_plan]]
name = "Global"
[[dial_plan.rule]]
name = "National"
pattern = '^1?(\d{{10}})$'
translation = '+1$1'
[[policy]]
name = "Global"
usages = ["Local"]
[[route]]
name = "Redmond"
pattern = '^\+1425\d{{7}}$'
usages = ["Local"]
trunks = ["pbx"]
[[route]]
name = "US"
pattern = '^\+1\d{{10}}$'
usages = ["Local"]
trunks = ["silent", "busy", "pbx"]
[[route]]
name = "Emergency"
pattern = '^911$'
usages = ["Emergency"]
trunks = ["pbx"]
[[emergency]]
numbers = ["911"]
masks = ["9911"]
usage = "Emergency"
[[trunk]]
name = "silent"
gateway = {{ host = "{SILENT}", port = {silent}, transport = "udp" }}
failover_after = 2
[[trunk]]
name = "busy"
gateway = {{ host = "{BUSY}", port = {busy}, transport = "udp" }}
[[trunk]]
name = "pbx"
gateway = {{ host = "{PBX}", port = {pbx}, transport = "udp" }}
[[trunk.called]]
name = "Ten digits"
pattern = '^\+1(\d{{10}})$'
translation = '$1'
[[trunk.inbound]]
name = "Ten digits"
pattern = '^(\d{{10}})$'
translation = '+1$1'
"#
    )
}

/// Runs `confab ARGS` on `server`'s data dir; it must succeed.
fn cli_ok(server: &Server, args: &[&str]) {
    let o = server.cli(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
}

/// Applies the voice configuration `text` to `server`'s database (the server reads it at its
/// next housekeeping round: see `wait_for_voice`).
fn apply_voice(server: &Server, text: &str) {
    let dir = TempDir::new("voice-config");
    let file = dir.0.join("voice.toml");
    std::fs::write(&file, text).unwrap();
    cli_ok(server, &["voice", "apply", file.to_str().unwrap()]);
}

/// Gives `user` (of example.com) the Line URI `number` and enterprise voice.
fn give_number(server: &Server, user: &str, number: &str) {
    let aor = format!("{user}@example.com");
    cli_ok(
        server,
        &["user", "set", &aor, "--line-uri", number, "--voice", "on"],
    );
}

/// Waits until the running server has read the voice configuration applied to its database
/// (its housekeeping does, every 2 s).
fn wait_for_voice(server: &Server) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.log_text().contains("voice configuration in force") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A SIPp gateway running `scenario` at `ip:port`.
fn gateway(server: &Server, ip: &str, port: u16, scenario: &str) -> common::SippChild {
    let g = Sipp::new(server, scenario)
        .source_ip(ip)
        .local_port(port)
        .spawn();
    wait_udp_bound_on(ip, port);
    g
}

/// The first INVITE in a SIPp trace, as received.
fn invite_in(trace: &str) -> &str {
    let at = trace.find("INVITE sip:").expect("an INVITE in the trace");
    let end = trace[at..].find("\n\n").map_or(trace.len(), |e| at + e);
    &trace[at..end]
}

#[test]
fn calls_go_out_through_trunks_with_failover_and_come_in_from_a_gateway() {
    let server = Server::start_with(&["--gateway-probe", "0"]);
    let set = |args: &[&str]| cli_ok(&server, args);
    give_number(&server, "alice", "tel:+14255550101");
    give_number(&server, "bob", "tel:+14255550199");
    let (silent, busy, pbx) = (free_port(), free_port(), free_port());
    apply_voice(&server, &voice_config(silent, busy, pbx));
    // the running server reads it at its next housekeeping round: no restart
    wait_for_voice(&server);

    // alice (SIPp) dials a US number: the silent trunk, then the busy one, then the PBX
    let g_silent = gateway(&server, SILENT, silent, "gateway_silent.xml");
    let g_busy = gateway(&server, BUSY, busy, "gateway_busy.xml");
    let g_pbx = gateway(&server, PBX, pbx, "uas_call.xml");
    Sipp::new(&server, "uac_call.xml")
        .args(["-s", "2065550123", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run()
        .assert_success("alice's call to 2065550123");
    let at_pbx = g_pbx.assert_success("the PBX answers");
    let invite = invite_in(&at_pbx);
    assert!(
        invite.starts_with(&format!(
            "INVITE sip:2065550123@{PBX}:{pbx};user=phone SIP/2.0"
        )),
        "the PBX trunk's format (ten digits): {invite}"
    );
    assert!(
        invite.contains("P-Asserted-Identity: <sip:+14255550101@example.com;user=phone>"),
        "alice's Line URI: {invite}"
    );
    let at_busy = g_busy.assert_success("the busy gateway answers 503");
    assert!(invite_in(&at_busy)
        .starts_with(&format!("INVITE sip:+12065550123@{BUSY}:{busy};user=phone")));
    let at_silent = g_silent.assert_success("the silent gateway");
    assert!(invite_in(&at_silent)
        .contains("P-Asserted-Identity: <sip:+14255550101@example.com;user=phone>"));
    assert!(
        server
            .log_text()
            .contains("event=\"voice.failover\" status=503"),
        "the busy trunk failed over"
    );
    // its call record names the route and the trunk that took it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let record = loop {
        let out = text(&server.cli(&["cdr", "search", "--user", "alice@example.com"]));
        if let Some(l) = out.lines().find(|l| l.contains("2065550123")) {
            break l.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "a call record: {out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        record.contains("200 OK") && record.contains("via trunk pbx (route US)"),
        "{record}"
    );

    // alice on baresip dials a national number: the Redmond route, ten digits at the PBX
    let g_pbx = gateway(&server, PBX, pbx, "uas_call.xml");
    let alice_cons = free_port();
    let alice = Baresip::answering(&server, "alice", alice_cons);
    command(alice_cons, "dial 425-555-0123");
    alice.wait_for("Call established", "the PBX answers baresip's call");
    command(alice_cons, "hangup");
    let at_pbx = g_pbx.assert_success("the PBX takes baresip's call");
    assert!(
        invite_in(&at_pbx).starts_with(&format!("INVITE sip:4255550123@{PBX}:{pbx};user=phone")),
        "{at_pbx}"
    );

    // the PBX calls bob's number (ten digits, the trunk's inbound rule): bob's baresip rings
    let bob_cons = free_port();
    let bob = Baresip::answering(&server, "bob", bob_cons);
    Sipp::new(&server, "gateway_call_in.xml")
        .source_ip(PBX)
        .args(["-s", "4255550199"])
        .run()
        .assert_success("the gateway's call to bob");
    bob.wait_for(
        "Call established",
        "bob answers the call from the phone network",
    );

    // alice dials bob's number: it never leaves the server, bob's baresip answers
    Sipp::new(&server, "uac_call.xml")
        .args(["-s", "4255550199", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run()
        .assert_success("alice's call to bob's number");

    // dave has no enterprise voice and no number: 9911 still reaches the PBX, as 911
    set(&[
        "user",
        "add",
        "dave@example.com",
        "--password",
        "dave-pw-0123",
    ]);
    let g_pbx = gateway(&server, PBX, pbx, "uas_call.xml");
    Sipp::new(&server, "uac_call.xml")
        .args(["-s", "9911", "-key", "caller", "dave"])
        .auth("dave", "dave-pw-0123")
        .run()
        .assert_success("dave's emergency call");
    let at_pbx = g_pbx.assert_success("the PBX takes the emergency call");
    let invite = invite_in(&at_pbx);
    assert!(
        invite.starts_with(&format!("INVITE sip:911@{PBX}:{pbx};user=phone"))
            && !invite.contains("P-Asserted-Identity"),
        "{invite}"
    );

    // carol forwards her calls to a Redmond number: alice's call to carol reaches the PBX as
    // carol's (her voice policy, her number)
    set(&[
        "user",
        "set",
        "carol@example.com",
        "--line-uri",
        "tel:+14255550188",
        "--voice",
        "on",
        "--call-forwarding",
        "immediate=tel:+14255550123",
    ]);
    let g_pbx = gateway(&server, PBX, pbx, "uas_call.xml");
    Sipp::new(&server, "uac_call.xml")
        .args(["-s", "carol", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run()
        .assert_success("alice's call to carol, forwarded");
    let at_pbx = g_pbx.assert_success("the PBX takes carol's forwarded call");
    let invite = invite_in(&at_pbx);
    assert!(
        invite.starts_with(&format!("INVITE sip:4255550123@{PBX}:{pbx};user=phone"))
            && invite.contains("P-Asserted-Identity: <sip:+14255550188@example.com;user=phone>"),
        "{invite}"
    );

    // the same from an address that is no gateway: challenged, never delivered
    let stranger = Sipp::new(&server, "gateway_call_in.xml")
        .source_ip("127.0.0.66")
        .args(["-s", "4255550199"])
        .run();
    assert!(!stranger.status.success());
    assert!(
        stranger.trace().contains("SIP/2.0 403") || stranger.trace().contains("SIP/2.0 407"),
        "{}",
        stranger.trace()
    );
}

#[test]
fn kamailio_as_a_carriers_sbc_carries_a_trunk_both_ways() {
    let server = Server::start_with(&["--gateway-probe", "1"]);
    give_number(&server, "alice", "tel:+14255550101");
    give_number(&server, "bob", "tel:+14255550199");
    const SBC: &str = "127.0.0.64";
    const CARRIER: &str = "127.0.0.65";
    // nothing listens at the dead trunk's gateway: its probes fail, it is skipped
    let (sbc_port, carrier_port, dead_port) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"usages = ["International"]
[[dial_plan]]
name = "Global"
[[dial_plan.rule]]
name = "International"
pattern = '^011(\d{{7,15}})$'
translation = '+$1'
[[policy]]
name = "Global"
usages = ["International"]
[[route]]
name = "World"
pattern = '^\+\d+$'
usages = ["International"]
trunks = ["dead", "carrier"]
[[trunk]]
name = "dead"
gateway = {{ host = "127.0.0.69", port = {dead_port}, transport = "tcp" }}
[[trunk]]
name = "carrier"
gateway = {{ host = "{SBC}", port = {sbc_port}, transport = "tcp" }}
caller_in_from = true
[[trunk.called]]
name = "International prefix"
pattern = '^\+(\d+)$'
translation = '00$1'
[[trunk.inbound]]
name = "National"
pattern = '^0(\d{{10}})$'
translation = '+1$1'
"#
    );
    apply_voice(&server, &config);
    let carrier_gw = gateway(&server, CARRIER, carrier_port, "uas_call.xml");
    let sbc = common::kamailio::Kamailio::carrier_sbc(
        SBC,
        sbc_port,
        &format!("{CARRIER}:{carrier_port}"),
        &server.addr(),
        None,
    );
    wait_for_voice(&server);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !server
        .log_text()
        .contains("event=\"voice.gateway_down\" trunk=dead")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // out: Confab → TCP → Kamailio → UDP → the carrier's gateway, in the trunk's format (the
    // dead trunk skipped, not tried and failed over)
    Sipp::new(&server, "uac_call.xml")
        .args(["-s", "011442071234567", "-key", "caller", "alice"])
        .auth("alice", &server.password("alice"))
        .run()
        .assert_success("alice's international call through the carrier's SBC");
    let at_carrier = carrier_gw.assert_success("the carrier's gateway answers");
    let invite = invite_in(&at_carrier);
    assert!(
        invite.starts_with(&format!(
            "INVITE sip:00442071234567@{SBC}:{sbc_port};user=phone"
        )),
        "{invite}"
    );
    assert!(
        invite.contains("From: <sip:+14255550101@example.com;user=phone>;tag="),
        "the trunk puts the caller's number in From: {invite}"
    );
    assert!(
        invite.contains("P-Asserted-Identity: <sip:+14255550101@example.com;user=phone>"),
        "{invite}"
    );
    assert!(sbc.log().contains("carrier-sbc: INVITE"), "{}", sbc.log());

    // in: the carrier's gateway → UDP → Kamailio → TCP → Confab → bob (a SIPp device)
    let bob = common::device(&server, "bob", "uas_call.xml");
    let mut call = Sipp::toward(&format!("{SBC}:{sbc_port}"), "gateway_call_in.xml")
        .source_ip(CARRIER)
        .args(["-s", "04255550199"]);
    call = call.local_port(free_port());
    call.run()
        .assert_success("the carrier's call to bob's number");
    bob.assert_success("bob's device answers the call from the carrier");
    let log = server.log_text();
    assert!(!log.contains("event=\"voice.failover\""), "{log}");
    assert!(
        !log.contains("event=\"voice.gateway_down\" trunk=carrier"),
        "Kamailio answers its probes: {log}"
    );
}

#[test]
fn a_tls_trunk_carries_calls_only_to_a_gateway_whose_certificate_is_trusted_and_names_it() {
    const SBC: &str = "127.0.0.67";
    const CARRIER: &str = "127.0.0.68";
    let (sbc_port, sbc_tls, carrier_port) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"usages = ["Local"]
[[dial_plan]]
name = "Global"
[[dial_plan.rule]]
name = "National"
pattern = '^1?(\d{{10}})$'
translation = '+1$1'
[[policy]]
name = "Global"
usages = ["Local"]
[[route]]
name = "US"
pattern = '^\+1\d{{10}}$'
usages = ["Local"]
trunks = ["carrier"]
[[trunk]]
name = "carrier"
gateway = {{ host = "{SBC}", port = {sbc_tls}, transport = "tls" }}
"#
    );
    let start = |extra: &[&str]| {
        let server = Server::start_with(&[&["--gateway-probe", "0"], extra].concat());
        give_number(&server, "alice", "tel:+14255550101");
        apply_voice(&server, &config);
        wait_for_voice(&server);
        server
    };
    let call = |server: &Server| {
        Sipp::new(server, "uac_call.xml")
            .args(["-s", "2065550123", "-key", "caller", "alice"])
            .auth("alice", &server.password("alice"))
            .run()
    };

    // the SBC's certificate comes from the carrier's own CA: not trusted by default
    let untrusting = start(&[]);
    let sbc = common::kamailio::Kamailio::carrier_sbc(
        SBC,
        sbc_port,
        &format!("{CARRIER}:{carrier_port}"),
        &untrusting.addr(),
        Some(sbc_tls),
    );
    let refused = call(&untrusting);
    assert!(
        refused
            .trace()
            .contains("SIP/2.0 408 Request Timeout (no gateway answered or could be reached"),
        "{}",
        refused.trace()
    );
    assert!(
        !sbc.log().contains("carrier-sbc: INVITE"),
        "no call reached the SBC: {}",
        sbc.log()
    );
    assert!(
        untrusting
            .log_text()
            .contains("event=\"tls.partner_refused\""),
        "the log says why: {}",
        untrusting.log_text()
    );
    drop(untrusting);

    // trusting the carrier's CA: the call goes through, over TLS
    let ca = sbc.ca();
    let server = start(&["--gateway-trust", ca.to_str().unwrap()]);
    let carrier_gw = gateway(&server, CARRIER, carrier_port, "uas_call.xml");
    call(&server).assert_success("alice's call over the TLS trunk");
    let at_carrier = carrier_gw.assert_success("the carrier's gateway answers");
    assert!(invite_in(&at_carrier).starts_with(&format!(
        "INVITE sip:+12065550123@{SBC}:{sbc_tls};user=phone"
    )));
    assert!(sbc.log().contains("carrier-sbc: INVITE"), "{}", sbc.log());
    assert!(sbc.log().contains("over tls"), "{}", sbc.log());
}

#[test]
fn an_unanswered_call_is_forwarded_to_a_number_and_simultaneous_ring_rings_one_along() {
    let server = Server::start_with(&["--gateway-probe", "0"]);
    let set = |args: &[&str]| cli_ok(&server, args);
    let (silent, busy, pbx) = (free_port(), free_port(), free_port());
    apply_voice(&server, &voice_config(silent, busy, pbx));
    for (user, number, forwarding) in [
        (
            "bob",
            "tel:+14255550199",
            "noanswer=tel:+14255550123,noanswer-after=5",
        ),
        ("carol", "tel:+14255550188", "simring=4255550123"),
    ] {
        set(&[
            "user",
            "set",
            &format!("{user}@example.com"),
            "--line-uri",
            number,
            "--voice",
            "on",
            "--call-forwarding",
            forwarding,
        ]);
    }
    wait_for_voice(&server);
    let call = |to: &str| {
        Sipp::new(&server, "uac_call.xml")
            .args(["-s", to, "-key", "caller", "alice"])
            .auth("alice", &server.password("alice"))
            .run()
    };

    // bob's phone rings 5 s unanswered: it stops, and the PBX takes the call as bob's
    let bob = common::device(&server, "bob", "uas_ring.xml");
    let g_pbx = gateway(&server, PBX, pbx, "uas_call.xml");
    call("bob").assert_success("alice's call to bob, forwarded unanswered");
    bob.assert_success("bob's phone rang, then was CANCELled");
    let invite = invite_in(&g_pbx.assert_success("the PBX answers")).to_owned();
    assert!(
        invite.starts_with(&format!("INVITE sip:4255550123@{PBX}:{pbx};user=phone"))
            && invite.contains("P-Asserted-Identity: <sip:+14255550199@example.com;user=phone>"),
        "{invite}"
    );

    // carol's phone and the number ring together: the PBX answers first, carol's phone stops
    let carol = common::device(&server, "carol", "uas_ring.xml");
    let g_pbx = gateway(&server, PBX, pbx, "uas_call.xml");
    call("carol").assert_success("alice's call to carol, ringing a number along");
    carol.assert_success("carol's phone rang, then was CANCELled");
    let invite = invite_in(&g_pbx.assert_success("the PBX answers")).to_owned();
    assert!(invite.starts_with(&format!("INVITE sip:4255550123@{PBX}:{pbx};user=phone")));
}
