//! Parsing the `Digest` credentials of an Authorization / Proxy-Authorization value.

/// Digest credentials; values are unquoted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

impl Credentials {
    /// Parses `Digest name=value, ...`. Returns `None` for other schemes or malformed input;
    /// unknown parameters are ignored.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_start();
        let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Self::default();
        let b = rest.as_bytes();
        let mut i = 0;
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                i += 1;
            }
            if i >= b.len() {
                break;
            }
            let ns = i;
            while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            let name = &rest[ns..i];
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i >= b.len() || b[i] != b'=' {
                return None;
            }
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let val = if b.get(i) == Some(&b'"') {
                let mut out = String::new();
                i += 1;
                loop {
                    match b.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            // a quoted-pair escapes one character, which may take several
                            // bytes: take it whole, so the next slice starts on a boundary
                            let ch = rest.get(i + 1..)?.chars().next()?;
                            out.push(ch);
                            i += 1 + ch.len_utf8();
                        }
                        _ => {
                            let start = i;
                            while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
                                i += 1;
                            }
                            out.push_str(&rest[start..i]);
                        }
                    }
                }
                i += 1;
                out
            } else {
                let start = i;
                while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                rest[start..i].to_owned()
            };
            match name.to_ascii_lowercase().as_str() {
                "username" => c.username = val,
                "realm" => c.realm = val,
                "nonce" => c.nonce = val,
                "uri" => c.uri = val,
                "response" => c.response = val,
                "algorithm" => c.algorithm = Some(val),
                "cnonce" => c.cnonce = Some(val),
                "nc" => c.nc = Some(val),
                "qop" => c.qop = Some(val),
                "opaque" => c.opaque = Some(val),
                _ => {}
            }
        }
        if c.username.is_empty() || c.nonce.is_empty() || c.response.is_empty() {
            return None;
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_token_values() {
        let c = Credentials::parse(
            r#"Digest username="alice", realm="example.com",nonce="abc", uri="sip:example.com", response="0123", algorithm=MD5, cnonce="x\"y", nc=00000001, qop=auth"#,
        )
        .unwrap();
        assert_eq!(c.username, "alice");
        assert_eq!(c.cnonce.as_deref(), Some("x\"y"));
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.algorithm.as_deref(), Some("MD5"));
    }

    #[test]
    fn an_escaped_character_of_several_bytes_is_kept_whole() {
        // found by fuzzing: the escape took one byte of 'é', and the next slice panicked
        let c = Credentials::parse(
            "Digest username=\"a\\\u{e9}b\", realm=\"r\\\u{1f600}\", nonce=\"n\", uri=\"sip:x\", response=\"0\"",
        )
        .unwrap();
        assert_eq!(c.username, "a\u{e9}b");
        assert_eq!(c.realm, "r\u{1f600}");
        assert!(
            Credentials::parse("Digest username=\"a\\").is_none(),
            "a lone escape at the end"
        );
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        assert!(Credentials::parse("NoOneKnowsThisScheme opaque-data=here").is_none());
        assert!(Credentials::parse("Digest username=\"unterminated").is_none());
        assert!(Credentials::parse("Digest").is_none());
        assert!(Credentials::parse("Digest realm=x").is_none());
    }
}
