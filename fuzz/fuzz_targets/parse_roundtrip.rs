//! Any bytes: parsing never panics; whatever parses prints to bytes that parse to the same
//! message, and decoding its headers never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_proto::{Limits, Message};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(m) = Message::parse(data.to_vec(), &limits) {
        let _ = m.validate();
        let _ = m.check_essentials();
        let _ = (m.top_via(), m.cseq(), m.from(), m.to(), m.contacts(), m.uri());
        let again = Message::parse(m.to_bytes(), &limits).expect("a printed message parses");
        assert_eq!(again, m);
    }
    let _ = sip_proto::framing::next_frame(data, limits.max_message_size);
    let _ = sip_proto::salvage_response(data, 400, "x");
});
