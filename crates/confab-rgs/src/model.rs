//! The response-group document: what `confab rgs export` writes and `import` reads, and what
//! the store keeps. Strict: an unknown key is an error that names it.

use serde::{Deserialize, Serialize};

/// Every response-group object of the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RgsConfig {
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, rename = "queue", skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<Queue>,
    #[serde(default, rename = "workflow", skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<Workflow>,
    #[serde(default, rename = "holidays", skip_serializing_if = "Vec::is_empty")]
    pub holiday_sets: Vec<HolidaySet>,
}

/// An agent group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// The owner pool's FQDN.
    pub pool: String,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub participation: Participation,
    /// Seconds an agent is alerted before the call moves on.
    #[serde(default = "default_alert")]
    pub alert_time: u32,
    /// Members, as `user@domain`, in order (Serial offers them in this order).
    #[serde(default)]
    pub agents: Vec<String>,
}

fn default_alert() -> u32 {
    20
}

/// How a group offers a call to its agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// One at a time, in the group's order, from the first each time.
    Serial,
    /// One at a time, starting after the agent offered the last call.
    RoundRobin,
    /// One at a time, the agent idle longest first.
    #[default]
    LongestIdle,
    /// Every available agent at once.
    Parallel,
    /// Every signed-in agent at once, whatever their presence.
    Attendant,
}

impl Routing {
    pub fn label(self) -> &'static str {
        match self {
            Self::Serial => "serial",
            Self::RoundRobin => "round-robin",
            Self::LongestIdle => "longest-idle",
            Self::Parallel => "parallel",
            Self::Attendant => "attendant",
        }
    }
}

/// Whether agents sign in to the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Participation {
    /// Every member takes calls.
    #[default]
    Informal,
    /// Only members signed in to the group take calls.
    Formal,
}

/// A queue: callers wait here while its groups' agents are offered the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub name: String,
    pub pool: String,
    /// Agent groups, offered the call in this order.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overflow: Option<Overflow>,
}

/// What happens to a caller who waited `after` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    pub after: u32,
    pub then: Then,
}

/// What happens when `callers` are waiting and one more arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overflow {
    pub callers: u32,
    /// Which caller the action takes: the one arriving (newest) or the one waiting longest.
    #[serde(default)]
    pub candidate: Candidate,
    pub then: Then,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Candidate {
    #[default]
    Newest,
    Oldest,
}

/// An action on a call: `disconnect`, `forward:sip:bob@example.com` (a user or any SIP
/// address), `forward:tel:+14255550100` (a number), `queue:Second line`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Then {
    Disconnect,
    Forward(String),
    Queue(String),
}

impl TryFrom<String> for Then {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for Then {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "disconnect" {
            return Ok(Self::Disconnect);
        }
        if let Some(to) = s.strip_prefix("forward:") {
            let to = to.trim();
            if to.starts_with("sip:") || to.starts_with("sips:") || to.starts_with("tel:") {
                return Ok(Self::Forward(to.to_owned()));
            }
            return Err(format!(
                "`{s}`: forward to a sip: or tel: address, as forward:sip:bob@example.com or forward:tel:+14255550100"
            ));
        }
        if let Some(q) = s.strip_prefix("queue:") {
            if !q.trim().is_empty() {
                return Ok(Self::Queue(q.trim().to_owned()));
            }
        }
        Err(format!(
            "`{s}` is not an action: use disconnect, forward:ADDRESS or queue:NAME"
        ))
    }
}

impl From<Then> for String {
    fn from(t: Then) -> Self {
        t.to_string()
    }
}

impl std::fmt::Display for Then {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disconnect => f.write_str("disconnect"),
            Self::Forward(to) => write!(f, "forward:{to}"),
            Self::Queue(q) => write!(f, "queue:{q}"),
        }
    }
}

/// What callers hear: given as text (spoken by espeak-ng when configured) or a WAV file;
/// `audio` names the stored sound either became.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The file it was made from (for the administrator's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The stored sound (a store setting [`crate::AUDIO_PREFIX`] + this), set when it is
    /// configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
}

/// A workflow: what callers reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    pub pool: String,
    /// Its SIP address, `sip:helpdesk@example.com`.
    pub address: String,
    /// Its phone number (Line URI), `tel:+14255550100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// A hunt group: callers go straight to this queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// An interactive workflow: callers choose a queue by pressing keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ivr: Option<Ivr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<Prompt>,
    /// Music on hold (a tune made by Confab when none is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub music: Option<Prompt>,
    /// Business hours; always open without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Hours>,
    /// What callers outside business hours hear and get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_hours: Option<Closed>,
    /// Holiday sets (by name) during which the workflow is closed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holiday: Option<Closed>,
    /// Agent anonymity: the caller is not told which agent answered.
    #[serde(default)]
    pub anonymous: bool,
}

/// A closed workflow's message and action (disconnect when none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Closed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Prompt>,
    #[serde(default = "disconnect")]
    pub then: Then,
}

fn disconnect() -> Then {
    Then::Disconnect
}

/// An interactive voice response level: a question and the keys that answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ivr {
    pub question: Prompt,
    #[serde(default, rename = "option")]
    pub options: Vec<IvrOption>,
    /// Seconds to wait for a key before asking again (three times, then disconnect).
    #[serde(default = "default_ivr_wait")]
    pub wait: u32,
}

fn default_ivr_wait() -> u32 {
    10
}

/// A key of an IVR level, leading to a queue or to a second level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IvrOption {
    pub digit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ivr: Option<Box<Ivr>>,
}

/// Business hours: open ranges per weekday (`"08:00-17:00"`) in a time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hours {
    /// An IANA time zone, `Europe/Paris`.
    pub zone: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mon: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tue: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thu: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fri: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sat: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sun: Vec<String>,
}

impl Hours {
    /// The ranges of each day, Monday first.
    pub fn days(&self) -> [(&'static str, &[String]); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }
}

/// A named set of holidays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HolidaySet {
    pub name: String,
    pub pool: String,
    #[serde(default, rename = "day")]
    pub days: Vec<Holiday>,
}

/// A holiday: from `start` to `end` (`2026-12-24T00:00`), in the workflow's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub name: String,
    pub start: String,
    pub end: String,
}

impl RgsConfig {
    /// Reads a document; the error names the line and key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    pub fn workflow(&self, name: &str) -> Option<&Workflow> {
        self.workflows.iter().find(|w| w.name == name)
    }

    /// Every object of pool `from` handed to pool `to`, as one change: workflows, queues,
    /// groups and holiday sets keep their names, numbers and addresses. How many moved.
    pub fn move_pool(&mut self, from: &str, to: &str) -> usize {
        let mut moved = 0;
        let pools = self
            .groups
            .iter_mut()
            .map(|g| &mut g.pool)
            .chain(self.queues.iter_mut().map(|q| &mut q.pool))
            .chain(self.workflows.iter_mut().map(|w| &mut w.pool))
            .chain(self.holiday_sets.iter_mut().map(|h| &mut h.pool));
        for pool in pools {
            if pool.eq_ignore_ascii_case(from) {
                *pool = to.to_owned();
                moved += 1;
            }
        }
        moved
    }
}
