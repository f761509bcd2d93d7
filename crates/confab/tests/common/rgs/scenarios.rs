//! SIPp scenarios written for each test from the fragments in `tests/sipp/rgs/`: callers that
//! press keys (SIPp's own RFC 4733 recordings) and end their call one way or another, and
//! agents that answer and talk (SIPp's G.711 recording).

use super::PCAPS;

pub(crate) const CALLER_HEAD: &str = include_str!("../../../../../tests/sipp/rgs/caller-head.xml");
const REINVITE_ANSWERED: &str = include_str!("../../../../../tests/sipp/rgs/reinvite-answered.xml");
pub(crate) const CALLER_BYE: &str = include_str!("../../../../../tests/sipp/rgs/caller-bye.xml");
pub(crate) const SERVER_BYE: &str = include_str!("../../../../../tests/sipp/rgs/server-bye.xml");
const AGENT_ANSWERING: &str = include_str!("../../../../../tests/sipp/rgs/agent-answering.xml");

/// How a caller's call ends.
#[derive(Clone, Copy)]
pub(crate) enum End {
    /// Waits for the server's re-INVITE (an agent answered), answers it, talks for this long,
    /// hangs up.
    Connected { talk_ms: u64 },
    /// Hangs up after this long in the workflow.
    HangUp { after_ms: u64 },
    /// The server ends the call (a disconnect action, no key pressed).
    ServerHangsUp,
}

/// A caller: keys pressed (names of SIPp's recordings: "1", "pound") after a pause, then `end`.
pub(crate) fn caller_xml(keys: &[&str], keys_after_ms: u64, end: End) -> String {
    with_head(CALLER_HEAD.to_owned(), keys, keys_after_ms, end)
}

/// A caller trusted without credentials (a phone-network gateway): no 407 to answer.
pub(crate) fn trusted_caller_xml(end: End) -> String {
    with_head(trusted_head(), &[], 0, end)
}

/// [`CALLER_HEAD`] for a caller trusted without credentials: its INVITE once, no 407.
pub(crate) fn trusted_head() -> String {
    let first = CALLER_HEAD.find("  <send retrans").unwrap();
    let second = CALLER_HEAD[first + 1..].find("  <send retrans").unwrap() + first + 1;
    format!("{}{}", &CALLER_HEAD[..first], &CALLER_HEAD[second..]).replace("[authentication]\n", "")
}

fn with_head(head: String, keys: &[&str], keys_after_ms: u64, end: End) -> String {
    let mut s = head;
    if !keys.is_empty() {
        s.push_str(&format!("  <pause milliseconds=\"{keys_after_ms}\"/>\n"));
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                // the recording lasts about 200 ms: the next key after it
                s.push_str("  <pause milliseconds=\"1500\"/>\n");
            }
            s.push_str(&format!(
                "  <nop><action><exec play_pcap_audio=\"{PCAPS}/dtmf_2833_{k}.pcap\"/></action></nop>\n"
            ));
        }
    }
    match end {
        End::Connected { talk_ms } => {
            s.push_str(REINVITE_ANSWERED);
            s.push_str(&format!("  <pause milliseconds=\"{talk_ms}\"/>\n"));
            s.push_str(CALLER_BYE);
        }
        End::HangUp { after_ms } => {
            s.push_str(&format!("  <pause milliseconds=\"{after_ms}\"/>\n"));
            s.push_str(CALLER_BYE);
        }
        End::ServerHangsUp => s.push_str(SERVER_BYE),
    }
    s.push_str("</scenario>\n");
    s
}

/// An agent that answers (after ringing `ring_ms`) and then plays SIPp's G.711 recording
/// until the call ends.
pub(crate) fn agent_answering_xml(ring_ms: u64) -> String {
    AGENT_ANSWERING
        .replace("{RING_MS}", &ring_ms.to_string())
        .replace("{PCAPS}", PCAPS)
}
