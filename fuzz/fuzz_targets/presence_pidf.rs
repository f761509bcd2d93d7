//! Any bytes as a published presence document: reading never panics; a document that reads
//! yields an availability.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = confab_core::presence::read_pidf(data);
});
