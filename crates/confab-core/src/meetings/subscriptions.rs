//! Subscriptions to a meeting's roster (the conference event package, RFC 4575 over RFC 6665):
//! granted for an hour at most, refreshed and ended within their dialog, and every subscriber
//! sent the whole roster whenever it changes.

use std::time::Duration;

use sip_proto::dialog::DialogId;
use sip_proto::Message;

use super::{call_key, Focus, MAX_SUBSCRIPTION};
use crate::apps::{Action, Reply};

impl Focus {
    /// A SUBSCRIBE to a meeting's roster.
    pub(super) fn subscribe(
        &mut self,
        req: &Message,
        meeting: confab_meetings::Meeting,
        out: &mut Vec<Action>,
    ) {
        let event = req
            .header_str(sip_proto::HeaderName::Event)
            .ok()
            .flatten()
            .unwrap_or_default();
        if !event
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("conference")
        {
            let mut r = Reply::new(
                489,
                "Bad Event (a meeting has the conference event package)",
            );
            r.headers.push(("Allow-Events".into(), "conference".into()));
            return out.push(Action::Reply(r));
        }
        let Some(key) = call_key(req) else {
            return out.push(Action::Reply(Reply::new(
                400,
                "Bad Request (no Call-ID or From tag)",
            )));
        };
        let expires = granted(req);
        let c = self.conference(meeting.clone());
        if c.subscribers.len() >= super::conference::SUBSCRIBERS {
            let reason =
                "Service Unavailable (this meeting has as many roster subscriptions as it keeps)";
            let mut r = Reply::new(503, reason);
            r.headers.push(("Retry-After".into(), "60".into()));
            return out.push(Action::Reply(r));
        }
        c.subscribe(key.clone());
        self.by_call.insert(key.clone(), meeting.id.clone());
        let token = self.id();
        self.timers.insert(token, (meeting.id.clone(), key));
        out.push(Action::Timer {
            token,
            after: expires,
        });
        let mut r = Reply::new(200, "OK");
        r.headers
            .push(("Expires".into(), expires.as_secs().to_string()));
        out.push(Action::Reply(r));
    }

    /// A refresh (or end, `Expires: 0`) of a roster subscription.
    pub(super) fn resubscribe(
        &mut self,
        conf: &str,
        req: &Message,
        dialog: &DialogId,
        out: &mut Vec<Action>,
    ) {
        let expires = granted(req);
        let mut r = Reply::new(200, "OK");
        r.headers
            .push(("Expires".into(), expires.as_secs().to_string()));
        out.push(Action::Reply(r));
        let Some(key) = call_key(req) else {
            return;
        };
        if expires.is_zero() {
            self.notify_one(conf, dialog, true, out);
            if let Some(c) = self.conferences.get_mut(conf) {
                c.unsubscribe(&key);
            }
            return;
        }
        let token = self.id();
        self.timers.insert(token, (conf.to_owned(), key));
        out.push(Action::Timer {
            token,
            after: expires,
        });
        self.notify_one(conf, dialog, false, out);
    }

    /// Sends one subscriber the roster (`terminated`: the last NOTIFY).
    pub(super) fn notify_one(
        &mut self,
        conf: &str,
        dialog: &DialogId,
        terminated: bool,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.conferences.get(conf) else {
            return;
        };
        let state = if terminated {
            "terminated;reason=timeout".to_owned()
        } else {
            "active".to_owned()
        };
        out.push(Action::Request {
            dialog: dialog.clone(),
            method: "NOTIFY".into(),
            headers: vec![
                ("Event".into(), "conference".into()),
                ("Subscription-State".into(), state),
                (
                    "Content-Type".into(),
                    "application/conference-info+xml".into(),
                ),
            ],
            body: c.roster().into_bytes(),
        });
    }

    /// Someone joined, left, was muted or the meeting locked: every subscriber told.
    pub(super) fn roster_changed(&mut self, conf: &str, out: &mut Vec<Action>) {
        let Some(c) = self.conferences.get_mut(conf) else {
            return;
        };
        c.version += 1;
        let dialogs: Vec<DialogId> = c
            .subscribers
            .iter()
            .filter_map(|s| s.dialog.clone())
            .collect();
        for d in dialogs {
            self.notify_one(conf, &d, false, out);
        }
    }
}

/// The subscription's length: what was asked (default and most: an hour).
fn granted(req: &Message) -> Duration {
    req.expires().ok().flatten().map_or(MAX_SUBSCRIPTION, |s| {
        Duration::from_secs(u64::from(s)).min(MAX_SUBSCRIPTION)
    })
}
