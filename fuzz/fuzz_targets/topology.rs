//! Any text as a topology file: loading never panics; a topology that loads can be validated
//! and yields its DNS records and certificate plan without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = confab_topology::load(text, "fuzz.toml") {
            let _ = confab_topology::validate(&t);
            let _ = t.records(confab_topology::View::Internal);
            let _ = t.zones(confab_topology::View::External);
            let _ = confab_topology::cert_plan(&t);
        }
    }
});
