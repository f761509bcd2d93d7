//! The conferencing attendant: calls to a dial-in access number are put through to it
//! (`meet-attendant@domain`, by the engine's number routing). It answers, asks for the
//! conference ID and, for a meeting that needs one, the organizer's PIN (keys ending with `#`),
//! then puts the caller into the meeting's mix, where the others hear a chime. Three wrong
//! entries (or three silences) end the call politely.

use std::time::Duration;

use confab_media::MediaEvent;
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use super::conference::{Beep, Key, Participant};
use super::{aor_of, display_of, hang_up, Focus, Role};
use crate::apps::{Action, Env, MediaCommand, Reply};

/// Keys entered and not yet ended with `#` are forgotten after this long, and the caller
/// asked again.
const WAIT: Duration = Duration::from_secs(20);
/// Wrong entries (or silences) before the attendant gives up.
const TRIES: u8 = 3;
/// The most keys taken for one entry.
const MAX_KEYS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Waiting for the conference ID.
    Id,
    /// Waiting for the PIN of meeting (its ID).
    Pin(String),
    /// Saying goodbye: the call ends when the prompt does.
    Leaving,
}

pub(super) struct Caller {
    stream: u64,
    port: u16,
    dialog: Option<DialogId>,
    aor: String,
    display: Option<String>,
    step: Step,
    keys: String,
    failures: u8,
    /// The prompt whose end hangs up (while leaving).
    last_prompt: u64,
    /// The wait timer that counts (earlier ones are stale).
    timer: u64,
}

impl Focus {
    /// A call to an access number: answered, and the caller asked for the conference ID.
    pub(super) fn attendant_answers(&mut self, env: &Env, req: &Message, out: &mut Vec<Action>) {
        let (key, stream, port, answer, negotiated) = match self.answer_media(env, req) {
            Ok(a) => a,
            Err((code, reason)) => return out.push(Action::Reply(Reply::new(code, &reason))),
        };
        tracing::info!(event = "meeting.dial_in", caller = %aor_of(req), "the attendant answers a caller by phone");
        self.open_watched(stream, port, negotiated, out);
        out.push(Action::Reply(
            Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes()),
        ));
        self.caller_streams.insert(stream, key.clone());
        self.callers.insert(
            key.clone(),
            Caller {
                stream,
                port,
                dialog: None,
                aor: aor_of(req),
                display: display_of(req),
                step: Step::Id,
                keys: String::new(),
                failures: 0,
                last_prompt: 0,
                timer: 0,
            },
        );
        self.prompt(&key, "welcome", out);
    }

    /// A request within a caller's call while the attendant has it.
    pub(super) fn attendant_in_dialog(&mut self, key: &Key, req: &Message, out: &mut Vec<Action>) {
        match req.method_str() {
            "ACK" => {}
            "BYE" => out.push(Action::Reply(Reply::new(200, "OK"))),
            "INFO" => {
                out.push(Action::Reply(Reply::new(200, "OK")));
                if let Some(k) = super::info_key(req) {
                    self.attendant_key(key, k, out);
                }
            }
            _ => out.push(Action::Reply(Reply::new(
                405,
                "Method Not Allowed (the attendant takes keys)",
            ))),
        }
    }

    /// What a caller's stream heard, if the stream is an attendant caller's: true when it was.
    pub(super) fn attendant_media(
        &mut self,
        stream: u64,
        event: MediaEvent,
        out: &mut Vec<Action>,
    ) -> bool {
        let Some(key) = self.caller_streams.get(&stream).cloned() else {
            return false;
        };
        match event {
            MediaEvent::Digit(k) => self.attendant_key(&key, k, out),
            MediaEvent::Finished(tag) => {
                let c = &self.callers[&key];
                if c.step == Step::Leaving && c.last_prompt == tag {
                    hang_up(c.dialog.clone(), out);
                }
            }
            MediaEvent::Lost => {
                tracing::info!(event = "meeting.media_lost", caller = %self.callers[&key].aor, "no media from a caller by phone: hung up");
                let dialog = self.callers[&key].dialog.clone();
                self.attendant_ended(&key, out);
                hang_up(dialog, out);
            }
            MediaEvent::Silence => {}
        }
        true
    }

    /// A wait timer: true when it was the attendant's.
    pub(super) fn attendant_timer(&mut self, token: u64, out: &mut Vec<Action>) -> bool {
        let Some(key) = self.caller_timers.remove(&token) else {
            return false;
        };
        if self
            .callers
            .get(&key)
            .is_some_and(|c| c.timer == token && c.step != Step::Leaving)
        {
            self.attendant_failed(&key, out);
        }
        true
    }

    /// The caller's dialog is made (the attendant's 2xx is on its way).
    pub(super) fn attendant_dialog(&mut self, key: &Key, dialog: &DialogId) -> bool {
        match self.callers.get_mut(key) {
            Some(c) => {
                c.dialog = Some(dialog.clone());
                true
            }
            None => false,
        }
    }

    /// The caller hung up (or was hung up on) while the attendant had it.
    pub(super) fn attendant_ended(&mut self, key: &Key, out: &mut Vec<Action>) -> bool {
        let Some(c) = self.callers.remove(key) else {
            return false;
        };
        self.caller_streams.remove(&c.stream);
        self.ports.give_back(c.port);
        out.push(Action::Media(MediaCommand::Close { stream: c.stream }));
        true
    }

    fn attendant_key(&mut self, key: &Key, k: char, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(key) else {
            return;
        };
        if c.step == Step::Leaving {
            return;
        }
        if k != '#' {
            if c.keys.len() < MAX_KEYS {
                c.keys.push(k);
            }
            return;
        }
        let entered = std::mem::take(&mut c.keys);
        let step = c.step.clone();
        let served = self.served();
        match step {
            Step::Id => {
                let meeting = self.meeting(&entered);
                match meeting {
                    Some(m) if m.pin_required => {
                        if let Some(c) = self.callers.get_mut(key) {
                            c.step = Step::Pin(m.id);
                        }
                        self.prompt(key, "pin", out);
                    }
                    Some(m) => self.attendant_admits(key, m, out),
                    None => {
                        tracing::info!(event = "meeting.dial_in_refused", entered = %entered, "a caller by phone entered a conference ID that is not one");
                        self.attendant_failed(key, out);
                    }
                }
            }
            Step::Pin(id) => {
                let meeting = self.meeting(&id);
                let good = served.as_ref().zip(meeting.as_ref()).is_some_and(|(s, m)| {
                    s.pins
                        .get(&m.organizer)
                        .is_some_and(|h| confab_meetings::pin_matches(h, &entered))
                });
                match meeting {
                    Some(m) if good => self.attendant_admits(key, m, out),
                    _ => {
                        tracing::info!(event = "meeting.dial_in_refused", meeting = %id, "a caller by phone entered a wrong PIN");
                        self.attendant_failed(key, out);
                    }
                }
            }
            Step::Leaving => {}
        }
    }

    /// A wrong entry or a silence: asked again, or after the last try, goodbye.
    fn attendant_failed(&mut self, key: &Key, out: &mut Vec<Action>) {
        let Some(c) = self.callers.get_mut(key) else {
            return;
        };
        c.failures += 1;
        c.keys.clear();
        if c.failures >= TRIES {
            c.step = Step::Leaving;
            return self.prompt(key, "goodbye", out);
        }
        let again = match c.step {
            Step::Pin(_) => "invalid-pin",
            _ => "invalid-id",
        };
        self.prompt(key, again, out);
    }

    /// The caller into meeting `m`'s mix, the others told with a chime; or refused (locked,
    /// full) and let go.
    fn attendant_admits(&mut self, key: &Key, m: confab_meetings::Meeting, out: &mut Vec<Action>) {
        if self.admission(&m.id, Role::Attendee).is_err() {
            if let Some(c) = self.callers.get_mut(key) {
                c.step = Step::Leaving;
            }
            return self.prompt(key, "refused", out);
        }
        let Some(c) = self.callers.remove(key) else {
            return;
        };
        self.caller_streams.remove(&c.stream);
        let others: Vec<u64> = self
            .conferences
            .get(&m.id)
            .map(|conf| conf.participants.iter().map(|p| p.id).collect())
            .unwrap_or_default();
        let mut p = Participant::new(
            c.stream,
            key.clone(),
            c.aor,
            c.display,
            Role::Attendee,
            c.port,
        );
        p.dialog = c.dialog;
        self.enter(m, p, out);
        self.play(
            c.stream,
            self.clip("joining").unwrap_or_else(|| Beep::Done.clip()),
            out,
        );
        for o in others {
            self.play(o, Beep::Joined.clip(), out);
        }
    }

    /// Plays prompt `name` to caller `key` (a tone when it was never stored) and waits for
    /// keys again.
    fn prompt(&mut self, key: &Key, name: &str, out: &mut Vec<Action>) {
        let clip = self.clip(name).unwrap_or_else(|| Beep::Done.clip());
        let (tag, token) = (self.id(), self.id());
        let Some(c) = self.callers.get_mut(key) else {
            return;
        };
        c.last_prompt = tag;
        c.timer = token;
        let stream = c.stream;
        out.push(Action::Media(MediaCommand::Play {
            stream,
            clip: clip.clone(),
            looped: false,
            tag,
        }));
        self.caller_timers.insert(token, key.clone());
        out.push(Action::Timer {
            token,
            after: clip.duration() + WAIT,
        });
    }

    fn clip(&self, name: &str) -> Option<std::sync::Arc<confab_media::Clip>> {
        self.served()?.prompts.get(name).cloned()
    }

    fn play(
        &mut self,
        stream: u64,
        clip: std::sync::Arc<confab_media::Clip>,
        out: &mut Vec<Action>,
    ) {
        let tag = self.id();
        out.push(Action::Media(MediaCommand::Play {
            stream,
            clip,
            looped: false,
            tag,
        }));
    }
}
