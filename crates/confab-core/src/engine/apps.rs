//! The engine's side of applications (`crate::apps`): requests handed to the application that
//! claims their user or owns their dialog, its actions carried out, its dialogs kept, its 2xx
//! to an INVITE resent over UDP until the ACK (RFC 3261 §13.3.1.4), responses to its requests
//! handed back.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use sip_proto::dialog::{Dialog, DialogId};
use sip_proto::header::MAGIC_COOKIE;
use sip_proto::transaction::{client_key, ClientEvent};
use sip_proto::{Message, Method, Uri, Writer};
use sip_transport::{Target, Transport};

use super::{ClientRole, Ctx, Engine, Now, Output, TimerOwner};
use crate::apps::{Action, Reply};
use crate::routing::{our_port, response_target, uri_target};

/// A dialog an application owns.
pub(super) struct AppDialog {
    pub(super) app: usize,
    pub(super) dialog: Dialog,
    /// The transport the dialog was made on: requests go back on it.
    pub(super) transport: Transport,
    /// Our 2xx to the INVITE, resent until its ACK.
    pub(super) unacked: Option<Unacked>,
    /// The dialog connected to this one (`Action::Connect`): what arrives here goes there.
    pub(super) peer: Option<u64>,
}

pub(super) struct Unacked {
    bytes: Vec<u8>,
    target: Target,
    interval: Duration,
    give_up: Instant,
}

impl Engine {
    /// Adds an application: from now on it receives the requests for the users it claims.
    pub fn add_application(&mut self, app: Box<dyn crate::apps::Application>) {
        tracing::info!(event = "app.added", app = app.name(), "application added");
        self.apps.push(app);
    }

    /// The application claiming `user` (a request outside a dialog).
    pub(super) fn app_for(&self, user: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.claims(user))
    }

    /// The application dialog an in-dialog request belongs to.
    pub(super) fn app_dialog_of(&self, msg: &Message) -> Option<u64> {
        if self.app_dialogs.is_empty() {
            return None;
        }
        let id = DialogId::of_request(msg).ok()?;
        self.app_dialog_ids.get(&id).copied()
    }

    /// Hands a request to application `app` (or to the one owning dialog `no`) and carries out
    /// what it says.
    pub(super) fn app_request(&mut self, now: Now, ctx: &Ctx, app: usize, no: Option<u64>) {
        let method = ctx.msg.method();
        let mut id = None;
        if let Some(no) = no {
            let Some(d) = self.app_dialogs.get_mut(&no) else {
                return;
            };
            if let Err(e) = d.dialog.on_request(&ctx.msg) {
                if method != Method::Ack {
                    let reason = format!("Server Internal Error ({e})");
                    self.respond(now, ctx, 500, &reason, &[]);
                }
                return;
            }
            if method == Method::Ack {
                d.unacked = None;
            }
            if let Some(peer) = d.peer {
                return self.relay_request(now, ctx, no, peer);
            }
            id = Some(d.dialog.id().clone());
        }
        let actions = self.call_app(now, app, |a, env, out| {
            a.on_request(env, &ctx.msg, id.as_ref(), out);
        });
        self.app_actions(now, Some(ctx), app, no, actions);
    }

    /// Carries out what application `app` said, handling `ctx` (in dialog `no`) if any.
    pub(super) fn app_actions(
        &mut self,
        now: Now,
        ctx: Option<&Ctx>,
        app: usize,
        no: Option<u64>,
        actions: Vec<Action>,
    ) {
        for action in actions {
            match action {
                Action::Reply(r) => match ctx {
                    Some(ctx) => self.app_reply(now, ctx, app, no, r),
                    None => tracing::warn!(
                        event = "app.stray_reply",
                        "an application answered when no request was before it"
                    ),
                },
                Action::Request {
                    dialog,
                    method,
                    headers,
                    body,
                } => {
                    if let Some(&no) = self.app_dialog_ids.get(&dialog) {
                        if method == "BYE" {
                            // the application hangs up: the call's record is complete
                            self.call_hung_up_by(now, &dialog.call_id, &dialog.local_tag);
                        }
                        self.app_send(now, no, &method, &headers, &body, None);
                    }
                }
                Action::Call {
                    call,
                    from,
                    to,
                    headers,
                    body,
                } => self.app_call(now, app, call, (&from, &to), &headers, &body),
                Action::CancelCall { call } => self.cancel_app_call(now, app, call),
                Action::Connect { a, b } => self.connect_dialogs(&a, &b),
                Action::Forget { dialog } => {
                    if let Some(&no) = self.app_dialog_ids.get(&dialog) {
                        self.app_dialog_ended(now, no);
                    }
                }
                Action::Timer { token, after } => self.timers.push(Reverse((
                    now.mono + after,
                    TimerOwner::AppTimer { app, token },
                ))),
                Action::Media(cmd) => self.media_out.push_back((app, cmd)),
            }
        }
    }

    /// An application's response to the request in `ctx`.
    fn app_reply(&mut self, now: Now, ctx: &Ctx, app: usize, no: Option<u64>, r: Reply) {
        let req = &ctx.msg;
        let tag = self.to_tag(req);
        let mut w = Writer::response_to(req, r.code, &r.reason, &tag);
        let invite = req.method() == Method::Invite;
        if invite && r.code < 300 {
            w.header(
                "Contact",
                self.our_contact(ctx.source.transport, &ctx.source.remote),
            );
            // the proxies that record-routed the INVITE stay on the dialog (RFC 3261 §12.1.1)
            if no.is_none() {
                for (name, n, v) in req.fields() {
                    if name == sip_proto::HeaderName::RecordRoute {
                        w.raw(n, v);
                    }
                }
            }
        }
        for (n, v) in &r.headers {
            w.header(n, v);
        }
        w.header("Server", &self.cfg.server_name);
        let bytes = w.finish(&r.body);
        let makes_dialog = invite || req.method() == Method::Subscribe;
        let made = (makes_dialog && (200..300).contains(&r.code) && no.is_none())
            .then(|| self.app_dialog_made(now, ctx, app, &tag, &bytes))
            .flatten();
        if req.method() == Method::Bye && (200..300).contains(&r.code) {
            if let Some(no) = no {
                self.app_dialog_ended(now, no);
            }
        }
        match ctx.key.as_deref() {
            Some(k) if self.server_tx.contains_key(k) => {
                self.send_upstream(now, k, r.code, bytes);
            }
            _ => {
                let via = req.top_via().ok();
                let target = response_target(via.as_ref(), &ctx.source);
                self.out.push_back(Output { target, bytes });
            }
        }
        // told once the answer is on its way, so what it sends in the dialog comes after
        if let Some(id) = made {
            let actions = self.call_app(now, app, |a, env, out| a.on_dialog(env, &id, out));
            self.app_actions(now, None, app, None, actions);
        }
    }

    /// A 2xx to an INVITE or SUBSCRIBE made a dialog: kept, and over UDP an INVITE's 2xx resent
    /// until the ACK.
    fn app_dialog_made(
        &mut self,
        now: Now,
        ctx: &Ctx,
        app: usize,
        tag: &str,
        bytes: &[u8],
    ) -> Option<DialogId> {
        let dialog = match Dialog::as_uas(&ctx.msg, tag, 1) {
            Ok(mut d) => {
                d.accepted();
                d
            }
            Err(e) => {
                tracing::warn!(event = "app.no_dialog", error = %e, "an application answered 2xx to a request that cannot make a dialog");
                return None;
            }
        };
        let no = self.next_id();
        let invite = ctx.msg.method() == Method::Invite;
        let unacked = (invite && ctx.source.transport == Transport::Udp).then(|| {
            let via = ctx.msg.top_via().ok();
            let t1 = self.cfg.timers.t1;
            self.timers
                .push(Reverse((now.mono + t1, TimerOwner::App(no))));
            Unacked {
                bytes: bytes.to_vec(),
                target: response_target(via.as_ref(), &ctx.source),
                interval: t1,
                give_up: now.mono + t1 * 64,
            }
        });
        let id = dialog.id().clone();
        self.app_dialog_ids.insert(id.clone(), no);
        self.app_dialogs.insert(
            no,
            AppDialog {
                app,
                dialog,
                transport: ctx.source.transport,
                unacked,
                peer: None,
            },
        );
        Some(id)
    }

    /// The 2xx retransmission timer of dialog `no`: resend, or give up after 64·T1 without ACK.
    pub(super) fn app_timer(&mut self, now: Now, no: u64) {
        let t2 = self.cfg.timers.t2;
        let Some(d) = self.app_dialogs.get_mut(&no) else {
            return;
        };
        let Some(u) = d.unacked.as_mut() else {
            return;
        };
        if now.mono >= u.give_up {
            tracing::warn!(
                event = "app.no_ack",
                app = self.apps[d.app].name(),
                "the 2xx was never acknowledged: dialog ended"
            );
            self.app_dialog_ended(now, no);
            return;
        }
        self.out.push_back(Output {
            target: u.target,
            bytes: u.bytes.clone(),
        });
        u.interval = (u.interval * 2).min(t2);
        let at = (now.mono + u.interval).min(u.give_up);
        self.timers.push(Reverse((at, TimerOwner::App(no))));
    }

    /// A request within dialog `no`, on a client transaction of its own (`relay`: what waits
    /// for its answer, when it was relayed from the connected dialog). False when the dialog
    /// has no reachable next hop.
    pub(super) fn app_send(
        &mut self,
        now: Now,
        no: u64,
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
        relay: Option<u64>,
    ) -> bool {
        let branch = format!("{MAGIC_COOKIE}{:x}{}-ua", self.next_id(), self.mark());
        let Some(d) = self.app_dialogs.get_mut(&no) else {
            return false;
        };
        let Some(target) = next_hop(d) else {
            return false;
        };
        let mut w = d.dialog.request(method);
        w.header("Via", self.our_via(target, &branch));
        w.header("Max-Forwards", "70");
        w.header("Contact", self.our_contact(target.transport, &target.addr));
        for (n, v) in headers {
            w.header(n, v);
        }
        let Ok(req) = Message::parse(w.finish(body), &self.cfg.limits) else {
            return false;
        };
        let key = client_key(&branch, method);
        self.start_client(now, key, req, target, ClientRole::App { dialog: no, relay });
        true
    }

    /// What a client transaction of an application heard.
    pub(super) fn app_event(&mut self, now: Now, no: u64, relay: Option<u64>, ev: ClientEvent) {
        let resp = match ev {
            ClientEvent::Response(r) => r,
            ClientEvent::Timeout => {
                tracing::info!(
                    event = "app.request_timeout",
                    "no answer to an application's request: dialog ended"
                );
                if let Some(r) = relay {
                    self.relay_answer(now, r, None);
                }
                self.app_dialog_ended(now, no);
                return;
            }
        };
        let Some(d) = self.app_dialogs.get_mut(&no) else {
            return;
        };
        let _ = d.dialog.on_response(&resp);
        let invite = resp.cseq().is_ok_and(|c| c.method == "INVITE");
        if invite && (200..300).contains(&resp.status()) {
            self.ack_2xx(no, &resp);
        }
        let bye = resp.cseq().is_ok_and(|c| c.method == "BYE");
        if let Some(r) = relay {
            if resp.status() >= 200 {
                self.relay_answer(now, r, Some(&resp));
            }
        } else if let Some(d) = self.app_dialogs.get(&no) {
            let (app, id) = (d.app, d.dialog.id().clone());
            let actions = self.call_app(now, app, |a, env, out| {
                a.on_response(env, &id, &resp, out);
            });
            self.app_actions(now, None, app, Some(no), actions);
        }
        if bye && resp.status() >= 200 {
            self.app_dialog_ended(now, no);
        }
    }

    /// A 2xx to an application's INVITE that its callee sent again (our ACK was lost; the
    /// INVITE's transaction is over): ACKed again. False when no dialog of ours matches.
    pub(super) fn reack(&mut self, resp: &Message) -> bool {
        if self.app_dialogs.is_empty() {
            return false;
        }
        let no = DialogId::of_response(resp)
            .ok()
            .and_then(|id| self.app_dialog_ids.get(&id).copied());
        if let Some(no) = no {
            self.ack_2xx(no, resp);
        }
        no.is_some()
    }

    /// ACKs a 2xx to our INVITE in dialog `no` (RFC 3261 §13.2.2.4): the dialog's next hop,
    /// no transaction.
    pub(super) fn ack_2xx(&mut self, no: u64, resp: &Message) {
        let Some(d) = self.app_dialogs.get(&no) else {
            return;
        };
        let Some(target) = next_hop(d) else {
            return;
        };
        let seq = resp.cseq().map_or(1, |c| c.seq);
        let mut w = d.dialog.ack(seq);
        let branch = format!("{MAGIC_COOKIE}{:x}{}-ack", self.next_id(), self.mark());
        w.header("Via", self.our_via(target, &branch));
        w.header("Max-Forwards", "70");
        self.out.push_back(Output {
            target,
            bytes: w.finish(b""),
        });
    }

    pub(super) fn app_dialog_ended(&mut self, now: Now, no: u64) {
        let Some(d) = self.app_dialogs.remove(&no) else {
            return;
        };
        self.app_dialog_ids.remove(d.dialog.id());
        let id = d.dialog.id();
        let actions = self.call_app(now, d.app, |a, env, out| a.on_dialog_ended(env, id, out));
        self.app_actions(now, None, d.app, None, actions);
    }

    /// Calls application `app` with what it may know of the server; what it says to do.
    pub(super) fn call_app(
        &mut self,
        now: Now,
        app: usize,
        f: impl FnOnce(&mut dyn crate::apps::Application, &crate::apps::Env, &mut Vec<Action>),
    ) -> Vec<Action> {
        let env = crate::apps::Env {
            now,
            presence: &self.presence,
            media_address: self.cfg.media_address,
            pooled: !self.alternates.is_empty(),
        };
        let mut out = Vec::new();
        if let Some(a) = self.apps.get_mut(app) {
            f(a.as_mut(), &env, &mut out);
        }
        out
    }

    /// A command for the media engine, with the application it is from (see
    /// [`Engine::handle_media`]).
    pub fn poll_media(&mut self) -> Option<(usize, crate::apps::MediaCommand)> {
        self.media_out.pop_front()
    }

    /// What a media stream of application `app` heard.
    pub fn handle_media(
        &mut self,
        now: Now,
        app: usize,
        stream: u64,
        event: confab_media::MediaEvent,
    ) {
        let actions = self.call_app(now, app, |a, env, out| a.on_media(env, stream, event, out));
        self.app_actions(now, None, app, None, actions);
        self.deliver_events(now);
    }

    /// Our Contact toward `peer` on `transport`.
    pub(super) fn our_contact(&self, transport: Transport, peer: &std::net::SocketAddr) -> String {
        format!(
            "<sip:{}:{};transport={}>",
            self.cfg.host_toward(peer),
            our_port(&self.cfg, transport),
            transport.param()
        )
    }
}

/// Where a request of dialog `d` goes: its first Route, else the peer's Contact.
fn next_hop(d: &AppDialog) -> Option<Target> {
    let hop = d.dialog.route_set().first().map_or_else(
        || d.dialog.remote_target().to_owned(),
        |r| r.trim_matches(['<', '>']).to_owned(),
    );
    let target = Uri::parse(&hop)
        .ok()
        .and_then(|u| u.as_sip().and_then(|s| uri_target(s, d.transport)));
    if target.is_none() {
        tracing::warn!(event = "app.unroutable", next_hop = %hop, "an application's request has no reachable next hop");
    }
    target
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sip_proto::dialog::{Dialog, DialogId};
    use sip_proto::{Limits, Message};

    use crate::apps::{Action, Application, Env, Reply};
    use crate::engine::sim::{reply, Sim, ALICE};

    /// Answers INVITEs to `echo` with an SDP body and BYEs with 200; with `hang_up`, sends a
    /// BYE of its own when the ACK arrives. Writes what it hears to `log`.
    struct Echo {
        hang_up: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Application for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn claims(&self, user: &str) -> bool {
            user == "echo"
        }
        fn on_request(
            &mut self,
            _: &Env,
            req: &Message,
            dialog: Option<&DialogId>,
            out: &mut Vec<Action>,
        ) {
            self.log
                .lock()
                .unwrap()
                .push(format!("{} {}", req.method_str(), dialog.is_some()));
            match (req.method_str(), dialog) {
                ("INVITE", None) => out.push(Action::Reply(
                    Reply::new(200, "OK").with_body("application/sdp", b"v=0\r\n".to_vec()),
                )),
                ("ACK", Some(d)) if self.hang_up => out.push(Action::Request {
                    dialog: d.clone(),
                    method: "BYE".into(),
                    headers: Vec::new(),
                    body: Vec::new(),
                }),
                ("ACK", _) => {}
                _ => out.push(Action::Reply(Reply::new(200, "OK"))),
            }
        }
        fn on_response(&mut self, _: &Env, _: &DialogId, resp: &Message, _: &mut Vec<Action>) {
            self.log
                .lock()
                .unwrap()
                .push(format!("response {}", resp.status()));
        }
        fn on_dialog_ended(&mut self, _: &Env, _: &DialogId, _: &mut Vec<Action>) {
            self.log.lock().unwrap().push("ended".into());
        }
    }

    const INVITE_ECHO: &str = "INVITE sip:echo@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKe1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:echo@example.com>\r\nCall-ID: echo-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{auth}Content-Length: 0\r\n\r\n";

    /// alice calls the echo application: returns her side of the dialog and the INVITE sent.
    fn call(sim: &mut Sim, hang_up: bool) -> (Dialog, Arc<Mutex<Vec<String>>>, Message) {
        let log = Arc::new(Mutex::new(Vec::new()));
        sim.engine.add_application(Box::new(Echo {
            hang_up,
            log: log.clone(),
        }));
        let answers = sim.send_authenticated(ALICE, "alice", INVITE_ECHO);
        let codes: Vec<u16> = answers.iter().map(Message::status).collect();
        // answered at once: the 200 alone, no 100 Trying before it
        assert_eq!(codes, vec![200]);
        let ok = &answers[0];
        assert_eq!(ok.body(), b"v=0\r\n");
        let contact = ok.contacts().unwrap().len();
        assert_eq!(contact, 1, "the 2xx names where the dialog continues");
        let invite = INVITE_ECHO
            .replace("{auth}", "")
            .replacen("z9hG4bK", "z9hG4bK2-", 1)
            .replacen("CSeq: 1 ", "CSeq: 2 ", 1);
        let invite = Message::parse(invite.into_bytes(), &Limits::default()).unwrap();
        let dialog = Dialog::as_uac(&invite, ok).expect("a dialog from the 2xx");
        (dialog, log, invite)
    }

    fn send_in(sim: &mut Sim, w: sip_proto::Writer, branch: &str) {
        let mut w = w;
        w.header(
            "Via",
            format!("SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK{branch}"),
        );
        w.header("Max-Forwards", "70");
        sim.send(ALICE, &String::from_utf8(w.finish(b"")).unwrap());
    }

    #[test]
    fn an_application_answers_an_invite_its_2xx_is_resent_until_the_ack_and_a_bye_ends_it() {
        let mut sim = Sim::with_users(&["alice"], &[]);
        let (mut alice, log, _) = call(&mut sim, false);
        sim.advance(Duration::from_millis(600));
        let again = sim.take_to(ALICE);
        assert_eq!(
            again.iter().map(Message::status).collect::<Vec<_>>(),
            vec![200],
            "resent at T1"
        );
        send_in(&mut sim, alice.ack(2), "ack1");
        sim.advance(Duration::from_secs(10));
        assert!(sim.take_to(ALICE).is_empty(), "no resending after the ACK");
        send_in(&mut sim, alice.request("BYE"), "bye1");
        let bye_ok = sim.take_to(ALICE);
        assert_eq!(
            bye_ok.iter().map(Message::status).collect::<Vec<_>>(),
            vec![200]
        );
        assert_eq!(
            *log.lock().unwrap(),
            ["INVITE false", "ACK true", "BYE true", "ended"]
        );
        assert!(sim.engine.app_dialogs.is_empty());
        sim.advance(Duration::from_secs(40));
        assert_eq!(sim.engine.in_flight(), 0);
    }

    #[test]
    fn an_application_hangs_up_along_the_dialog() {
        let mut sim = Sim::with_users(&["alice"], &[]);
        let (mut alice, log, _) = call(&mut sim, true);
        send_in(&mut sim, alice.ack(2), "ack1");
        let bye = sim.take_to(ALICE).pop().expect("the application's BYE");
        assert_eq!(bye.method_str(), "BYE");
        assert_eq!(
            bye.uri_str(),
            "sip:alice@127.0.0.2:5062",
            "to alice's Contact"
        );
        assert_eq!(bye.to().unwrap().tag(), Some("a1"));
        alice
            .on_request(&bye)
            .expect("the BYE belongs to alice's dialog");
        sim.send(ALICE, &reply(&bye, 200, "OK", ""));
        assert_eq!(
            *log.lock().unwrap(),
            ["INVITE false", "ACK true", "response 200", "ended"]
        );
        assert!(sim.engine.app_dialogs.is_empty());
        // the call's record: answered by the application, which hung up
        let calls: Vec<_> = std::iter::from_fn(|| sim.engine.poll_archive())
            .filter_map(|i| match i.record {
                confab_archive::Record::Call(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            (calls[0].status, calls[0].ended_by.as_str()),
            (200, "callee")
        );
    }

    #[test]
    fn a_2xx_never_acknowledged_ends_the_dialog_after_64_t1() {
        let mut sim = Sim::with_users(&["alice"], &[]);
        let (_, log, _) = call(&mut sim, false);
        sim.advance(Duration::from_secs(31));
        let resent = sim.take_to(ALICE).len();
        assert!(
            (6..=12).contains(&resent),
            "resent at T1, 2·T1, ... capped at T2: {resent}"
        );
        sim.advance(Duration::from_secs(2));
        assert_eq!(
            log.lock().unwrap().last().map(String::as_str),
            Some("ended")
        );
        sim.take_to(ALICE);
        sim.advance(Duration::from_secs(30));
        let late: Vec<u16> = sim.take_to(ALICE).iter().map(Message::status).collect();
        assert!(late.is_empty(), "no more resending: {late:?}");
    }
}
