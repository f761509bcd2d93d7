//! Request methods. Methods are case-sensitive tokens (RFC 3261 §7.1); the common ones are an enum
//! so that dispatch is a match, the rest keep their text in the message.

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Message,
    Info,
    Update,
    Refer,
    Subscribe,
    Notify,
    Publish,
    Prack,
    /// An extension method; read its text from the message.
    Other,
}

impl Method {
    /// Every method, in declaration order (`ALL[m.index()] == m`).
    pub const ALL: [Self; 15] = [
        Self::Invite,
        Self::Ack,
        Self::Bye,
        Self::Cancel,
        Self::Register,
        Self::Options,
        Self::Message,
        Self::Info,
        Self::Update,
        Self::Refer,
        Self::Subscribe,
        Self::Notify,
        Self::Publish,
        Self::Prack,
        Self::Other,
    ];

    /// The method's place in [`Method::ALL`], for tables of counts.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_bytes(b: &[u8]) -> Self {
        match b {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"BYE" => Self::Bye,
            b"CANCEL" => Self::Cancel,
            b"REGISTER" => Self::Register,
            b"OPTIONS" => Self::Options,
            b"MESSAGE" => Self::Message,
            b"INFO" => Self::Info,
            b"UPDATE" => Self::Update,
            b"REFER" => Self::Refer,
            b"SUBSCRIBE" => Self::Subscribe,
            b"NOTIFY" => Self::Notify,
            b"PUBLISH" => Self::Publish,
            b"PRACK" => Self::Prack,
            _ => Self::Other,
        }
    }

    /// The method's text; empty for [`Method::Other`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Register => "REGISTER",
            Self::Options => "OPTIONS",
            Self::Message => "MESSAGE",
            Self::Info => "INFO",
            Self::Update => "UPDATE",
            Self::Refer => "REFER",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Publish => "PUBLISH",
            Self::Prack => "PRACK",
            Self::Other => "",
        }
    }
}
