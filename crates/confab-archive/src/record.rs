//! What is archived: instant messages as sent, and call detail records (calls and sign-ins).

use serde::{Deserialize, Serialize};

/// One archived item. Each carries a unique `id` (the writing server's instance and a
/// counter), so that writing it twice (a queue replayed after a crash) keeps one copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Message(Message),
    Call(Call),
    Registration(Registration),
}

impl Record {
    pub fn id(&self) -> &str {
        match self {
            Self::Message(m) => &m.id,
            Self::Call(c) => &c.id,
            Self::Registration(r) => &r.id,
        }
    }

    /// The record as one line of the local queue (JSON, newline-terminated).
    pub fn to_line(&self) -> Vec<u8> {
        // serializing plain strings and numbers cannot fail
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    pub fn from_line(line: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(line).map_err(|e| e.to_string())
    }
}

/// Where a conversation ran, as archiving policies tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Between users of the deployment, inside.
    Internal,
    /// A user of the deployment signed in from outside, through an Edge.
    Remote,
    /// With a user of a federated partner.
    Federated,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Remote => "remote",
            Self::Federated => "federated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "internal" => Some(Self::Internal),
            "remote" => Some(Self::Remote),
            "federated" => Some(Self::Federated),
            _ => None,
        }
    }

    /// External communications, for a policy: with partners.
    pub fn is_external(self) -> bool {
        self == Self::Federated
    }
}

/// An instant message, one-to-one or to a meeting, with its body exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    /// Unix time in milliseconds the server took it.
    pub at_ms: i64,
    pub sender: String,
    /// The addressee: a user, or a meeting's address (its participants are the meeting's).
    pub recipients: Vec<String>,
    /// The dialog's Call-ID, or for page-mode messages the pair of parties.
    pub conversation: String,
    pub direction: Direction,
    /// The Content-Type as sent, charset included.
    pub content_type: String,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// The server that archived it.
    pub server: String,
    /// Unix time (seconds) after which retention lets it be purged.
    pub keep_until: i64,
}

/// A call or session: from its INVITE to its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub id: String,
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub start_ms: i64,
    /// When the call was answered; `None` when it never was.
    pub answer_ms: Option<i64>,
    pub end_ms: i64,
    /// The final response to the INVITE (200 for an answered call).
    pub status: u16,
    pub reason: String,
    /// `caller`, `callee`, `timeout` (nobody hung up: the server gave up on it), or
    /// `unanswered`.
    pub ended_by: String,
    /// For calls to the phone network: the voice route taken, and the trunk.
    pub route: Option<String>,
    pub trunk: Option<String>,
    /// The servers the call passed: the one recording it first, then its next hops.
    pub servers: Vec<String>,
    pub keep_until: i64,
}

impl Call {
    /// Seconds between answer and end (0 for an unanswered call).
    pub fn duration_s(&self) -> i64 {
        self.answer_ms
            .map_or(0, |a| (self.end_ms - a).max(0) / 1000)
    }
}

/// A sign-in or sign-out of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: String,
    pub at_ms: i64,
    pub user: String,
    /// `sign-in`, `sign-out`, or `expired`.
    pub event: String,
    /// The client's User-Agent.
    pub client: String,
    /// `ip:port` the device registered from.
    pub address: String,
    pub server: String,
    pub keep_until: i64,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_body_survives_the_queue_line_exactly() {
        let m = Record::Message(Message {
            id: "s1-1".into(),
            at_ms: 1,
            sender: "alice@example.com".into(),
            recipients: vec!["bob@example.com".into()],
            conversation: "c".into(),
            direction: Direction::Internal,
            content_type: "application/octet-stream".into(),
            body: (0..=255u8).collect(),
            server: "fe".into(),
            keep_until: 2,
        });
        let line = m.to_line();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(Record::from_line(&line[..line.len() - 1]).unwrap(), m);
    }
}
