//! Small typed headers: CSeq, numbers (Max-Forwards, Content-Length, Expires, Retry-After),
//! Date, Content-Type and option-tag lists.

use crate::error::{ParseError, Result};
use crate::scan::{is_token, parse_u32, Cursor};

/// Largest CSeq number (RFC 3261 §8.1.1.5: less than 2**31).
pub const MAX_CSEQ: u32 = (1 << 31) - 1;

/// The CSeq header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: &'a str,
}

impl<'a> CSeq<'a> {
    pub fn parse(s: &'a str) -> Result<Self> {
        let mut c = Cursor::new(s, "CSeq");
        c.skip_lws();
        let num = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_u32(num, MAX_CSEQ, "CSeq")?;
        let before = c.pos();
        c.skip_lws();
        if c.pos() == before {
            return Err(c.err());
        }
        let method = c.token()?;
        c.skip_lws();
        if !c.at_end() {
            return Err(c.err());
        }
        Ok(CSeq { seq, method })
    }
}

/// Max-Forwards: 0..=255.
pub fn parse_max_forwards(s: &str) -> Result<u8> {
    parse_u32(s.trim(), 255, "Max-Forwards").map(|v| v as u8)
}

/// Content-Length.
pub fn parse_content_length(s: &str) -> Result<usize> {
    parse_u32(s.trim(), u32::MAX, "Content-Length")
        .map(|v| v as usize)
        .map_err(|_| ParseError::ContentLength)
}

/// Expires (and the `expires` Contact parameter): a value past 2**32-1 means 2**32-1 (RFC 3261
/// §20.19 says to treat it so).
pub fn parse_delta_seconds(s: &str, what: &'static str) -> Result<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Header(what));
    }
    Ok(s.parse::<u64>()
        .map_or(u32::MAX, |v| v.min(u64::from(u32::MAX)) as u32))
}

/// Retry-After: delta-seconds with optional comment and parameters; no saturation, an overlarge
/// value is an error.
pub fn parse_retry_after(s: &str) -> Result<u32> {
    let s = s.trim();
    let digits = s.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("");
    parse_u32(digits, u32::MAX, "Retry-After")
}

const WKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Date: `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"` (RFC 3261
/// §20.17 allows only GMT).
pub fn validate_date(s: &str) -> Result<()> {
    let err = ParseError::Header("Date");
    let f: Vec<&str> = s.split_whitespace().collect();
    let ok = f.len() == 6
        && f[0].strip_suffix(',').is_some_and(|d| WKDAYS.contains(&d))
        && f[1].len() == 2
        && f[1].bytes().all(|b| b.is_ascii_digit())
        && MONTHS.contains(&f[2])
        && f[3].len() == 4
        && f[3].bytes().all(|b| b.is_ascii_digit())
        && f[4].len() == 8
        && f[4].bytes().enumerate().all(|(i, b)| {
            if i == 2 || i == 5 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        })
        && f[5] == "GMT";
    if ok {
        Ok(())
    } else {
        Err(err)
    }
}

/// Content-Type: `type "/" subtype *(;param)`, returned as the lower-cased `type/subtype`.
pub fn parse_media_type(s: &str) -> Result<String> {
    let mut c = Cursor::new(s, "Content-Type");
    c.skip_lws();
    let t = c.token()?;
    c.expect_sep(b'/')?;
    let st = c.token()?;
    super::params::parse_params(&mut c)?;
    Ok(format!(
        "{}/{}",
        t.to_ascii_lowercase(),
        st.to_ascii_lowercase()
    ))
}

/// An option tag (Require, Proxy-Require, Supported, Unsupported values).
pub fn validate_option_tag(s: &str, what: &'static str) -> Result<()> {
    if !s.is_empty() && s.bytes().all(is_token) {
        Ok(())
    } else {
        Err(ParseError::Header(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq_with_fold_and_leading_zeros() {
        assert_eq!(
            CSeq::parse("0009\r\n  INVITE").unwrap(),
            CSeq {
                seq: 9,
                method: "INVITE"
            }
        );
    }

    #[test]
    fn overlarge_cseq_is_rejected() {
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("2147483648 INVITE").is_err());
        assert_eq!(CSeq::parse("2147483647 INVITE").unwrap().seq, MAX_CSEQ);
        assert!(CSeq::parse("1INVITE").is_err());
    }

    #[test]
    fn max_forwards_limits() {
        assert_eq!(parse_max_forwards("0068").unwrap(), 68);
        assert!(parse_max_forwards("300").is_err());
        assert!(parse_max_forwards("-1").is_err());
    }

    #[test]
    fn content_length_must_be_a_non_negative_number() {
        assert_eq!(parse_content_length(" 150").unwrap(), 150);
        assert!(parse_content_length("-999").is_err());
        assert!(parse_content_length("").is_err());
    }

    #[test]
    fn expires_saturates() {
        assert_eq!(
            parse_delta_seconds("10000000000000000000000", "Expires").unwrap(),
            u32::MAX
        );
        assert!(parse_delta_seconds("soon", "Expires").is_err());
    }

    #[test]
    fn dates_must_be_gmt() {
        assert!(validate_date("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(validate_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
    }

    #[test]
    fn media_types_are_lowercased() {
        assert_eq!(
            parse_media_type("Multipart/Mixed;boundary=7a9c").unwrap(),
            "multipart/mixed"
        );
        assert!(parse_media_type("text").is_err());
    }
}
