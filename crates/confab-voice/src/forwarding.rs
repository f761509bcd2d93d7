//! A user's call forwarding and simultaneous ring, as Skype for Business users set them: calls
//! forwarded at once; or ringing the user's devices and, in parallel, a second number
//! (simultaneous ring); or forwarded when unanswered after some seconds, when busy, or when
//! the user has no device signed in. A target is a user (`sip:bob@example.com`) or a number
//! (`tel:+14255550100`, or digits the user's dial plan normalizes).
//!
//! Written as one line of comma-separated settings, as `confab user set --call-forwarding`
//! takes it and the store keeps it: `simring=tel:+14255550100,noanswer=sip:bob@example.com,
//! noanswer-after=20,busy=tel:+14255550199,offline=sip:bob@example.com`, or
//! `immediate=tel:+14255550100`.

use std::fmt;

/// Where a forwarded call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTo {
    /// Another user: `bob@example.com`.
    User(String),
    /// A number (`+14255550100`, or what the user dials, normalized when the call comes).
    Number(String),
}

/// A user's forwarding settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forwarding {
    /// Every call goes here at once; the user's devices do not ring.
    pub immediate: Option<ForwardTo>,
    /// Rings along with the user's devices.
    pub simultaneous: Option<ForwardTo>,
    /// Unanswered after `no_answer_after` seconds: the ringing stops, the call goes here.
    pub no_answer: Option<ForwardTo>,
    pub no_answer_after: u32,
    /// Every device busy (486, 600): the call goes here.
    pub busy: Option<ForwardTo>,
    /// No device signed in: the call goes here.
    pub offline: Option<ForwardTo>,
}

/// How long an unanswered call rings before it is forwarded, unless set.
pub const NO_ANSWER_AFTER: u32 = 20;

impl ForwardTo {
    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(user) = t.strip_prefix("sip:").or_else(|| t.strip_prefix("sips:")) {
            return match user.split_once('@') {
                Some((u, d)) if !u.is_empty() && !d.is_empty() => {
                    Ok(Self::User(format!("{u}@{}", d.to_ascii_lowercase())))
                }
                _ => Err(format!("{t:?} is no user: write sip:name@domain")),
            };
        }
        let n = t.strip_prefix("tel:").unwrap_or(t);
        let digits = n.strip_prefix('+').unwrap_or(n);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::Number(n.to_owned()));
        }
        if let Some((u, d)) = t.split_once('@') {
            if !u.is_empty() && !d.is_empty() {
                return Ok(Self::User(format!("{u}@{}", d.to_ascii_lowercase())));
            }
        }
        Err(format!(
            "{t:?} is neither a user (sip:name@domain) nor a number (tel:+14255550100)"
        ))
    }
}

impl fmt::Display for ForwardTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => write!(f, "sip:{u}"),
            Self::Number(n) => write!(f, "tel:{n}"),
        }
    }
}

impl Forwarding {
    /// Reads the settings line; the error says which setting and what to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut f = Self {
            no_answer_after: NO_ANSWER_AFTER,
            ..Self::default()
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                format!("{part:?}: write SETTING=VALUE (immediate, simring, noanswer, noanswer-after, busy, offline)")
            })?;
            let slot = match key.trim() {
                "immediate" => &mut f.immediate,
                "simring" => &mut f.simultaneous,
                "noanswer" => &mut f.no_answer,
                "busy" => &mut f.busy,
                "offline" => &mut f.offline,
                "noanswer-after" => {
                    f.no_answer_after = value
                        .trim()
                        .parse()
                        .ok()
                        .filter(|s| (5..=120).contains(s))
                        .ok_or_else(|| {
                            format!("noanswer-after={value}: seconds from 5 to 120")
                        })?;
                    continue;
                }
                other => {
                    return Err(format!(
                        "{other:?} is no forwarding setting: immediate, simring, noanswer, noanswer-after, busy or offline"
                    ))
                }
            };
            *slot = Some(ForwardTo::parse(value).map_err(|e| format!("{key}: {e}"))?);
        }
        if f.immediate.is_some() && (f.simultaneous.is_some() || f.no_answer.is_some()) {
            return Err(
                "immediate forwarding rings no device: simring and noanswer cannot go with it"
                    .into(),
            );
        }
        Ok(f)
    }

    /// Whether nothing is set (calls ring the user's devices only).
    pub fn is_empty(&self) -> bool {
        *self
            == Self {
                no_answer_after: self.no_answer_after,
                ..Self::default()
            }
    }
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut add = |key: &str, t: &Option<ForwardTo>| {
            if let Some(t) = t {
                parts.push(format!("{key}={t}"));
            }
        };
        add("immediate", &self.immediate);
        add("simring", &self.simultaneous);
        add("noanswer", &self.no_answer);
        add("busy", &self.busy);
        add("offline", &self.offline);
        if self.no_answer.is_some() && self.no_answer_after != NO_ANSWER_AFTER {
            parts.push(format!("noanswer-after={}", self.no_answer_after));
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_back_as_written_and_mistakes_are_named() {
        let f = Forwarding::parse(
            "simring=tel:+14255550100, noanswer=bob@Example.com,noanswer-after=15,offline=4255550199",
        )
        .unwrap();
        assert_eq!(
            f.simultaneous,
            Some(ForwardTo::Number("+14255550100".into()))
        );
        assert_eq!(f.no_answer, Some(ForwardTo::User("bob@example.com".into())));
        assert_eq!(f.offline, Some(ForwardTo::Number("4255550199".into())));
        assert_eq!(f.no_answer_after, 15);
        let text = f.to_string();
        assert_eq!(
            text,
            "simring=tel:+14255550100,noanswer=sip:bob@example.com,offline=tel:4255550199,noanswer-after=15"
        );
        assert_eq!(Forwarding::parse(&text).unwrap(), f);
        assert!(Forwarding::parse("").unwrap().is_empty());

        let err = |t: &str| Forwarding::parse(t).unwrap_err();
        assert!(err("later=tel:+1").contains("no forwarding setting"));
        assert!(err("busy=call me").contains("busy: \"call me\" is neither a user"));
        assert!(err("noanswer-after=2").contains("seconds from 5 to 120"));
        assert!(err("immediate=tel:+14255550100,simring=tel:+14255550101")
            .contains("cannot go with it"));
    }
}
