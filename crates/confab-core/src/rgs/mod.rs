//! Response groups: the application (`crate::apps`) that answers calls to workflows, plays
//! their welcome, IVR questions and music on hold through the media engine, keeps callers in
//! queues, offers each call to agents by their group's routing method, and puts the caller
//! through to the agent who answers by third-party call control (RFC 3725): the agent is
//! invited with the caller's session description, the caller re-INVITEd with the agent's,
//! then the two dialogs are connected and media flows between them directly.
//!
//! Sans-IO like every application: the configuration is a [`Snapshot`] shared by the shards
//! (replaced by housekeeping when the store changes), time and presence come in the `Env`,
//! and media are commands. It runs on the owner shard; requests for workflows are handed
//! there (`engine/shards.rs`).
//!
//! `caller.rs` is a caller's path (answer, hours, welcome, IVR, closed, actions, hang-up),
//! `queue.rs` the queues and the hunt for an agent.

mod caller;
mod queue;
pub(crate) mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use confab_media::ports::PortPool;
use confab_media::sdp::Origin;
use confab_media::MediaEvent;
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use crate::apps::{Action, Application, CallEvent, Env, MediaCommand};
pub(crate) use snapshot::Snapshot;

/// The configuration in force, shared by every shard (`None`: no response groups).
pub(crate) type Handle = Arc<RwLock<Option<Arc<Snapshot>>>>;

/// Counts, for the operator and the tests: what is held now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RgsStats {
    /// Callers in a workflow (answered, not yet hung up), connected ones included.
    pub callers: usize,
    /// Callers waiting in a queue.
    pub waiting: usize,
    /// Agent calls ringing.
    pub ringing: usize,
    /// RTP ports in use.
    pub ports: usize,
}

/// The response-group application.
pub(crate) struct ResponseGroups {
    handle: Handle,
    ports: PortPool,
    next: u64,
    callers: HashMap<u64, caller::Caller>,
    /// Callers by the INVITE's Call-ID and their From tag (known before the dialog is).
    by_call: HashMap<(String, String), u64>,
    /// Calls to agents (or forward targets) ringing, by the call's number.
    offers: HashMap<u64, queue::Offer>,
    /// Agents' dialogs with the caller they serve.
    agent_dialogs: HashMap<DialogId, u64>,
    agents: HashMap<String, queue::AgentState>,
    /// Callers waiting, per queue, oldest first.
    waiting: HashMap<String, VecDeque<u64>>,
    /// What each timer token is for.
    timers: HashMap<u64, (u64, caller::TimerKind)>,
    /// Per group: the member offered its last call (round robin).
    last_offered: HashMap<String, usize>,
    /// The stats published for the operator after each change.
    stats: Arc<RwLock<RgsStats>>,
}

impl ResponseGroups {
    pub(crate) fn new(handle: Handle, ports: (u16, u16), stats: Arc<RwLock<RgsStats>>) -> Self {
        Self {
            handle,
            ports: PortPool::new(ports.0, ports.1),
            next: 1,
            callers: HashMap::new(),
            by_call: HashMap::new(),
            offers: HashMap::new(),
            agent_dialogs: HashMap::new(),
            agents: HashMap::new(),
            waiting: HashMap::new(),
            timers: HashMap::new(),
            last_offered: HashMap::new(),
            stats,
        }
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        crate::apps::in_force(&self.handle)
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// A timer for caller `caller`.
    fn timer(
        &mut self,
        caller: u64,
        kind: caller::TimerKind,
        after: std::time::Duration,
        out: &mut Vec<Action>,
    ) -> u64 {
        let token = self.id();
        self.timers.insert(token, (caller, kind));
        out.push(Action::Timer { token, after });
        token
    }

    /// The caller a dialog of the application belongs to: the caller's own, or an agent's.
    fn caller_of(&self, dialog: &DialogId) -> Option<u64> {
        self.by_call
            .get(&(dialog.call_id.clone(), dialog.remote_tag.clone()))
            .copied()
    }

    fn publish_stats(&self) {
        let s = RgsStats {
            callers: self.callers.len(),
            waiting: self.waiting.values().map(VecDeque::len).sum(),
            ringing: self.offers.len(),
            ports: self.ports.in_use(),
        };
        *self
            .stats
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }
}

impl Application for ResponseGroups {
    fn name(&self) -> &str {
        "response groups"
    }

    fn claims(&self, user: &str) -> bool {
        self.snapshot()
            .is_some_and(|s| s.workflow_of_user(user).is_some())
    }

    fn on_request(
        &mut self,
        env: &Env,
        req: &Message,
        dialog: Option<&DialogId>,
        out: &mut Vec<Action>,
    ) {
        match dialog {
            None => self.arrive(env, req, out),
            Some(d) => self.in_dialog(env, req, d, out),
        }
        self.publish_stats();
    }

    fn on_response(&mut self, env: &Env, dialog: &DialogId, resp: &Message, out: &mut Vec<Action>) {
        if let Some(c) = self.caller_of(dialog) {
            self.caller_answered_reinvite(env, c, resp, out);
        }
        self.publish_stats();
    }

    fn on_dialog_ended(&mut self, env: &Env, dialog: &DialogId, out: &mut Vec<Action>) {
        if let Some(c) = self.agent_dialogs.remove(dialog) {
            self.agent_left(env, c, out);
        } else if let Some(c) = self.caller_of(dialog) {
            self.hang_up(env, c, out);
        }
        self.publish_stats();
    }

    fn on_call(&mut self, env: &Env, call: u64, event: CallEvent, out: &mut Vec<Action>) {
        self.call_event(env, call, event, out);
        self.publish_stats();
    }

    fn on_timer(&mut self, env: &Env, token: u64, out: &mut Vec<Action>) {
        if let Some((caller, kind)) = self.timers.remove(&token) {
            self.timer_fired(env, caller, kind, token, out);
        }
        self.publish_stats();
    }

    fn on_media(&mut self, env: &Env, stream: u64, event: MediaEvent, out: &mut Vec<Action>) {
        self.media_event(env, stream, event, out);
        self.publish_stats();
    }
}

/// Our o= line for caller `id`'s session, at `version`.
fn origin(env: &Env, id: u64, version: u64) -> Origin {
    Origin {
        session: id,
        version,
        address: env.media_address,
    }
}

/// Stops and closes a caller's stream.
fn close_stream(stream: u64, out: &mut Vec<Action>) {
    out.push(Action::Media(MediaCommand::Close { stream }));
}
#[cfg(test)]
mod tests;
