//! Forwarding (RFC 3261 §16): one target or a fork to several, the request as sent to each
//! branch, and responses matched to branches (or routed back by Via when no branch waits).
use sip_proto::header::{format_via, Via};
use sip_proto::transaction::client_key;
use sip_proto::{HeaderName, Message, Method, Writer};
use sip_transport::{FlowId, Target, Transport};
use std::cmp::Reverse;

use super::edge::{flow_param, ORIGIN_HEADER};
use super::targets::ForkTarget;
use super::{Branch, ClientRole, Ctx, Engine, Now, Output, ProxyCtx, TimerOwner};
use crate::routing::{is_our_via, loop_hash, strip_top_via, via_target};

impl Engine {
    pub(super) fn forward_single(&mut self, now: Now, ctx: &mut Ctx, target: Target) {
        let branch = ForkTarget {
            uri: ctx.msg.uri_str().to_owned(),
            path: Vec::new(),
            target,
            binding: None,
            pstn: None,
        };
        if ctx.msg.method() == Method::Ack {
            // stateless: a deterministic branch so that ACK retransmissions look the same
            let ack_branch = format!(
                "{}{}-ack",
                sip_proto::header::MAGIC_COOKIE,
                loop_hash(&ctx.msg)
            );
            let bytes = self
                .build_forward(ctx, &branch, &ack_branch, false)
                .into_bytes();
            self.out.push_back(Output { target, bytes });
            return;
        }
        self.fork(now, ctx, vec![branch]);
    }

    /// Forwards the request statefully to every target in parallel (RFC 3261 §16.6); trunks
    /// to the phone network one after another instead (the next when one fails, see
    /// `branches.rs`).
    pub(super) fn fork(&mut self, now: Now, ctx: &mut Ctx, targets: Vec<ForkTarget>) {
        self.fork_with(now, ctx, targets, Diversions::default());
    }

    /// [`Engine::fork`], and where the call goes when nobody answers in time or every branch
    /// is busy (call forwarding).
    pub(super) fn fork_with(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        targets: Vec<ForkTarget>,
        diversions: Diversions,
    ) {
        let Some(server_key) = ctx.key.clone() else {
            return;
        };
        let id = self.next_id();
        let first = self.build_branches(ctx, &targets);
        if first.is_empty() {
            let reason = "Server Internal Error (could not build the forwarded request)";
            return self.respond(now, ctx, 500, reason, &[]);
        }
        let no_answer = diversions
            .no_answer
            .map(|(after, t)| (now.mono + after, self.build_branches(ctx, &t)));
        let busy = self.build_branches(ctx, &diversions.busy);
        if let Some(s) = self.server_tx.get_mut(&server_key) {
            s.owner = Some(super::txn::Owner::Proxy(id));
        }
        if let Some((at, _)) = &no_answer {
            self.timers
                .push(Reverse((*at, TimerOwner::NoAnswer { proxy: id })));
        }
        self.proxies.insert(
            id,
            ProxyCtx {
                server_key,
                invite: ctx.msg.method() == Method::Invite,
                request: ctx.msg.clone(),
                branches: Vec::new(),
                best: None,
                answered: false,
                later: std::collections::VecDeque::new(),
                no_answer: no_answer.map(|(_, set)| set),
                busy,
            },
        );
        self.start_set(now, id, first);
    }

    /// The request as sent to each target, with a branch of its own.
    fn build_branches(&mut self, ctx: &Ctx, targets: &[ForkTarget]) -> Vec<Pending> {
        let record_route = !ctx.in_dialog
            && matches!(
                ctx.msg.method(),
                Method::Invite | Method::Subscribe | Method::Refer
            );
        let lh = loop_hash(&ctx.msg);
        let mut built = Vec::with_capacity(targets.len());
        for to in targets {
            let seal = self.spiral_seal(&ctx.msg);
            let branch = format!(
                "{}{lh}-{:x}{}-{seal}",
                sip_proto::header::MAGIC_COOKIE,
                self.next_id(),
                self.mark()
            );
            built.push(Pending {
                key: client_key(&branch, ctx.msg.method_str()),
                req: self.build_forward(ctx, to, &branch, record_route),
                target: to.target,
                failover_after: to.pstn.as_ref().map(|l| l.failover_after),
                trunk: to
                    .pstn
                    .as_ref()
                    .map(|l| Box::new((l.route.clone(), l.trunk.clone()))),
            });
        }
        built
    }

    /// Starts a set of branches of proxy `proxy`: all at once, but of the trunks only the
    /// first (the others wait in `later` for it to fail).
    pub(super) fn start_set(&mut self, now: Now, proxy: u64, set: Vec<Pending>) {
        let mut trunk_started = false;
        for b in set {
            let Some(p) = self.proxies.get_mut(&proxy) else {
                return;
            };
            let index = p.branches.len();
            let mut branch = Branch::new(b.key);
            branch.failover_after = b.failover_after;
            branch.trunk = b.trunk;
            p.branches.push(branch);
            if b.failover_after.is_some() {
                if trunk_started {
                    p.later.push_back((b.req, b.target, index));
                    continue;
                }
                trunk_started = true;
            }
            self.start_branch(now, proxy, index, b.req, b.target);
        }
    }

    /// Starts branch `index` of proxy `proxy`: its client transaction, and for an INVITE its
    /// Timer C (§16.6 step 11: a branch may ring so long, then it is CANCELled), which for a
    /// trunk first runs only as long as the gateway may stay silent.
    pub(super) fn start_branch(
        &mut self,
        now: Now,
        proxy: u64,
        index: usize,
        req: Message,
        target: Target,
    ) {
        let Some(p) = self.proxies.get_mut(&proxy) else {
            return;
        };
        let invite = p.invite;
        let Some(branch) = p.branches.get_mut(index) else {
            return;
        };
        let key = branch.key.clone();
        if invite {
            let at = now.mono + branch.failover_after.unwrap_or(self.cfg.timer_c);
            branch.timer_c = Some(at);
            self.timers
                .push(Reverse((at, TimerOwner::Branch { proxy, index })));
            // the call's record: the trunk tried now, or the deployment server it goes to
            let peer = self.cfg.peers.contains(&target.addr.ip().to_string());
            if branch.trunk.is_some() || peer {
                let mut log = self
                    .shared
                    .calls
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((route, trunk)) = branch.trunk.as_deref() {
                    log.trunk(&p.server_key, route, trunk);
                }
                log.via(&p.server_key, &target.addr.to_string());
            }
        }
        self.start_client(now, key, req, target, ClientRole::Branch { proxy, index });
    }

    /// The request as sent to one target: our Via on top, Record-Route when asked, the Path or
    /// remaining Route set, Max-Forwards decremented, the rest as received.
    pub(super) fn build_forward(
        &self,
        ctx: &Ctx,
        to: &ForkTarget,
        branch: &str,
        record_route: bool,
    ) -> Message {
        let (uri, path, target, pstn) = (&to.uri, &to.path, to.target, to.pstn.as_deref());
        let (host, port) = self.cfg.toward(&target);
        let mut w = self.request_from_us(ctx.msg.method_str(), uri, target, branch);
        // at an Edge, what faces the outside names the remote user's connection
        let flow_toward = |addr: std::net::SocketAddr, flow: Option<FlowId>| {
            flow.filter(|_| self.cfg.is_outside(&addr))
                .map(|f| flow_param(f, addr))
                .unwrap_or_default()
        };
        if record_route {
            let from_tag = ctx.msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
            let seal = self.dialog_seal(
                ctx.msg.call_id().unwrap_or(""),
                from_tag.as_deref().unwrap_or(""),
            );
            let rr = |host: &str, port: u16, t: Transport, flow: String| {
                format!(
                    "<sip:{host}:{port};transport={};lr;seal={seal}{flow}>",
                    t.param()
                )
            };
            let flow = flow_toward(target.addr, target.flow);
            w.header("Record-Route", rr(host, port, target.transport, flow));
            let (back, back_port) = self.cfg.toward_source(&ctx.source);
            if ctx.source.transport != target.transport || back != host || back_port != port {
                // RFC 5658 double record-routing: each side sees our address on its transport
                // and address family (and at an Edge, on its side)
                let flow = flow_toward(ctx.source.remote, ctx.source.flow);
                w.header(
                    "Record-Route",
                    rr(back, back_port, ctx.source.transport, flow),
                );
            }
        }
        if ctx.msg.method() == Method::Register {
            // RFC 3327: requests for this registration come back through here
            w.header(
                "Path",
                format!(
                    "<sip:{host}:{port};transport={};lr{}>",
                    target.transport.param(),
                    flow_toward(ctx.source.remote, ctx.source.flow)
                ),
            );
        }
        for r in path.iter().chain(&ctx.routes) {
            w.header("Route", r);
        }
        let mf = ctx
            .msg
            .max_forwards()
            .ok()
            .flatten()
            .map_or(70, |m| m.saturating_sub(1));
        w.header("Max-Forwards", mf.to_string());
        // the origin mark is ours to write, and only toward the deployment's servers
        if let Some(origin) = ctx.origin.header_value() {
            if self.cfg.is_inside_server(target.addr.ip()) {
                w.header(ORIGIN_HEADER, origin);
            }
        }
        // an identity asserted from outside the trust domain is not believed (RFC 3325 §5):
        // only a trunk's gateway and the deployment's servers may pass one on
        let keep_identity = pstn.is_none() && (ctx.trunk.is_some() || ctx.source.peer_verified);
        for (name, n, v) in ctx.msg.fields() {
            let skip = match name {
                HeaderName::Route | HeaderName::MaxForwards | HeaderName::ContentLength => true,
                HeaderName::Authorization | HeaderName::ProxyAuthorization => {
                    self.ours_to_consume(v)
                }
                HeaderName::From if pstn.is_some_and(|l| l.from.is_some()) => true,
                HeaderName::Other => {
                    n.eq_ignore_ascii_case(ORIGIN_HEADER.as_bytes())
                        || (!keep_identity && is_identity_header(n))
                }
                _ => false,
            };
            if !skip {
                w.raw(n, v);
            }
        }
        if let Some(leg) = pstn {
            if let Some(from) = &leg.from {
                let tag = ctx.msg.from().ok().and_then(|f| f.tag().map(str::to_owned));
                w.header("From", format!("{from};tag={}", tag.unwrap_or_default()));
            }
            if let Some(id) = &leg.asserted {
                w.header("P-Asserted-Identity", id);
            }
            if leg.private {
                w.header("Privacy", "id");
            }
        }
        w.finish_message(ctx.msg.body())
    }

    /// Whether credentials are for one of our realms: those are consumed here (RFC 3261
    /// §22.3), never passed on to the callee or a partner; credentials for another realm
    /// travel on, and so do all at an Edge (the inside checks them).
    fn ours_to_consume(&self, value: &[u8]) -> bool {
        // an Edge authenticates nobody: the credentials are for its next hop
        self.cfg.edge.is_none()
            && std::str::from_utf8(value)
                .ok()
                .and_then(sip_auth::Credentials::parse)
                .is_some_and(|c| self.cfg.serves_domain(&c.realm))
    }

    /// A request line and our Via for `target`: how every request we send starts.
    pub(super) fn request_from_us(
        &self,
        method: &str,
        uri: &str,
        target: Target,
        branch: &str,
    ) -> Writer {
        let mut w = Writer::request(method, uri);
        w.header("Via", self.our_via(target, branch));
        w
    }

    /// Our Via toward `target`: its transport, our address and port for it, `branch`.
    pub(super) fn our_via(&self, target: Target, branch: &str) -> String {
        let (host, port) = self.cfg.toward(&target);
        format_via(target.transport.via_name(), host, port, branch)
    }

    pub(super) fn handle_response(&mut self, now: Now, resp: Message) {
        let Ok(via) = resp.top_via() else { return };
        let Ok(cseq) = resp.cseq() else { return };
        let key = client_key(via.branch().unwrap_or(""), cseq.method);
        let ours = is_our_via(&self.cfg, &via);
        let invite = cseq.method == "INVITE";
        drop(via);
        if let Some(c) = self.client_tx.get_mut(&key) {
            c.tx.handle_response(now.mono, resp);
            self.flush_client(now, &key);
            return;
        }
        if invite && resp.status() / 100 == 2 && self.reack(&resp) {
            return;
        }
        // no transaction (a 2xx retransmission, or a fork's late 2xx): forward by Via, if the
        // top one is ours (RFC 3261 §16.11); anything else is not ours to route
        if !ours {
            return;
        }
        let next = resp
            .values(HeaderName::Via)
            .nth(1)
            .and_then(Result::ok)
            .and_then(|v| Via::parse(v).ok())
            .and_then(|v| via_target(&v));
        if let Some(target) = next {
            let bytes = strip_top_via(&resp, false);
            self.out.push_back(Output { target, bytes });
        }
    }
}

/// Headers that assert or ask for an identity (RFC 3325): believed only from inside.
fn is_identity_header(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"P-Asserted-Identity")
        || name.eq_ignore_ascii_case(b"P-Preferred-Identity")
}

/// Where a call goes when the called user does not answer it (call forwarding): after a
/// while, or when every branch is busy.
#[derive(Default)]
pub(super) struct Diversions {
    pub(super) no_answer: Option<(std::time::Duration, Vec<ForkTarget>)>,
    pub(super) busy: Vec<ForkTarget>,
}

/// A branch built and not started yet.
#[derive(Debug)]
pub(super) struct Pending {
    key: String,
    req: Message,
    target: Target,
    /// A trunk's: how long its gateway may stay silent.
    failover_after: Option<std::time::Duration>,
    /// A trunk's: its voice route and name.
    trunk: Option<Box<(String, String)>>,
}
