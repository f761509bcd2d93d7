//! Building outgoing messages into one buffer: responses to a request, forwarded requests, new
//! requests. Content-Length is always written from the body actually sent.

use smallvec::SmallVec;

use crate::header::HeaderName;
use crate::message::{span, Field, Message, Span, StartLine};
use crate::method::Method;

/// A message under construction. It notes where its start line and each field lie as it
/// writes them, so [`Writer::finish_message`] gives a [`Message`] without parsing it again.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    start: StartLine,
    /// Where each field's name and value lie; names are classified only when a
    /// [`Message`] is asked for (most of what is written is sent as bytes).
    fields: SmallVec<[(Span, Span); 16]>,
}

impl Writer {
    /// Starts a request line.
    pub fn request(method: &str, uri: &str) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(method.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(uri.as_bytes());
        let uri_end = buf.len();
        buf.extend_from_slice(b" SIP/2.0\r\n");
        let start = StartLine::Request {
            method: Method::from_bytes(method.as_bytes()),
            method_span: span(0..method.len()),
            uri_span: span(method.len() + 1..uri_end),
        };
        Self {
            buf,
            start,
            fields: SmallVec::new(),
        }
    }

    /// Starts a status line.
    pub fn response(code: u16, reason: &str) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
        let reason_start = buf.len() - 2 - reason.len();
        let start = StartLine::Response {
            code,
            reason_span: span(reason_start..buf.len() - 2),
        };
        Self {
            buf,
            start,
            fields: SmallVec::new(),
        }
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
                        w.field(n, &[v, b";tag=", to_tag.as_bytes()]);
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
        self.field(name, &[value]);
    }

    /// A field whose value is `parts` one after the other.
    fn field(&mut self, name: &[u8], parts: &[&[u8]]) {
        let name_start = self.buf.len();
        self.buf.extend_from_slice(name);
        let name_end = self.buf.len();
        self.buf.extend_from_slice(b": ");
        let value_start = self.buf.len();
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        let value_end = self.buf.len();
        self.buf.extend_from_slice(b"\r\n");
        self.fields
            .push((span(name_start..name_end), span(value_start..value_end)));
    }

    /// Ends the header section with Content-Length and appends the body.
    pub fn finish(mut self, body: &[u8]) -> Vec<u8> {
        self.end(body);
        self.buf
    }

    /// As [`Writer::finish`], as a [`Message`] ready for a transaction: nothing is parsed
    /// again.
    pub fn finish_message(mut self, body: &[u8]) -> Message {
        let body = self.end(body);
        let buf = &self.buf;
        let fields = self
            .fields
            .iter()
            .map(|&(name_span, value_span)| Field {
                name: HeaderName::from_bytes(&buf[name_span.0 as usize..name_span.1 as usize]),
                name_span,
                value_span,
            })
            .collect();
        Message::from_parts(self.buf, self.start, fields, body)
    }

    fn end(&mut self, body: &[u8]) -> Span {
        self.field(b"Content-Length", &[body.len().to_string().as_bytes()]);
        self.buf.extend_from_slice(b"\r\n");
        let start = self.buf.len();
        self.buf.extend_from_slice(body);
        span(start..self.buf.len())
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

    type View = (
        bool,
        String,
        String,
        u16,
        String,
        Vec<(HeaderName, Vec<u8>, Vec<u8>)>,
        Vec<u8>,
    );

    /// Everything a reader of the message can see.
    fn view(m: &Message) -> View {
        let (method, uri) = if m.is_request() {
            (m.method_str().to_owned(), m.uri_str().to_owned())
        } else {
            (String::new(), String::new())
        };
        let (status, reason) = if m.is_request() {
            (0, String::new())
        } else {
            (m.status(), m.reason().to_owned())
        };
        let fields = m
            .fields()
            .map(|(h, n, v)| (h, n.to_vec(), v.to_vec()))
            .collect();
        (
            m.is_request(),
            method,
            uri,
            status,
            reason,
            fields,
            m.body().to_vec(),
        )
    }

    #[test]
    fn a_built_message_is_the_message_its_bytes_parse_to() {
        let req = Message::parse(
            b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nSubject: a\r\n long one\r\nContent-Length: 0\r\n\r\n".to_vec(),
            &Limits::default(),
        )
        .unwrap();
        let mut w = Writer::request("INVITE", "sip:bob@10.0.0.2:5062;transport=tcp");
        w.header("Via", "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKx");
        for (_, n, v) in req.fields() {
            w.raw(n, v);
        }
        w.header("i", "compact-call-id");
        let built = w.finish_message(b"v=0\r\n");
        let parsed = Message::parse(built.as_bytes().to_vec(), &Limits::default()).unwrap();
        assert_eq!(view(&built), view(&parsed));
        assert_eq!(
            built.call_id().unwrap(),
            "c",
            "the first Call-ID, as parsed"
        );
        let resp = Writer::response_to(&req, 486, "Busy Here", "t9").finish_message(b"");
        let parsed = Message::parse(resp.as_bytes().to_vec(), &Limits::default()).unwrap();
        assert_eq!(view(&resp), view(&parsed));
        assert_eq!(resp.to().unwrap().tag(), Some("t9"));
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
