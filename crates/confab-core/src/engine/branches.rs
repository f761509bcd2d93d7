//! A proxied request's branches (RFC 3261 §16.7): provisional responses passed up, the best
//! final response chosen, CANCELs for the branches that lost, and Timer C for ringing ones.
use sip_proto::transaction::{client_key, ClientEvent};
use sip_proto::{HeaderName, Message, Writer};
use std::cmp::Reverse;

use super::CoreEvent;
use super::{ClientRole, Engine, Now, TimerOwner};
use crate::routing::strip_top_via;
use std::time::Instant;

impl Engine {
    pub(super) fn on_branch_event(
        &mut self,
        now: Now,
        proxy_id: u64,
        index: usize,
        ev: ClientEvent,
    ) {
        let Some(p) = self.proxies.get_mut(&proxy_id) else {
            return;
        };
        let server_key = p.server_key.clone();
        let (code, resp) = match ev {
            ClientEvent::Response(r) => (r.status(), Some(r)),
            ClientEvent::Timeout => (408, None),
        };
        let Some(branch) = p.branches.get_mut(index) else {
            return;
        };
        let mut send_cancel = false;
        let mut next = None;
        match code {
            100 => return,
            101..=199 => {
                branch.provisional = true;
                if p.invite && !branch.cancelled {
                    // §16.7 step 2: every provisional restarts Timer C
                    let at = now.mono + self.cfg.timer_c;
                    branch.timer_c = Some(at);
                    self.timers.push(Reverse((
                        at,
                        TimerOwner::Branch {
                            proxy: proxy_id,
                            index,
                        },
                    )));
                }
                if branch.cancel_pending {
                    branch.cancel_pending = false;
                    send_cancel = true;
                }
                if !p.answered {
                    if let Some(r) = &resp {
                        self.send_upstream(now, &server_key, code, strip_top_via(r, false));
                    }
                }
            }
            200..=299 => {
                branch.finished = true;
                p.answered = true;
                let invite = p.invite;
                let request = invite.then(|| p.request.clone());
                if let Some(r) = &resp {
                    self.trust_signed_in_remote(&server_key, r);
                    self.send_upstream(now, &server_key, code, strip_top_via(r, false));
                }
                if let Some(req) = request {
                    self.cancel_branches(now, proxy_id, Some(index));
                    let (call_id, parties) = self.call_parties(&req);
                    self.emit(CoreEvent::CallAnswered { call_id, parties });
                }
            }
            _ => {
                branch.finished = true;
                // a branch the call was forwarded away from does not answer for it (its 487)
                if let Some(r) = resp.filter(|_| !branch.superseded) {
                    p.offer(r);
                }
                if matches!(code, 408 | 503 | 504) {
                    // a trunk that is unavailable, overloaded or silent: the next one
                    next = p.later.pop_front();
                } else {
                    // the far end's answer is final: not retried on another trunk
                    p.drop_later();
                }
                if code >= 600 && p.invite {
                    self.cancel_branches(now, proxy_id, Some(index));
                }
            }
        }
        if send_cancel {
            self.send_cancel(now, proxy_id, index);
        }
        if let Some((req, target, next_index)) = next {
            tracing::info!(event = "voice.failover", status = code, to = %target.addr, "trunk failed: the call goes to the next one");
            self.start_branch(now, proxy_id, next_index, req, target);
        }
        self.maybe_finish(now, proxy_id);
    }

    /// At an Edge, a 2xx to a REGISTER going out: the next hop authenticated the remote user,
    /// so under overload its address keeps its share, as a Front End's signed-in users do.
    fn trust_signed_in_remote(&mut self, server_key: &str, resp: &Message) {
        if self.cfg.edge.is_none() || !resp.cseq().is_ok_and(|c| c.method == "REGISTER") {
            return;
        }
        let client = self.server_tx.get(server_key).map(|s| s.target.addr);
        if let Some(addr) = client.filter(|a| self.cfg.is_outside(a)) {
            self.trust_source(addr.ip());
        }
    }

    /// When every branch has finished: send the best response if nothing final went up yet.
    pub(super) fn maybe_finish(&mut self, now: Now, proxy_id: u64) {
        let Some(p) = self.proxies.get(&proxy_id) else {
            return;
        };
        if !p.all_finished() {
            return;
        }
        if !p.answered && self.divert(now, proxy_id) {
            return;
        }
        let Some(p) = self.proxies.remove(&proxy_id) else {
            return;
        };
        if p.answered {
            return;
        }
        match p.best {
            Some((_, r)) => {
                self.send_upstream(now, &p.server_key, r.status(), strip_top_via(&r, true))
            }
            None => {
                // every branch timed out (or its connection failed)
                let reason = if p.branches.iter().any(|b| b.failover_after.is_some()) {
                    "Request Timeout (no gateway answered or could be reached: see the server's log)"
                } else {
                    "Request Timeout (no device answered)"
                };
                let bytes = self.response_bytes(&p.request, 408, reason, &[]);
                self.send_upstream(now, &p.server_key, 408, bytes);
            }
        }
    }

    /// Every branch ended without an answer: the call goes where the user forwards busy calls
    /// (every answer was busy: 486, 600) or unanswered ones. False when there is no such
    /// place.
    fn divert(&mut self, now: Now, proxy_id: u64) -> bool {
        let Some(p) = self.proxies.get_mut(&proxy_id) else {
            return false;
        };
        let busy = p
            .best
            .as_ref()
            .is_some_and(|(_, r)| matches!(r.status(), 486 | 600));
        let set = if busy && !p.busy.is_empty() {
            std::mem::take(&mut p.busy)
        } else {
            match p.no_answer.take() {
                Some(set) => set,
                None => return false,
            }
        };
        p.no_answer = None;
        p.busy.clear();
        // the answer is now the forwarding target's
        p.best = None;
        tracing::info!(
            event = "forwarding.diverted",
            busy,
            "nobody answered: the call is forwarded"
        );
        self.start_set(now, proxy_id, set);
        true
    }

    /// The user's no-answer time is up: the ringing branches are CANCELled and the call goes
    /// where the user forwards unanswered calls.
    pub(super) fn no_answer_fired(&mut self, now: Now, proxy_id: u64) {
        let Some(p) = self.proxies.get_mut(&proxy_id) else {
            return;
        };
        if p.answered {
            return;
        }
        let Some(set) = p.no_answer.take() else {
            return;
        };
        for b in &mut p.branches {
            b.superseded = true;
        }
        p.best = None;
        tracing::info!(
            event = "forwarding.diverted",
            busy = false,
            "unanswered in time: the call is forwarded"
        );
        self.cancel_branches(now, proxy_id, None);
        self.start_set(now, proxy_id, set);
    }

    /// Timer C of a branch fired (RFC 3261 §16.8): a ringing branch is CANCELled; one that was
    /// CANCELled already, or never answered at all, ends as if a 408 arrived, so no request
    /// waits forever for a device that went silent.
    pub(super) fn timer_c_fired(&mut self, now: Now, proxy_id: u64, index: usize) {
        let Some(b) = self
            .proxies
            .get(&proxy_id)
            .and_then(|p| p.branches.get(index))
        else {
            return;
        };
        if b.finished || b.timer_c.is_none_or(|at| at > now.mono) {
            return; // a stale entry: the timer was reset or the branch is done
        }
        if b.provisional && !b.cancelled {
            tracing::info!(event = "proxy.timer_c", branch = %b.key, "ringing too long without an answer: branch CANCELled");
            self.send_cancel(now, proxy_id, index);
            return;
        }
        tracing::info!(event = "proxy.branch_abandoned", branch = %b.key, "no final response after CANCEL or Timer C: branch ended as 408");
        self.client_tx.remove(&b.key.clone());
        self.on_branch_event(now, proxy_id, index, ClientEvent::Timeout);
    }

    pub(super) fn cancel_branches(&mut self, now: Now, proxy_id: u64, except: Option<usize>) {
        let Some(p) = self.proxies.get_mut(&proxy_id) else {
            return;
        };
        p.drop_later();
        if except.is_none() {
            // the caller gave up (or the call is diverted): no forwarding after this
            p.no_answer = None;
            p.busy.clear();
        }
        if !p.invite {
            return;
        }
        let mut now_cancel = Vec::new();
        for (i, b) in p.branches.iter_mut().enumerate() {
            if Some(i) == except || b.finished || b.cancelled {
                continue;
            }
            if b.provisional {
                now_cancel.push(i);
            } else {
                b.cancel_pending = true;
            }
        }
        for i in now_cancel {
            self.send_cancel(now, proxy_id, i);
        }
    }

    /// CANCEL for one branch (RFC 3261 §9.1), and Timer C's guard on the branch after it.
    pub(super) fn send_cancel(&mut self, now: Now, proxy_id: u64, index: usize) {
        let Some(key) = self
            .proxies
            .get(&proxy_id)
            .and_then(|p| p.branches.get(index))
            .map(|b| b.key.clone())
        else {
            return;
        };
        self.cancel_client(now, &key);
        // §9.1: a UAS that never answers the CANCEL or the INVITE must not hold the branch
        let at = now.mono + self.cfg.timers.t1 * 64;
        if let Some(b) = self
            .proxies
            .get_mut(&proxy_id)
            .and_then(|p| p.branches.get_mut(index))
        {
            b.cancelled = true;
            b.timer_c = Some(at);
            self.timers.push(Reverse((
                at,
                TimerOwner::Branch {
                    proxy: proxy_id,
                    index,
                },
            )));
        }
    }
}

impl Engine {
    /// Sends the CANCEL of the INVITE client transaction `key` (RFC 3261 §9.1): same
    /// Request-URI, top Via, Call-ID, From, To, Route and CSeq number, method CANCEL.
    pub(super) fn cancel_client(&mut self, now: Now, key: &str) {
        let Some(entry) = self.client_tx.get(key) else {
            return;
        };
        let inv = entry.tx.request();
        let target = entry.target;
        let mut w = Writer::request("CANCEL", inv.uri_str());
        if let Some(v) = inv.values(HeaderName::Via).next().and_then(Result::ok) {
            w.header("Via", v);
        }
        for (name, n, v) in inv.fields() {
            if matches!(
                name,
                HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::Route
                    | HeaderName::MaxForwards
            ) {
                w.raw(n, v);
            }
        }
        let seq = inv.cseq().map(|c| c.seq).unwrap_or(0);
        w.header("CSeq", format!("{seq} CANCEL"));
        let req = w.finish_message(b"");
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let ckey = client_key(&branch, "CANCEL");
        self.start_client(now, ckey, req, target, ClientRole::Cancel);
    }
}

/// One forked branch.
#[derive(Debug)]
pub(super) struct Branch {
    /// Key of the branch's client transaction.
    pub(super) key: String,
    pub(super) provisional: bool,
    pub(super) finished: bool,
    /// A CANCEL is owed as soon as a provisional response arrives (RFC 3261 §9.1).
    pub(super) cancel_pending: bool,
    /// A CANCEL was sent: the branch now waits at most 64·T1 for its final response.
    pub(super) cancelled: bool,
    /// When Timer C fires (INVITE branches): armed at the fork, reset by every provisional,
    /// shortened to 64·T1 once CANCELled. Older entries for the branch in the engine's timer
    /// heap are stale and ignored.
    pub(super) timer_c: Option<Instant>,
    /// A trunk's branch: how long its gateway may stay silent (no provisional) before the
    /// next trunk is tried.
    pub(super) failover_after: Option<std::time::Duration>,
    /// A trunk's branch: its voice route and trunk names.
    pub(super) trunk: Option<Box<(String, String)>>,
    /// The call was forwarded away from this branch (unanswered in time): its final response
    /// is not the call's.
    pub(super) superseded: bool,
}

impl Branch {
    pub(super) fn new(key: String) -> Self {
        Self {
            key,
            provisional: false,
            finished: false,
            cancel_pending: false,
            cancelled: false,
            timer_c: None,
            failover_after: None,
            trunk: None,
            superseded: false,
        }
    }
}

/// A request being proxied.
#[derive(Debug)]
pub(super) struct ProxyCtx {
    pub(super) server_key: String,
    pub(super) invite: bool,
    /// The request as received, for responses of our own (408 when every branch timed out).
    pub(super) request: Message,
    pub(super) branches: Vec<Branch>,
    /// Best final non-2xx response so far: (rank, response); lower rank wins.
    pub(super) best: Option<(u32, Message)>,
    /// A final response has gone upstream.
    pub(super) answered: bool,
    /// Branches still to try one after another (trunks to the phone network): the request
    /// as built for each, its target and branch number.
    pub(super) later: std::collections::VecDeque<(Message, sip_transport::Target, usize)>,
    /// Call forwarding: the branches to start when the call is not answered in time (its
    /// timer is `TimerOwner::NoAnswer`) or every branch ends without an answer, and those to
    /// start when every branch is busy.
    pub(super) no_answer: Option<Vec<super::proxy::Pending>>,
    pub(super) busy: Vec<super::proxy::Pending>,
}

impl ProxyCtx {
    pub(super) fn all_finished(&self) -> bool {
        self.branches.iter().all(|b| b.finished)
    }

    /// The branches not started yet will not be: the call was answered, refused for good,
    /// or CANCELled.
    pub(super) fn drop_later(&mut self) {
        for (_, _, i) in self.later.drain(..) {
            if let Some(b) = self.branches.get_mut(i) {
                b.finished = true;
            }
        }
    }

    /// Keeps `resp` if it beats the best so far.
    pub(super) fn offer(&mut self, resp: Message) {
        let r = rank(resp.status());
        if self.best.as_ref().is_none_or(|(b, _)| r < *b) {
            self.best = Some((r, resp));
        }
    }
}

/// RFC 3261 §16.7 step 6: any 6xx first, then the lowest class (3xx before 4xx before 5xx);
/// a 408 of our own timeouts and a 503 are the least informative within their class.
pub(super) fn rank(code: u16) -> u32 {
    let code = u32::from(code);
    match code {
        600..=699 => code,
        408 | 503 => 10_000 + code,
        _ => 1_000 + code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sim::{cancel_bob, reply, Sim, ALICE, BOB, INVITE_BOB};
    use std::time::Duration;

    const SECOND: Duration = Duration::from_secs(1);

    /// alice calls bob, bob's phone rings: returns the INVITE bob received.
    fn ringing(sim: &mut Sim) -> Message {
        let to_alice = sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        let text: Vec<String> = to_alice
            .iter()
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
            .collect();
        assert_eq!(
            to_alice.iter().map(Message::status).collect::<Vec<_>>(),
            vec![100],
            "{text:?}"
        );
        let invite = sim.take_to(BOB).pop().expect("INVITE forwarded to bob");
        sim.send(BOB, &reply(&invite, 180, "Ringing", "b1"));
        let up = sim.take_to(ALICE);
        assert_eq!(
            up.iter().map(Message::status).collect::<Vec<_>>(),
            vec![180]
        );
        invite
    }

    /// The statuses received, retransmissions folded.
    fn statuses(ms: &[Message]) -> Vec<u16> {
        let mut v: Vec<u16> = ms.iter().map(Message::status).collect();
        v.dedup();
        v
    }

    #[test]
    fn a_call_ringing_past_timer_b_is_not_answered_408() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        ringing(&mut sim);
        sim.advance(120 * SECOND);
        assert_eq!(
            statuses(&sim.take_to(ALICE)),
            Vec::<u16>::new(),
            "still ringing after 2 min"
        );
        assert_eq!(sim.engine.in_flight(), 1);
    }

    #[test]
    fn timer_c_cancels_a_branch_that_rings_too_long_and_the_caller_hears_487() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        let invite = ringing(&mut sim);
        sim.advance(180 * SECOND);
        assert!(sim.take_to(BOB).is_empty(), "nothing before Timer C");
        sim.advance(2 * SECOND);
        let cancel = sim.take_to(BOB).pop().expect("Timer C sent a CANCEL");
        assert_eq!(cancel.method_str(), "CANCEL");
        assert_eq!(cancel.cseq().unwrap().seq, invite.cseq().unwrap().seq);
        sim.send(BOB, &reply(&cancel, 200, "OK", "b1"));
        sim.send(BOB, &reply(&invite, 487, "Request Terminated", "b1"));
        let ack = sim.take_to(BOB);
        assert_eq!(
            ack.iter().map(|m| m.method_str()).collect::<Vec<_>>(),
            vec!["ACK"]
        );
        assert_eq!(statuses(&sim.take_to(ALICE)), vec![487]);
        sim.advance(40 * SECOND);
        assert_eq!(sim.engine.in_flight(), 0);
    }

    #[test]
    fn each_provisional_restarts_timer_c() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        let invite = ringing(&mut sim);
        sim.advance(170 * SECOND);
        sim.send(BOB, &reply(&invite, 183, "Session Progress", "b1"));
        sim.advance(20 * SECOND);
        assert!(sim.take_to(BOB).is_empty(), "Timer C restarted at 170 s");
        sim.advance(165 * SECOND);
        let sent = sim.take_to(BOB);
        assert!(!sent.is_empty() && sent.iter().all(|m| m.method_str() == "CANCEL"));
    }

    #[test]
    fn a_branch_that_ignores_its_cancel_ends_as_408_after_64_t1() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        ringing(&mut sim);
        sim.advance(182 * SECOND);
        assert!(sim.take_to(BOB).iter().any(|m| m.method_str() == "CANCEL"));
        sim.advance(30 * SECOND); // CANCEL sent at 181 s
        let early = statuses(&sim.take_to(ALICE));
        assert!(early.is_empty(), "waits 64·T1 for the 487: {early:?}");
        sim.advance(3 * SECOND);
        let up = sim.take_to(ALICE);
        assert_eq!(statuses(&up), vec![408]);
        assert_eq!(sim.engine.in_flight(), 0);
        sim.advance(60 * SECOND);
        assert!(
            sim.engine.client_tx.is_empty(),
            "no client transaction left"
        );
        assert!(sim.engine.proxies.is_empty(), "no proxy state left");
    }

    #[test]
    fn a_callers_cancel_unanswered_by_the_device_still_ends_the_call() {
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        ringing(&mut sim);
        sim.send(ALICE, &cancel_bob());
        assert_eq!(statuses(&sim.take_to(ALICE)), vec![200]);
        assert!(sim.take_to(BOB).iter().any(|m| m.method_str() == "CANCEL"));
        sim.advance(33 * SECOND);
        assert_eq!(statuses(&sim.take_to(ALICE)), vec![408]);
        assert_eq!(sim.engine.in_flight(), 0);
    }

    #[test]
    fn an_edge_trusts_the_address_of_a_remote_user_its_next_hop_signed_in() {
        let access = "198.51.100.1:443";
        let cfg = crate::config::EngineConfig {
            edge: Some(crate::config::EdgeConfig {
                access: vec![access.parse().unwrap()],
                access_host: "access.example.com".into(),
                access_port: 443,
                federation_port: 5061,
                next_hop: vec!["10.0.0.5:5061".parse().unwrap()],
                federation: Default::default(),
            }),
            ..Default::default()
        };
        let mut sim = Sim::new(cfg, |_| {});
        let remote = "203.0.113.7:50000";
        let ip = "203.0.113.7".parse().unwrap();
        let register = |seq: u32| {
            format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TLS 203.0.113.7:50000;branch=z9hG4bKedge{seq}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a\r\nTo: <sip:alice@example.com>\r\nCall-ID: edge-reg\r\nCSeq: {seq} REGISTER\r\nContact: <sip:alice@203.0.113.7:50000;transport=tls>\r\nContent-Length: 0\r\n\r\n")
        };
        // challenged by the next hop: not trusted yet
        sim.send_tls(remote, access, 7, &register(1));
        let relayed = sim.take_to("10.0.0.5:5061");
        assert_eq!(relayed.len(), 1);
        sim.arriving_from_peers(true);
        sim.send_tls(
            "10.0.0.5:5061",
            "127.0.0.1:5061",
            8,
            &reply(&relayed[0], 401, "Unauthorized", "n"),
        );
        assert_eq!(sim.take_to(remote).len(), 1);
        assert!(!sim.engine.is_trusted_source(ip));
        // signed in: trusted
        sim.arriving_from_peers(false);
        sim.send_tls(remote, access, 7, &register(2));
        let relayed = sim.take_to("10.0.0.5:5061");
        sim.arriving_from_peers(true);
        sim.send_tls(
            "10.0.0.5:5061",
            "127.0.0.1:5061",
            8,
            &reply(&relayed[0], 200, "OK", "n"),
        );
        let answers = sim.take_to(remote);
        assert_eq!(answers[0].status(), 200);
        assert!(sim.engine.is_trusted_source(ip));
    }

    #[test]
    fn six_hundreds_beat_everything_and_timeouts_lose() {
        let mut v = vec![408, 486, 603, 302, 500, 503];
        v.sort_by_key(|c| rank(*c));
        assert_eq!(v, vec![603, 302, 486, 500, 408, 503]);
    }
}
