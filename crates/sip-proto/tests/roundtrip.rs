//! parse(print(m)) == m: for generated messages (property test) and for every valid RFC 4475
//! torture message.

use proptest::prelude::*;
use sip_proto::{HeaderName, Limits, Message, Writer};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Via".to_owned()),
        Just("v".to_owned()),
        Just("From".to_owned()),
        Just("To".to_owned()),
        Just("Call-ID".to_owned()),
        Just("i".to_owned()),
        Just("CSeq".to_owned()),
        Just("Contact".to_owned()),
        Just("Route".to_owned()),
        Just("Subject".to_owned()),
        // any token but a Content-Length name (`l` is its compact form): the writer adds that
        token().prop_filter("not Content-Length", |t| HeaderName::from_bytes(
            t.as_bytes()
        ) != HeaderName::ContentLength),
    ]
}

/// A header value: printable text, possibly folded onto continuation lines.
fn header_value() -> impl Strategy<Value = String> {
    prop::collection::vec("[!-~]([ -~]{0,20}[!-~])?", 1..3).prop_map(|parts| parts.join("\r\n "))
}

prop_compose! {
    fn message()(
        request in any::<bool>(),
        method in token(),
        user in "[a-z0-9]{1,8}",
        host in "[a-z]{1,8}\\.example\\.(com|org)",
        code in 100u16..700,
        reason in "[A-Za-z ]{0,20}",
        headers in prop::collection::vec((header_name(), header_value()), 0..12),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) -> (Vec<u8>, Vec<(String, String)>, Vec<u8>) {
        let mut w = if request {
            Writer::request(&method, &format!("sip:{user}@{host}"))
        } else {
            Writer::response(code, reason.trim())
        };
        for (n, v) in &headers {
            w.header(n, v);
        }
        (w.finish(&body), headers, body)
    }
}

proptest! {
    #[test]
    fn printing_a_parsed_message_and_parsing_it_again_gives_the_same_message((bytes, headers, body) in message()) {
        let m = Message::parse(bytes, &Limits::default()).unwrap();
        prop_assert_eq!(m.body(), &body[..]);
        let fields: Vec<(String, String)> = m
            .fields()
            .filter(|(n, _, _)| *n != HeaderName::ContentLength)
            .map(|(_, n, v)| (String::from_utf8(n.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
            .collect();
        prop_assert_eq!(&fields, &headers);
        let again = Message::parse(m.to_bytes(), &Limits::default()).unwrap();
        prop_assert_eq!(again, m);
    }
}

#[test]
fn valid_torture_messages_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "dat") {
            continue;
        }
        let Ok(m) = Message::parse(std::fs::read(&p).unwrap(), &Limits::default()) else {
            continue;
        };
        let again = Message::parse(m.to_bytes(), &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(again, m, "{}", p.display());
        n += 1;
    }
    assert!(n >= 35, "only {n} torture messages parsed");
}
