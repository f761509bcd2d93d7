//! A participant's call with the focus: joining (admitted into the mix, or refused with the
//! reason: locked, full, no audio offer), moving its media (re-INVITE), and the organizer
//! ejecting someone (REFER with `method=BYE`, RFC 4579 §5.5).

use confab_media::sdp::{self, Origin, Sdp};
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use super::conference::{Conference, Participant};
use super::{aor_of, call_key, display_of, domain_of, Focus, Role};
use crate::apps::{Action, Env, MediaCommand, Reply};

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
        let refuse = |out: &mut Vec<Action>, code, reason: &str| {
            out.push(Action::Reply(Reply::new(code, reason)));
        };
        let limit = self
            .meetings()
            .map_or(confab_meetings::DEFAULT_PARTICIPANT_LIMIT, |m| {
                m.settings.participant_limit
            });
        let aor = aor_of(req);
        let role = if aor.eq_ignore_ascii_case(&meeting.organizer) {
            Role::Organizer
        } else if domain_of(&aor).eq_ignore_ascii_case(domain_of(&meeting.organizer)) {
            Role::Presenter
        } else {
            Role::Attendee
        };
        if let Some(c) = self.conferences.get(&meeting.id) {
            if c.locked && role != Role::Organizer {
                return refuse(out, 403, "Forbidden (the meeting is locked)");
            }
            if c.participants.len() >= limit {
                let reason = format!("Busy Here (the meeting is full: {limit} participants)");
                return refuse(out, 486, &reason);
            }
        }
        let offer = match Sdp::parse(req.body()) {
            Ok(s) if s.audio().is_ok() => s,
            Ok(_) | Err(_) if req.body().is_empty() => {
                return refuse(
                    out,
                    488,
                    "Not Acceptable Here (joining a meeting needs an SDP offer with audio)",
                );
            }
            Ok(s) => {
                let e = s.audio().err().map(|e| e.to_string()).unwrap_or_default();
                return refuse(out, 488, &format!("Not Acceptable Here ({e})"));
            }
            Err(e) => return refuse(out, 488, &format!("Not Acceptable Here ({e})")),
        };
        let Some(port) = self.ports.take() else {
            tracing::warn!(
                event = "meeting.no_port",
                "every RTP port is in use: a participant refused"
            );
            return refuse(out, 503, "Service Unavailable (no media port free)");
        };
        let id = self.id();
        let origin = Origin {
            session: id,
            version: 1,
            address: env.media_address,
        };
        let Ok((answer, negotiated)) = sdp::answer(&offer, origin, port) else {
            self.ports.give_back(port);
            return refuse(
                out,
                488,
                "Not Acceptable Here (no codec in common: G.711 only)",
            );
        };
        let Some(key) = call_key(req) else {
            self.ports.give_back(port);
            return refuse(out, 400, "Bad Request (no Call-ID or From tag)");
        };
        let conf_number = self.id();
        let c = self
            .conferences
            .entry(meeting.id.clone())
            .or_insert_with(|| Conference::new(meeting.clone(), conf_number, limit));
        tracing::info!(event = "meeting.joined", meeting = %meeting.id, participant = %aor, role = role.name(), "a participant joined");
        c.participants.push(Participant {
            id,
            key: key.clone(),
            dialog: None,
            aor,
            display: display_of(req),
            role,
            port,
            muted: false,
            star: false,
            outbox: Default::default(),
            sending: false,
        });
        let conference = c.number;
        self.by_call.insert(key, meeting.id.clone());
        self.streams.insert(id, meeting.id.clone());
        out.push(Action::Media(MediaCommand::Open {
            stream: id,
            port,
            negotiated,
        }));
        out.push(Action::Media(MediaCommand::Join {
            stream: id,
            conference,
        }));
        out.push(Action::Reply(
            Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes()),
        ));
        self.roster_changed(&meeting.id, out);
    }

    /// A re-INVITE: the participant's media moved (or held): the stream follows.
    pub(super) fn reinvite(&mut self, env: &Env, conf: &str, req: &Message, out: &mut Vec<Action>) {
        let Some(p) = self.participant_id(conf, req) else {
            return out.push(Action::Reply(Reply::new(
                481,
                "Call/Transaction Does Not Exist",
            )));
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
        match Sdp::parse(req.body()).map(|o| sdp::answer(&o, origin, port)) {
            Ok(Ok((answer, negotiated))) => {
                out.push(Action::Media(MediaCommand::Open {
                    stream: p,
                    port,
                    negotiated,
                }));
                out.push(Action::Reply(
                    Reply::new(200, "OK").with_body("application/sdp", answer.into_bytes()),
                ));
            }
            _ => out.push(Action::Reply(Reply::new(
                488,
                "Not Acceptable Here (G.711 audio only)",
            ))),
        }
    }

    /// A REFER within a participant's call: the organizer ejecting someone (`method=BYE`).
    pub(super) fn refer(
        &mut self,
        conf: &str,
        req: &Message,
        dialog: &DialogId,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.conferences.get(conf) else {
            return;
        };
        let from = aor_of(req);
        if c.participant_by_aor(&from).map(|p| p.role) != Some(Role::Organizer) {
            return out.push(Action::Reply(Reply::new(
                403,
                "Forbidden (only the organizer ejects participants)",
            )));
        }
        let target = req.header_named("Refer-To").unwrap_or_default();
        let Some(victim) = target
            .contains("method=BYE")
            .then(|| refer_target(target))
            .flatten()
        else {
            return out.push(Action::Reply(Reply::new(
                501,
                "Not Implemented (a meeting takes REFER with method=BYE only, to eject a participant)",
            )));
        };
        let Some(p) = c.participant_by_aor(&victim) else {
            return out.push(Action::Reply(Reply::new(
                404,
                "Not Found (no such participant)",
            )));
        };
        let victim_dialog = p.dialog.clone();
        out.push(Action::Reply(Reply::new(202, "Accepted")));
        // the REFER's implicit subscription, told at once how it went (RFC 3515)
        out.push(Action::Request {
            dialog: dialog.clone(),
            method: "NOTIFY".into(),
            headers: vec![
                ("Event".into(), "refer".into()),
                (
                    "Subscription-State".into(),
                    "terminated;reason=noresource".into(),
                ),
                ("Content-Type".into(), "message/sipfrag".into()),
            ],
            body: b"SIP/2.0 200 OK\r\n".to_vec(),
        });
        tracing::info!(event = "meeting.ejected", meeting = %conf, participant = %victim, by = %from, "a participant was ejected");
        if let Some(d) = victim_dialog {
            out.push(Action::Request {
                dialog: d.clone(),
                method: "BYE".into(),
                headers: Vec::new(),
                body: Vec::new(),
            });
        }
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
