//! A rule's regular expression and translation: the pattern must match the whole input the
//! way the administrator wrote it (anchors are the administrator's), and the translation
//! substitutes `$1`.. with the pattern's groups as .NET does (`$$` is a `$`). Matching is over
//! bytes with ASCII classes: `\d` is 0-9 (a dialled digit), `.` any character.

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// A compiled pattern and its translation.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: Regex,
    translation: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// Why a pattern or translation cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern {pattern:?} is not a valid regular expression: {why}")]
    Regex { pattern: String, why: String },
    #[error("the translation {translation:?} names group ${group}, but the pattern has {groups} group(s)")]
    MissingGroup {
        translation: String,
        group: usize,
        groups: usize,
    },
}

impl Pattern {
    /// Compiles `pattern` (digits and `\d` mean ASCII digits) with `translation`.
    pub fn new(pattern: &str, translation: &str) -> Result<Self, PatternError> {
        let regex = RegexBuilder::new(pattern)
            .unicode(false)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| PatternError::Regex {
                pattern: pattern.to_owned(),
                why: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })?;
        let groups = regex.captures_len() - 1;
        let pieces = parse_translation(translation, groups);
        if let Some(group) = pieces.iter().find_map(|p| match p {
            Piece::Group(g) if *g > groups => Some(*g),
            _ => None,
        }) {
            return Err(PatternError::MissingGroup {
                translation: translation.to_owned(),
                group,
                groups,
            });
        }
        Ok(Self {
            regex,
            translation: pieces,
        })
    }

    /// A pattern that only matches (no translation).
    pub fn matcher(pattern: &str) -> Result<Self, PatternError> {
        Self::new(pattern, "")
    }

    pub fn is_match(&self, input: &str) -> bool {
        self.regex.is_match(input.as_bytes())
    }

    /// The translation of `input`, when the pattern matches it.
    pub fn apply(&self, input: &str) -> Option<String> {
        let caps = self.regex.captures(input.as_bytes())?;
        let mut out = Vec::new();
        for piece in &self.translation {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Group(g) => {
                    out.extend_from_slice(caps.get(*g).map_or(&[][..], |m| m.as_bytes()))
                }
            }
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Many patterns matched in one pass: which of a dial plan's rules, or of all routes, match a
/// number (instead of trying each pattern in turn: a plan of a hundred rules, five hundred
/// routes).
#[derive(Debug, Clone)]
pub(crate) struct PatternSet(RegexSet);

impl PatternSet {
    /// The set of `patterns` (each already compiled on its own); none when the set would be too
    /// large for one automaton (the patterns are then tried in turn).
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        RegexSetBuilder::new(patterns)
            .unicode(false)
            .size_limit(32 << 20)
            .build()
            .ok()
            .map(Self)
    }

    /// The first pattern that matches `input`.
    pub(crate) fn first(&self, input: &str) -> Option<usize> {
        self.0.matches(input.as_bytes()).iter().next()
    }

    /// Every pattern that matches `input`, in order.
    pub(crate) fn all(&self, input: &str) -> Vec<usize> {
        self.0.matches(input.as_bytes()).iter().collect()
    }
}

/// `$N` takes the longest run of digits that names a group the pattern has (as .NET does:
/// with one group, `$12` is group 1 then "2"); a run naming none is reported as that group.
fn parse_translation(t: &str, groups: usize) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = t.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            text.push(c);
            continue;
        }
        if let Some((_, '$')) = chars.peek() {
            chars.next();
            text.push('$');
            continue;
        }
        let digits: String = t[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            text.push('$');
            continue;
        }
        // the longest prefix of the digits that is a group; else the first digit alone
        let take = (1..=digits.len())
            .rev()
            .find(|&n| digits[..n].parse::<usize>().is_ok_and(|g| g <= groups))
            .unwrap_or(1);
        let group: usize = digits[..take].parse().unwrap_or(usize::MAX);
        for _ in 0..take {
            chars.next();
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Group(group));
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_translation_substitutes_groups_as_dot_net_does() {
        let p = Pattern::new(r"^(\d{3})(\d{4})$", "+1425$1$2").unwrap();
        assert_eq!(p.apply("5550123").as_deref(), Some("+14255550123"));
        assert_eq!(p.apply("55501234"), None, "anchored by the administrator");
        let p = Pattern::new(r"^9(\d+)$", "+$1").unwrap();
        assert_eq!(p.apply("914255550123").as_deref(), Some("+14255550123"));
        // with one group, $12 is group 1 then "2"; $$ is a dollar
        let p = Pattern::new(r"^(\d)$", "$12$$").unwrap();
        assert_eq!(p.apply("7").as_deref(), Some("72$"));
    }

    #[test]
    fn bad_patterns_and_translations_say_what_is_wrong() {
        let e = Pattern::new(r"^(\d{4}$", "$1").unwrap_err();
        assert!(matches!(e, PatternError::Regex { .. }), "{e}");
        assert!(
            e.to_string().contains("not a valid regular expression"),
            "{e}"
        );
        let e = Pattern::new(r"^(\d{4})$", "+1425555$2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the translation \"+1425555$2\" names group $2, but the pattern has 1 group(s)"
        );
    }

    #[test]
    fn digits_are_ascii_digits() {
        let p = Pattern::matcher(r"^\d+$").unwrap();
        assert!(p.is_match("0123456789"));
        assert!(
            !p.is_match("١٢٣"),
            "Arabic-Indic digits are not dialled digits"
        );
    }
}
