//! The message model: one owned buffer, the start line and each header field kept as byte ranges
//! into it. Header values are decoded only when asked for (typed views in [`crate::header`]);
//! [`Message::validate`] decodes every header Confab knows, for the sanity stage and for tests.

use std::fmt;
use std::ops::Range;

use crate::error::{ParseError, Result};
use crate::header::{
    parse_content_length, parse_delta_seconds, parse_max_forwards, parse_media_type,
    parse_retry_after, split_list, validate_date, validate_option_tag, CSeq, ContactValue,
    HeaderName, NameAddr, Via,
};
use crate::method::Method;
use crate::scan::is_token;
use crate::uri::Uri;

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message, start line to end of body (default 64 KiB).
    pub max_message_size: usize,
    /// Most header fields (default 256).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_headers: 256,
        }
    }
}

pub(crate) type Span = (u32, u32);

pub(crate) fn span(r: Range<usize>) -> Span {
    (r.start as u32, r.end as u32)
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: HeaderName,
    pub(crate) name_span: Span,
    pub(crate) value_span: Span,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri_span: Span,
    },
    Response {
        code: u16,
        reason_span: Span,
    },
}

/// A parsed SIP request or response.
#[derive(Clone)]
pub struct Message {
    buf: Vec<u8>,
    start: StartLine,
    fields: Vec<Field>,
    body: Span,
}

impl Message {
    /// Parses one message. Content-Length, when present once, bounds the body and octets past it
    /// are ignored (RFC 3261 §18.3); when absent the body runs to the end of the buffer (a
    /// datagram). Several Content-Length fields are left for [`Message::check_essentials`].
    pub fn parse(buf: Vec<u8>, limits: &Limits) -> Result<Self> {
        Self::try_parse(buf, limits).map_err(|(e, _)| e)
    }

    /// Like [`Message::parse`], but hands the bytes back on failure so that an error response
    /// can still be salvaged from them.
    pub fn try_parse(
        buf: Vec<u8>,
        limits: &Limits,
    ) -> std::result::Result<Self, (ParseError, Vec<u8>)> {
        match parse_parts(&buf, limits) {
            Ok((start, fields, body)) => Ok(Self {
                buf,
                start,
                fields,
                body,
            }),
            Err(e) => Err((e, buf)),
        }
    }

    /// A message whose parts are known already: what [`crate::Writer`] built.
    pub(crate) fn from_parts(
        buf: Vec<u8>,
        start: StartLine,
        fields: Vec<Field>,
        body: Span,
    ) -> Self {
        Self {
            buf,
            start,
            fields,
            body,
        }
    }

    /// The message's bytes, given up.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method ([`Method::Other`] for extensions and for responses; see
    /// [`Message::method_str`]).
    pub fn method(&self) -> Method {
        match self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => Method::Other,
        }
    }

    /// The request method as written; empty for a response.
    pub fn method_str(&self) -> &str {
        match self.start {
            StartLine::Request { method_span, .. } => self.str_at(method_span),
            StartLine::Response { .. } => "",
        }
    }

    /// The Request-URI text; empty for a response.
    pub fn uri_str(&self) -> &str {
        match self.start {
            StartLine::Request { uri_span, .. } => self.str_at(uri_span),
            StartLine::Response { .. } => "",
        }
    }

    /// The Request-URI, decoded.
    pub fn uri(&self) -> Result<Uri<'_>> {
        Uri::parse(self.uri_str()).map_err(|_| ParseError::RequestUri)
    }

    /// The status code; 0 for a request.
    pub fn status(&self) -> u16 {
        match self.start {
            StartLine::Response { code, .. } => code,
            StartLine::Request { .. } => 0,
        }
    }

    /// The reason phrase; empty for a request.
    pub fn reason(&self) -> &str {
        match self.start {
            StartLine::Response { reason_span, .. } => self.str_at(reason_span),
            StartLine::Request { .. } => "",
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.0 as usize..self.body.1 as usize]
    }

    /// The bytes as received (up to the end of the body).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.body.1 as usize]
    }

    /// Every header field in order: (name as written, value as written).
    pub fn fields(&self) -> impl Iterator<Item = (HeaderName, &[u8], &[u8])> {
        self.fields
            .iter()
            .map(|f| (f.name, self.at(f.name_span), self.at(f.value_span)))
    }

    /// The raw values of every field named `name` (one per header line).
    pub fn raw_headers(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.fields
            .iter()
            .filter(move |f| f.name == name)
            .map(|f| self.at(f.value_span))
    }

    /// The first raw value of `name`.
    pub fn raw_header(&self, name: HeaderName) -> Option<&[u8]> {
        self.raw_headers(name).next()
    }

    /// The first value of `name` as text.
    pub fn header_str(&self, name: HeaderName) -> Result<Option<&str>> {
        self.raw_header(name)
            .map(|v| std::str::from_utf8(v).map_err(|_| ParseError::NotUtf8))
            .transpose()
    }

    /// Every value of a list header, comma-separated values split apart, as text.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = Result<&str>> {
        self.raw_headers(name)
            .flat_map(move |v| items(name, v))
            .map(|v| std::str::from_utf8(v).map_err(|_| ParseError::NotUtf8))
    }

    /// The first value of a header Confab has no name for (`SIP-If-Match`, `SIP-ETag`, ...),
    /// found by its written name ignoring case; `None` when absent or not UTF-8.
    pub fn header_named(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .filter(|f| f.name == HeaderName::Other)
            .find(|f| self.at(f.name_span).eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|f| std::str::from_utf8(self.at(f.value_span)).ok())
    }

    /// How many header lines carry `name`.
    pub fn count(&self, name: HeaderName) -> usize {
        self.fields.iter().filter(|f| f.name == name).count()
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'_>> {
        let v = self
            .values(HeaderName::Via)
            .next()
            .ok_or(ParseError::Header("Via"))??;
        Via::parse(v)
    }

    pub fn cseq(&self) -> Result<CSeq<'_>> {
        CSeq::parse(
            self.header_str(HeaderName::CSeq)?
                .ok_or(ParseError::Header("CSeq"))?,
        )
    }

    pub fn from(&self) -> Result<NameAddr<'_>> {
        NameAddr::parse(
            self.header_str(HeaderName::From)?
                .ok_or(ParseError::Header("From"))?,
            "From",
        )
    }

    pub fn to(&self) -> Result<NameAddr<'_>> {
        NameAddr::parse(
            self.header_str(HeaderName::To)?
                .ok_or(ParseError::Header("To"))?,
            "To",
        )
    }

    pub fn call_id(&self) -> Result<&str> {
        self.header_str(HeaderName::CallId)?
            .ok_or(ParseError::Header("Call-ID"))
    }

    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Result<Option<u8>> {
        self.header_str(HeaderName::MaxForwards)?
            .map(parse_max_forwards)
            .transpose()
    }

    /// Expires header, if present.
    pub fn expires(&self) -> Result<Option<u32>> {
        self.header_str(HeaderName::Expires)?
            .map(|v| parse_delta_seconds(v, "Expires"))
            .transpose()
    }

    /// Every Contact value.
    pub fn contacts(&self) -> Result<Vec<ContactValue<'_>>> {
        self.values(HeaderName::Contact)
            .map(|v| ContactValue::parse(v?))
            .collect()
    }

    /// Every value of a route-like header (Route, Record-Route, Path).
    pub fn name_addrs(&self, name: HeaderName) -> Result<Vec<NameAddr<'_>>> {
        self.values(name)
            .map(|v| NameAddr::parse(v?, name.as_str()))
            .collect()
    }

    /// Decodes every header Confab knows and checks the CSeq method; an error names the header.
    pub fn validate(&self) -> Result<()> {
        if let StartLine::Request { method_span, .. } = self.start {
            if let Uri::Sip(u) = self.uri()? {
                if u.headers.is_some() {
                    return Err(ParseError::RequestUri);
                }
            }
            if let Some(c) = self.raw_header(HeaderName::CSeq) {
                let c = CSeq::parse(std::str::from_utf8(c).map_err(|_| ParseError::NotUtf8)?)?;
                if c.method != self.str_at(method_span) {
                    return Err(ParseError::CSeqMismatch);
                }
            }
        }
        for f in &self.fields {
            let name = f.name;
            if name == HeaderName::Other {
                continue;
            }
            for v in items(name, self.at(f.value_span)) {
                let v = std::str::from_utf8(v).map_err(|_| ParseError::NotUtf8)?;
                validate_value(name, v)?;
            }
        }
        Ok(())
    }

    /// Checks what a request must carry to be processed at all (RFC 3261 §8.1.1, §20): To, From,
    /// Call-ID, CSeq, Via present, and single-valued fields present once.
    pub fn check_essentials(&self) -> std::result::Result<(), Malformed> {
        for (name, text) in [
            (HeaderName::Via, "Via"),
            (HeaderName::To, "To"),
            (HeaderName::From, "From"),
            (HeaderName::CallId, "Call-ID"),
            (HeaderName::CSeq, "CSeq"),
        ] {
            if self.count(name) == 0 {
                return Err(Malformed::Missing(text));
            }
        }
        for (name, text) in [
            (HeaderName::To, "To"),
            (HeaderName::From, "From"),
            (HeaderName::CallId, "Call-ID"),
            (HeaderName::CSeq, "CSeq"),
            (HeaderName::MaxForwards, "Max-Forwards"),
            (HeaderName::ContentLength, "Content-Length"),
            (HeaderName::ContentType, "Content-Type"),
            (HeaderName::Expires, "Expires"),
        ] {
            if self.count(name) > 1 {
                return Err(Malformed::Duplicate(text));
            }
        }
        Ok(())
    }

    /// Prints the message: the start line in canonical form, each field as `Name: value` with the
    /// name and value as received (folds kept), then the body.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self.start {
            StartLine::Request { .. } => {
                out.extend_from_slice(self.method_str().as_bytes());
                out.push(b' ');
                out.extend_from_slice(self.uri_str().as_bytes());
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, .. } => {
                out.extend_from_slice(format!("SIP/2.0 {code:03} ").as_bytes());
                out.extend_from_slice(self.reason().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        for (_, n, v) in self.fields() {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body());
    }

    /// The printed message as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buf.len() + 16);
        self.write_to(&mut out);
        out
    }

    fn at(&self, s: Span) -> &[u8] {
        &self.buf[s.0 as usize..s.1 as usize]
    }

    fn str_at(&self, s: Span) -> &str {
        // spans handed to this are checked as UTF-8 (or ASCII) when parsed
        std::str::from_utf8(self.at(s)).unwrap_or("")
    }
}

type Parts = (StartLine, Vec<Field>, Span);

fn parse_parts(buf: &[u8], limits: &Limits) -> Result<Parts> {
    if buf.len() > limits.max_message_size {
        return Err(ParseError::TooLarge);
    }
    let mut pos = 0;
    while buf[pos..].starts_with(b"\r\n") {
        pos += 2;
    }
    let (line, next) = next_line(buf, pos).ok_or(ParseError::StartLine)?;
    let start = parse_start_line(buf, line)?;
    pos = next;
    let mut fields: Vec<Field> = Vec::with_capacity(16);
    let body_start = loop {
        let (line, next) = next_line(buf, pos).ok_or(ParseError::Unterminated)?;
        if line.is_empty() {
            break next;
        }
        if matches!(buf[line.start], b' ' | b'\t') {
            // a fold: the line continues the previous field's value
            let last = fields.last_mut().ok_or(ParseError::HeaderLine)?;
            let l = &buf[line.clone()];
            let is_ws = |b: &u8| matches!(b, b' ' | b'\t');
            if let (Some(first), Some(lastc)) = (
                l.iter().position(|b| !is_ws(b)),
                l.iter().rposition(|b| !is_ws(b)),
            ) {
                if last.value_span.0 == last.value_span.1 {
                    last.value_span.0 = (line.start + first) as u32;
                }
                last.value_span.1 = (line.start + lastc + 1) as u32;
            }
            pos = next;
            continue;
        }
        let l = &buf[line.clone()];
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::HeaderLine)?;
        let name_end = l[..colon]
            .iter()
            .rposition(|&b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |e| e + 1);
        let name = &l[..name_end];
        if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
            return Err(ParseError::HeaderLine);
        }
        let vstart = colon
            + 1
            + l[colon + 1..]
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(l.len() - colon - 1);
        let vend = l
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(vstart, |e| (e + 1).max(vstart));
        if fields.len() >= limits.max_headers {
            return Err(ParseError::TooManyHeaders);
        }
        fields.push(Field {
            name: HeaderName::from_bytes(name),
            name_span: span(line.start..line.start + name_end),
            value_span: span(line.start + vstart..line.start + vend),
        });
        pos = next;
    };
    let mut lengths = fields
        .iter()
        .filter(|f| f.name == HeaderName::ContentLength);
    let body_end = match (lengths.next(), lengths.next()) {
        (Some(f), None) => {
            let v = std::str::from_utf8(&buf[f.value_span.0 as usize..f.value_span.1 as usize])
                .map_err(|_| ParseError::ContentLength)?;
            let n = parse_content_length(v)?;
            if body_start + n > buf.len() {
                return Err(ParseError::Truncated);
            }
            body_start + n
        }
        _ => buf.len(),
    };
    Ok((start, fields, span(body_start..body_end)))
}

/// What [`Message::check_essentials`] found wrong; the text is the 400 reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Missing(&'static str),
    Duplicate(&'static str),
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(h) => write!(f, "Missing {h} header"),
            Self::Duplicate(h) => write!(f, "Multiple {h} headers"),
        }
    }
}

/// The values in one header field: comma-separated ones apart for a list header, else the
/// whole field.
fn items(name: HeaderName, raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (list, single) = if name.is_list() {
        (Some(split_list(raw)), None)
    } else {
        (None, Some(raw))
    };
    list.into_iter().flatten().chain(single)
}

fn validate_value(name: HeaderName, v: &str) -> Result<()> {
    match name {
        HeaderName::Via => Via::parse(v).map(drop),
        HeaderName::From | HeaderName::To => NameAddr::parse(v, name.as_str()).map(drop),
        HeaderName::Route | HeaderName::RecordRoute | HeaderName::Path => {
            NameAddr::parse(v, name.as_str()).map(drop)
        }
        HeaderName::Contact => match ContactValue::parse(v)? {
            ContactValue::Addr(a) => {
                if let Some(e) = a.param("expires") {
                    parse_delta_seconds(e.unwrap_or(""), "Contact")?;
                }
                Ok(())
            }
            ContactValue::Star => Ok(()),
        },
        HeaderName::CSeq => CSeq::parse(v).map(drop),
        HeaderName::CallId => {
            if v.is_empty() || v.bytes().any(|b| b <= b' ') {
                Err(ParseError::Header("Call-ID"))
            } else {
                Ok(())
            }
        }
        HeaderName::MaxForwards => parse_max_forwards(v).map(drop),
        HeaderName::ContentLength => parse_content_length(v).map(drop),
        HeaderName::Expires | HeaderName::MinExpires => {
            parse_delta_seconds(v, name.as_str()).map(drop)
        }
        HeaderName::Date => validate_date(v),
        HeaderName::RetryAfter => parse_retry_after(v).map(drop),
        HeaderName::ContentType => parse_media_type(v).map(drop),
        HeaderName::Require
        | HeaderName::ProxyRequire
        | HeaderName::Supported
        | HeaderName::Unsupported => {
            if v.is_empty() && name == HeaderName::Supported {
                Ok(())
            } else {
                validate_option_tag(v, name.as_str())
            }
        }
        HeaderName::Authorization | HeaderName::ProxyAuthorization => {
            let scheme = v
                .split(|c: char| c.is_ascii_whitespace())
                .next()
                .unwrap_or("");
            validate_option_tag(scheme, name.as_str())
        }
        _ => Ok(()),
    }
}

/// The next line starting at `pos`: its range without the line ending, and where the one after
/// starts. `None` when no line ending remains.
fn next_line(buf: &[u8], pos: usize) -> Option<(Range<usize>, usize)> {
    let nl = pos + buf.get(pos..)?.iter().position(|&b| b == b'\n')?;
    let end = if nl > pos && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((pos..end, nl + 1))
}

fn parse_start_line(buf: &[u8], line: Range<usize>) -> Result<StartLine> {
    let l = &buf[line.clone()];
    let off = line.start;
    if l.starts_with(b"SIP/") {
        // SIP-Version SP Status-Code SP Reason-Phrase
        let sp = l
            .iter()
            .position(|&b| b == b' ')
            .ok_or(ParseError::StartLine)?;
        if !l[..sp].eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::Version);
        }
        let rest = &l[sp + 1..];
        if rest.len() < 4 || !rest[..3].iter().all(u8::is_ascii_digit) || rest[3] != b' ' {
            return Err(ParseError::StatusCode);
        }
        let code = u16::from(rest[0] - b'0') * 100
            + u16::from(rest[1] - b'0') * 10
            + u16::from(rest[2] - b'0');
        if !(100..=699).contains(&code) {
            return Err(ParseError::StatusCode);
        }
        let reason = off + sp + 5..line.end;
        if std::str::from_utf8(&buf[reason.clone()]).is_err() {
            return Err(ParseError::NotUtf8);
        }
        return Ok(StartLine::Response {
            code,
            reason_span: span(reason),
        });
    }
    // Method SP Request-URI SP SIP-Version
    let first = l
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseError::StartLine)?;
    let last = l
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(ParseError::StartLine)?;
    let method = &l[..first];
    let version = &l[last + 1..];
    if first == last || method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(ParseError::StartLine);
    }
    if !version.eq_ignore_ascii_case(b"SIP/2.0") {
        return Err(
            if version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/") {
                ParseError::Version
            } else {
                ParseError::StartLine
            },
        );
    }
    let uri = &l[first + 1..last];
    if uri.is_empty() || uri.iter().any(|&b| b <= b' ' || b >= 0x7f) || uri[0] == b'<' {
        return Err(ParseError::RequestUri);
    }
    let uri_str = std::str::from_utf8(uri).map_err(|_| ParseError::RequestUri)?;
    Uri::parse(uri_str).map_err(|_| ParseError::RequestUri)?;
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        method_span: span(off..off + first),
        uri_span: span(off + first + 1..off + last),
    })
}

impl PartialEq for Message {
    /// Messages are equal when their start lines, fields (names and values as written) and bodies
    /// are; how they were laid out on the wire does not matter.
    fn eq(&self, other: &Self) -> bool {
        self.is_request() == other.is_request()
            && self.method_str() == other.method_str()
            && self.uri_str() == other.uri_str()
            && self.status() == other.status()
            && self.reason() == other.reason()
            && self.body() == other.body()
            && self.fields().eq(other.fields())
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}
