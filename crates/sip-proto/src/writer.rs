//! Building outgoing messages into one buffer: responses to a request, forwarded requests, new
//! requests. Content-Length is always written from the body actually sent.

use crate::header::HeaderName;
use crate::message::Message;

/// A message under construction.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts a request line.
    pub fn request(method: &str, uri: &str) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(method.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(uri.as_bytes());
        buf.extend_from_slice(b" SIP/2.0\r\n");
        Self { buf }
    }

    /// Starts a status line.
    pub fn response(code: u16, reason: &str) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
        Self { buf }
    }

    /// Starts a response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID and CSeq copied; a
    /// To tag added when the request had none and the response is not 100 Trying.
    pub fn response_to(req: &Message, code: u16, reason: &str, to_tag: &str) -> Self {
        let mut w = Self::response(code, reason);
        for (name, n, v) in req.fields() {
            match name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    w.raw(n, v)
                }
                HeaderName::To => {
                    let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
                    if has_tag || code == 100 || to_tag.is_empty() {
                        w.raw(n, v);
                    } else {
                        w.buf.extend_from_slice(n);
                        w.buf.extend_from_slice(b": ");
                        w.buf.extend_from_slice(v);
                        w.buf.extend_from_slice(b";tag=");
                        w.buf.extend_from_slice(to_tag.as_bytes());
                        w.buf.extend_from_slice(b"\r\n");
                    }
                }
                _ => {}
            }
        }
        w
    }

    /// Adds a header field.
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.raw(name.as_bytes(), value.as_ref());
        self
    }

    /// Adds a header field from raw name and value bytes.
    pub fn raw(&mut self, name: &[u8], value: &[u8]) {
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b": ");
        self.buf.extend_from_slice(value);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Ends the header section with Content-Length and appends the body.
    pub fn finish(mut self, body: &[u8]) -> Vec<u8> {
        self.buf
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.buf.extend_from_slice(body);
        self.buf
    }
}

/// Builds an error response for a request too malformed to parse, when its Via, From, To,
/// Call-ID and CSeq lines can still be found (RFC 4475 §3.1.2 asks for a 400 where one can be
/// built). Returns `None` for responses, ACKs and hopeless input: those are dropped.
pub fn salvage_response(bytes: &[u8], code: u16, reason: &str) -> Option<Vec<u8>> {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let mut lines = bytes[..head_end]
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    if first.starts_with(b"SIP/") || first.starts_with(b"ACK ") {
        return None;
    }
    let wanted = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ];
    let mut found: Vec<(HeaderName, &[u8])> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        if wanted.contains(&name) {
            found.push((name, line[colon + 1..].trim_ascii()));
        }
    }
    if !wanted.iter().all(|w| found.iter().any(|(n, _)| n == w)) {
        return None;
    }
    let mut w = Writer::response(code, reason);
    for want in wanted {
        for (n, v) in found.iter().filter(|(n, _)| *n == want) {
            w.raw(n.as_str().as_bytes(), v);
        }
    }
    Some(w.finish(b""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Limits;

    #[test]
    fn unparseable_request_with_dialog_headers_gets_a_response() {
        let bad = b"INVITE  sip:user@example.com  SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
        let r = Message::parse(
            salvage_response(bad, 400, "Malformed Request-URI").unwrap(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((r.status(), r.reason()), (400, "Malformed Request-URI"));
        assert_eq!(r.call_id().unwrap(), "x");
        assert!(salvage_response(b"SIP/2.0 200 OK\r\n\r\n", 400, "x").is_none());
        assert!(salvage_response(b"garbage", 400, "x").is_none());
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_to_tag() {
        let req = Message::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP g\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n".to_vec(),
            &Limits::default(),
        )
        .unwrap();
        let mut w = Writer::response_to(&req, 200, "OK", "srv");
        w.header("Allow", "INVITE, ACK");
        let resp = Message::parse(w.finish(b""), &Limits::default()).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.count(HeaderName::Via), 2);
        assert_eq!(resp.to().unwrap().tag(), Some("srv"));
        assert_eq!(resp.count(HeaderName::MaxForwards), 0);
        assert_eq!(resp.raw_header(HeaderName::ContentLength), Some(&b"0"[..]));
    }
}
