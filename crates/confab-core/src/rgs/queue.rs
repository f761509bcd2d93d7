//! Queues and the hunt for an agent: a caller enters a queue (or overflows), hears music,
//! and is offered to the queue's groups in order, each by its routing method (`confab_rgs::hunt`)
//! among the agents free to take it; the first to answer is put through (RFC 3725: the agent
//! got the caller's description, the caller is re-INVITEd with the agent's, then the dialogs
//! are connected). A queue's time-out and overflow carry out their actions.

use std::time::Duration;

use confab_media::sdp;
use confab_rgs::hunt::{self, Agent, Offer as HuntOffer};
use confab_rgs::{Candidate, Then};
use sip_proto::Message;

use super::caller::{Step, TimerKind};
use super::{close_stream, origin, ResponseGroups};
use crate::apps::{Action, CallEvent, Env, MediaCommand};
use crate::presence::Availability;

/// How long a caller nobody could be offered to waits before the groups are tried again.
const RETRY: Duration = Duration::from_secs(3);

/// A call placed to an agent or a forward target.
pub(super) struct Offer {
    pub(super) caller: u64,
    pub(super) agent: String,
    /// Offered by the hunt (else a forward).
    pub(super) hunted: bool,
}

/// What the hunt knows of an agent beyond the configuration.
#[derive(Debug, Default)]
pub(super) struct AgentState {
    /// The caller the agent is ringing for or serving.
    pub(super) busy_with: Option<u64>,
    /// When the agent's last response-group call ended, unix seconds.
    pub(super) idle_since: i64,
}

/// A caller's hunt: the group being tried, the agents left to offer one by one, the calls
/// ringing.
#[derive(Debug, Default)]
pub(super) struct Hunt {
    group: usize,
    order: Vec<String>,
    ringing: Vec<u64>,
    alert: Option<u64>,
    retry: Option<u64>,
}

impl ResponseGroups {
    /// The caller joins queue `q` (or the overflow's action takes someone).
    pub(super) fn enter_queue(&mut self, env: &Env, id: u64, q: &str, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        let Some(queue) = c.snap.config.queue(q).cloned() else {
            return self.bye(id, out);
        };
        if let Some(old) = c.queue.clone() {
            self.leave_queue(id, &old);
        }
        let hunt = self.take_hunt(id);
        self.stop_hunt(id, &hunt, out);
        let waiting = self
            .waiting
            .get(q)
            .map_or(0, std::collections::VecDeque::len);
        if let Some(o) = queue
            .overflow
            .as_ref()
            .filter(|o| waiting >= o.callers as usize)
        {
            let taken = match o.candidate {
                Candidate::Newest => id,
                Candidate::Oldest => self
                    .waiting
                    .get(q)
                    .and_then(|w| w.front().copied())
                    .unwrap_or(id),
            };
            tracing::info!(event = "rgs.overflow", queue = %q, waiting, then = %o.then, "queue overflow");
            if taken == id {
                return self.then(env, id, &o.then, out);
            }
            self.leave_queue(taken, q);
            let then = o.then.clone();
            self.then(env, taken, &then, out);
        }
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        c.queue = Some(q.to_owned());
        c.step = Step::Queued;
        c.hunt = Hunt::default();
        self.waiting.entry(q.to_owned()).or_default().push_back(id);
        self.music(id, out);
        if let Some(t) = &queue.timeout {
            let token = self.timer(
                id,
                TimerKind::Timeout,
                Duration::from_secs(u64::from(t.after)),
                out,
            );
            if let Some(c) = self.callers.get_mut(&id) {
                c.timeout = Some(token);
            }
        }
        self.hunt(env, id, out);
    }

    /// The caller's hunt, taken out (to be stopped).
    fn take_hunt(&mut self, id: u64) -> Hunt {
        self.callers
            .get_mut(&id)
            .map(|c| std::mem::take(&mut c.hunt))
            .unwrap_or_default()
    }

    pub(super) fn leave_queue(&mut self, id: u64, q: &str) {
        if let Some(w) = self.waiting.get_mut(q) {
            w.retain(|&c| c != id);
            if w.is_empty() {
                self.waiting.remove(q);
            }
        }
        if let Some(c) = self.callers.get_mut(&id) {
            c.queue = None;
            c.timeout = None;
        }
    }

    pub(super) fn queue_timeout(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        let Some(q) = c.queue.clone() else { return };
        let then = c
            .snap
            .config
            .queue(&q)
            .and_then(|q| q.timeout.as_ref())
            .map_or(Then::Disconnect, |t| t.then.clone());
        tracing::info!(event = "rgs.timeout", queue = %q, then = %then, "a caller waited the queue's time-out");
        self.leave_queue(id, &q);
        let hunt = self.take_hunt(id);
        self.stop_hunt(id, &hunt, out);
        self.then(env, id, &then, out);
    }

    /// Offers the call to the next group that has someone to offer it to.
    fn hunt(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        loop {
            let Some(c) = self.callers.get(&id) else {
                return;
            };
            if c.step != Step::Queued {
                return;
            }
            let Some(queue) = c.queue.as_ref().and_then(|q| c.snap.config.queue(q)) else {
                return;
            };
            let Some(group) = queue
                .groups
                .get(c.hunt.group)
                .and_then(|g| c.snap.config.group(g))
                .cloned()
            else {
                // every group tried: again in a moment
                let token = self.timer(id, TimerKind::Retry, RETRY, out);
                if let Some(c) = self.callers.get_mut(&id) {
                    c.hunt = Hunt {
                        retry: Some(token),
                        ..Hunt::default()
                    };
                }
                return;
            };
            let current = self.snapshot();
            let views: Vec<Agent> = group
                .agents
                .iter()
                .map(|a| {
                    let state = self.agents.get(a);
                    let presence = env.availability(a);
                    Agent {
                        signed_in: current.as_ref().unwrap_or(&c.snap).signed_in(&group, a),
                        available: state.is_none_or(|s| s.busy_with.is_none())
                            && match presence {
                                Availability::Busy
                                | Availability::InACall
                                | Availability::DoNotDisturb => false,
                                // signed in at another server of the pool, perhaps: the
                                // call tells
                                Availability::Offline => !env.offline_is_certain(),
                                _ => true,
                            },
                        idle_since: state.map_or(0, |s| s.idle_since),
                    }
                })
                .collect();
            // attendant rings busy agents too, not one already ringing for this caller
            let offer = hunt::offer(
                group.routing,
                &views,
                self.last_offered.get(&group.name).copied(),
            );
            let alert = Duration::from_secs(u64::from(group.alert_time));
            match offer {
                HuntOffer::OneByOne(list) if !list.is_empty() => {
                    let order = list
                        .iter()
                        .rev()
                        .map(|&i| group.agents[i].clone())
                        .collect();
                    if let Some(c) = self.callers.get_mut(&id) {
                        c.hunt.order = order;
                    }
                    return self.ring_next(env, id, &group, alert, out);
                }
                HuntOffer::Together(list) if !list.is_empty() => {
                    for i in list {
                        let agent = group.agents[i].clone();
                        self.ring(env, id, &agent, true, out);
                    }
                    let token = self.timer(id, TimerKind::Alert, alert, out);
                    if let Some(c) = self.callers.get_mut(&id) {
                        c.hunt.alert = Some(token);
                    }
                    return;
                }
                _ => {
                    if let Some(c) = self.callers.get_mut(&id) {
                        c.hunt.group += 1;
                    }
                }
            }
        }
    }

    /// Rings the next agent of a one-by-one offer; the next group when none is left.
    fn ring_next(
        &mut self,
        env: &Env,
        id: u64,
        group: &confab_rgs::Group,
        alert: Duration,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        let Some(agent) = c.hunt.order.pop() else {
            c.hunt.group += 1;
            return self.hunt(env, id, out);
        };
        if let Some(i) = group.agents.iter().position(|a| a == &agent) {
            self.last_offered.insert(group.name.clone(), i);
        }
        if self
            .agents
            .get(&agent)
            .is_some_and(|s| s.busy_with.is_some())
        {
            // taken by another caller since the order was made
            return self.ring_next(env, id, group, alert, out);
        }
        self.ring(env, id, &agent, true, out);
        let token = self.timer(id, TimerKind::Alert, alert, out);
        if let Some(c) = self.callers.get_mut(&id) {
            c.hunt.alert = Some(token);
        }
    }

    /// Places a call to `agent` with the caller's description.
    fn ring(&mut self, env: &Env, id: u64, agent: &str, hunted: bool, out: &mut Vec<Action>) {
        let call = self.id();
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        let w = &c.snap.config.workflows[c.workflow];
        c.version += 1;
        let body = sdp::as_ours(&c.offer, origin(env, id, c.version)).into_bytes();
        let to = if agent.contains(':') {
            agent.to_owned()
        } else {
            format!("sip:{agent}")
        };
        out.push(Action::Call {
            call,
            from: match &w.display_name {
                Some(name) => format!("\"{}\" <{}>", name.replace(['"', '\\'], ""), w.address),
                None => w.address.clone(),
            },
            to,
            headers: vec![("Content-Type".into(), "application/sdp".into())],
            body,
        });
        c.hunt.ringing.push(call);
        if hunted {
            self.agents.entry(agent.to_owned()).or_default().busy_with = Some(id);
        }
        self.offers.insert(
            call,
            Offer {
                caller: id,
                agent: agent.to_owned(),
                hunted,
            },
        );
        tracing::info!(
            event = "rgs.offer",
            agent = agent.trim_start_matches("sip:"),
            "a call offered to an agent"
        );
    }

    /// Cancels every call of a hunt still ringing.
    pub(super) fn stop_hunt(&mut self, _id: u64, hunt: &Hunt, out: &mut Vec<Action>) {
        for call in &hunt.ringing {
            if let Some(o) = self.offers.remove(call) {
                if o.hunted {
                    self.release(&o.agent);
                }
                out.push(Action::CancelCall { call: *call });
            }
        }
    }

    /// An agent rung for a caller but not serving: free again, not idle anew.
    fn release(&mut self, agent: &str) {
        if let Some(s) = self.agents.get_mut(agent) {
            s.busy_with = None;
        }
    }

    /// An agent's call ended: free, idle from now; callers nobody could be offered to are
    /// offered again at once, oldest first, rather than at their next retry.
    pub(super) fn agent_free(&mut self, env: &Env, agent: &str, out: &mut Vec<Action>) {
        let s = self.agents.entry(agent.to_owned()).or_default();
        s.busy_with = None;
        s.idle_since = env.now.unix;
        let mut idle: Vec<u64> = self
            .callers
            .iter()
            .filter(|(_, c)| {
                c.step == Step::Queued && c.hunt.ringing.is_empty() && c.hunt.retry.is_some()
            })
            .map(|(&id, _)| id)
            .collect();
        idle.sort_unstable();
        for id in idle {
            if let Some(c) = self.callers.get_mut(&id) {
                c.hunt = Hunt::default();
            }
            self.hunt(env, id, out);
        }
    }

    pub(super) fn alert_over(&mut self, id: u64, token: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        if c.hunt.alert != Some(token) {
            return;
        }
        c.hunt.alert = None;
        // the failures of the cancelled calls move the hunt on
        for call in c.hunt.ringing.clone() {
            out.push(Action::CancelCall { call });
        }
    }

    pub(super) fn retry(&mut self, env: &Env, id: u64, token: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        if c.hunt.retry == Some(token) && c.step == Step::Queued {
            c.hunt = Hunt::default();
            self.hunt(env, id, out);
        }
    }

    /// What became of a call to an agent or forward target.
    pub(super) fn call_event(
        &mut self,
        env: &Env,
        call: u64,
        event: CallEvent,
        out: &mut Vec<Action>,
    ) {
        match event {
            CallEvent::Ringing => {}
            CallEvent::Answered { dialog, body } => {
                let Some(o) = self.offers.remove(&call) else {
                    // cancelled too late: this agent is not needed
                    return out.push(bye(&dialog));
                };
                let Some(c) = self.callers.get_mut(&o.caller) else {
                    self.agent_free(env, &o.agent, out);
                    return out.push(bye(&dialog));
                };
                let id = o.caller;
                tracing::info!(event = "rgs.answered", agent = %o.agent, "an agent answered");
                let hunt = std::mem::take(&mut c.hunt);
                c.step = Step::Connecting;
                c.agent = Some((dialog.clone(), o.agent.clone()));
                c.version += 1;
                let w = &c.snap.config.workflows[c.workflow];
                let mut headers = vec![("Content-Type".to_owned(), "application/sdp".to_owned())];
                if !w.anonymous {
                    headers.push((
                        "P-Asserted-Identity".into(),
                        format!("<sip:{}>", o.agent.trim_start_matches("sip:")),
                    ));
                }
                let reinvite = Action::Request {
                    dialog: c.dialog.clone().unwrap_or_else(|| dialog.clone()),
                    method: "INVITE".into(),
                    headers,
                    body: sdp::as_ours(&body, origin(env, id, c.version)).into_bytes(),
                };
                if let Some(q) = c.queue.clone() {
                    self.leave_queue(id, &q);
                }
                self.stop_hunt(id, &hunt, out);
                if o.hunted {
                    self.agents.entry(o.agent.clone()).or_default().busy_with = Some(id);
                }
                self.agent_dialogs.insert(dialog, id);
                out.push(Action::Media(MediaCommand::Stop { stream: id }));
                out.push(reinvite);
            }
            CallEvent::Failed { code, .. } => {
                let Some(o) = self.offers.remove(&call) else {
                    return;
                };
                if o.hunted {
                    self.release(&o.agent);
                }
                let Some(c) = self.callers.get_mut(&o.caller) else {
                    return;
                };
                c.hunt.ringing.retain(|&r| r != call);
                tracing::info!(event = "rgs.declined", agent = %o.agent, code, "an offered call was not answered");
                let id = o.caller;
                if !o.hunted {
                    return self.bye(id, out);
                }
                if !c.hunt.ringing.is_empty() {
                    return;
                }
                c.hunt.alert = None;
                let group = c
                    .queue
                    .as_ref()
                    .and_then(|q| c.snap.config.queue(q))
                    .and_then(|q| q.groups.get(c.hunt.group))
                    .and_then(|g| c.snap.config.group(g))
                    .cloned();
                match group {
                    Some(g) if !c.hunt.order.is_empty() => {
                        let alert = Duration::from_secs(u64::from(g.alert_time));
                        self.ring_next(env, id, &g, alert, out);
                    }
                    _ => {
                        c.hunt.group += 1;
                        c.hunt.order.clear();
                        self.hunt(env, id, out);
                    }
                }
            }
        }
    }

    /// Forwards the caller: the target rings with the caller's description, music plays on.
    pub(super) fn forward(&mut self, env: &Env, id: u64, to: &str, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        c.step = Step::Forwarding;
        if c.port.is_some() {
            self.music(id, out);
        }
        self.ring(env, id, to, false, out);
    }

    /// The caller answered our re-INVITE with the agent's description: connected.
    pub(super) fn caller_answered_reinvite(
        &mut self,
        env: &Env,
        id: u64,
        resp: &Message,
        out: &mut Vec<Action>,
    ) {
        let is_invite = resp.cseq().is_ok_and(|c| c.method == "INVITE");
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        if !is_invite || c.step != Step::Connecting || resp.status() < 200 {
            return;
        }
        let (Some(caller), Some((agent_dialog, agent))) = (c.dialog.clone(), c.agent.clone())
        else {
            return;
        };
        if resp.status() >= 300 {
            tracing::warn!(
                event = "rgs.connect_failed",
                status = resp.status(),
                "the caller refused the agent's media"
            );
            c.agent = None;
            self.agent_dialogs.remove(&agent_dialog);
            out.push(bye(&agent_dialog));
            self.agent_free(env, &agent, out);
            return self.bye(id, out);
        }
        // the agent was offered the caller's first description: when the caller now answers
        // from elsewhere, the agent is told (a re-INVITE of its own)
        let moved = Self::is_sdp(resp) && audio_of(resp.body()) != audio_of(&c.offer);
        if moved {
            c.version += 1;
            out.push(Action::Request {
                dialog: agent_dialog.clone(),
                method: "INVITE".into(),
                headers: vec![("Content-Type".into(), "application/sdp".into())],
                body: sdp::as_ours(resp.body(), origin(env, id, c.version)).into_bytes(),
            });
        }
        c.step = Step::Connected;
        if let Some(port) = c.port.take() {
            close_stream(id, out);
            self.ports.give_back(port);
        }
        out.push(Action::Connect {
            a: caller,
            b: agent_dialog,
        });
        tracing::info!(event = "rgs.connected", %agent, "caller and agent connected");
    }

    /// The agent's dialog ended: the agent is free; a caller still being connected goes too.
    pub(super) fn agent_left(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        let agent = c.agent.take();
        let connecting = c.step == Step::Connecting;
        if let Some((_, agent)) = agent {
            self.agent_free(env, &agent, out);
        }
        if connecting {
            self.bye(id, out);
        }
    }
}

/// A BYE in `dialog`.
pub(super) fn bye(dialog: &sip_proto::dialog::DialogId) -> Action {
    Action::Request {
        dialog: dialog.clone(),
        method: "BYE".into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// Where a description receives audio, if it says.
fn audio_of(body: &[u8]) -> Option<std::net::SocketAddr> {
    let sdp = sdp::Sdp::parse(body).ok()?;
    sdp.audio().ok().map(|(n, _)| n.remote)
}
