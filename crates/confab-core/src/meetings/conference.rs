//! One meeting in progress: its participants (each a call with a stream in the mix), the
//! subscribers to its roster, and the instant messages on their way to each participant —
//! one at a time per participant, so that they arrive in the order they were sent.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use confab_media::Clip;
use confab_meetings::Meeting;
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use super::roster::{self, Entry};
use super::{aor_of, call_key, display_of, Focus, Role};
use crate::apps::{Action, MediaCommand};

/// A dialog's Call-ID and the peer's tag.
pub(super) type Key = (String, String);

/// Messages waiting for one participant at most: a participant whose client stops answering
/// holds no more than this (its call ends when a message goes unanswered for 32 s).
const OUTBOX: usize = 256;
/// Roster subscriptions one meeting keeps at most.
pub(super) const SUBSCRIBERS: usize = 1_000;

pub(super) struct Participant {
    /// Also the number of the participant's stream.
    pub(super) id: u64,
    pub(super) key: Key,
    /// Known once the focus's 2xx is on its way.
    pub(super) dialog: Option<DialogId>,
    pub(super) aor: String,
    pub(super) display: Option<String>,
    pub(super) role: Role,
    pub(super) port: u16,
    pub(super) muted: bool,
    /// `*` pressed: the next key is a command.
    pub(super) star: bool,
    /// Messages (`message/cpim` bodies) waiting to be sent in the participant's call.
    pub(super) outbox: VecDeque<Vec<u8>>,
    /// A message of the outbox is on its way (the next waits for its answer).
    pub(super) sending: bool,
    /// The session timer (RFC 4028) the participant refreshes: its interval in seconds and
    /// the token of the timer that counts.
    pub(super) session: Option<(u64, u64)>,
}

impl Participant {
    pub(super) fn new(
        id: u64,
        key: Key,
        aor: String,
        display: Option<String>,
        role: Role,
        port: u16,
    ) -> Self {
        Self {
            id,
            key,
            dialog: None,
            aor,
            display,
            role,
            port,
            muted: false,
            star: false,
            outbox: VecDeque::new(),
            sending: false,
            session: None,
        }
    }
}

pub(super) struct Subscriber {
    key: Key,
    pub(super) dialog: Option<DialogId>,
}

pub(super) struct Conference {
    pub(super) meeting: Meeting,
    /// The mix's number for the media engine.
    pub(super) number: u64,
    pub(super) limit: usize,
    pub(super) locked: bool,
    /// The roster's version (RFC 4575 §4.1): every change sends a higher one.
    pub(super) version: u64,
    pub(super) participants: Vec<Participant>,
    pub(super) subscribers: Vec<Subscriber>,
}

impl Conference {
    pub(super) fn new(meeting: Meeting, number: u64, limit: usize) -> Self {
        Self {
            meeting,
            number,
            limit,
            locked: false,
            version: 0,
            participants: Vec::new(),
            subscribers: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.subscribers.is_empty()
    }

    pub(super) fn participant_by_aor(&self, aor: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.aor == aor)
    }

    fn participant_mut(&mut self, id: u64) -> Option<&mut Participant> {
        self.participants.iter_mut().find(|p| p.id == id)
    }

    pub(super) fn subscribe(&mut self, key: Key) {
        if !self.subscribers.iter().any(|s| s.key == key) {
            self.subscribers.push(Subscriber { key, dialog: None });
        }
    }

    pub(super) fn unsubscribe(&mut self, key: &Key) {
        self.subscribers.retain(|s| s.key != *key);
    }

    pub(super) fn subscriber_dialog(&self, key: &Key) -> Option<DialogId> {
        self.subscribers
            .iter()
            .find(|s| s.key == *key)
            .and_then(|s| s.dialog.clone())
    }

    /// Whether the dialog of `key` is neither a participant's nor a live subscription's.
    pub(super) fn subscriber_gone(&self, key: &Key) -> bool {
        !self.subscribers.iter().any(|s| s.key == *key)
            && !self.participants.iter().any(|p| p.key == *key)
    }

    /// The dialog of `key` is made; true when it is a subscriber's.
    pub(super) fn dialog_made(&mut self, key: &Key, dialog: &DialogId) -> bool {
        if let Some(p) = self.participants.iter_mut().find(|p| p.key == *key) {
            p.dialog = Some(dialog.clone());
            return false;
        }
        match self.subscribers.iter_mut().find(|s| s.key == *key) {
            Some(s) => {
                s.dialog = Some(dialog.clone());
                true
            }
            None => false,
        }
    }

    /// Takes the participant of `key` out.
    pub(super) fn leave(&mut self, key: &Key) -> Option<Participant> {
        let i = self.participants.iter().position(|p| p.key == *key)?;
        Some(self.participants.remove(i))
    }

    pub(super) fn message_answered(&mut self, key: &Key) {
        if let Some(p) = self.participants.iter_mut().find(|p| p.key == *key) {
            p.sending = false;
        }
    }

    pub(super) fn roster(&self) -> String {
        let uri = self.meeting.uri();
        let state = roster::State {
            uri: &uri,
            subject: self.meeting.subject.as_deref(),
            limit: self.limit,
            locked: self.locked,
            version: self.version,
        };
        let entries: Vec<Entry> = self
            .participants
            .iter()
            .map(|p| Entry {
                aor: &p.aor,
                display: p.display.as_deref(),
                role: p.role,
                muted: p.muted,
                call_id: &p.key.0,
            })
            .collect();
        roster::document(&state, &entries)
    }
}

/// What a key command sounds like to the one who pressed it, and the chime the others hear
/// when someone joins by phone.
#[derive(Clone, Copy)]
pub(super) enum Beep {
    Muted,
    Unmuted,
    Done,
    Refused,
    Joined,
}

impl Beep {
    pub(super) fn clip(self) -> Arc<Clip> {
        static CLIPS: OnceLock<[Arc<Clip>; 5]> = OnceLock::new();
        let clips = CLIPS.get_or_init(|| {
            [400.0, 800.0, 600.0, 300.0, 1200.0].map(|freq| {
                let samples: Vec<i16> = (0..10)
                    .flat_map(|n| confab_media::tone::sine(freq, 6000.0, n * 160))
                    .collect();
                Arc::new(Clip::from_pcm(&samples))
            })
        });
        clips[self as usize].clone()
    }
}

impl Focus {
    /// A message for the meeting from one of its participants: to every other one, as
    /// `message/cpim` naming the sender.
    pub(super) fn relay_message(&mut self, conf: &str, req: &Message, out: &mut Vec<Action>) {
        let Some(c) = self.conferences.get_mut(conf) else {
            return;
        };
        let from = aor_of(req);
        let key = call_key(req);
        // within the call the sender's From may have lost the display name its INVITE gave
        let sender = c
            .participants
            .iter()
            .find(|p| Some(&p.key) == key.as_ref())
            .or_else(|| c.participant_by_aor(&from));
        let display = sender
            .and_then(|p| p.display.clone())
            .or_else(|| display_of(req));
        let sender = sender.map(|p| p.id);
        let name = match display {
            Some(d) => format!("\"{}\" <sip:{from}>", d.replace('"', "")),
            None => format!("<sip:{from}>"),
        };
        let content_type = req
            .header_str(sip_proto::HeaderName::ContentType)
            .ok()
            .flatten()
            .unwrap_or("text/plain;charset=UTF-8");
        let mut cpim = format!(
            "From: {name}\r\nTo: <{}>\r\n\r\nContent-Type: {content_type}\r\n\r\n",
            c.meeting.uri()
        )
        .into_bytes();
        cpim.extend_from_slice(req.body());
        for p in c.participants.iter_mut().filter(|p| Some(p.id) != sender) {
            if p.outbox.len() >= OUTBOX {
                tracing::warn!(event = "meeting.message_dropped", participant = %p.aor, "a participant's client answers no messages: one more dropped for it");
                continue;
            }
            p.outbox.push_back(cpim.clone());
        }
        self.flush_messages(conf, out);
    }

    /// Sends each participant its next message if none is on its way.
    pub(super) fn flush_messages(&mut self, conf: &str, out: &mut Vec<Action>) {
        let Some(c) = self.conferences.get_mut(conf) else {
            return;
        };
        for p in &mut c.participants {
            let Some(dialog) = p.dialog.clone().filter(|_| !p.sending) else {
                continue;
            };
            if let Some(body) = p.outbox.pop_front() {
                p.sending = true;
                out.push(Action::Request {
                    dialog,
                    method: "MESSAGE".into(),
                    headers: vec![("Content-Type".into(), "message/cpim".into())],
                    body,
                });
            }
        }
    }

    /// Participant `id` pressed `key`: `*6` mutes or unmutes them, `*4` (organizer,
    /// presenters) everyone else, `*7` (organizer, presenters) locks or unlocks the meeting.
    pub(super) fn key_pressed(&mut self, conf: &str, id: u64, key: char, out: &mut Vec<Action>) {
        let Some(c) = self.conferences.get_mut(conf) else {
            return;
        };
        let Some(p) = c.participant_mut(id) else {
            return;
        };
        if key == '*' {
            p.star = true;
            return;
        }
        if !std::mem::take(&mut p.star) {
            return;
        }
        let leads = p.role.leads();
        let beep = match key {
            '6' => {
                p.muted = !p.muted;
                out.push(Action::Media(MediaCommand::Mute {
                    stream: id,
                    muted: p.muted,
                }));
                if p.muted {
                    Beep::Muted
                } else {
                    Beep::Unmuted
                }
            }
            '4' if leads => {
                let mute = c.participants.iter().any(|o| o.id != id && !o.muted);
                for o in c.participants.iter_mut().filter(|o| o.id != id) {
                    o.muted = mute;
                    out.push(Action::Media(MediaCommand::Mute {
                        stream: o.id,
                        muted: mute,
                    }));
                }
                Beep::Done
            }
            '7' if leads => {
                c.locked = !c.locked;
                tracing::info!(event = "meeting.lock", meeting = %conf, locked = c.locked, "the meeting was locked or unlocked");
                Beep::Done
            }
            _ => Beep::Refused,
        };
        let tag = self.id();
        out.push(Action::Media(MediaCommand::Play {
            stream: id,
            clip: beep.clip(),
            looped: false,
            tag,
        }));
        if !matches!(beep, Beep::Refused) {
            self.roster_changed(conf, out);
        }
    }
}
