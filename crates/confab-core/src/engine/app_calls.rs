//! Calls applications place (`Action::Call`) and dialogs they connect (`Action::Connect`).
//! A call is an INVITE to every registered device of the user called (or to one URI
//! elsewhere); the first 2xx makes the application's dialog, the other devices are CANCELled,
//! and one that answers as well is ACKed and hung up. Two connected dialogs relay each
//! other's requests: what arrives in one is sent in the other on a client transaction of its
//! own, and its final response is returned upstream; a BYE on either ends both.

use sip_proto::dialog::{Dialog, DialogId};
use sip_proto::header::MAGIC_COOKIE;
use sip_proto::transaction::{client_key, ClientEvent};
use sip_proto::{HeaderName, Message, Method, Uri, Writer};
use sip_transport::{Source, Transport};

use super::apps::AppDialog;
use super::targets::{ForkTarget, Found};
use super::txn::Owner;
use super::{ClientRole, Ctx, Engine, Now, Output};
use crate::apps::CallEvent;
use crate::routing::{response_target, uri_target};

/// A call an application placed, until it is answered or has failed.
pub(super) struct AppCall {
    app: usize,
    /// The application's number for it.
    call: u64,
    /// Each device's INVITE: its client transaction, the request (a dialog is made from it
    /// when that device answers) and the transport it went on.
    branches: Vec<(String, Vec<u8>, Transport)>,
    /// Devices that have not answered finally yet.
    open: usize,
    ringing: bool,
    answered: bool,
    /// The first final refusal (the application's own CANCEL: 487).
    refusal: Option<(u16, String)>,
}

/// A request relayed from one connected dialog to the other, waiting for its answer.
pub(super) struct Relay {
    /// Its server transaction, where it has one.
    server_key: Option<String>,
    req: Message,
    source: Source,
    /// Our Contact toward its sender, for a 2xx to a re-INVITE.
    contact: String,
}

impl Engine {
    /// Places application `app`'s call number `call` from `from` to `to`.
    pub(super) fn app_call(
        &mut self,
        now: Now,
        app: usize,
        call: u64,
        (from, to): (&str, &str),
        headers: &[(String, String)],
        body: &[u8],
    ) {
        let targets = self.call_targets(now, to);
        if targets.is_empty() {
            let reason = "Temporarily Unavailable (nowhere to call)".to_owned();
            return self.tell_app(now, app, call, CallEvent::Failed { code: 480, reason });
        }
        let no = self.next_id();
        let tag = format!("{:x}{}", self.next_id(), self.mark());
        let call_id = format!("{no:x}{}-{tag}@{}", self.mark(), self.cfg.advertised_host);
        // sealed as our own: a call to a number goes out through this server's routing, which
        // takes it as authenticated here (a spiral)
        let seal = self.seal_of(&call_id, &tag, b"1 INVITE");
        let mut requests = Vec::new();
        for t in targets {
            let branch = format!("{MAGIC_COOKIE}{:x}{}-{seal}", self.next_id(), self.mark());
            let mut w = Writer::request("INVITE", &t.uri);
            w.header("Via", self.our_via(t.target, &branch));
            w.header("Max-Forwards", "70");
            for p in &t.path {
                w.header("Route", p);
            }
            // a display name and its address, as given; a bare address in brackets
            let from_header = if from.contains('<') {
                format!("{from};tag={tag}")
            } else {
                format!("<{}>;tag={tag}", bare(from))
            };
            w.header("From", from_header);
            w.header("To", format!("<{}>", bare(to)));
            w.header("Call-ID", &call_id);
            w.header("CSeq", "1 INVITE");
            w.header(
                "Contact",
                self.our_contact(t.target.transport, &t.target.addr),
            );
            for (n, v) in headers {
                w.header(n, v);
            }
            requests.push((
                client_key(&branch, "INVITE"),
                w.finish_message(body),
                t.target,
            ));
        }
        let branches = requests
            .iter()
            .map(|(k, r, t)| (k.clone(), r.as_bytes().to_vec(), t.transport))
            .collect();
        self.app_calls.insert(
            no,
            AppCall {
                app,
                call,
                branches,
                open: requests.len(),
                ringing: false,
                answered: false,
                refusal: None,
            },
        );
        for (key, req, target) in requests {
            self.start_client(now, key, req, target, ClientRole::AppCall { call: no });
        }
    }

    /// Where a call to `to` goes: every registered device of a user of ours, or the URI.
    fn call_targets(&self, now: Now, to: &str) -> Vec<ForkTarget> {
        if let Some(number) = bare(to).strip_prefix("tel:") {
            // a number: through this server's own routing, as the application's caller
            let number = number.split(';').next().unwrap_or(number);
            let uri = format!(
                "sip:{number}@{};user=phone",
                self.cfg.domains.first().map_or("", String::as_str)
            );
            return self.own_target(&uri).into_iter().collect();
        }
        let Ok(uri) = Uri::parse(bare(to)) else {
            return Vec::new();
        };
        let Some(sip) = uri.as_sip() else {
            return Vec::new();
        };
        if self.cfg.serves_domain(sip.host) {
            let mut found = Found::default();
            self.device_targets(now, &sip.aor(), &mut found);
            found.targets.extend(self.pool_branches(&sip.aor()));
            return found.targets;
        }
        uri_target(sip, Transport::Udp)
            .map(|target| ForkTarget {
                uri: bare(to).to_owned(),
                path: Vec::new(),
                target,
                binding: None,
                pstn: None,
            })
            .into_iter()
            .collect()
    }

    /// What one device of call `no` answered (its INVITE is client transaction `key`).
    pub(super) fn app_call_event(&mut self, now: Now, no: u64, key: &str, ev: ClientEvent) {
        let Some(c) = self.app_calls.get_mut(&no) else {
            return;
        };
        let (app, call) = (c.app, c.call);
        let resp = match ev {
            ClientEvent::Response(r) if r.status() < 200 => {
                let news = r.status() > 100 && !c.ringing && !c.answered;
                c.ringing |= news;
                if news {
                    self.tell_app(now, app, call, CallEvent::Ringing);
                }
                return;
            }
            ClientEvent::Response(r) => r,
            ClientEvent::Timeout => {
                c.open = c.open.saturating_sub(1);
                c.refusal.get_or_insert((408, "Request Timeout".into()));
                return self.app_call_settled(now, no);
            }
        };
        c.open = c.open.saturating_sub(1);
        if resp.status() >= 300 {
            c.refusal
                .get_or_insert((resp.status(), resp.reason().to_owned()));
            return self.app_call_settled(now, no);
        }
        let first = !c.answered;
        c.answered = true;
        let branch = c.branches.iter().find(|(k, ..)| k == key).cloned();
        let others: Vec<String> = c
            .branches
            .iter()
            .filter(|(k, ..)| first && k != key)
            .map(|(k, ..)| k.clone())
            .collect();
        let made = branch.and_then(|(_, req, transport)| {
            let req = Message::parse(req, &self.cfg.limits).ok()?;
            Some((Dialog::as_uac(&req, &resp).ok()?, transport))
        });
        if let Some((dialog, transport)) = made {
            let dno = self.next_id();
            let id = dialog.id().clone();
            self.app_dialog_ids.insert(id.clone(), dno);
            self.app_dialogs.insert(
                dno,
                AppDialog {
                    app,
                    dialog,
                    transport,
                    unacked: None,
                    peer: None,
                },
            );
            self.ack_2xx(dno, &resp);
            if first {
                for k in others {
                    self.cancel_client(now, &k);
                }
                let body = resp.body().to_vec();
                self.tell_app(now, app, call, CallEvent::Answered { dialog: id, body });
            } else {
                // another device had answered first: this one is hung up
                self.app_send(now, dno, "BYE", &[], &[], None);
            }
        } else {
            tracing::warn!(
                event = "app.no_dialog",
                "a device answered an application's call with a 2xx that makes no dialog"
            );
        }
        self.app_call_settled(now, no);
    }

    /// Once no device of call `no` can answer any more, the call is over (and the
    /// application told when nobody answered).
    fn app_call_settled(&mut self, now: Now, no: u64) {
        if self.app_calls.get(&no).is_none_or(|c| c.open > 0) {
            return;
        }
        let Some(c) = self.app_calls.remove(&no) else {
            return;
        };
        if !c.answered {
            let (code, reason) = c.refusal.unwrap_or((408, "Request Timeout".into()));
            self.tell_app(now, c.app, c.call, CallEvent::Failed { code, reason });
        }
    }

    /// The application gives up its call `call`: every device still ringing is CANCELled.
    pub(super) fn cancel_app_call(&mut self, now: Now, app: usize, call: u64) {
        let Some(c) = self
            .app_calls
            .values_mut()
            .find(|c| c.app == app && c.call == call)
        else {
            return;
        };
        c.refusal = Some((487, "Request Terminated".into()));
        let keys: Vec<String> = c.branches.iter().map(|(k, ..)| k.clone()).collect();
        for k in keys {
            self.cancel_client(now, &k);
        }
    }

    fn tell_app(&mut self, now: Now, app: usize, call: u64, ev: CallEvent) {
        let actions = self.call_app(now, app, |a, env, out| a.on_call(env, call, ev, out));
        self.app_actions(now, None, app, None, actions);
    }

    /// Connects two dialogs of an application (see the module's doc).
    pub(super) fn connect_dialogs(&mut self, a: &DialogId, b: &DialogId) {
        let (Some(&na), Some(&nb)) = (self.app_dialog_ids.get(a), self.app_dialog_ids.get(b))
        else {
            tracing::warn!(
                event = "app.connect_unknown",
                "an application connected a dialog that has ended"
            );
            return;
        };
        for (no, peer) in [(na, nb), (nb, na)] {
            if let Some(d) = self.app_dialogs.get_mut(&no) {
                d.peer = Some(peer);
            }
        }
    }

    /// A request in dialog `no`, which is connected to `peer`: relayed there.
    pub(super) fn relay_request(&mut self, now: Now, ctx: &Ctx, no: u64, peer: u64) {
        match ctx.msg.method() {
            // the peer's 2xx was ACKed when it came; this ACK is for ours
            Method::Ack => {}
            Method::Bye => {
                self.respond(now, ctx, 200, "OK", &[]);
                if let Some(d) = self.app_dialogs.get_mut(&peer) {
                    d.peer = None;
                }
                self.app_send(now, peer, "BYE", &[], &[], None);
                self.app_dialog_ended(now, no);
            }
            _ => {
                let Ok(req) = Message::parse(ctx.msg.as_bytes().to_vec(), &self.cfg.limits) else {
                    return;
                };
                let headers: Vec<(String, String)> = ctx
                    .msg
                    .header_str(HeaderName::ContentType)
                    .ok()
                    .flatten()
                    .map(|ct| ("Content-Type".to_owned(), ct.to_owned()))
                    .into_iter()
                    .collect();
                let id = self.next_id();
                let relay = Relay {
                    server_key: ctx.key.clone(),
                    req,
                    source: ctx.source,
                    contact: self.our_contact(ctx.source.transport, &ctx.source.remote),
                };
                self.app_relays.insert(id, relay);
                if let Some(s) = ctx.key.as_ref().and_then(|k| self.server_tx.get_mut(k)) {
                    s.owner = Some(Owner::Relay(id));
                }
                let (method, body) = (ctx.msg.method_str(), ctx.msg.body());
                if !self.app_send(now, peer, method, &headers, body, Some(id)) {
                    self.app_relays.remove(&id);
                    let reason = "Server Internal Error (the connected party is unreachable)";
                    self.respond(now, ctx, 500, reason, &[]);
                }
            }
        }
    }

    /// The answer to relayed request `id` came (`None`: it never did): returned upstream.
    pub(super) fn relay_answer(&mut self, now: Now, id: u64, resp: Option<&Message>) {
        let Some(r) = self.app_relays.remove(&id) else {
            return;
        };
        let (code, reason) = resp.map_or((408, "Request Timeout"), |m| (m.status(), m.reason()));
        let tag = self.to_tag(&r.req);
        let mut w = Writer::response_to(&r.req, code, reason, &tag);
        if r.req.method() == Method::Invite && (200..300).contains(&code) {
            w.header("Contact", &r.contact);
        }
        let content_type = resp.and_then(|m| m.header_str(HeaderName::ContentType).ok().flatten());
        if let Some(ct) = content_type {
            w.header("Content-Type", ct);
        }
        w.header("Server", &self.cfg.server_name);
        let bytes = w.finish(resp.map_or(&[][..], Message::body));
        match r.server_key {
            Some(k) if self.server_tx.contains_key(&k) => self.send_upstream(now, &k, code, bytes),
            _ => {
                let via = r.req.top_via().ok();
                let target = response_target(via.as_ref(), &r.source);
                self.out.push_back(Output { target, bytes });
            }
        }
    }
}

/// A URI without the angle brackets it may be written in.
fn bare(uri: &str) -> &str {
    uri.trim().trim_start_matches('<').trim_end_matches('>')
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sip_proto::dialog::{Dialog, DialogId};
    use sip_proto::{Limits, Message, Writer};

    use crate::apps::{Action, Application, CallEvent, Env, Reply};
    use crate::engine::sim::{reply, Sim, ALICE, BOB};

    /// A help desk: answers a caller at once, and once the caller's ACK is in, calls bob and
    /// connects the caller to whichever of bob's devices answers. Logs what it hears.
    struct Desk {
        caller: Option<DialogId>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Application for Desk {
        fn name(&self) -> &str {
            "desk"
        }
        fn claims(&self, user: &str) -> bool {
            user == "desk"
        }
        fn on_request(
            &mut self,
            _: &Env,
            req: &Message,
            dialog: Option<&DialogId>,
            out: &mut Vec<Action>,
        ) {
            match (req.method_str(), dialog) {
                ("INVITE", None) => out.push(Action::Reply(Reply::new(200, "OK"))),
                ("ACK", Some(d)) => {
                    self.caller = Some(d.clone());
                    out.push(Action::Call {
                        call: 7,
                        from: "sip:desk@example.com".into(),
                        to: "sip:bob@example.com".into(),
                        headers: vec![("Content-Type".into(), "application/sdp".into())],
                        body: b"v=0\r\n".to_vec(),
                    });
                }
                _ => out.push(Action::Reply(Reply::new(200, "OK"))),
            }
        }
        fn on_response(&mut self, _: &Env, _: &DialogId, resp: &Message, _: &mut Vec<Action>) {
            self.log
                .lock()
                .unwrap()
                .push(format!("response {}", resp.status()));
        }
        fn on_call(&mut self, _: &Env, call: u64, event: CallEvent, out: &mut Vec<Action>) {
            let line = match &event {
                CallEvent::Ringing => format!("call {call} ringing"),
                CallEvent::Answered { body, .. } => {
                    format!("call {call} answered {}", String::from_utf8_lossy(body))
                }
                CallEvent::Failed { code, .. } => format!("call {call} failed {code}"),
            };
            self.log.lock().unwrap().push(line);
            if let (CallEvent::Answered { dialog, .. }, Some(caller)) = (event, &self.caller) {
                out.push(Action::Connect {
                    a: caller.clone(),
                    b: dialog,
                });
            }
        }
        fn on_dialog_ended(&mut self, _: &Env, _: &DialogId, _: &mut Vec<Action>) {
            self.log.lock().unwrap().push("ended".into());
        }
    }

    const BOB2: &str = "127.0.0.5:5068";
    const INVITE_DESK: &str = "INVITE sip:desk@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKd1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:desk@example.com>\r\nCall-ID: desk-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{auth}Content-Length: 0\r\n\r\n";

    fn send_from(sim: &mut Sim, from: &str, w: Writer, branch: &str) {
        let mut w = w;
        w.header("Via", format!("SIP/2.0/UDP {from};branch=z9hG4bK{branch}"));
        w.header("Max-Forwards", "70");
        sim.send(from, &String::from_utf8(w.finish(b"")).unwrap());
    }

    /// alice calls the desk and ACKs its 2xx; the desk then calls bob's two devices.
    fn desk_calls_bob() -> (Sim, Dialog, Arc<Mutex<Vec<String>>>) {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB), ("bob", BOB2)]);
        let log = Arc::new(Mutex::new(Vec::new()));
        sim.engine.add_application(Box::new(Desk {
            caller: None,
            log: log.clone(),
        }));
        let ok = sim.send_authenticated(ALICE, "alice", INVITE_DESK);
        let ok = ok
            .iter()
            .find(|m| m.status() == 200)
            .expect("the desk answers");
        let invite = INVITE_DESK
            .replace("{auth}", "")
            .replacen("z9hG4bK", "z9hG4bK2-", 1)
            .replacen("CSeq: 1 ", "CSeq: 2 ", 1);
        let invite = Message::parse(invite.into_bytes(), &Limits::default()).unwrap();
        let alice = Dialog::as_uac(&invite, ok).unwrap();
        send_from(&mut sim, ALICE, alice.ack(2), "ack1");
        (sim, alice, log)
    }

    #[test]
    fn an_application_calls_every_device_the_first_answer_wins_and_the_others_are_cancelled() {
        let (mut sim, _, log) = desk_calls_bob();
        let to_bob = sim
            .take_to(BOB)
            .pop()
            .expect("an INVITE to bob's first device");
        let to_bob2 = sim
            .take_to(BOB2)
            .pop()
            .expect("an INVITE to bob's second device");
        assert_eq!(to_bob.method_str(), "INVITE");
        assert_eq!(to_bob.from().unwrap().uri_text, "sip:desk@example.com");
        assert_eq!(to_bob.body(), b"v=0\r\n");
        sim.send(BOB, &reply(&to_bob, 180, "Ringing", "b1"));
        let mut ok = Writer::response_to(&to_bob, 200, "OK", "b1");
        ok.header("Contact", format!("<sip:bob@{BOB}>"));
        ok.header("Content-Type", "application/sdp");
        let ok = String::from_utf8(ok.finish(b"v=1\r\n")).unwrap();
        sim.send(BOB, &ok);
        let acked = sim.take_to(BOB);
        assert_eq!(
            acked.iter().map(Message::method_str).collect::<Vec<_>>(),
            ["ACK"]
        );
        // the ACK was lost: bob sends his 2xx again and is ACKed again
        sim.send(BOB, &ok);
        let reacked = sim.take_to(BOB);
        assert_eq!(
            reacked.iter().map(Message::method_str).collect::<Vec<_>>(),
            ["ACK"]
        );
        let cancelled = sim.take_to(BOB2);
        assert_eq!(
            cancelled
                .iter()
                .map(Message::method_str)
                .collect::<Vec<_>>(),
            ["CANCEL"]
        );
        sim.send(BOB2, &reply(&cancelled[0], 200, "OK", ""));
        sim.send(BOB2, &reply(&to_bob2, 487, "Request Terminated", "c1"));
        assert_eq!(
            *log.lock().unwrap(),
            ["call 7 ringing", "call 7 answered v=1\r\n"]
        );
        assert!(sim.engine.app_calls.is_empty(), "the call is settled");
    }

    #[test]
    fn connected_dialogs_relay_requests_and_answers_and_a_bye_ends_both() {
        let (mut sim, mut alice, log) = desk_calls_bob();
        let to_bob = sim.take_to(BOB).pop().unwrap();
        let mut ok = Writer::response_to(&to_bob, 200, "OK", "b1");
        ok.header("Contact", format!("<sip:bob@{BOB}>"));
        sim.send(BOB, &String::from_utf8(ok.finish(b"")).unwrap());
        let mut bob = Dialog::as_uas(&to_bob, "b1", 100).unwrap();
        sim.take_to(BOB); // the ACK
                          // alice's INFO reaches bob in his dialog with the desk; his answer comes back to her
        let mut info = alice.request("INFO");
        info.header("Content-Type", "application/dtmf-relay");
        info.header("Via", "SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKinfo1");
        info.header("Max-Forwards", "70");
        sim.send(
            ALICE,
            &String::from_utf8(info.finish(b"Signal=5\r\n")).unwrap(),
        );
        let relayed = sim.take_to(BOB).pop().expect("the INFO, relayed to bob");
        assert_eq!(relayed.method_str(), "INFO");
        assert_eq!(relayed.body(), b"Signal=5\r\n");
        bob.on_request(&relayed).expect("in bob's dialog");
        sim.send(BOB, &reply(&relayed, 200, "OK", "b1"));
        let back = sim.take_to(ALICE);
        assert_eq!(
            back.iter().map(Message::status).collect::<Vec<_>>(),
            [200],
            "{:?}",
            back.iter().map(Message::reason).collect::<Vec<_>>()
        );
        assert_eq!(back[0].cseq().unwrap().method, "INFO");
        // bob hangs up: he gets his 200, alice a BYE; both dialogs end
        send_from(&mut sim, BOB, bob.request("BYE"), "bye1");
        let bye_ok = sim.take_to(BOB);
        assert_eq!(
            bye_ok.iter().map(Message::status).collect::<Vec<_>>(),
            [200],
            "{:?}",
            bye_ok.iter().map(Message::reason).collect::<Vec<_>>()
        );
        let bye = sim.take_to(ALICE).pop().expect("a BYE to alice");
        assert_eq!(bye.method_str(), "BYE");
        alice.on_request(&bye).expect("in alice's dialog");
        sim.send(ALICE, &reply(&bye, 200, "OK", ""));
        assert!(sim.engine.app_dialogs.is_empty(), "both dialogs ended");
        assert_eq!(
            log.lock().unwrap().iter().filter(|l| *l == "ended").count(),
            2
        );
        sim.advance(Duration::from_secs(40));
        assert_eq!(sim.engine.in_flight(), 0);
    }

    #[test]
    fn a_call_nobody_answers_fails_with_the_best_refusal() {
        let (mut sim, _, log) = desk_calls_bob();
        for at in [BOB, BOB2] {
            let inv = sim.take_to(at).pop().unwrap();
            sim.send(at, &reply(&inv, 486, "Busy Here", "x"));
        }
        assert_eq!(
            log.lock().unwrap().last().map(String::as_str),
            Some("call 7 failed 486")
        );
        assert!(sim.engine.app_calls.is_empty());
    }
}
