//! Core events: what happened in the core that other services may care about (a user's
//! devices changed, a call was answered or ended, a user was edited, a connection closed).
//! Whoever makes it happen publishes it once ([`Engine::emit`]); after the work at hand,
//! [`Engine::deliver_events`] hands each to the services that consume it, listed here in one
//! place. Services do not call each other: a new consumer is one more arm below, a new kind
//! of event one more variant.

use sip_transport::FlowId;

use super::{Engine, Now};

/// Something that happened in the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CoreEvent {
    /// `aor`'s registered devices changed: one arrived, left, expired or lost its connection.
    DevicesChanged(String),
    /// A proxied INVITE was answered 2xx: `parties` (our users among caller and callee) are in
    /// a call.
    CallAnswered {
        call_id: String,
        parties: Vec<String>,
    },
    /// A BYE of the call passed through.
    CallEnded(String),
    /// A user was edited in the store (password, home pool, removal), perhaps by another
    /// process.
    UserChanged(String),
    /// A connection closed.
    ConnectionClosed(FlowId),
}

impl Engine {
    /// Publishes `ev`; it is delivered after the work at hand.
    pub(super) fn emit(&mut self, ev: CoreEvent) {
        self.core_events.push_back(ev);
    }

    /// Delivers what was published, including what the consumers publish in turn.
    pub(super) fn deliver_events(&mut self, now: Now) {
        while let Some(ev) = self.core_events.pop_front() {
            match ev {
                CoreEvent::DevicesChanged(aor) => self.devices_changed(now, &aor),
                CoreEvent::CallAnswered { call_id, parties } => {
                    self.call_answered(now, &call_id, parties)
                }
                CoreEvent::CallEnded(call_id) => self.call_over(now, &call_id),
                CoreEvent::UserChanged(aor) => {
                    self.users.remove(&aor); // authentication reads the user afresh
                    self.recheck_user(&aor); // the registrar keeps or drops its devices
                }
                CoreEvent::ConnectionClosed(flow) => {
                    self.open_flows.remove(&flow);
                    self.connection_closed(flow); // outbound bindings on it end
                }
            }
        }
    }
}
