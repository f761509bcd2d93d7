//! Byte-level scanning shared by the header and URI parsers: character classes from RFC 3261 §25
//! and a cursor that skips linear white space (folded lines included).

use crate::error::{ParseError, Result};

/// RFC 3261 `token` characters.
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Linear white space inside a header value. CR and LF only ever appear there as part of a
/// fold (the line splitter guarantees a SP or HTAB follows), so they count as white space.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 3261 `unreserved`.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// A cursor over a header value.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor whose errors name the header `what`.
    pub(crate) fn new(s: &'a str, what: &'static str) -> Self {
        Self { s, pos: 0, what }
    }
    pub(crate) fn err(&self) -> ParseError {
        ParseError::Header(self.what)
    }
    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }
    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }
    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.s[from..to]
    }
    pub(crate) fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }
    pub(crate) fn skip_lws(&mut self) {
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
    }
    /// Consumes `b` (with LWS on both sides) if it is next.
    pub(crate) fn eat_sep(&mut self, b: u8) -> bool {
        let save = self.pos;
        self.skip_lws();
        if self.peek() == Some(b) {
            self.pos += 1;
            self.skip_lws();
            true
        } else {
            self.pos = save;
            false
        }
    }
    pub(crate) fn expect_sep(&mut self, b: u8) -> Result<()> {
        if self.eat_sep(b) {
            Ok(())
        } else {
            Err(self.err())
        }
    }
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }
    pub(crate) fn token(&mut self) -> Result<&'a str> {
        let t = self.take_while(is_token);
        if t.is_empty() {
            Err(self.err())
        } else {
            Ok(t)
        }
    }
    /// A quoted string, returned with its quotes; escapes are kept as written.
    pub(crate) fn quoted(&mut self) -> Result<&'a str> {
        let b = self.s.as_bytes();
        let start = self.pos;
        if self.peek() != Some(b'"') {
            return Err(self.err());
        }
        let mut i = self.pos + 1;
        while i < b.len() {
            match b[i] {
                b'\\' => {
                    // quoted-pair: any octet but CR and LF
                    if i + 1 >= b.len() || matches!(b[i + 1], b'\r' | b'\n') {
                        return Err(self.err());
                    }
                    i += 2;
                }
                b'"' => {
                    self.pos = i + 1;
                    return Ok(&self.s[start..self.pos]);
                }
                _ => i += 1,
            }
        }
        Err(self.err())
    }
}

/// Parses a decimal number of at most `max`, with leading zeros allowed.
pub(crate) fn parse_u32(s: &str, max: u32, what: &'static str) -> Result<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Header(what));
    }
    let v: u64 = s
        .trim_start_matches('0')
        .parse()
        .or_else(|_| {
            if s.trim_start_matches('0').is_empty() {
                Ok(0)
            } else {
                Err(())
            }
        })
        .map_err(|()| ParseError::Header(what))?;
    if v > u64::from(max) {
        return Err(ParseError::Header(what));
    }
    Ok(v as u32)
}

/// Decodes %HH escapes; a `%` not followed by two hex digits is kept literally.
pub fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return s.into();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned().into()
}

pub(crate) fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}
