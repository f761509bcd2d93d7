//! The cheapest test a datagram or stream message passes before it is parsed: could it be SIP
//! at all? Under a flood, junk is dropped for the price of a look at its first line, not of
//! a parse (and not answered: answering junk would make the server an amplifier).

use crate::scan::is_token;

/// How far the first line is looked for.
const FIRST_LINE_MAX: usize = 1024;

/// Whether `bytes` can start a SIP message: after any leading CRLFs (RFC 3261 §7.5), a first
/// line that is a status line (`SIP/`...) or a request line (a method token, a space, then a
/// URI scheme or a `SIP/` version further on), within the first KiB. Anything it accepts may still fail to parse, and
/// is then answered 400 where possible; what it refuses cannot be answered anyway.
pub fn looks_like_sip(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let head = &bytes[start..bytes.len().min(start + FIRST_LINE_MAX)];
    let end = head
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(head.len());
    let line = &head[..end];
    if starts_with_sip(line) {
        return true;
    }
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    space > 0
        && line[..space].iter().all(|&b| is_token(b))
        && (starts_with_scheme(&line[space + 1..]) || line[space..].windows(4).any(starts_with_sip))
}

/// `scheme:` as a Request-URI starts (`sip:`, `tel:`, an unknown one to be refused 416): a
/// request line without a version is still answered (400), not dropped.
fn starts_with_scheme(s: &[u8]) -> bool {
    let Some(colon) = s.iter().take(32).position(|&b| b == b':') else {
        return false;
    };
    colon > 0
        && s[0].is_ascii_alphabetic()
        && s[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn starts_with_sip(s: &[u8]) -> bool {
    s.len() >= 4 && s[..3].eq_ignore_ascii_case(b"SIP") && s[3] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_pass() {
        assert!(looks_like_sip(
            b"REGISTER sip:example.com SIP/2.0\r\nVia: x\r\n\r\n"
        ));
        assert!(looks_like_sip(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(looks_like_sip(b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\n"));
        assert!(looks_like_sip(b"INVITE sip:a sip/2.0\r\n"));
        // a bad version is SIP enough to be answered 505
        assert!(looks_like_sip(b"OPTIONS sip:a SIP/7.0\r\n"));
        // and so is a request line that lost its version (400)
        assert!(looks_like_sip(b"INVITE sip:alan@jasomi.com\r\nTO : x\r\n"));
    }

    #[test]
    fn junk_does_not() {
        assert!(!looks_like_sip(b""));
        assert!(!looks_like_sip(b"\r\n"));
        assert!(!looks_like_sip(b"\x00\x01\x02\x03 SIP/2.0"));
        assert!(!looks_like_sip(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_like_sip(b"hello world"));
        assert!(!looks_like_sip(b" INVITE sip:a SIP/2.0\r\n"));
        let mut long = vec![b'A'; 2000];
        long.extend_from_slice(b" SIP/2.0\r\n");
        assert!(!looks_like_sip(&long));
    }
}
