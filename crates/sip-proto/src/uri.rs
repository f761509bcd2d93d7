//! URIs: `sip:`, `sips:` and `tel:` decoded into parts; any other scheme kept opaque (RFC 3261
//! §19.1, RFC 3966). Parts borrow from the header value they came from.

use std::fmt;

use crate::error::{ParseError, Result};
use crate::header::Params;
use crate::scan::{hex, is_unreserved};

/// A decoded URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Any other absolute URI, kept as written after the colon.
    Other { scheme: &'a str, opaque: &'a str },
}

/// A SIP or SIPS URI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipUri<'a> {
    pub secure: bool,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// Host as written; IPv6 references keep their brackets.
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    /// The header part after `?`, as written.
    pub headers: Option<&'a str>,
}

/// A telephone URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelUri<'a> {
    pub number: &'a str,
    pub params: Params<'a>,
}

impl<'a> Uri<'a> {
    /// Parses a whole URI (already cut out of its header).
    pub fn parse(s: &'a str) -> Result<Self> {
        let err = ParseError::Header("URI");
        let colon = s.find(':').ok_or(err.clone())?;
        let scheme = &s[..colon];
        let rest = &s[colon + 1..];
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
            || rest.is_empty()
            || rest
                .bytes()
                .any(|b| b <= b' ' || b == 0x7f || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(err);
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_parts(scheme.len() == 4, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = match rest.find(';') {
                Some(i) => (&rest[..i], parse_uri_params(&rest[i..])?),
                None => (rest, Params::new()),
            };
            if number.is_empty()
                || !number
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b"+-.()*#".contains(&b))
            {
                return Err(err);
            }
            Ok(Uri::Tel(TelUri { number, params }))
        } else {
            Ok(Uri::Other {
                scheme,
                opaque: rest,
            })
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

impl<'a> SipUri<'a> {
    fn parse_parts(secure: bool, rest: &'a str) -> Result<Self> {
        let err = ParseError::Header("URI");
        let mut uri = SipUri {
            secure,
            ..Default::default()
        };
        // '@' may not appear unescaped in host, params or headers, so the first one ends userinfo.
        let hostpart = match rest.find('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !valid_escaped(user, b"&=+$,;?/") {
                    return Err(err);
                }
                if let Some(p) = password {
                    if !valid_escaped(p, b"&=+$,") {
                        return Err(err);
                    }
                }
                uri.user = Some(user);
                uri.password = password;
                &rest[at + 1..]
            }
            None => rest,
        };
        let (hostport, tail) = match hostpart.find([';', '?']) {
            Some(i) => hostpart.split_at(i),
            None => (hostpart, ""),
        };
        let (host, port) = split_hostport(hostport).ok_or(err.clone())?;
        uri.host = host;
        uri.port = port;
        let (params, headers) = match tail.find('?') {
            Some(i) => (&tail[..i], Some(&tail[i + 1..])),
            None => (tail, None),
        };
        uri.params = parse_uri_params(params)?;
        if let Some(h) = headers {
            for pair in h.split('&') {
                let (n, v) = pair.split_once('=').ok_or(err.clone())?;
                if n.is_empty() || !valid_escaped(n, b"[]/?:+$") || !valid_escaped(v, b"[]/?:+$") {
                    return Err(err);
                }
            }
            uri.headers = Some(h);
        }
        Ok(uri)
    }

    /// The value of a URI parameter (`Some(None)` when present without a value).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// `user@host` with the user %-decoded and the host lower-cased: the key of an address of
    /// record (RFC 3261 §10.3 compares AORs this way).
    pub fn aor(&self) -> String {
        let host = self.host.to_ascii_lowercase();
        match self.user {
            Some(u) => format!("{}@{}", crate::scan::unescape(u), host),
            None => host,
        }
    }
}

/// Splits `host[:port]` and checks the host is a hostname, IPv4 address or `[IPv6]`.
pub(crate) fn split_hostport(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let host = &s[..=end];
        let inner = &host[1..host.len() - 1];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        match &s[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            || host.starts_with(['-', '.']))
    {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
        None => None,
    };
    Some((host, port))
}

/// `;name[=value]` URI parameters; every character unreserved, escaped or `[]/:&+$`.
fn parse_uri_params(s: &str) -> Result<Params<'_>> {
    let mut out = Params::new();
    if s.is_empty() {
        return Ok(out);
    }
    let s = s.strip_prefix(';').ok_or(ParseError::Header("URI"))?;
    for p in s.split(';') {
        let (n, v) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if n.is_empty()
            || !valid_escaped(n, b"[]/:&+$")
            || !v.is_none_or(|v| valid_escaped(v, b"[]/:&+$"))
        {
            return Err(ParseError::Header("URI"));
        }
        out.push((n, v));
    }
    Ok(out)
}

/// Every byte unreserved, one of `extra`, or a well-formed %HH escape.
fn valid_escaped(s: &str, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if i + 2 >= b.len() || hex(b[i + 1]).is_none() || hex(b[i + 2]).is_none() {
                return false;
            }
            i += 3;
        } else if is_unreserved(c) || extra.contains(&c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => {
                write!(f, "tel:{}", t.number)?;
                write_params(f, &t.params)
            }
            Uri::Other { scheme, opaque } => write!(f, "{scheme}:{opaque}"),
        }
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = self.user {
            f.write_str(u)?;
            if let Some(p) = self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        if let Some(h) = self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(&str, Option<&str>)]) -> fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_with_every_part_parses_and_prints_back() {
        let s = "sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi&x=%20";
        let u = Uri::parse(s).unwrap();
        let sip = u.as_sip().unwrap();
        assert!(sip.secure);
        assert_eq!(sip.user, Some("alice"));
        assert_eq!(sip.password, Some("secret"));
        assert_eq!(sip.host, "[2001:db8::1]");
        assert_eq!(sip.port, Some(5061));
        assert_eq!(sip.param("transport"), Some(Some("tcp")));
        assert_eq!(sip.param("lr"), Some(None));
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn user_part_may_hold_semicolons_and_escapes() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        let sip = u.as_sip().unwrap();
        assert_eq!(sip.user, Some("user;par=u%40example.net"));
        assert_eq!(sip.host, "example.com");
        assert_eq!(sip.aor(), "user;par=u@example.net@example.com");
    }

    #[test]
    fn tel_and_unknown_schemes_are_kept() {
        assert!(matches!(
            Uri::parse("tel:+1-201-555-0123;phone-context=x").unwrap(),
            Uri::Tel(_)
        ));
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").unwrap(),
            Uri::Other {
                scheme: "soap.beep",
                opaque: "//192.0.2.103:3002"
            }
        );
    }

    #[test]
    fn malformed_uris_are_rejected() {
        for bad in [
            "sip:",
            "sip:host:port",
            "sip:a b@host",
            "sip:user@host;",
            "sip:%zz@host",
            "nocolon",
            "sip:[::1",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn aor_lowercases_host_and_decodes_user() {
        let u = Uri::parse("sip:%75ser@EXAMPLE.com").unwrap();
        assert_eq!(u.as_sip().unwrap().aor(), "user@example.com");
    }
}
