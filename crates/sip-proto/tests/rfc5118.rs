//! RFC 5118 IPv6 torture messages (written for Confab from the RFC's case descriptions, see
//! tests/fixtures/rfc5118/README.md): the parser's verdict on each must agree with
//! EXPECTED.tsv, and the addresses must decode to what they say.

use std::path::Path;

use sip_proto::{HeaderName, Limits, Message, Uri};

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc5118")
}

fn verdict(file: &str) -> Result<Message, String> {
    let bytes = std::fs::read(dir().join(file)).unwrap();
    let m = Message::parse(bytes, &Limits::default()).map_err(|e| e.to_string())?;
    m.validate().map_err(|e| e.to_string())?;
    Ok(m)
}

#[test]
fn every_ipv6_torture_message_gets_the_expected_parser_verdict() {
    let table = std::fs::read_to_string(dir().join("EXPECTED.tsv")).unwrap();
    let mut wrong = Vec::new();
    let rows: Vec<&str> = table.lines().skip(1).filter(|l| !l.is_empty()).collect();
    for row in &rows {
        let cols: Vec<&str> = row.split('\t').collect();
        let got = verdict(cols[0]);
        let word = if got.is_ok() { "valid" } else { "invalid" };
        if word != cols[1] {
            wrong.push(format!(
                "{}: expected {}, got {word} ({:?})",
                cols[0],
                cols[1],
                got.err()
            ));
        }
    }
    assert_eq!(rows.len(), 11);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn host_port(uri: &str) -> (String, Option<u16>) {
    match Uri::parse(uri).unwrap() {
        Uri::Sip(u) => (u.host.to_owned(), u.port),
        other => panic!("not a SIP URI: {other:?}"),
    }
}

#[test]
fn brackets_decide_where_the_port_is() {
    let amb = verdict("port-ambiguous.sip").unwrap();
    assert_eq!(
        host_port(amb.uri_str()),
        ("[2001:db8::10:5070]".into(), None)
    );
    let unamb = verdict("port-unambiguous.sip").unwrap();
    assert_eq!(
        host_port(unamb.uri_str()),
        ("[2001:db8::10]".into(), Some(5070))
    );
    let tail = verdict("ipv4-tail.sip").unwrap();
    assert_eq!(host_port(tail.uri_str()).0, "[2001:db8::192.0.2.1]");
}

#[test]
fn via_hosts_and_received_parameters_in_both_forms() {
    let m = verdict("via-received.sip").unwrap();
    let top = m.top_via().unwrap();
    assert_eq!((top.host, top.port), ("[2001:db8::9:1]", Some(6050)));
    let vias: Vec<&str> = m.values(HeaderName::Via).filter_map(Result::ok).collect();
    assert_eq!(vias.len(), 3);
    assert!(vias[1].contains("received=2001:db8::9:255"));
    assert!(vias[2].contains("received=[2001:db8::9:255]"));
    let mixed = verdict("mixed-via.sip").unwrap();
    assert_eq!(mixed.values(HeaderName::Via).count(), 2);
}

#[test]
fn an_ipv6_address_without_brackets_is_refused_with_a_reason() {
    assert_eq!(
        verdict("ipv6-bad.sip").unwrap_err(),
        "Malformed Request-URI"
    );
    assert!(verdict("via-no-brackets.sip").unwrap_err().contains("Via"));
}
