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
    /// Dial-in regions: each names the dial plans whose users' meetings list its access
    /// numbers. A dial plan is in one region at most, so the mapping cannot disagree with
    /// itself.
    #[serde(default, rename = "region", skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    #[serde(
        default,
        rename = "access_number",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub access_numbers: Vec<AccessNumber>,
    /// Conference directories: ranges of conference IDs, each owned by a pool.
    #[serde(default, rename = "directory", skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<Directory>,
    #[serde(default, rename = "meeting", skip_serializing_if = "Vec::is_empty")]
    pub meetings: Vec<Meeting>,
}

/// A conference directory: the conference IDs of one range (directory `n` holds the 100,000
/// IDs from `1,000,000 + (n - 1) × 100,000`), owned by one pool — the administrative home of
/// its meetings, moved whole with `confab meeting directory move`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directory {
    /// 1 to [`MAX_DIRECTORIES`].
    pub id: u32,
    /// The owner pool's FQDN.
    pub pool: String,
}

/// The most directories: their ranges fill the seven-digit IDs.
pub const MAX_DIRECTORIES: u32 = 90;

impl Directory {
    /// The first and last conference ID of the directory's range.
    pub fn range(&self) -> (u64, u64) {
        let first = 1_000_000 + u64::from(self.id.saturating_sub(1)) * 100_000;
        (first, first + 99_999)
    }

    /// Whether conference ID `id` is in the directory's range.
    pub fn holds(&self, id: &str) -> bool {
        let (first, last) = self.range();
        id.parse::<u64>().is_ok_and(|n| (first..=last).contains(&n))
    }
}

/// A dial-in conferencing region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: String,
    /// Dial plans (of the voice configuration) in this region.
    #[serde(default)]
    pub dial_plans: Vec<String>,
}

/// A phone number callers dial to join meetings by phone: the conferencing attendant answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessNumber {
    /// E.164 (`+14255550199`).
    pub number: String,
    /// As invitations show it (`+1 (425) 555-0199`).
    pub display: String,
    /// The attendant's languages, the first its default (`en-US`).
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// The regions whose meetings list it.
    #[serde(default)]
    pub regions: Vec<String>,
}

fn default_languages() -> Vec<String> {
    vec!["en-US".to_owned()]
}

/// What holds for every meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The most participants one meeting admits at a time.
    #[serde(default = "default_limit")]
    pub participant_limit: usize,
    /// Seconds without any RTP from a participant (who sends) after which the participant is
    /// taken for gone and hung up on.
    #[serde(default = "default_media_timeout")]
    pub media_timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            participant_limit: DEFAULT_PARTICIPANT_LIMIT,
            media_timeout: DEFAULT_MEDIA_TIMEOUT,
        }
    }
}

/// Seconds without RTP after which a participant is taken for gone.
pub const DEFAULT_MEDIA_TIMEOUT: u64 = 30;

fn default_media_timeout() -> u64 {
    DEFAULT_MEDIA_TIMEOUT
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
    /// The conference directory holding its ID, if directories are used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<u32>,
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
    /// so that IDs are not guessed in order), in directory `directory`'s range or among all
    /// seven-digit IDs. Tries the numbers after it until one is free; `None` when the range is
    /// full.
    pub fn free_id(&self, random: u64, directory: Option<&Directory>) -> Option<String> {
        let (first, last) = directory.map_or(
            (10u64.pow(ID_DIGITS - 1), 10u64.pow(ID_DIGITS) - 1),
            Directory::range,
        );
        let span = last - first + 1;
        let start = random % span;
        (0..span)
            .map(|k| (first + (start + k) % span).to_string())
            .find(|id| self.get(id).is_none())
    }

    /// The directory of pool `pool` (the first, when it owns several).
    pub fn directory_of(&self, pool: &str) -> Option<&Directory> {
        self.directories
            .iter()
            .find(|d| d.pool.eq_ignore_ascii_case(pool))
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

    /// Every problem of the regions and access numbers, each naming its object and the fix.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for r in &self.regions {
            if self.regions.iter().filter(|o| o.name == r.name).count() > 1 {
                problems.push(format!("region {:?} is defined twice; keep one", r.name));
            }
            for p in &r.dial_plans {
                if let Some(other) = seen.insert(p.as_str(), r.name.as_str()) {
                    if other != r.name {
                        problems.push(format!(
                            "dial plan {p:?} is in regions {other:?} and {:?}; a dial plan belongs to one region",
                            r.name
                        ));
                    }
                }
            }
        }
        for a in &self.access_numbers {
            let digits = a.number.strip_prefix('+').unwrap_or_default();
            if digits.len() < 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "access number {:?} is not E.164; write it as +<country code><number>",
                    a.number
                ));
            }
            if self
                .access_numbers
                .iter()
                .filter(|o| o.number == a.number)
                .count()
                > 1
            {
                problems.push(format!(
                    "access number {} is defined twice; keep one",
                    a.number
                ));
            }
            if a.display.trim().is_empty() {
                problems.push(format!(
                    "access number {} has no display number; give --display",
                    a.number
                ));
            }
            if a.languages.is_empty() {
                problems.push(format!(
                    "access number {} has no language; give --language",
                    a.number
                ));
            }
            for r in &a.regions {
                if !self.regions.iter().any(|x| x.name == *r) {
                    problems.push(format!(
                        "access number {} names region {r:?}, which does not exist; add it with `confab meeting region add`",
                        a.number
                    ));
                }
            }
        }
        for d in &self.directories {
            if !(1..=MAX_DIRECTORIES).contains(&d.id) {
                problems.push(format!(
                    "directory {} is outside 1..={MAX_DIRECTORIES}",
                    d.id
                ));
            }
            if self.directories.iter().filter(|o| o.id == d.id).count() > 1 {
                problems.push(format!("directory {} is defined twice; keep one", d.id));
            }
            if d.pool.trim().is_empty() {
                problems.push(format!("directory {} has no pool; give --pool", d.id));
            }
        }
        for m in &self.meetings {
            let Some(id) = m.directory else {
                continue;
            };
            match self.directories.iter().find(|d| d.id == id) {
                None => problems.push(format!(
                    "meeting {} is in directory {id}, which does not exist; add it back or remove the meeting",
                    m.id
                )),
                Some(d) if !d.holds(&m.id) => problems.push(format!(
                    "meeting {} is outside directory {id}'s range",
                    m.id
                )),
                Some(_) => {}
            }
        }
        problems.dedup();
        problems
    }

    /// The region of dial plan `plan`, if one holds it.
    pub fn region_of(&self, plan: &str) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.dial_plans.iter().any(|p| p == plan))
    }

    /// The access numbers meetings of a user on dial plan `plan` list: its region's.
    pub fn numbers_for(&self, plan: &str) -> Vec<&AccessNumber> {
        let Some(region) = self.region_of(plan) else {
            return Vec::new();
        };
        self.access_numbers
            .iter()
            .filter(|a| a.regions.contains(&region.name))
            .collect()
    }

    /// The access number `number` (E.164), if it is one.
    pub fn access_number(&self, number: &str) -> Option<&AccessNumber> {
        self.access_numbers.iter().find(|a| a.number == number)
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
            directory: None,
        }
    }

    #[test]
    fn a_directory_hands_out_ids_of_its_range_and_keeps_its_meetings_when_moved() {
        let mut all = Meetings::default();
        all.directories.push(Directory {
            id: 3,
            pool: "pool01.example.com".into(),
        });
        let d = all.directory_of("POOL01.example.com").unwrap().clone();
        assert_eq!(d.range(), (1_200_000, 1_299_999));
        let id = all.free_id(123, Some(&d)).unwrap();
        assert_eq!(id, "1200123");
        let mut m = meeting(&id);
        m.directory = Some(3);
        all.add(m).unwrap();
        assert!(all.check().is_empty(), "{:?}", all.check());
        // moved whole: the meetings keep their IDs and addresses
        all.directories[0].pool = "pool02.example.com".into();
        assert!(all.check().is_empty());
        assert_eq!(all.meetings[0].uri(), "sip:meet-1200123@example.com");
        all.meetings[0].id = "1300000".into();
        assert!(
            all.check()[0].contains("outside directory 3's range"),
            "{:?}",
            all.check()
        );
        all.directories[0].id = 91;
        assert!(all.check().iter().any(|p| p.contains("outside 1..=90")));
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
    fn regions_map_dial_plans_to_access_numbers_and_cannot_disagree() {
        let doc = r#"
[[region]]
name = "Redmond"
dial_plans = ["Redmond", "Seattle"]
[[region]]
name = "Dublin"
dial_plans = ["Dublin"]
[[access_number]]
number = "+14255550199"
display = "+1 (425) 555-0199"
regions = ["Redmond"]
[[access_number]]
number = "+35315550100"
display = "+353 1 555 0100"
languages = ["en-IE", "ga-IE"]
regions = ["Dublin"]
"#;
        let m = Meetings::from_toml(doc).unwrap();
        assert!(m.check().is_empty(), "{:?}", m.check());
        let numbers: Vec<&str> = m
            .numbers_for("Seattle")
            .iter()
            .map(|a| a.number.as_str())
            .collect();
        assert_eq!(numbers, ["+14255550199"]);
        assert_eq!(
            m.access_number("+14255550199").unwrap().languages,
            ["en-US"],
            "the default language"
        );
        assert!(m.numbers_for("Paris").is_empty());

        let mut bad = m.clone();
        bad.regions[1].dial_plans.push("Seattle".into());
        bad.access_numbers[0].regions.push("Tokyo".into());
        bad.access_numbers[1].number = "5550100".into();
        let problems = bad.check();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"Seattle\" is in regions \"Redmond\" and \"Dublin\"")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("names region \"Tokyo\", which does not exist")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"5550100\" is not E.164")),
            "{problems:?}"
        );
    }

    #[test]
    fn ids_are_seven_digits_and_never_taken_twice() {
        let mut all = Meetings::default();
        let a = all.free_id(0, None).unwrap();
        assert_eq!(a, "1000000");
        all.add(meeting(&a)).unwrap();
        assert_eq!(
            all.free_id(0, None).unwrap(),
            "1000001",
            "the next free one"
        );
        assert_eq!(all.free_id(u64::MAX, None).unwrap().len(), 7);
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
