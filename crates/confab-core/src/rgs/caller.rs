//! A caller's path through a workflow: the INVITE answered (the media stream opened with the
//! caller's codec), business hours and holidays, the welcome message, the IVR's questions and
//! the keys pressed, a closed workflow's message and action, and the hang-up that must leave
//! nothing behind (no agent ringing, no port, no place in a queue).

use std::sync::Arc;
use std::time::Duration;

use confab_media::sdp::{self, Sdp};
use confab_media::{Clip, MediaEvent};
use confab_rgs::hours::Open;
use confab_rgs::{Closed, Ivr, Then};
use sip_proto::dialog::DialogId;
use sip_proto::{HeaderName, Message};

use super::{close_stream, origin, ResponseGroups, Snapshot};
use crate::apps::{Action, Env, MediaCommand, Reply};

/// How many times an IVR question is asked before the caller is let go.
const ASKS: u32 = 3;
/// The longest chain of actions leading from queue to queue (overflows into each other).
const MAX_HOPS: u32 = 4;

/// Where a caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Answered; the ACK is awaited.
    Answered,
    Welcome,
    /// Asked the IVR question of this level (option indexes chosen so far).
    Question,
    /// Hearing a closed workflow's message, then this action.
    Closed(Then),
    /// Waiting in a queue, music playing, agents offered the call.
    Queued,
    /// Forwarded: the target is ringing, music playing.
    Forwarding,
    /// An agent (or forward target) answered; the caller is being re-INVITEd.
    Connecting,
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// An agent's alert time ran out.
    Alert,
    /// The queue's time-out.
    Timeout,
    /// No key pressed in the IVR's wait.
    Ivr,
    /// Nobody could be offered the call: try again.
    Retry,
}

pub(super) struct Caller {
    pub(super) snap: Arc<Snapshot>,
    pub(super) workflow: usize,
    pub(super) dialog: Option<DialogId>,
    key: (String, String),
    pub(super) port: Option<u16>,
    /// The caller's session description (offered to agents).
    pub(super) offer: Vec<u8>,
    pub(super) version: u64,
    pub(super) step: Step,
    /// The clip playing.
    tag: u64,
    pub(super) queue: Option<String>,
    pub(super) hunt: super::queue::Hunt,
    pub(super) timeout: Option<u64>,
    ivr_path: Vec<usize>,
    asked: u32,
    ivr_timer: Option<u64>,
    /// The agent (or forward target) who answered: its dialog and address.
    pub(super) agent: Option<(DialogId, String)>,
    /// Queues entered through actions, against loops.
    pub(super) hops: u32,
}

impl ResponseGroups {
    /// A new call to a workflow: answered with our stream's description.
    pub(super) fn arrive(&mut self, env: &Env, req: &Message, out: &mut Vec<Action>) {
        if req.method_str() != "INVITE" {
            let r = match req.method_str() {
                "OPTIONS" => Reply::new(200, "OK"),
                "ACK" => return,
                _ => Reply::new(405, "Method Not Allowed (a workflow takes calls)"),
            };
            return out.push(Action::Reply(r));
        }
        let Some(snap) = self.snapshot() else {
            return out.push(Action::Reply(Reply::new(404, "Not Found")));
        };
        let user = req
            .uri()
            .ok()
            .and_then(|u| u.as_sip().and_then(|s| s.user.map(str::to_owned)));
        let Some(workflow) = user.and_then(|u| snap.workflow_of_user(&u)) else {
            return out.push(Action::Reply(Reply::new(404, "Not Found")));
        };
        let offer = match Sdp::parse(req.body()).and_then(|s| s.audio().map(|(n, _)| n)) {
            Ok(n) => n,
            Err(e) if req.body().is_empty() => {
                let _ = e;
                let r = Reply::new(
                    488,
                    "Not Acceptable Here (a workflow needs an SDP offer in the INVITE)",
                );
                return out.push(Action::Reply(r));
            }
            Err(e) => {
                let r = Reply::new(488, &format!("Not Acceptable Here ({e})"));
                return out.push(Action::Reply(r));
            }
        };
        let Some(port) = self.ports.take() else {
            tracing::warn!(
                event = "rgs.no_port",
                "every RTP port is in use: call refused"
            );
            let r = Reply::new(503, "Service Unavailable (no media port free)");
            return out.push(Action::Reply(r));
        };
        let id = self.id();
        let parsed = Sdp::parse(req.body()).unwrap_or(Sdp {
            connection: None,
            media: Vec::new(),
        });
        let Ok((answer, negotiated)) = sdp::answer(&parsed, origin(env, id, 1), port) else {
            self.ports.give_back(port);
            return out.push(Action::Reply(Reply::new(488, "Not Acceptable Here")));
        };
        debug_assert_eq!(negotiated.remote, offer.remote);
        let key = (
            req.call_id().unwrap_or_default().to_owned(),
            req.from()
                .ok()
                .and_then(|f| f.tag().map(str::to_owned))
                .unwrap_or_default(),
        );
        let w = &snap.config.workflows[workflow];
        tracing::info!(event = "rgs.call", workflow = %w.name, port, "a caller reached a workflow");
        out.push(Action::Media(MediaCommand::Open {
            stream: id,
            port,
            negotiated,
        }));
        out.push(Action::Reply(
            Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes()),
        ));
        self.by_call.insert(key.clone(), id);
        self.callers.insert(
            id,
            Caller {
                snap,
                workflow,
                dialog: None,
                key,
                port: Some(port),
                offer: req.body().to_vec(),
                version: 1,
                step: Step::Answered,
                tag: 0,
                queue: None,
                hunt: super::queue::Hunt::default(),
                timeout: None,
                ivr_path: Vec::new(),
                asked: 0,
                ivr_timer: None,
                agent: None,
                hops: 0,
            },
        );
    }

    /// A request within a caller's dialog (those of connected calls are relayed by the
    /// engine and never come here).
    pub(super) fn in_dialog(
        &mut self,
        env: &Env,
        req: &Message,
        d: &DialogId,
        out: &mut Vec<Action>,
    ) {
        let Some(id) = self.caller_of(d) else {
            if req.method_str() != "ACK" {
                out.push(Action::Reply(Reply::new(
                    481,
                    "Call/Transaction Does Not Exist",
                )));
            }
            return;
        };
        match req.method_str() {
            "ACK" => {
                let Some(c) = self.callers.get_mut(&id) else {
                    return;
                };
                if c.step == Step::Answered {
                    c.dialog = Some(d.clone());
                    self.begin(env, id, out);
                }
            }
            "BYE" => out.push(Action::Reply(Reply::new(200, "OK"))),
            "INVITE" => self.reoffer(env, id, req, out),
            _ => out.push(Action::Reply(Reply::new(200, "OK"))),
        }
    }

    /// The caller changed its session (hold, a new address): answered from our stream.
    fn reoffer(&mut self, env: &Env, id: u64, req: &Message, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        let (Some(port), Ok(offer)) = (c.port, Sdp::parse(req.body())) else {
            return out.push(Action::Reply(Reply::new(488, "Not Acceptable Here")));
        };
        c.version += 1;
        match sdp::answer(&offer, origin(env, id, c.version), port) {
            Ok((answer, negotiated)) => {
                c.offer = req.body().to_vec();
                out.push(Action::Media(MediaCommand::Open {
                    stream: id,
                    port,
                    negotiated,
                }));
                out.push(Action::Reply(
                    Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes()),
                ));
            }
            Err(e) => out.push(Action::Reply(Reply::new(
                488,
                &format!("Not Acceptable Here ({e})"),
            ))),
        }
    }

    /// The caller's ACK is in: closed, or welcome and on.
    fn begin(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        let w = &c.snap.config.workflows[c.workflow];
        let closed = match c.snap.calendars[c.workflow].state(env.now.unix) {
            Open::Open => None,
            Open::AfterHours => Some(("after-hours", w.after_hours.clone())),
            Open::Holiday => Some(("holiday", w.holiday.clone())),
        };
        if let Some((state, _)) = &closed {
            tracing::info!(event = "rgs.closed", workflow = %w.name, state, "the workflow is closed");
        }
        match closed.map(|(_, c)| c) {
            Some(closed) => self.closed(env, id, closed, out),
            None => {
                let clip = c.snap.clip(w.welcome.as_ref());
                match clip {
                    Some(clip) => self.play(env, id, clip, Step::Welcome, out),
                    None => self.after_welcome(env, id, out),
                }
            }
        }
    }

    fn closed(&mut self, env: &Env, id: u64, closed: Option<Closed>, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        let then = closed.as_ref().map_or(Then::Disconnect, |c| c.then.clone());
        match c
            .snap
            .clip(closed.as_ref().and_then(|c| c.message.as_ref()))
        {
            Some(clip) => self.play(env, id, clip, Step::Closed(then), out),
            None => self.then(env, id, &then, out),
        }
    }

    /// Plays `clip` to the caller, who is at `step` while it plays.
    fn play(&mut self, _env: &Env, id: u64, clip: Arc<Clip>, step: Step, out: &mut Vec<Action>) {
        let tag = self.id();
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        c.step = step;
        c.tag = tag;
        out.push(Action::Media(MediaCommand::Play {
            stream: id,
            clip,
            looped: false,
            tag,
        }));
    }

    /// Music on hold, until stopped.
    pub(super) fn music(&mut self, id: u64, out: &mut Vec<Action>) {
        let tag = self.id();
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        let w = &c.snap.config.workflows[c.workflow];
        let clip = c
            .snap
            .clip(w.music.as_ref())
            .unwrap_or_else(|| c.snap.tune.clone());
        c.tag = tag;
        out.push(Action::Media(MediaCommand::Play {
            stream: id,
            clip,
            looped: true,
            tag,
        }));
    }

    fn after_welcome(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        let w = &c.snap.config.workflows[c.workflow];
        match (&w.queue, &w.ivr) {
            (Some(q), _) => {
                let q = q.clone();
                self.enter_queue(env, id, &q, out);
            }
            (None, Some(_)) => self.ask(env, id, out),
            (None, None) => self.bye(id, out),
        }
    }

    /// The IVR level the caller is at.
    fn level(c: &Caller) -> Option<&Ivr> {
        let mut level = c.snap.config.workflows[c.workflow].ivr.as_ref()?;
        for &i in &c.ivr_path {
            level = level.options.get(i)?.ivr.as_deref()?;
        }
        Some(level)
    }

    /// Asks the question of the caller's level (again), and waits for a key.
    fn ask(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        if c.asked >= ASKS {
            tracing::info!(
                event = "rgs.no_choice",
                "no key pressed after three questions: call ended"
            );
            return self.bye(id, out);
        }
        c.asked += 1;
        let Some(level) = Self::level(c) else { return };
        let wait = Duration::from_secs(u64::from(level.wait));
        let clip = c.snap.clip(Some(&level.question));
        let wait = wait + clip.as_ref().map_or(Duration::ZERO, |c| c.duration());
        match clip {
            Some(clip) => self.play(env, id, clip, Step::Question, out),
            None => {
                if let Some(c) = self.callers.get_mut(&id) {
                    c.step = Step::Question;
                }
            }
        }
        let token = self.timer(id, TimerKind::Ivr, wait, out);
        if let Some(c) = self.callers.get_mut(&id) {
            c.ivr_timer = Some(token);
        }
    }

    /// A key pressed while the question is asked.
    fn key(&mut self, env: &Env, id: u64, digit: char, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(&id) else {
            return;
        };
        if c.step != Step::Question {
            return;
        }
        let Some(level) = Self::level(c) else { return };
        let chosen = level
            .options
            .iter()
            .position(|o| o.digit.chars().eq([digit]));
        let Some(i) = chosen else {
            tracing::debug!(event = "rgs.unknown_key", %digit);
            c.asked = c.asked.saturating_sub(1);
            return self.ask(env, id, out);
        };
        let option = &level.options[i];
        let (queue, deeper) = (option.queue.clone(), option.ivr.is_some());
        c.ivr_timer = None;
        match (queue, deeper) {
            (Some(q), _) => {
                out.push(Action::Media(MediaCommand::Stop { stream: id }));
                self.enter_queue(env, id, &q, out);
            }
            (None, true) => {
                c.ivr_path.push(i);
                c.asked = 0;
                self.ask(env, id, out);
            }
            (None, false) => self.bye(id, out),
        }
    }

    /// Carries out an action on the caller.
    pub(super) fn then(&mut self, env: &Env, id: u64, then: &Then, out: &mut Vec<Action>) {
        match then {
            Then::Disconnect => self.bye(id, out),
            Then::Forward(to) => self.forward(env, id, to, out),
            Then::Queue(q) => {
                let Some(c) = self.callers.get_mut(&id) else {
                    return;
                };
                c.hops += 1;
                if c.hops > MAX_HOPS {
                    tracing::warn!(event = "rgs.queue_loop", queue = %q, "queues send the caller round in a loop: call ended");
                    return self.bye(id, out);
                }
                let q = q.clone();
                self.enter_queue(env, id, &q, out);
            }
        }
    }

    /// Ends the caller's call from our side; the dialog's end cleans up.
    pub(super) fn bye(&mut self, id: u64, out: &mut Vec<Action>) {
        // not acknowledged yet: the dialog ends when the ACK never comes
        if let Some(d) = self.callers.get(&id).and_then(|c| c.dialog.as_ref()) {
            out.push(super::queue::bye(d));
        }
    }

    /// What a stream heard or finished.
    pub(super) fn media_event(
        &mut self,
        env: &Env,
        id: u64,
        event: MediaEvent,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        match event {
            MediaEvent::Digit(d) => self.key(env, id, d, out),
            MediaEvent::Finished(tag) if tag == c.tag => match c.step.clone() {
                Step::Welcome => self.after_welcome(env, id, out),
                Step::Closed(then) => self.then(env, id, &then, out),
                _ => {}
            },
            MediaEvent::Finished(_) | MediaEvent::Silence | MediaEvent::Lost => {}
        }
    }

    pub(super) fn timer_fired(
        &mut self,
        env: &Env,
        id: u64,
        kind: TimerKind,
        token: u64,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.callers.get(&id) else {
            return;
        };
        match kind {
            TimerKind::Ivr if c.ivr_timer == Some(token) && c.step == Step::Question => {
                self.ask(env, id, out)
            }
            TimerKind::Ivr => {}
            TimerKind::Timeout if c.timeout == Some(token) => self.queue_timeout(env, id, out),
            TimerKind::Timeout => {}
            TimerKind::Alert => self.alert_over(id, token, out),
            TimerKind::Retry => self.retry(env, id, token, out),
        }
    }

    /// The caller's dialog ended: everything it held is let go.
    pub(super) fn hang_up(&mut self, env: &Env, id: u64, out: &mut Vec<Action>) {
        let Some(c) = self.callers.remove(&id) else {
            return;
        };
        self.by_call.remove(&c.key);
        self.stop_hunt(id, &c.hunt, out);
        if let Some(q) = &c.queue {
            self.leave_queue(id, q);
        }
        if let Some(port) = c.port {
            close_stream(id, out);
            self.ports.give_back(port);
        }
        if let Some((agent_dialog, agent)) = &c.agent {
            if self.agent_dialogs.remove(agent_dialog).is_some() && c.step == Step::Connecting {
                out.push(super::queue::bye(agent_dialog));
            }
            self.agent_free(env, agent, out);
        }
        self.timers.retain(|_, (caller, _)| *caller != id);
        tracing::info!(
            event = "rgs.call_ended",
            callers = self.callers.len(),
            waiting = self
                .waiting
                .values()
                .map(std::collections::VecDeque::len)
                .sum::<usize>(),
            ringing = self.offers.len(),
            ports = self.ports.in_use(),
            "a caller left"
        );
    }

    /// The content type of a response or request.
    pub(super) fn is_sdp(m: &Message) -> bool {
        m.header_str(HeaderName::ContentType)
            .ok()
            .flatten()
            .is_some_and(|ct| ct.eq_ignore_ascii_case("application/sdp"))
    }
}
