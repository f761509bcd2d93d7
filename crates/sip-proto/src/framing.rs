//! Cutting a byte stream (TCP, TLS) into messages by Content-Length (RFC 3261 §18.3), and the
//! CRLF keep-alive of RFC 5626 §3.5.1. Sans-IO: the transport feeds bytes, this says what they are.

use crate::error::{ParseError, Result};
use crate::header::{parse_content_length, HeaderName};

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A double-CRLF keep-alive ping (4 bytes); answer with a single CRLF pong.
    Ping,
    /// A lone CRLF (2 bytes) to skip, e.g. a pong or stray line ending.
    Skip,
    /// A complete message of this many bytes.
    Message(usize),
    /// More bytes are needed.
    Incomplete,
}

/// Inspects the front of `buf`. Fails when the message cannot be framed (bad or conflicting
/// Content-Length) or would exceed `max` bytes; the connection should then be closed.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Frame> {
    if buf.starts_with(b"\r\n") {
        return Ok(if buf.starts_with(b"\r\n\r\n") {
            Frame::Ping
        } else if buf.len() < 4 && b"\r\n\r\n".starts_with(buf) {
            Frame::Incomplete
        } else {
            Frame::Skip
        });
    }
    let Some(head_end) = find(buf, b"\r\n\r\n").map(|i| i + 4) else {
        return if buf.len() > max {
            Err(ParseError::TooLarge)
        } else {
            Ok(Frame::Incomplete)
        };
    };
    let mut length: Option<usize> = None;
    for line in buf[..head_end].split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if HeaderName::from_bytes(name) == HeaderName::ContentLength {
            let v =
                std::str::from_utf8(&line[colon + 1..]).map_err(|_| ParseError::ContentLength)?;
            let n = parse_content_length(v)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::ContentLength);
            }
            length = Some(n);
        }
    }
    // RFC 3261 §18.3: Content-Length is mandatory on streams; without it the body is empty.
    let total = head_end + length.unwrap_or(0);
    if total > max {
        return Err(ParseError::TooLarge);
    }
    Ok(if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::Incomplete
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_pong_and_partial_pings() {
        assert_eq!(next_frame(b"\r\n\r\nOPTIONS", 100).unwrap(), Frame::Ping);
        assert_eq!(next_frame(b"\r\n", 100).unwrap(), Frame::Incomplete);
        assert_eq!(next_frame(b"\r\nOPTIONS", 100).unwrap(), Frame::Skip);
    }

    #[test]
    fn messages_are_cut_by_content_length() {
        let m = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhelloNEXT";
        assert_eq!(next_frame(m, 1000).unwrap(), Frame::Message(m.len() - 4));
        assert_eq!(next_frame(&m[..20], 1000).unwrap(), Frame::Incomplete);
        assert_eq!(
            next_frame(&m[..m.len() - 6], 1000).unwrap(),
            Frame::Incomplete
        );
    }

    #[test]
    fn oversized_and_bad_lengths_fail() {
        assert_eq!(next_frame(&[b'A'; 200], 100), Err(ParseError::TooLarge));
        assert!(next_frame(b"X sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n", 100).is_err());
        assert!(next_frame(b"X sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n", 100).is_err());
        assert_eq!(
            next_frame(b"X sip:a SIP/2.0\r\nl: 500\r\n\r\n", 100),
            Err(ParseError::TooLarge)
        );
    }
}
