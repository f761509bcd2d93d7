//! A participant's call with the focus: joining (admitted into the mix, or refused with the
//! reason: locked, full, no audio offer), moving its media (re-INVITE), and the organizer
//! ejecting someone (REFER with `method=BYE`, RFC 4579 §5.5).

use confab_media::sdp::{self, Origin, Sdp};
use confab_media::Negotiated;
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use super::conference::{Key, Participant};
use super::{aor_of, call_key, display_of, domain_of, Focus, Role};
use crate::apps::{Action, Env, MediaCommand, Reply};

/// A call answered on the media side: its dialog-to-be, stream number, RTP port, SDP answer and
/// what was agreed.
pub(super) type Answered = (Key, u64, u16, String, Negotiated);

impl Focus {
    pub(super) fn participant_id(&self, conf: &str, req: &Message) -> Option<u64> {
        let key = call_key(req)?;
        let c = self.conferences.get(conf)?;
        c.participants.iter().find(|p| p.key == key).map(|p| p.id)
    }

    /// An INVITE to a meeting: admitted (a stream in the mix) or refused with the reason.
    pub(super) fn join(
        &mut self,
        env: &Env,
        req: &Message,
        meeting: confab_meetings::Meeting,
        out: &mut Vec<Action>,
    ) {
        let aor = aor_of(req);
        let role = if aor.eq_ignore_ascii_case(&meeting.organizer) {
            Role::Organizer
        } else if domain_of(&aor).eq_ignore_ascii_case(domain_of(&meeting.organizer)) {
            Role::Presenter
        } else {
            Role::Attendee
        };
        let admitted = self
            .admission(&meeting.id, role)
            .and_then(|()| self.answer_media(env, req));
        let (key, id, port, answer, negotiated) = match admitted {
            Ok(a) => a,
            Err((code, reason)) => return out.push(Action::Reply(Reply::new(code, &reason))),
        };
        self.open_watched(id, port, negotiated, out);
        let session = super::session_interval(req);
        let mut ok = Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes());
        super::session_headers(session, &mut ok);
        out.push(Action::Reply(ok));
        let conf = meeting.id.clone();
        let p = Participant::new(id, key, aor, display_of(req), role, port);
        self.enter(meeting, p, out);
        if let Some(secs) = session {
            self.arm_session(&conf, id, secs, out);
        }
    }

    /// Whether someone of `role` may join meeting `id` now: refused when it is locked (but
    /// for its organizer) or full.
    pub(super) fn admission(&self, id: &str, role: Role) -> Result<(), (u16, String)> {
        let limit = self.limit();
        match self.conferences.get(id) {
            Some(c) if c.locked && role != Role::Organizer => {
                Err((403, "Forbidden (the meeting is locked)".to_owned()))
            }
            Some(c) if c.participants.len() >= limit => Err((
                486,
                format!("Busy Here (the meeting is full: {limit} participants)"),
            )),
            _ => Ok(()),
        }
    }

    /// The media side of answering `req`: its dialog-to-be (Call-ID and From tag), a stream
    /// number, its port, the SDP answer and what was agreed; or the refusal.
    pub(super) fn answer_media(
        &mut self,
        env: &Env,
        req: &Message,
    ) -> Result<Answered, (u16, String)> {
        let Some(key) = call_key(req) else {
            return Err((400, "Bad Request (no Call-ID or From tag)".to_owned()));
        };
        let offer = match Sdp::parse(req.body()) {
            Ok(s) if s.audio().is_ok() => s,
            _ if req.body().is_empty() => {
                let reason =
                    "Not Acceptable Here (joining a meeting needs an SDP offer with audio)";
                return Err((488, reason.to_owned()));
            }
            Ok(s) => {
                let e = s.audio().err().map(|e| e.to_string()).unwrap_or_default();
                return Err((488, format!("Not Acceptable Here ({e})")));
            }
            Err(e) => return Err((488, format!("Not Acceptable Here ({e})"))),
        };
        let Some(port) = self.ports.take() else {
            tracing::warn!(
                event = "meeting.no_port",
                "every RTP port is in use: a participant refused"
            );
            return Err((503, "Service Unavailable (no media port free)".to_owned()));
        };
        let id = self.id();
        let origin = Origin {
            session: id,
            version: 1,
            address: env.media_address,
        };
        match sdp::answer(&offer, origin, port) {
            Ok((answer, negotiated)) => Ok((key, id, port, answer, negotiated)),
            Err(_) => {
                self.ports.give_back(port);
                let reason = "Not Acceptable Here (no codec in common: G.711 only)";
                Err((488, reason.to_owned()))
            }
        }
    }

    /// Opens stream `id`, watched for a peer that stops sending (gone without a BYE) when it
    /// sends at all.
    pub(super) fn open_watched(
        &mut self,
        id: u64,
        port: u16,
        negotiated: Negotiated,
        out: &mut Vec<Action>,
    ) {
        let sends = negotiated.direction == sdp::Direction::SendRecv;
        out.push(Action::Media(MediaCommand::Open {
            stream: id,
            port,
            negotiated,
        }));
        if sends {
            let after = self
                .served()
                .map_or(confab_meetings::DEFAULT_MEDIA_TIMEOUT, |s| {
                    s.meetings.settings.media_timeout
                });
            out.push(Action::Media(MediaCommand::WatchMedia {
                stream: id,
                after: Some(std::time::Duration::from_secs(after)),
            }));
        }
    }

    /// Participant `p` (its stream open) into `meeting`'s mix and roster.
    pub(super) fn enter(
        &mut self,
        meeting: confab_meetings::Meeting,
        p: Participant,
        out: &mut Vec<Action>,
    ) {
        tracing::info!(event = "meeting.joined", meeting = %meeting.id, participant = %p.aor, role = p.role.name(), "a participant joined");
        let conf = meeting.id.clone();
        self.by_call.insert(p.key.clone(), conf.clone());
        self.streams.insert(p.id, conf.clone());
        let stream = p.id;
        let c = self.conference(meeting);
        c.participants.push(p);
        let conference = c.number;
        out.push(Action::Media(MediaCommand::Join { stream, conference }));
        self.roster_changed(&conf, out);
    }

    /// A re-INVITE or UPDATE: the participant's media moved (or held) and the stream follows,
    /// or the session refreshed (RFC 4028; a re-INVITE without SDP gets our offer again, an
    /// UPDATE without one a plain 200).
    pub(super) fn reinvite(&mut self, env: &Env, conf: &str, req: &Message, out: &mut Vec<Action>) {
        let Some(p) = self.participant_id(conf, req) else {
            let r = Reply::new(481, "Call/Transaction Does Not Exist");
            return out.push(Action::Reply(r));
        };
        let port = self.conferences[conf]
            .participants
            .iter()
            .find(|x| x.id == p)
            .map_or(0, |x| x.port);
        let origin = Origin {
            session: p,
            version: 2,
            address: env.media_address,
        };
        let session = super::session_interval(req);
        let mut ok = if req.body().is_empty() {
            let offer = (req.method_str() == "INVITE").then(|| sdp::offer(origin, port));
            match offer {
                Some(o) => Reply::new(200, "OK").with_body("application/sdp", o.into_bytes()),
                None => Reply::new(200, "OK"),
            }
        } else {
            match Sdp::parse(req.body()).map(|o| sdp::answer(&o, origin, port)) {
                Ok(Ok((answer, negotiated))) => {
                    out.push(Action::Media(MediaCommand::Open {
                        stream: p,
                        port,
                        negotiated,
                    }));
                    Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes())
                }
                _ => {
                    let r = Reply::new(488, "Not Acceptable Here (G.711 audio only)");
                    return out.push(Action::Reply(r));
                }
            }
        };
        super::session_headers(session, &mut ok);
        out.push(Action::Reply(ok));
        if let Some(secs) = session {
            self.arm_session(conf, p, secs, out);
        }
    }

    /// A REFER within a participant's call: the organizer ejecting someone (`method=BYE`), or
    /// the organizer or a presenter bringing someone in (the focus calls them).
    pub(super) fn refer(
        &mut self,
        env: &Env,
        conf: &str,
        req: &Message,
        dialog: &DialogId,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.conferences.get(conf) else {
            return;
        };
        let from = aor_of(req);
        let role = c.participant_by_aor(&from).map(|p| p.role);
        let refer_to = req.header_named("Refer-To").unwrap_or_default();
        let Some(target) = refer_target(refer_to) else {
            let r = Reply::new(400, "Bad Request (Refer-To names no sip: user)");
            return out.push(Action::Reply(r));
        };
        if !refer_to.to_ascii_uppercase().contains("METHOD=BYE") {
            if !role.is_some_and(Role::leads) {
                let r = Reply::new(403, "Forbidden (attendees do not invite others)");
                return out.push(Action::Reply(r));
            }
            // never a way to make this server call anywhere: only the organisation's users
            if !domain_of(&target).eq_ignore_ascii_case(domain_of(&c.meeting.organizer)) {
                let r = Reply::new(
                    403,
                    "Forbidden (a meeting calls in users of its organizer's domain only)",
                );
                return out.push(Action::Reply(r));
            }
            return self.invite_in(env, conf, &target, dialog, out);
        }
        if role != Some(Role::Organizer) {
            let r = Reply::new(403, "Forbidden (only the organizer ejects participants)");
            return out.push(Action::Reply(r));
        }
        let Some(p) = c.participant_by_aor(&target) else {
            let r = Reply::new(404, "Not Found (no such participant)");
            return out.push(Action::Reply(r));
        };
        let victim_dialog = p.dialog.clone();
        out.push(Action::Reply(Reply::new(202, "Accepted")));
        // the REFER's implicit subscription, told at once how it went (RFC 3515)
        super::dialout::notify_refer(dialog, "200 OK", true, out);
        tracing::info!(event = "meeting.ejected", meeting = %conf, participant = %target, by = %from, "a participant was ejected");
        super::hang_up(victim_dialog, out);
    }
}

/// `user@domain` a REFER's `Refer-To: <sip:bob@example.com;method=BYE>` names.
fn refer_target(refer_to: &str) -> Option<String> {
    let uri = refer_to.trim().trim_start_matches('<');
    let uri = uri.split(['>', ';', '?']).next()?;
    let aor = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    aor.contains('@').then(|| aor.to_ascii_lowercase())
}
