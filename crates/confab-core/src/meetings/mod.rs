//! Meetings: the focus (RFC 4353), the application (`crate::apps`) at every meeting's address
//! (`sip:meet-<conference ID>@domain`). Participants join by INVITE (RFC 4579): each gets a
//! media stream in the meeting's mix (each hears everyone but themselves), and the focus
//! tells subscribers of the conference event package (RFC 4575) who is there. Instant
//! messages sent to the meeting (within a participant's call or outside it) reach every other
//! participant once and in order, within their call, as `message/cpim` naming the sender
//! (RFC 3862). Keys pressed during the call control it: `*6` mutes and unmutes oneself; the
//! organizer and presenters mute and unmute everyone else with `*4` and lock and unlock the
//! meeting with `*7`. The organizer ejects a participant with a REFER whose target carries
//! `method=BYE` (RFC 4579 §5.5).
//!
//! Sans-IO like every application: the meetings are a snapshot of the stored document shared by
//! the shards (replaced by housekeeping), media are commands. It runs on the owner shard, to
//! which requests for meetings are handed (`engine/shards.rs`).
//!
//! `calls.rs` is a participant's call (join, re-INVITE, eject), `subscriptions.rs` the roster's
//! subscribers, `conference.rs` one meeting in progress (participants, subscribers, messages
//! on their way, key commands), `roster.rs` the conference-info document.

mod attendant;
mod calls;
mod conference;
mod dialout;
#[cfg(test)]
mod phone_tests;
mod roster;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use confab_media::ports::PortPool;
use confab_media::MediaEvent;
use confab_meetings::Meetings;
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use crate::apps::{Action, Application, CallEvent, Env, MediaCommand, Reply};
use conference::Conference;

/// The meetings in force, shared by every shard (`None`: none stored).
pub(crate) type Handle = Arc<RwLock<Option<Arc<Served>>>>;

/// The meetings as the focus serves them: the document, users' PIN hashes, the attendant's
/// prompts.
pub(crate) struct Served {
    pub(crate) meetings: Meetings,
    /// `user@domain` → the stored PIN hash.
    pub(crate) pins: HashMap<String, String>,
    /// The attendant's prompts by name (`welcome`, `pin`, ...).
    pub(crate) prompts: HashMap<String, Arc<confab_media::Clip>>,
}

/// The longest subscription to a roster granted, and the default.
const MAX_SUBSCRIPTION: Duration = Duration::from_secs(3600);

/// A participant's role (RFC 4575 `roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The user who created the meeting.
    Organizer,
    /// A user of the meeting's domain: may mute others and lock the meeting.
    Presenter,
    /// Anyone else (another domain, a caller by phone).
    Attendee,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Organizer => "organizer",
            Self::Presenter => "presenter",
            Self::Attendee => "attendee",
        }
    }

    fn leads(self) -> bool {
        self != Self::Attendee
    }
}

/// Counts for the operator and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MeetingStats {
    /// Meetings with someone in them.
    pub conferences: usize,
    pub participants: usize,
    pub subscribers: usize,
}

/// The focus.
pub(crate) struct Focus {
    handle: Handle,
    ports: PortPool,
    next: u64,
    /// Meetings in progress, by conference ID.
    conferences: HashMap<String, Conference>,
    /// What each dialog (or dialog to be: Call-ID and the peer's tag) is: the conference ID.
    by_call: HashMap<(String, String), String>,
    /// Subscription expiry timers: the token's conference and subscriber's Call-ID and tag.
    timers: HashMap<u64, (String, (String, String))>,
    /// Streams: their conference.
    streams: HashMap<u64, String>,
    /// Callers by phone the attendant has (not yet in a meeting), their streams and wait timers.
    callers: HashMap<(String, String), attendant::Caller>,
    caller_streams: HashMap<u64, (String, String)>,
    caller_timers: HashMap<u64, (String, String)>,
    /// Session timers (RFC 4028): the token's meeting and participant.
    session_timers: HashMap<u64, (String, u64)>,
    /// Ad-hoc meetings (made by a call to the factory; never stored), by conference ID.
    adhoc: HashMap<String, confab_meetings::Meeting>,
    /// Calls the focus placed to bring someone in, by call number.
    dialouts: HashMap<u64, dialout::DialOut>,
    stats: Arc<RwLock<MeetingStats>>,
}

impl Focus {
    pub(crate) fn new(handle: Handle, ports: (u16, u16), stats: Arc<RwLock<MeetingStats>>) -> Self {
        Self {
            handle,
            ports: PortPool::new(ports.0, ports.1),
            next: 1,
            conferences: HashMap::new(),
            by_call: HashMap::new(),
            timers: HashMap::new(),
            streams: HashMap::new(),
            callers: HashMap::new(),
            caller_streams: HashMap::new(),
            caller_timers: HashMap::new(),
            session_timers: HashMap::new(),
            adhoc: HashMap::new(),
            dialouts: HashMap::new(),
            stats,
        }
    }

    fn served(&self) -> Option<Arc<Served>> {
        crate::apps::in_force(&self.handle)
    }

    /// Meeting `id`, stored or ad hoc.
    fn meeting(&self, id: &str) -> Option<confab_meetings::Meeting> {
        self.served()
            .and_then(|s| s.meetings.get(id).cloned())
            .or_else(|| self.adhoc.get(id).cloned())
    }

    /// The most participants a meeting admits.
    fn limit(&self) -> usize {
        self.served()
            .map_or(confab_meetings::DEFAULT_PARTICIPANT_LIMIT, |s| {
                s.meetings.settings.participant_limit
            })
    }

    /// `meeting` in progress, started if it was not.
    fn conference(&mut self, meeting: confab_meetings::Meeting) -> &mut Conference {
        let (number, limit) = (self.id(), self.limit());
        self.conferences
            .entry(meeting.id.clone())
            .or_insert_with(|| Conference::new(meeting, number, limit))
    }

    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// The conference a request's dialog (or dialog to be) belongs to.
    fn conference_of(&self, req: &Message) -> Option<String> {
        self.by_call.get(&call_key(req)?).cloned()
    }

    /// A request outside a dialog.
    fn arrive(&mut self, env: &Env, req: &Message, out: &mut Vec<Action>) {
        let reply = |code, reason: &str| Action::Reply(Reply::new(code, reason));
        let user = req
            .uri()
            .ok()
            .and_then(|u| u.as_sip().and_then(|s| s.user.map(str::to_owned)))
            .unwrap_or_default();
        if user.eq_ignore_ascii_case(confab_meetings::ATTENDANT_USER) {
            return match req.method_str() {
                "INVITE" => self.attendant_answers(env, req, out),
                "ACK" => {}
                _ => out.push(reply(405, "Method Not Allowed (the attendant takes calls)")),
            };
        }
        if user.eq_ignore_ascii_case(confab_meetings::FACTORY_USER) {
            return match req.method_str() {
                "INVITE" => self.adhoc(env, req, out),
                "ACK" => {}
                _ => out.push(reply(
                    405,
                    "Method Not Allowed (the conference factory takes calls)",
                )),
            };
        }
        let conf_id = confab_meetings::conference_id(&user).map(str::to_owned);
        let meeting = conf_id.as_deref().and_then(|id| self.meeting(id));
        let Some(meeting) = meeting else {
            if req.method_str() != "ACK" {
                out.push(reply(404, "Not Found (no such meeting)"));
            }
            return;
        };
        match req.method_str() {
            "INVITE" => self.join(env, req, meeting, out),
            "SUBSCRIBE" => self.subscribe(req, meeting, out),
            "MESSAGE" => {
                let from = aor_of(req);
                let joined = self
                    .conferences
                    .get(&meeting.id)
                    .is_some_and(|c| c.participant_by_aor(&from).is_some());
                if joined {
                    out.push(reply(200, "OK"));
                    self.relay_message(&meeting.id, req, out);
                } else {
                    out.push(reply(403, "Forbidden (join the meeting to write in it)"));
                }
            }
            "OPTIONS" => out.push(reply(200, "OK")),
            "ACK" => {}
            _ => out.push(reply(
                405,
                "Method Not Allowed (a meeting takes calls, subscriptions and messages)",
            )),
        }
    }

    /// A request within a dialog of the focus.
    fn in_dialog(&mut self, env: &Env, req: &Message, dialog: &DialogId, out: &mut Vec<Action>) {
        let key = (dialog.call_id.clone(), dialog.remote_tag.clone());
        if self.callers.contains_key(&key) {
            return self.attendant_in_dialog(&key, req, out);
        }
        let Some(conf) = self.conference_of(req) else {
            if req.method_str() != "ACK" {
                out.push(Action::Reply(Reply::new(
                    481,
                    "Call/Transaction Does Not Exist (no such meeting call)",
                )));
            }
            return;
        };
        let ok = |out: &mut Vec<Action>| out.push(Action::Reply(Reply::new(200, "OK")));
        match req.method_str() {
            "ACK" => {}
            "BYE" => ok(out),
            "MESSAGE" => {
                ok(out);
                self.relay_message(&conf, req, out);
            }
            "SUBSCRIBE" => self.resubscribe(&conf, req, dialog, out),
            "INVITE" | "UPDATE" => self.reinvite(env, &conf, req, out),
            "REFER" => self.refer(env, &conf, req, dialog, out),
            "INFO" => {
                ok(out);
                if let (Some(key), Some(p)) = (info_key(req), self.participant_id(&conf, req)) {
                    self.key_pressed(&conf, p, key, out);
                }
            }
            _ => out.push(Action::Reply(Reply::new(405, "Method Not Allowed"))),
        }
    }

    /// Removes the dialog's participant or subscriber; the meeting ends with its last.
    fn dialog_ended(&mut self, dialog: &DialogId, out: &mut Vec<Action>) {
        let key = (dialog.call_id.clone(), dialog.remote_tag.clone());
        let Some(conf) = self.by_call.remove(&key) else {
            return;
        };
        let Some(c) = self.conferences.get_mut(&conf) else {
            return;
        };
        if let Some(p) = c.leave(&key) {
            tracing::info!(event = "meeting.left", meeting = %conf, participant = %p.aor, "a participant left");
            self.streams.remove(&p.id);
            self.ports.give_back(p.port);
            out.push(Action::Media(MediaCommand::Close { stream: p.id }));
            self.roster_changed(&conf, out);
        } else {
            c.unsubscribe(&key);
        }
        if self
            .conferences
            .get(&conf)
            .is_some_and(Conference::is_empty)
        {
            self.conferences.remove(&conf);
            self.adhoc.remove(&conf);
        }
    }

    /// Runs participant `id`'s session timer for `secs` (again, after a refresh).
    fn arm_session(&mut self, conf: &str, id: u64, secs: u64, out: &mut Vec<Action>) {
        let token = self.id();
        let Some(p) = self
            .conferences
            .get_mut(conf)
            .and_then(|c| c.participants.iter_mut().find(|p| p.id == id))
        else {
            return;
        };
        p.session = Some((secs, token));
        self.session_timers.insert(token, (conf.to_owned(), id));
        out.push(Action::Timer {
            token,
            after: Duration::from_secs(secs),
        });
    }

    /// Participant `stream` sent nothing for the media time-out, or did not refresh its
    /// session: gone without a BYE. Taken out at once and hung up on.
    fn participant_lost(&mut self, conf: &str, stream: u64, out: &mut Vec<Action>) {
        let Some(p) = self
            .conferences
            .get(conf)
            .and_then(|c| c.participants.iter().find(|p| p.id == stream))
        else {
            return;
        };
        tracing::info!(event = "meeting.media_lost", meeting = %conf, participant = %p.aor, "no media from a participant: hung up");
        let dialog = p.dialog.clone();
        if let Some(d) = &dialog {
            self.dialog_ended(d, out);
        }
        hang_up(dialog, out);
    }

    fn publish_stats(&self) {
        let s = MeetingStats {
            conferences: self.conferences.len(),
            participants: self
                .conferences
                .values()
                .map(|c| c.participants.len())
                .sum(),
            subscribers: self.conferences.values().map(|c| c.subscribers.len()).sum(),
        };
        *self
            .stats
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }
}

impl Application for Focus {
    fn name(&self) -> &str {
        "meetings"
    }

    fn claims(&self, user: &str) -> bool {
        confab_meetings::is_meeting_user(user)
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

    fn on_dialog(&mut self, _env: &Env, dialog: &DialogId, out: &mut Vec<Action>) {
        let key = (dialog.call_id.clone(), dialog.remote_tag.clone());
        if self.attendant_dialog(&key, dialog) {
            return;
        }
        let Some(conf) = self.by_call.get(&key).cloned() else {
            return;
        };
        let Some(c) = self.conferences.get_mut(&conf) else {
            return;
        };
        if c.dialog_made(&key, dialog) {
            // a subscriber: the roster at once (RFC 6665 §4.2.1)
            self.notify_one(&conf, dialog, false, out);
        }
        self.flush_messages(&conf, out);
    }

    fn on_response(
        &mut self,
        _env: &Env,
        dialog: &DialogId,
        resp: &Message,
        out: &mut Vec<Action>,
    ) {
        let key = (dialog.call_id.clone(), dialog.remote_tag.clone());
        let Some(conf) = self.by_call.get(&key).cloned() else {
            return;
        };
        let method = resp.cseq().map(|c| c.method.to_owned()).unwrap_or_default();
        match method.as_str() {
            "MESSAGE" => {
                if let Some(c) = self.conferences.get_mut(&conf) {
                    c.message_answered(&key);
                }
                self.flush_messages(&conf, out);
            }
            // a subscriber gone (481) or a subscription ended: forgotten
            "NOTIFY" if resp.status() >= 300 => out.push(Action::Forget {
                dialog: dialog.clone(),
            }),
            "NOTIFY" => {
                let ended = self
                    .conferences
                    .get(&conf)
                    .is_some_and(|c| c.subscriber_gone(&key));
                if ended {
                    out.push(Action::Forget {
                        dialog: dialog.clone(),
                    });
                }
            }
            _ => {}
        }
        self.publish_stats();
    }

    fn on_dialog_ended(&mut self, _env: &Env, dialog: &DialogId, out: &mut Vec<Action>) {
        let key = (dialog.call_id.clone(), dialog.remote_tag.clone());
        if !self.attendant_ended(&key, out) {
            self.dialog_ended(dialog, out);
        }
        self.publish_stats();
    }

    fn on_call(&mut self, _env: &Env, call: u64, event: CallEvent, out: &mut Vec<Action>) {
        self.dialout_event(call, event, out);
        self.publish_stats();
    }

    fn on_timer(&mut self, _env: &Env, token: u64, out: &mut Vec<Action>) {
        if self.attendant_timer(token, out) {
            return self.publish_stats();
        }
        if let Some((conf, participant)) = self.session_timers.remove(&token) {
            let current = self.conferences.get(&conf).is_some_and(|c| {
                c.participants
                    .iter()
                    .any(|p| p.id == participant && p.session.map(|s| s.1) == Some(token))
            });
            if current {
                tracing::info!(event = "meeting.session_expired", meeting = %conf, "a participant's session was not refreshed: hung up");
                self.participant_lost(&conf, participant, out);
            }
            return self.publish_stats();
        }
        let Some((conf, key)) = self.timers.remove(&token) else {
            return;
        };
        // the latest timer of a subscription is the one that counts
        if self.timers.values().any(|(_, k)| *k == key) {
            return;
        }
        let dialog = self
            .conferences
            .get(&conf)
            .and_then(|c| c.subscriber_dialog(&key));
        if let Some(d) = dialog {
            self.notify_one(&conf, &d, true, out);
            if let Some(c) = self.conferences.get_mut(&conf) {
                c.unsubscribe(&key);
            }
        }
        self.publish_stats();
    }

    fn on_media(&mut self, _env: &Env, stream: u64, event: MediaEvent, out: &mut Vec<Action>) {
        if self.attendant_media(stream, event, out) {
            return self.publish_stats();
        }
        match (event, self.streams.get(&stream).cloned()) {
            (MediaEvent::Digit(d), Some(conf)) => self.key_pressed(&conf, stream, d, out),
            (MediaEvent::Lost, Some(conf)) => self.participant_lost(&conf, stream, out),
            _ => {}
        }
        self.publish_stats();
    }
}

/// A BYE in `dialog`, if there is one.
fn hang_up(dialog: Option<DialogId>, out: &mut Vec<Action>) {
    if let Some(dialog) = dialog {
        out.push(Action::Request {
            dialog,
            method: "BYE".into(),
            headers: Vec::new(),
            body: Vec::new(),
        });
    }
}

/// The session interval (RFC 4028) a request asks for when its sender refreshes (Supported:
/// timer with Session-Expires): at least 90 s (Min-SE).
fn session_interval(req: &Message) -> Option<u64> {
    let se = req
        .header_named("Session-Expires")
        .or_else(|| req.header_named("x"))?;
    let secs: u64 = se.split(';').next()?.trim().parse().ok()?;
    let supported = req
        .values(sip_proto::HeaderName::Supported)
        .filter_map(Result::ok)
        .any(|t| t.trim().eq_ignore_ascii_case("timer"));
    supported.then_some(secs.max(90))
}

/// The 2xx's side of a session timer the caller refreshes.
fn session_headers(session: Option<u64>, reply: &mut Reply) {
    if let Some(secs) = session {
        reply
            .headers
            .push(("Session-Expires".into(), format!("{secs};refresher=uac")));
        reply.headers.push(("Require".into(), "timer".into()));
    }
}

/// A key sent as SIP INFO (`application/dtmf-relay`: `Signal=6`).
fn info_key(req: &Message) -> Option<char> {
    let body = String::from_utf8_lossy(req.body());
    body.lines()
        .find_map(|l| l.trim().strip_prefix("Signal="))
        .and_then(|s| s.trim().chars().next())
}

/// A request's Call-ID and From tag: its dialog before the focus's tag is known.
fn call_key(req: &Message) -> Option<(String, String)> {
    let tag = req.from().ok()?.tag()?.to_owned();
    Some((req.call_id().ok()?.to_owned(), tag))
}

/// `user@domain` of a request's From, lower case.
fn aor_of(req: &Message) -> String {
    req.from()
        .ok()
        .and_then(|f| {
            f.uri.as_sip().map(|u| {
                format!(
                    "{}@{}",
                    sip_proto::unescape(u.user.unwrap_or_default()),
                    u.host
                )
            })
        })
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn domain_of(aor: &str) -> &str {
    aor.rsplit('@').next().unwrap_or_default()
}

/// A From's display name, unquoted.
fn display_of(req: &Message) -> Option<String> {
    let f = req.from().ok()?;
    let d = f.display?.trim().trim_matches('"').trim();
    (!d.is_empty()).then(|| d.to_owned())
}
