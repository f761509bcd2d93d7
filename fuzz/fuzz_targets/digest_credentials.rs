//! Any text as an Authorization / Proxy-Authorization value: parsing never panics, and what
//! parses has the fields digest verification relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(c) = sip_auth::Credentials::parse(text) {
            let _ = (c.username.len(), c.realm.len());
        }
    }
});
