//! Ad-hoc meetings and inviting people in (RFC 4579 §5.4–5.5): a call to the conference
//! factory (`meet-now@domain`) makes a meeting on the spot, its caller the organizer; a REFER
//! within a participant's call names someone to bring in, and the focus calls them (every
//! registered device of a user rings) and puts whoever answers into the mix. The REFER's
//! implicit subscription hears how it went (`message/sipfrag`). A call or an IM session is
//! escalated so: its owner calls the factory, then refers the others.

use confab_media::sdp::{self, Origin, Sdp};
use confab_meetings::Meeting;
use sip_proto::dialog::DialogId;
use sip_proto::Message;

use super::conference::Participant;
use super::{aor_of, domain_of, Focus, Role};
use crate::apps::{Action, CallEvent, Env, Reply};

/// A call the focus placed to bring someone in.
pub(super) struct DialOut {
    meeting: Meeting,
    port: u16,
    /// The call of the participant who asked (its REFER's subscription is told the outcome).
    referrer: DialogId,
    target: String,
}

impl Focus {
    /// A call to the conference factory: a meeting made now, its caller the organizer.
    pub(super) fn adhoc(&mut self, env: &Env, req: &Message, out: &mut Vec<Action>) {
        let organizer = aor_of(req);
        let stored = self.served();
        let random = self.id().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut taken = stored.map(|s| s.meetings.clone()).unwrap_or_default();
        for m in self.adhoc.values() {
            taken.meetings.push(m.clone());
        }
        let Some(id) = taken.free_id(random, None) else {
            let r = Reply::new(503, "Service Unavailable (no conference ID free)");
            return out.push(Action::Reply(r));
        };
        let meeting = Meeting {
            id: id.clone(),
            organizer: organizer.clone(),
            subject: Some("Meet now".to_owned()),
            pin_required: false,
            directory: None,
        };
        tracing::info!(event = "meeting.adhoc", meeting = %id, organizer = %organizer, "an ad-hoc meeting was made");
        self.adhoc.insert(id, meeting.clone());
        self.join(env, req, meeting, out);
    }

    /// A REFER within participant call `dialog` of meeting `conf` naming someone to bring in.
    pub(super) fn invite_in(
        &mut self,
        env: &Env,
        conf: &str,
        target: &str,
        dialog: &DialogId,
        out: &mut Vec<Action>,
    ) {
        let Some(meeting) = self.conferences.get(conf).map(|c| c.meeting.clone()) else {
            return;
        };
        let Some(port) = self.ports.take() else {
            let r = Reply::new(503, "Service Unavailable (no media port free)");
            return out.push(Action::Reply(r));
        };
        out.push(Action::Reply(Reply::new(202, "Accepted")));
        notify_refer(dialog, "100 Trying", false, out);
        let call = self.id();
        let origin = Origin {
            session: call,
            version: 1,
            address: env.media_address,
        };
        tracing::info!(event = "meeting.invite_out", meeting = %conf, target = %target, "the focus calls someone in");
        out.push(Action::Call {
            call,
            from: format!("\"Meeting {}\" <{}>", meeting.id, meeting.uri()),
            to: format!("sip:{target}"),
            headers: vec![("Content-Type".into(), "application/sdp".into())],
            body: sdp::offer(origin, port).into_bytes(),
        });
        self.dialouts.insert(
            call,
            DialOut {
                meeting,
                port,
                referrer: dialog.clone(),
                target: target.to_owned(),
            },
        );
    }

    /// What became of a call the focus placed.
    pub(super) fn dialout_event(&mut self, call: u64, event: CallEvent, out: &mut Vec<Action>) {
        let Some(d) = self.dialouts.remove(&call) else {
            return;
        };
        match event {
            CallEvent::Ringing => {
                self.dialouts.insert(call, d);
            }
            CallEvent::Answered { dialog, body } => {
                let negotiated = Sdp::parse(&body).and_then(|s| s.audio().map(|(n, _)| n));
                let Ok(negotiated) = negotiated else {
                    // an answer the mix cannot use: the call is ended at once
                    self.ports.give_back(d.port);
                    notify_refer(&d.referrer, "488 Not Acceptable Here", true, out);
                    return super::hang_up(Some(dialog), out);
                };
                self.open_watched(call, d.port, negotiated, out);
                let role =
                    if domain_of(&d.target).eq_ignore_ascii_case(domain_of(&d.meeting.organizer)) {
                        Role::Presenter
                    } else {
                        Role::Attendee
                    };
                let key = (dialog.call_id.clone(), dialog.remote_tag.clone());
                let mut p = Participant::new(call, key, d.target, None, role, d.port);
                p.dialog = Some(dialog);
                self.enter(d.meeting, p, out);
                notify_refer(&d.referrer, "200 OK", true, out);
            }
            CallEvent::Failed { code, reason } => {
                self.ports.give_back(d.port);
                notify_refer(&d.referrer, &format!("{code} {reason}"), true, out);
            }
        }
    }
}

/// Tells the REFER's sender how its request goes (RFC 3515: `message/sipfrag` of the status).
pub(super) fn notify_refer(dialog: &DialogId, status: &str, done: bool, out: &mut Vec<Action>) {
    let state = if done {
        "terminated;reason=noresource"
    } else {
        "active;expires=60"
    };
    out.push(Action::Request {
        dialog: dialog.clone(),
        method: "NOTIFY".into(),
        headers: vec![
            ("Event".into(), "refer".into()),
            ("Subscription-State".into(), state.into()),
            ("Content-Type".into(), "message/sipfrag".into()),
        ],
        body: format!("SIP/2.0 {status}\r\n").into_bytes(),
    });
}
