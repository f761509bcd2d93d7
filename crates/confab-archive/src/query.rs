//! What a search or an export asks for: whose records, with whom, between which dates, with
//! which words; checked before anything is read, with what to fix.

use crate::db::ArchiveError;

/// A search of the archive or of the call records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Records this user took part in (all records when `None`).
    pub user: Option<String>,
    /// ... together with this one.
    pub with: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Unix milliseconds, exclusive.
    pub to_ms: i64,
    /// Words the message must contain (case-insensitive, each of them).
    pub text: Vec<String>,
    pub limit: Option<usize>,
}

impl Query {
    /// A query from the command line's words: dates as `YYYY-MM-DD` (a whole day, in UTC) or
    /// RFC 3339 times.
    pub fn new(
        user: Option<&str>,
        with: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        text: Option<&str>,
    ) -> Result<Self, ArchiveError> {
        let from_ms = from.map(|d| parse_date(d, "--from", false)).transpose()?;
        let to_ms = to.map(|d| parse_date(d, "--to", true)).transpose()?;
        let (from_ms, to_ms) = (from_ms.unwrap_or(0), to_ms.unwrap_or(i64::MAX));
        if from_ms >= to_ms {
            return Err(ArchiveError::Invalid(format!(
                "the date range is empty: --from {} is not before --to {}; swap them or widen the range",
                from.unwrap_or("(the beginning)"),
                to.unwrap_or("(now)")
            )));
        }
        for (flag, a) in [("--user", user), ("--with", with)] {
            if let Some(a) = a {
                check_address(flag, a)?;
            }
        }
        Ok(Self {
            user: user.map(normalize),
            with: with.map(normalize),
            from_ms,
            to_ms,
            text: text
                .map(|t| t.split_whitespace().map(str::to_lowercase).collect())
                .unwrap_or_default(),
            limit: None,
        })
    }

    /// The words are all in `body` (as text; a body that is not UTF-8 is read lossily).
    pub fn matches_text(&self, body: &[u8]) -> bool {
        if self.text.is_empty() {
            return true;
        }
        let body = String::from_utf8_lossy(body).to_lowercase();
        self.text.iter().all(|w| body.contains(w.as_str()))
    }

    /// The filter as one line, for the access log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user={u}"));
        }
        if let Some(w) = &self.with {
            parts.push(format!("with={w}"));
        }
        if self.from_ms > 0 {
            parts.push(format!("from={}", crate::time::format_ms(self.from_ms)));
        }
        if self.to_ms < i64::MAX {
            parts.push(format!("to={}", crate::time::format_ms(self.to_ms)));
        }
        if !self.text.is_empty() {
            parts.push(format!("text={}", self.text.join(" ")));
        }
        if parts.is_empty() {
            "everything".into()
        } else {
            parts.join(" ")
        }
    }
}

fn normalize(a: &str) -> String {
    a.trim().trim_start_matches("sip:").to_ascii_lowercase()
}

fn check_address(flag: &str, a: &str) -> Result<(), ArchiveError> {
    let a = a.trim().trim_start_matches("sip:");
    match a.split_once('@') {
        Some((u, d)) if !u.is_empty() && !d.is_empty() && !d.contains('@') => Ok(()),
        _ => Err(ArchiveError::Invalid(format!(
            "{flag} '{a}' is not an address of the form user@domain"
        ))),
    }
}

/// `YYYY-MM-DD` (its start, or with `end` the start of the next day) or an RFC 3339 time.
fn parse_date(s: &str, flag: &str, end: bool) -> Result<i64, ArchiveError> {
    let bad = || {
        ArchiveError::Invalid(format!(
            "{flag} '{s}' is not a date: use YYYY-MM-DD (a day in UTC) or YYYY-MM-DDTHH:MM:SSZ"
        ))
    };
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let date: jiff::civil::Date = s.parse().map_err(|_| bad())?;
    let date = if end {
        date.tomorrow().map_err(|_| bad())?
    } else {
        date
    };
    let ts = date
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_err(|_| bad())?
        .timestamp();
    Ok(ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_whole_days_and_a_reversed_range_says_what_to_fix() {
        let q = Query::new(None, None, Some("2026-12-01"), Some("2026-12-01"), None).unwrap();
        assert_eq!(q.to_ms - q.from_ms, 86_400_000, "--to includes its day");
        let e = Query::new(None, None, Some("2026-12-02"), Some("2026-12-01"), None).unwrap_err();
        assert!(e.to_string().contains("swap them"), "{e}");
        let e = Query::new(None, None, Some("2026-13-01"), None, None).unwrap_err();
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        let e = Query::new(Some("alice"), None, None, None, None).unwrap_err();
        assert!(e.to_string().contains("user@domain"), "{e}");
        let q = Query::new(
            None,
            None,
            Some("2026-12-01T10:00:00Z"),
            None,
            Some("Hello World"),
        )
        .unwrap();
        assert!(q.matches_text(b"well, hello big world"));
        assert!(!q.matches_text(b"hello"));
    }
}
