//! Any text as a URI, a name-addr (To, From, Contact, Route) or a Via: parsing never panics,
//! and a parsed SIP URI yields its address of record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_proto::header::{NameAddr, Via};
use sip_proto::Uri;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(Uri::Sip(u)) = Uri::parse(text) {
            let _ = u.aor();
            let _ = u.param("transport");
        }
        if let Ok(na) = NameAddr::parse(text, "To") {
            let _ = (na.tag(), na.param("expires"));
        }
        if let Ok(v) = Via::parse(text) {
            let _ = v.branch();
        }
    }
});
