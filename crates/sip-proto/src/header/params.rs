//! Header parameters (`;name[=value]`, RFC 3261 `generic-param`) and comma-separated lists.

use crate::error::Result;
use crate::scan::{is_token, Cursor};

/// Parameters of a header value or URI, in the order written; names keep their case. Up to
/// three are kept inline (a Via's branch, rport and received; a URI's transport and lr; a tag):
/// a Via, a To or a URI is decoded several times per request, and a heap allocation for each
/// was a measurable share of the cost of a REGISTER.
pub type Params<'a> = smallvec::SmallVec<[(&'a str, Option<&'a str>); 3]>;

/// The value of parameter `name` (`Some(None)` when present without a value).
pub fn param<'a>(params: &Params<'a>, name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Parses `*( SEMI generic-param )` up to the end of the cursor; LWS is allowed around `;` and `=`.
pub(crate) fn parse_params<'a>(cur: &mut Cursor<'a>) -> Result<Params<'a>> {
    let mut out = Params::new();
    loop {
        cur.skip_lws();
        if cur.at_end() {
            return Ok(out);
        }
        cur.expect_sep(b';')?;
        let name = cur.token()?;
        let value = if cur.eat_sep(b'=') {
            Some(if cur.peek() == Some(b'"') {
                cur.quoted()?
            } else {
                let v = cur.take_while(|b| is_token(b) || b == b':' || b == b'[' || b == b']');
                if v.is_empty() {
                    return Err(cur.err());
                }
                v
            })
        } else {
            None
        };
        out.push((name, value));
    }
}

/// Splits a list header value at the commas that are outside quotes and angle brackets.
pub fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut i = 0;
    let mut quoted = false;
    let mut angle = false;
    std::iter::from_fn(move || {
        if start > value.len() {
            return None;
        }
        while i < value.len() {
            let b = value[i];
            match b {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    let item = trim(&value[start..i]);
                    i += 1;
                    start = i;
                    return Some(item);
                }
                _ => {}
            }
            i += 1;
        }
        let item = trim(&value[start.min(value.len())..]);
        start = value.len() + 1;
        Some(item)
    })
}

/// Trims linear white space from both ends.
pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| crate::scan::is_lws(*b);
    let s = v.iter().position(|b| !is_ws(b)).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !is_ws(b)).map_or(s, |e| e + 1);
    &v[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_allow_lws_around_separators() {
        let mut c = Cursor::new(
            " ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33",
            "Contact",
        );
        let p = parse_params(&mut c).unwrap();
        assert_eq!(
            p.as_slice(),
            [
                ("newparam", Some("newvalue")),
                ("secondparam", None),
                ("q", Some("0.33"))
            ]
        );
    }

    #[test]
    fn empty_params_are_errors() {
        let mut c = Cursor::new(";;", "Contact");
        assert!(parse_params(&mut c).is_err());
    }

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        let v = br#""a, b" <sip:x@y;p=1,2>;q=1 , <sip:z@w>"#;
        let items: Vec<_> = split_list(v).collect();
        assert_eq!(
            items,
            vec![&br#""a, b" <sip:x@y;p=1,2>;q=1"#[..], b"<sip:z@w>"]
        );
    }
}
