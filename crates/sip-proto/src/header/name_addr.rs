//! `name-addr / addr-spec` followed by parameters: the shape of To, From, Contact, Route,
//! Record-Route and Path values (RFC 3261 §20.10, §25.1).

use super::params::{param, parse_params, Params};
use crate::error::{ParseError, Result};
use crate::scan::{is_lws, is_token, Cursor};
use crate::uri::Uri;

/// One To/From/Contact/Route value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name as written (quotes kept), if any.
    pub display: Option<&'a str>,
    /// The URI text (without `<>`).
    pub uri_text: &'a str,
    pub uri: Uri<'a>,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value; `what` names the header in errors.
    pub fn parse(s: &'a str, what: &'static str) -> Result<Self> {
        let mut cur = Cursor::new(s, what);
        cur.skip_lws();
        let start = cur.pos();
        // name-addr: [display-name] "<" URI ">"
        let display = if cur.peek() == Some(b'"') {
            let q = cur.quoted()?;
            cur.skip_lws();
            if cur.peek() != Some(b'<') {
                return Err(cur.err());
            }
            Some(q)
        } else {
            // *(token LWS) "<" — or an addr-spec when no '<' follows the tokens.
            let save = cur.pos();
            let mut last_end = save;
            loop {
                let t = cur.take_while(is_token);
                if t.is_empty() {
                    break;
                }
                last_end = cur.pos();
                cur.skip_lws();
            }
            if cur.peek() == Some(b'<') {
                (last_end > save).then(|| cur.slice(save, last_end))
            } else {
                cur.set_pos(save);
                None
            }
        };
        let uri_text = if cur.peek() == Some(b'<') {
            let rest = &cur.rest()[1..];
            let end = rest.find('>').ok_or(cur.err())?;
            let text = &rest[..end];
            if text.bytes().any(is_lws) {
                return Err(cur.err());
            }
            cur.set_pos(cur.pos() + end + 2);
            text
        } else {
            // addr-spec: the URI ends at ';' (header params), ',' or white space; a URI with
            // '?', ',' or ';' of its own must be enclosed in <> (RFC 3261 §20.10).
            let t = cur.take_while(|b| !is_lws(b) && b != b';' && b != b',');
            if t.contains('?') {
                return Err(cur.err());
            }
            t
        };
        if uri_text.is_empty() || start == cur.pos() {
            return Err(cur.err());
        }
        let uri = Uri::parse(uri_text).map_err(|_| ParseError::Header(what))?;
        let params = parse_params(&mut cur)?;
        Ok(NameAddr {
            display,
            uri_text,
            uri,
            params,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        param(&self.params, "tag").flatten()
    }

    /// Any header parameter.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        param(&self.params, name)
    }
}

/// A Contact value: `*` or an address.
// An address is large (its parameters are inline) and `*` is empty; boxing the address would
// bring back the allocation per value that inline parameters avoid, for a value that lives on
// the stack while one request is handled.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactValue<'a> {
    Star,
    Addr(NameAddr<'a>),
}

impl<'a> ContactValue<'a> {
    pub fn parse(s: &'a str) -> Result<Self> {
        if s.trim() == "*" {
            Ok(Self::Star)
        } else {
            NameAddr::parse(s, "Contact").map(Self::Addr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_name_with_escapes() {
        let n = NameAddr::parse(
            r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#,
            "From",
        )
        .unwrap();
        assert_eq!(n.display, Some(r#""J Rosenberg \\\"""#));
        assert_eq!(n.tag(), Some("98asjd8"));
    }

    #[test]
    fn token_display_name_without_space_before_bracket() {
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323", "From").unwrap();
        assert_eq!(n.display, Some("caller"));
        assert_eq!(n.uri_text, "sip:caller@example.com");
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let n =
            NameAddr::parse("sip:+19725552222@gw1.example.net;unknownparam", "Contact").unwrap();
        assert_eq!(n.uri_text, "sip:+19725552222@gw1.example.net");
        assert_eq!(n.param("unknownparam"), Some(None));
    }

    #[test]
    fn bad_shapes_are_rejected() {
        for bad in [
            r#""Mr. J. User <sip:j.user@example.com>"#,
            "< sip:t.watson@example.org >",
            "Bell, Alexander <sip:a.g.bell@example.com>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            r#""Joe" <sip:joe@example.org>;;;;"#,
        ] {
            assert!(NameAddr::parse(bad, "To").is_err(), "{bad}");
        }
    }
}
