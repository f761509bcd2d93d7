//! Shards: one engine per core, each on its own task with its own UDP socket (the kernel
//! spreads datagrams over them by source, `SO_REUSEPORT`) and its share of the connections.
//! What one engine starts, it finishes: the branches and tags it mints end in its mark
//! (`~` and its number), and a message that reaches another engine — a response to its
//! branch, a request in a dialog it owns — is handed to it ([`Handover`]) before anything
//! else looks at it. Presence and housekeeping have one owner (shard 0): presence requests go
//! there, and the core events presence consumes are sent there. Everything else (location,
//! users, digest, lockout) is shared (`shared.rs`).

use std::fmt;

use sip_proto::{Message, Method};
use sip_transport::Source;

use super::events::CoreEvent;
use super::{Engine, Now};

/// The shard that owns presence (its requests, its state, its NOTIFYs) and housekeeping.
pub(super) const OWNER: usize = 0;

/// Work for another shard: a message that belongs to it, or a core event it consumes.
#[derive(Debug)]
pub struct Handover(pub(super) Work);

#[derive(Debug)]
pub(super) enum Work {
    Message(Message, Source),
    Event(CoreEvent),
}

/// The mark a shard puts at the end of what it mints: `~` and its number in hex.
pub(super) struct Mark(usize);

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "~{:x}", self.0)
    }
}

/// The shard whose mark `token` (a branch or tag) carries, if any: the hex digits after its
/// last `~`.
pub(super) fn marked(token: &str) -> Option<usize> {
    let (_, rest) = token.rsplit_once('~')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .map_or(rest, |end| &rest[..end]);
    usize::from_str_radix(digits, 16).ok()
}

impl Engine {
    /// This shard's mark, for branches and tags it mints.
    pub(super) fn mark(&self) -> Mark {
        Mark(self.shard)
    }

    /// Whether this shard owns presence and housekeeping.
    pub(super) fn is_owner(&self) -> bool {
        self.shard == OWNER
    }

    /// The shard a message belongs to when it is another: a response to a branch another
    /// minted, a request within a dialog another owns, presence's requests. A mark naming no
    /// shard (a peer's tag that happens to hold a `~`) is ours.
    pub(super) fn belongs_elsewhere(&self, m: &Message) -> Option<usize> {
        if self.shards == 1 {
            return None;
        }
        let shard = if m.is_request() {
            match m.method() {
                Method::Publish | Method::Subscribe => OWNER,
                _ => marked(m.to().ok()?.tag()?)?,
            }
        } else {
            marked(m.top_via().ok()?.branch()?)?
        };
        (shard != self.shard && shard < self.shards).then_some(shard)
    }

    pub(super) fn hand_over(&mut self, shard: usize, work: Work) {
        self.handovers.push((shard, Handover(work)));
    }

    /// Work another shard handed over (see [`Engine::poll_handover`]).
    pub fn handle_handover(&mut self, now: Now, h: Handover) {
        match h.0 {
            Work::Message(m, source) => self.handle_message(now, m, source),
            Work::Event(ev) => self.core_events.push_back((ev, false)),
        }
        self.deliver_events(now);
    }

    /// Work for another shard, to be given to its [`Engine::handle_handover`].
    pub fn poll_handover(&mut self) -> Option<(usize, Handover)> {
        self.handovers.pop()
    }

    /// Which shard this engine is, of how many.
    pub fn shard(&self) -> (usize, usize) {
        (self.shard, self.shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_read_back_wherever_it_sits_in_a_token() {
        assert_eq!(marked(&format!("abc{}", Mark(1))), Some(1));
        assert_eq!(marked(&format!("z9hG4bK5-1f{}-seal", Mark(10))), Some(10));
        assert_eq!(marked("z9hG4bKplain"), None);
        assert_eq!(marked("tag~"), None);
        assert_eq!(marked("a~1~2"), Some(2));
    }
}
