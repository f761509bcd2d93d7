//! Core events: what happened in the core that other services may care about (a user's
//! devices changed, a call was answered or ended, a user was edited, a connection closed).
//! Whoever makes it happen publishes it once ([`Engine::emit`]); after the work at hand,
//! [`Engine::deliver_events`] hands each to the services that consume it, listed here in one
//! place. Services do not call each other: a new consumer is one more arm below, a new kind
//! of event one more variant.

use sip_transport::FlowId;

use super::shards::{Work, OWNER};
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
    /// This server's place in its pool was read from the database: whether an operator
    /// drains it, and which servers of the pool take sign-ins instead.
    PoolChanged {
        draining: bool,
        alternates: Vec<String>,
    },
}

impl CoreEvent {
    /// The other shards that consume this event when `shard` published it: presence's news
    /// goes to its owner, the pool's (read by the owner's housekeeping) to all.
    fn audience(&self, shard: usize, shards: usize) -> std::ops::Range<usize> {
        match self {
            Self::DevicesChanged(_) | Self::CallAnswered { .. } | Self::CallEnded(_)
                if shard != OWNER =>
            {
                OWNER..OWNER + 1
            }
            Self::PoolChanged { .. } if shard == OWNER => 0..shards,
            _ => 0..0,
        }
    }

    /// Whether `shard` consumes this event itself.
    fn consumed_on(&self, shard: usize) -> bool {
        match self {
            Self::DevicesChanged(_) | Self::CallAnswered { .. } | Self::CallEnded(_) => {
                shard == OWNER
            }
            _ => true,
        }
    }
}

impl Engine {
    /// Publishes `ev`; it is delivered after the work at hand.
    pub(super) fn emit(&mut self, ev: CoreEvent) {
        self.core_events.push_back((ev, true));
    }

    /// Delivers what was published, including what the consumers publish in turn.
    pub(super) fn deliver_events(&mut self, now: Now) {
        while let Some((ev, here)) = self.core_events.pop_front() {
            if here {
                for shard in ev.audience(self.shard, self.shards) {
                    if shard != self.shard {
                        self.hand_over(shard, Work::Event(ev.clone()));
                    }
                }
            }
            if !ev.consumed_on(self.shard) {
                continue;
            }
            match ev {
                CoreEvent::DevicesChanged(aor) => self.devices_changed(now, &aor),
                CoreEvent::CallAnswered { call_id, parties } => {
                    self.call_answered(now, &call_id, parties)
                }
                CoreEvent::CallEnded(call_id) => self.call_over(now, &call_id),
                CoreEvent::UserChanged(aor) => {
                    self.shared.users.of(&aor).remove(&aor); // authentication reads it afresh
                    self.recheck_user(&aor); // the registrar keeps or drops its devices
                }
                CoreEvent::ConnectionClosed(flow) => {
                    self.seen_flows.remove(&flow);
                    self.shared.open_flows.of(&flow).remove(&flow);
                    self.connection_closed(now, flow); // outbound bindings on it end
                }
                CoreEvent::PoolChanged {
                    draining,
                    alternates,
                } => self.pool_changed(draining, alternates),
            }
        }
    }
}
