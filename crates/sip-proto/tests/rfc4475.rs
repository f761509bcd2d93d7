//! RFC 4475 torture messages: the parser's verdict on each must agree with the
//! `parser_verdict` column of EXPECTED.tsv (a message is valid when it parses and every header
//! Confab knows decodes).

use std::path::Path;

use sip_proto::{Limits, Message};

fn verdict(bytes: &[u8]) -> Result<Message, String> {
    let m = Message::parse(bytes.to_vec(), &Limits::default()).map_err(|e| e.to_string())?;
    m.validate().map_err(|e| e.to_string())?;
    Ok(m)
}

#[test]
fn every_torture_message_gets_the_expected_parser_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let table = std::fs::read_to_string(dir.join("EXPECTED.tsv")).unwrap();
    let mut agree = 0;
    let mut disagreements = Vec::new();
    let rows: Vec<&str> = table.lines().skip(1).filter(|l| !l.is_empty()).collect();
    for row in &rows {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, expected) = (cols[0], cols[2]);
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let got = verdict(&bytes);
        let got_word = if got.is_ok() { "valid" } else { "invalid" };
        if got_word == expected {
            agree += 1;
        } else {
            disagreements.push(format!(
                "{file}: expected {expected}, parser said {got_word} ({:?})",
                got.err()
            ));
        }
    }
    println!(
        "RFC 4475 parser classification: {agree}/{} agree with EXPECTED.tsv",
        rows.len()
    );
    assert_eq!(rows.len(), 50, "EXPECTED.tsv lists 50 messages");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn invalid_messages_name_what_is_wrong() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let err = |f: &str| verdict(&std::fs::read(dir.join(f)).unwrap()).unwrap_err();
    assert_eq!(err("TC_NCL_I.dat"), "Malformed Content-Length");
    assert_eq!(err("TC_CLERR_I.dat"), "Content-Length larger than message");
    assert_eq!(err("TC_BADVERS_V.dat"), "Version Not Supported");
    assert_eq!(err("TC_BADDATE_V.dat"), "Malformed Date header");
    assert_eq!(
        err("TC_MISMATCH01_V.dat"),
        "CSeq method does not match request method"
    );
    assert_eq!(err("TC_LTGTRURI_I.dat"), "Malformed Request-URI");
    assert_eq!(err("TC_BIGCODE_V.dat"), "Malformed status code");
}

#[test]
fn valid_messages_decode_to_what_they_say() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let ok = |f: &str| verdict(&std::fs::read(dir.join(f)).unwrap()).unwrap();
    let m = ok("TC_WSINV.dat");
    assert_eq!(m.method_str(), "INVITE");
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.values(sip_proto::HeaderName::Via).count(), 3);
    assert_eq!(m.body().len(), 150);
    let d = ok("TC_DBLREQ.dat");
    assert_eq!(d.method_str(), "REGISTER");
    assert!(
        d.body().is_empty(),
        "octets after Content-Length are not the body"
    );
    let e = ok("TC_ESC02_V.dat");
    assert_eq!(
        e.contacts().unwrap().len(),
        2,
        "C%6Fntact is an extension header, not Contact"
    );
}

#[test]
fn every_torture_message_passes_the_prefilter() {
    // the prefilter drops only what cannot be SIP: every torture message, valid or not, goes
    // on to the parser (and an invalid one gets its 400)
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "dat") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(sip_proto::looks_like_sip(&bytes), "{}", path.display());
            n += 1;
        }
    }
    assert_eq!(n, 50);
}
