//! The transaction layer's tables: server transactions (absorbing retransmissions, matching
//! ACK and CANCEL), client transactions (a proxy's branches, CANCELs, NOTIFYs), and the timer
//! heap that wakes them. What a transaction's outcome means is decided elsewhere (`branches`,
//! `presence_sip`).
use sip_proto::transaction::{server_key, ClientEvent, ClientTransaction, ServerTransaction};
use sip_proto::Message;
use sip_proto::Method;
use sip_transport::Target;
use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::{Ctx, Engine, Now, Output};
use crate::pipeline::Flow;
use crate::routing::response_target;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerOwner {
    Server(String),
    Client(String),
    /// Timer C of a proxied INVITE's branch (see `branches`).
    Branch {
        proxy: u64,
        index: usize,
    },
    /// An application dialog's 2xx waits for its ACK (see `apps`).
    App(u64),
    /// A timer an application set (`Action::Timer`).
    AppTimer {
        app: usize,
        token: u64,
    },
    /// A call rang the user's no-answer time: it is forwarded (see `forwarding`).
    NoAnswer {
        proxy: u64,
    },
    Housekeeping,
}

pub(super) struct ServerEntry {
    pub(super) tx: ServerTransaction,
    pub(super) target: Target,
    /// Who will give it its final response, once it is not the chain itself.
    pub(super) owner: Option<Owner>,
    /// The safety deadline of a request still without a final response (see `guard`).
    pub(super) guard: Option<Instant>,
}

/// What answers a request later than its pass through the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// The proxy, with the best response of its branches.
    Proxy(u64),
    /// The dialog it is relayed to (`app_calls`), with that dialog's answer.
    Relay(u64),
}

pub(super) enum ClientRole {
    Branch {
        proxy: u64,
        index: usize,
    },
    Cancel,
    /// An OPTIONS probe of trunk `trunk`'s gateway, for the voice configuration of
    /// `generation`.
    Probe {
        trunk: usize,
        generation: u64,
    },
    /// A NOTIFY of a subscription (`None` for the final one: its outcome changes nothing).
    Notify {
        sub: Option<u64>,
    },
    /// A request an application sent within its dialog number `dialog`, or relayed there
    /// from the dialog connected to it (`relay`: what waits for its answer, see `app_calls`).
    App {
        dialog: u64,
        relay: Option<u64>,
    },
    /// An INVITE of a call an application placed (`app_calls`), to one device.
    AppCall {
        call: u64,
    },
}

pub(super) struct ClientEntry {
    pub(super) tx: ClientTransaction,
    pub(super) target: Target,
    pub(super) role: ClientRole,
}

impl Engine {
    /// After the processor chain: a request without a final response must have an owner that
    /// will give it one. Nobody owns it (a processor stopped without answering): it is
    /// answered 500 at once. A proxy owns it: a safety timer checks back, in case the proxy's
    /// bookkeeping lost it, so that no transaction waits forever and holds up a drain.
    pub(super) fn guard(&mut self, now: Now, ctx: &Ctx) {
        let at = now.mono + self.guard_period();
        let Some(key) = ctx.key.as_deref() else {
            return;
        };
        let Some(s) = self.server_tx.get_mut(key) else {
            return;
        };
        if s.tx.is_final() {
            return;
        }
        if s.owner.is_none() {
            tracing::error!(event = "transaction.unanswered", method = %ctx.msg.method_str(), remote = %ctx.source.remote, "the request was left without an answer: 500 sent (a defect; please report it)");
            self.stats.unanswered += 1;
            self.respond(
                now,
                ctx,
                500,
                "Server Internal Error (request left unanswered)",
                &[],
            );
            return;
        }
        s.guard = Some(at);
        self.timers
            .push(Reverse((at, TimerOwner::Server(key.to_owned()))));
    }

    /// How long a proxied request may wait before its guard checks on it: a branch's longest
    /// life (Timer C, then 64·T1 for the CANCEL).
    fn guard_period(&self) -> Duration {
        self.cfg.timer_c + self.cfg.timers.t1 * 64
    }

    /// A server transaction's timer entry fired: its own timer, or its guard. A guarded one
    /// whose proxy still lives is checked again later (the proxy's timers end it); one whose
    /// proxy is gone is dropped, and the client's own timeout answers it.
    pub(super) fn server_timer(&mut self, now: Now, key: &str) {
        let at = now.mono + self.guard_period();
        let (proxies, relays) = (&self.proxies, &self.app_relays);
        let Some(s) = self.server_tx.get_mut(key) else {
            return;
        };
        if s.tx.poll_timeout().is_some_and(|t| t <= now.mono) {
            s.tx.handle_timeout(now.mono);
            self.flush_server(now, key);
            return;
        }
        if s.tx.is_final() || s.guard.is_none_or(|g| g > now.mono) {
            return;
        }
        let owner_lives = match s.owner {
            Some(Owner::Proxy(p)) => proxies.contains_key(&p),
            Some(Owner::Relay(r)) => relays.contains_key(&r),
            None => false,
        };
        if owner_lives {
            s.guard = Some(at);
            self.timers
                .push(Reverse((at, TimerOwner::Server(key.to_owned()))));
            return;
        }
        tracing::error!(event = "transaction.unanswered", "a proxied or relayed request lost its owner without a final response: transaction dropped (a defect; please report it)");
        self.stats.unanswered += 1;
        self.server_tx.remove(key);
    }

    pub(super) fn transaction(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let Ok(key) = server_key(&ctx.msg, None) else {
            return Flow::Stop;
        };
        match ctx.msg.method() {
            Method::Ack => {
                if let Some(s) = self.server_tx.get_mut(&key) {
                    s.tx.handle_ack(now.mono);
                    self.flush_server(now, &key);
                    return Flow::Stop;
                }
                if self.acks_our_stateless_answer(&ctx.msg) {
                    self.stats.acks_absorbed += 1;
                    return Flow::Stop;
                }
                return Flow::Continue; // ACK for a 2xx: end to end
            }
            Method::Cancel => {
                if let Some(s) = self.server_tx.get_mut(&key) {
                    s.tx.handle_retransmission();
                    self.stats.retransmissions_absorbed += 1;
                    self.flush_server(now, &key);
                    return Flow::Stop;
                }
                self.create_server_tx(now, ctx, key);
                let invite_key = server_key(&ctx.msg, Some("INVITE")).ok();
                let target = invite_key
                    .as_ref()
                    .and_then(|k| self.server_tx.get(k))
                    .map(|s| (s.owner, s.tx.is_final()));
                match target {
                    Some((proxy, is_final)) => {
                        self.respond(now, ctx, 200, "OK", &[]);
                        match (is_final, proxy, invite_key) {
                            (false, Some(Owner::Proxy(p)), _) => self.cancel_branches(now, p, None),
                            // not forwarded yet (parked): it ends here, and is dropped when
                            // it resumes (see `park`)
                            (false, None, Some(k)) => self.cancel_parked(now, &k),
                            _ => {}
                        }
                    }
                    None => self.respond(now, ctx, 481, "Call/Transaction Does Not Exist", &[]),
                }
                return Flow::Stop;
            }
            _ => {}
        }
        if let Some(s) = self.server_tx.get_mut(&key) {
            s.tx.handle_retransmission();
            self.stats.retransmissions_absorbed += 1;
            self.flush_server(now, &key);
            return Flow::Stop;
        }
        self.create_server_tx(now, ctx, key);
        Flow::Continue
    }

    /// Whether an ACK that found no transaction acknowledges a final response we sent
    /// without one (a challenge): its To tag is the one we give that request's answers, and
    /// no application's dialog has it.
    fn acks_our_stateless_answer(&self, ack: &Message) -> bool {
        ack.to().ok().and_then(|t| t.tag().map(str::to_owned)) == Some(self.to_tag(ack))
            && self.app_dialog_of(ack).is_none()
    }

    /// An INVITE the chain is done with for now (forwarded, parked, handed to an application)
    /// and not answered yet gets its 100 Trying (RFC 3261 §16.2), which quenches its
    /// retransmissions. Deferred to here so that an INVITE answered at once (a challenge, a
    /// refusal) gets that one answer only.
    pub(super) fn trying(&mut self, now: Now, ctx: &Ctx) {
        if ctx.msg.method() != Method::Invite {
            return;
        }
        let waiting = ctx
            .key
            .as_deref()
            .and_then(|k| self.server_tx.get(k))
            .is_some_and(|s| !s.tx.has_responded());
        if waiting {
            self.respond(now, ctx, 100, "Trying", &[]);
        }
    }

    pub(super) fn create_server_tx(&mut self, _now: Now, ctx: &mut Ctx, key: String) {
        let via = ctx.msg.top_via().ok();
        let target = response_target(via.as_ref(), &ctx.source);
        let tx = ServerTransaction::new(
            ctx.msg.method() == Method::Invite,
            ctx.source.transport.is_reliable(),
            self.cfg.timers,
        );
        self.server_tx.insert(
            key.clone(),
            ServerEntry {
                tx,
                target,
                owner: None,
                guard: None,
            },
        );
        ctx.key = Some(key);
    }

    /// Starts a client transaction for `req` toward `target` on behalf of `role`, and sends it.
    pub(super) fn start_client(
        &mut self,
        now: Now,
        key: String,
        req: Message,
        target: Target,
        role: ClientRole,
    ) {
        self.stats.requests_sent[req.method().index()] += 1;
        let tx = ClientTransaction::new(
            now.mono,
            req,
            target.transport.is_reliable(),
            self.cfg.timers,
        );
        self.client_tx
            .insert(key.clone(), ClientEntry { tx, target, role });
        self.flush_client(now, &key);
    }

    pub(super) fn send_upstream(&mut self, now: Now, server_key: &str, code: u16, bytes: Vec<u8>) {
        self.call_answered_or_failed(now, server_key, code, &bytes);
        if let Some(s) = self.server_tx.get_mut(server_key) {
            let method = server_key.rsplit('|').next().unwrap_or_default();
            self.stats
                .response_sent(Method::from_bytes(method.as_bytes()), code);
            s.tx.send_response(now.mono, code, bytes);
            self.flush_server(now, server_key);
        }
    }

    pub(super) fn flush_server(&mut self, now: Now, key: &str) {
        let Some(s) = self.server_tx.get_mut(key) else {
            return;
        };
        while let Some(bytes) = s.tx.poll_transmit() {
            self.out.push_back(Output {
                target: s.target,
                bytes,
            });
        }
        while s.tx.poll_event().is_some() {
            tracing::debug!(event = "transaction.no_ack", "no ACK for a final response");
        }
        if s.tx.is_terminated() {
            self.server_tx.remove(key);
        } else if let Some(t) = s.tx.poll_timeout() {
            self.timers.push(Reverse((
                t.max(now.mono),
                TimerOwner::Server(key.to_owned()),
            )));
        }
    }

    pub(super) fn flush_client(&mut self, now: Now, key: &str) {
        let Some(c) = self.client_tx.get_mut(key) else {
            return;
        };
        while let Some(bytes) = c.tx.poll_transmit() {
            self.out.push_back(Output {
                target: c.target,
                bytes,
            });
        }
        let mut events = Vec::new();
        while let Some(ev) = c.tx.poll_event() {
            events.push(ev);
        }
        let role = match c.role {
            ClientRole::Branch { proxy, index } => Some((proxy, index)),
            _ => None,
        };
        let app = match c.role {
            ClientRole::App { dialog, relay } => Some((dialog, relay)),
            _ => None,
        };
        let call = match c.role {
            ClientRole::AppCall { call } => Some(call),
            _ => None,
        };
        let probe = match c.role {
            ClientRole::Probe { trunk, generation } => events
                .iter()
                .find(|ev| !matches!(ev, ClientEvent::Response(r) if r.status() < 200))
                .map(|ev| (trunk, generation, matches!(ev, ClientEvent::Response(_)))),
            _ => None,
        };
        // a NOTIFY answered 481 (or never answered) means the watcher is gone (RFC 6665)
        let failed_sub = match c.role {
            ClientRole::Notify { sub: Some(sub) } => events
                .iter()
                .any(|ev| match ev {
                    ClientEvent::Timeout => true,
                    ClientEvent::Response(r) => matches!(r.status(), 404 | 408 | 410 | 481),
                })
                .then_some(sub),
            _ => None,
        };
        if c.tx.is_terminated() {
            self.client_tx.remove(key);
        } else if let Some(t) = c.tx.poll_timeout() {
            self.timers.push(Reverse((
                t.max(now.mono),
                TimerOwner::Client(key.to_owned()),
            )));
        }
        if let Some((proxy, index)) = role {
            for ev in events {
                self.on_branch_event(now, proxy, index, ev);
            }
        } else if let Some((dialog, relay)) = app {
            for ev in events {
                self.app_event(now, dialog, relay, ev);
            }
        } else if let Some(call) = call {
            for ev in events {
                self.app_call_event(now, call, key, ev);
            }
        }
        if let Some((trunk, generation, answered)) = probe {
            self.probe_answered(trunk, generation, answered);
        }
        if let Some(sub) = failed_sub {
            self.presence
                .notify_failed(self.store.as_ref(), now.unix, sub);
            self.flush_presence(now);
        }
    }
}
