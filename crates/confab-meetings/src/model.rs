//! The meetings document: global settings and one entry per meeting.

use serde::{Deserialize, Serialize};

/// Participants a meeting admits unless the settings say otherwise.
pub const DEFAULT_PARTICIPANT_LIMIT: usize = 250;

/// The digits of a conference ID: seven, as callers enter them by phone.
const ID_DIGITS: u32 = 7;

/// Every meeting of the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meetings {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default, rename = "meeting", skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<Meeting>,
}

/// What holds for every meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The most participants one meeting admits at a time.
    #[serde(default = "default_limit")]
    pub participant_limit: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            participant_limit: DEFAULT_PARTICIPANT_LIMIT,
        }
    }
}

fn default_limit() -> usize {
    DEFAULT_PARTICIPANT_LIMIT
}

/// One meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meeting {
    /// The conference ID: digits, unique in the deployment.
    pub id: String,
    /// `user@domain` of the user who created it: the meeting's address is in its domain.
    pub organizer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Callers by phone must enter a PIN (participants signed in to Confab never do).
    #[serde(default)]
    pub pin_required: bool,
}

impl Meeting {
    /// The meeting's SIP address: `sip:meet-<id>@<organizer's domain>`.
    pub fn uri(&self) -> String {
        let domain = self.organizer.rsplit('@').next().unwrap_or_default();
        format!("sip:{}{}@{domain}", crate::URI_PREFIX, self.id)
    }
}

impl Meetings {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<&Meeting> {
        self.meetings.iter().find(|m| m.id == id)
    }

    /// A conference ID no meeting has, from `random` (any number: the caller's randomness,
    /// so that IDs are not guessed in order). Tries the numbers after it until one is free.
    pub fn free_id(&self, random: u64) -> String {
        let span = 10u64.pow(ID_DIGITS) - 10u64.pow(ID_DIGITS - 1);
        let mut n = random % span;
        loop {
            let id = (10u64.pow(ID_DIGITS - 1) + n).to_string();
            if self.get(&id).is_none() {
                return id;
            }
            n = (n + 1) % span;
        }
    }

    /// Adds `m` after checking it: the problems found, nothing added, or none.
    pub fn add(&mut self, m: Meeting) -> Result<(), String> {
        if m.id.is_empty() || !m.id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("conference ID {:?} is not digits", m.id));
        }
        if self.get(&m.id).is_some() {
            return Err(format!("conference ID {} is taken", m.id));
        }
        match m.organizer.split_once('@') {
            Some((u, d)) if !u.is_empty() && !d.is_empty() => {}
            _ => return Err(format!("organizer {:?} is not user@domain", m.organizer)),
        }
        self.meetings.push(m);
        Ok(())
    }

    /// Removes meeting `id`; false when there is none.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.meetings.len();
        self.meetings.retain(|m| m.id != id);
        self.meetings.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting(id: &str) -> Meeting {
        Meeting {
            id: id.into(),
            organizer: "alice@example.com".into(),
            subject: Some("Budget".into()),
            pin_required: true,
        }
    }

    #[test]
    fn a_meeting_round_trips_through_its_document_and_answers_at_its_address() {
        let mut all = Meetings::default();
        all.add(meeting("4821937")).unwrap();
        let text = all.to_toml();
        let back = Meetings::from_toml(&text).unwrap();
        assert_eq!(back, all);
        assert_eq!(back.settings.participant_limit, DEFAULT_PARTICIPANT_LIMIT);
        assert_eq!(back.meetings[0].uri(), "sip:meet-4821937@example.com");
        assert_eq!(crate::conference_id("meet-4821937"), Some("4821937"));
        assert_eq!(crate::conference_id("MEET-12"), Some("12"));
        assert_eq!(crate::conference_id("meet-"), None);
        assert_eq!(crate::conference_id("meet-12a"), None);
        assert_eq!(crate::conference_id("alice"), None);
        assert!(Meetings::from_toml("[[meeting]]\nid = \"1\"\norganiser = \"x\"\n").is_err());
        assert_eq!(
            Meetings::from_toml("[settings]\nparticipant_limit = 3\n")
                .unwrap()
                .settings
                .participant_limit,
            3
        );
    }

    #[test]
    fn ids_are_seven_digits_and_never_taken_twice() {
        let mut all = Meetings::default();
        let a = all.free_id(0);
        assert_eq!(a, "1000000");
        all.add(meeting(&a)).unwrap();
        assert_eq!(all.free_id(0), "1000001", "the next free one");
        assert_eq!(all.free_id(u64::MAX).len(), 7);
        assert_eq!(
            all.add(meeting(&a)).unwrap_err(),
            "conference ID 1000000 is taken"
        );
        let mut bad = meeting("12x");
        assert!(all.add(bad.clone()).unwrap_err().contains("not digits"));
        bad.id = "55".into();
        bad.organizer = "alice".into();
        assert!(all.add(bad).unwrap_err().contains("not user@domain"));
        assert!(all.remove(&a));
        assert!(!all.remove(&a));
    }
}
