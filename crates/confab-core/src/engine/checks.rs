//! The cheap checks every request passes before policy: sanity, admission under load or drain,
//! our own Route values, Max-Forwards, loops, and unsupported extensions.
use sip_proto::header::{NameAddr, Via};
use sip_proto::{HeaderName, Message, Method, Uri};

use super::edge::parse_flow;
use super::{Ctx, Engine, Now};
use crate::pipeline::Flow;
use crate::routing::{is_our_address, is_our_via, loop_hash};

impl Engine {
    pub(super) fn sanity(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let problem = match (ctx.msg.validate(), ctx.msg.check_essentials()) {
            (Err(e), _) => Some((e.status_code(), e.to_string())),
            (Ok(()), Err(m)) => Some((400, m.to_string())),
            (Ok(()), Ok(())) => None,
        };
        // RFC 3261 §16.3 step 2: a Request-URI scheme the proxy does not understand is refused
        // before any policy (authentication, domains) is applied.
        let problem = problem.or_else(|| {
            let scheme = ctx.msg.uri_str().split(':').next().unwrap_or_default();
            let known = ["sip", "sips", "tel"]
                .iter()
                .any(|k| scheme.eq_ignore_ascii_case(k));
            (ctx.msg.is_request() && !known)
                .then(|| (416, format!("Unsupported URI Scheme ({scheme})")))
        });
        match problem {
            Some(_) if ctx.msg.method() == Method::Ack => Flow::Stop,
            Some((code, reason)) => {
                self.stats.malformed_answered += 1;
                self.respond(now, ctx, code, &reason, &[]);
                Flow::Stop
            }
            None => Flow::Continue,
        }
    }

    pub(super) fn admission(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let in_dialog = ctx.in_dialog;
        if in_dialog || matches!(ctx.msg.method(), Method::Ack | Method::Cancel) {
            return Flow::Continue; // finishing what was started is never refused
        }
        let (reason, retry) = if self.draining {
            ("Service Unavailable (server shutting down)", "5")
        } else if self.overloaded && self.sheds(ctx) {
            ("Service Unavailable (overloaded)", "2")
        } else {
            return Flow::Continue;
        };
        self.stats.shed += 1;
        // statelessly, like a challenge: a shed request leaves no transaction behind (a flood
        // of them kept one each for 32 s, and retransmitted the 503s to INVITEs)
        if let Some(key) = ctx.key.take() {
            self.server_tx.remove(&key);
        }
        self.respond(now, ctx, 503, reason, &[("Retry-After", retry.to_owned())]);
        Flow::Stop
    }

    /// Under overload, which new requests are refused (the transports already hold each
    /// address no user signed in from to its share). Not a sign-in, so that new users can
    /// still join (a REGISTER costs a stateless challenge, then one digest check); not a
    /// request without credentials (its challenge or refusal costs no more than a 503); not
    /// one from an address users signed in from. What is left — requests with credentials for
    /// calls and messages from addresses no user signed in from — waits.
    fn sheds(&self, ctx: &Ctx) -> bool {
        ctx.msg.method() != Method::Register
            && ctx.msg.count(HeaderName::ProxyAuthorization) > 0
            && !self.is_trusted_source(ctx.source.remote.ip())
    }

    /// Removes the Route values that name us, noting whether one carries our seal; then
    /// decides whether a request that claims a dialog (a To tag, or an ACK no transaction
    /// took) may be forwarded as such: only along a Route we sealed, or from a peer of the
    /// deployment. Without that it is handled as out-of-dialog (authenticated, then under the
    /// domain and federation policy), and a stray ACK is dropped: we relay for nobody else.
    pub(super) fn route_pop(&mut self, _now: Now, ctx: &mut Ctx) -> Flow {
        let mut sealed = false;
        if ctx.msg.count(HeaderName::Route) > 0 {
            let mut routes: Vec<String> = owned_values(&ctx.msg, HeaderName::Route);
            while let Some(first) = routes.first() {
                let Some((seal, flow)) = NameAddr::parse(first, "Route").ok().and_then(|na| {
                    na.uri
                        .as_sip()
                        .filter(|u| is_our_address(&self.cfg, u))
                        .map(|u| {
                            let param = |n| u.param(n).flatten().map(str::to_owned);
                            (param("seal"), param("flow"))
                        })
                }) else {
                    break;
                };
                sealed = sealed || seal.is_some_and(|s| self.seal_fits(&ctx.msg, &s));
                if self.cfg.edge.is_some() {
                    // the remote user's connection, named in a Path or Record-Route we added
                    ctx.edge_flow = ctx.edge_flow.or(flow.as_deref().and_then(parse_flow));
                }
                routes.remove(0);
            }
            ctx.routes = routes;
        }
        let ack = ctx.msg.method() == Method::Ack;
        if !(ctx.in_dialog || ack) || sealed || !self.would_relay(ctx) {
            return Flow::Continue;
        }
        if self.is_peer_forwarded(ctx) {
            return Flow::Continue; // the peer checked the seal
        }
        let why = if ctx.routes.is_empty() && ctx.msg.count(HeaderName::Route) > 0 {
            "its Route names this server without a valid seal"
        } else if ctx.routes.is_empty() {
            "it has no Route naming this server"
        } else {
            "its Route names another host"
        };
        // each at debug; at info the first and then every power of two, so that a flood of
        // forgeries cannot flood the log
        let seen = self.stats.unsealed_in_dialog + self.stats.stray_acks + 1;
        let what = if ack {
            "ACK dropped"
        } else {
            "handled as out-of-dialog"
        };
        tracing::debug!(
            event = "relay.unsealed", method = ctx.msg.method_str(), uri = ctx.msg.uri_str(),
            from = ctx.msg.header_str(HeaderName::From).ok().flatten().unwrap_or(""),
            remote = %ctx.source.remote,
            "request claims a dialog this server is not on ({why}): {what}"
        );
        if seen.is_power_of_two() {
            tracing::info!(
                event = "relay.unsealed", remote = %ctx.source.remote, seen,
                "{seen} requests so far claimed a dialog this server is not on (the last: {why}; {what}); each is logged at debug"
            );
        }
        if ack {
            self.stats.stray_acks += 1;
            return Flow::Stop;
        }
        self.stats.unsealed_in_dialog += 1;
        ctx.in_dialog = false;
        Flow::Continue
    }

    /// Whether the request, as routed so far, would leave this server: a Route to another
    /// host remains, or its Request-URI names somewhere else. (One addressed to us is ours to
    /// answer: a dialog of ours, or 481.)
    fn would_relay(&self, ctx: &Ctx) -> bool {
        !ctx.routes.is_empty()
            || !matches!(Uri::parse(ctx.msg.uri_str()), Ok(Uri::Sip(u)) if is_our_address(&self.cfg, &u))
    }

    pub(super) fn max_forwards(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        if ctx.msg.max_forwards().ok().flatten() == Some(0) && !self.addressed_to_server(ctx) {
            if ctx.msg.method() != Method::Ack {
                self.respond(now, ctx, 483, "Too Many Hops", &[]);
            }
            return Flow::Stop;
        }
        Flow::Continue
    }

    pub(super) fn loop_detection(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let prefix = format!(
            "{}{}-",
            sip_proto::header::MAGIC_COOKIE,
            loop_hash(&ctx.msg)
        );
        let looped = ctx
            .msg
            .values(HeaderName::Via)
            .filter_map(Result::ok)
            .filter_map(|v| Via::parse(v).ok())
            .any(|v| {
                is_our_via(&self.cfg, &v) && v.branch().is_some_and(|b| b.starts_with(&prefix))
            });
        if looped {
            if ctx.msg.method() != Method::Ack {
                self.respond(now, ctx, 482, "Loop Detected", &[]);
            }
            return Flow::Stop;
        }
        Flow::Continue
    }

    pub(super) fn extensions(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        if matches!(ctx.msg.method(), Method::Ack | Method::Cancel) {
            return Flow::Continue;
        }
        let mut unknown: Vec<String> = owned_values(&ctx.msg, HeaderName::ProxyRequire);
        if self.addressed_to_server(ctx) || ctx.msg.method() == Method::Register {
            unknown.extend(
                ctx.msg
                    .values(HeaderName::Require)
                    .filter_map(Result::ok)
                    .filter(|t| {
                        // timer: the meetings focus keeps session timers (RFC 4028)
                        !["path", "outbound", "timer"]
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case(t))
                    })
                    .map(str::to_owned),
            );
        }
        if unknown.is_empty() {
            return Flow::Continue;
        }
        self.respond(
            now,
            ctx,
            420,
            "Bad Extension",
            &[("Unsupported", unknown.join(", "))],
        );
        Flow::Stop
    }

    pub(super) fn addressed_to_server(&self, ctx: &Ctx) -> bool {
        ctx.routes.is_empty()
            && matches!(Uri::parse(ctx.msg.uri_str()), Ok(Uri::Sip(u)) if u.user.is_none() && (is_our_address(&self.cfg, &u) || self.cfg.serves_domain(u.host)))
    }
}

/// Every value of a header as owned strings (undecodable values skipped).
fn owned_values(msg: &Message, name: HeaderName) -> Vec<String> {
    msg.values(name)
        .filter_map(Result::ok)
        .map(str::to_owned)
        .collect()
}

/// Admission under overload: what is shed, and what never is.
#[cfg(test)]
mod tests {
    #[test]
    fn an_overloaded_engine_sheds_calls_from_strangers_but_not_sign_ins_or_signed_in_addresses() {
        use crate::engine::sim::{Sim, ALICE, BOB, INVITE_BOB};
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        sim.engine.set_overloaded(true);
        // a call with credentials from an address nobody signed in from waits
        let shed = sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        assert_eq!(shed[0].status(), 503, "{}", shed[0].reason());
        assert_eq!(shed[0].reason(), "Service Unavailable (overloaded)");
        assert_eq!(
            shed[0]
                .header_str(sip_proto::HeaderName::RetryAfter)
                .ok()
                .flatten(),
            Some("2")
        );
        assert!(sim.take_to(BOB).is_empty());
        // a sign-in goes through (challenge, then the digest check) ...
        let register = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKr1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r1\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg-o\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{auth}Content-Length: 0\r\n\r\n";
        let ok = sim.send_authenticated(ALICE, "alice", register);
        assert_eq!(ok[0].status(), 200, "{}", ok[0].reason());
        assert_eq!(
            sim.engine.poll_trusted(),
            Some(ALICE.parse::<std::net::SocketAddr>().unwrap().ip())
        );
        // ... and from an address a user signed in from, calls are served first
        let call = INVITE_BOB
            .replace("z9hG4bKinv1", "z9hG4bKinv9")
            .replace("call-1", "call-9");
        sim.send_authenticated(ALICE, "alice", &call);
        assert_eq!(sim.take_to(BOB).len(), 1, "forwarded under overload");
        assert_eq!(sim.engine.stats().shed, 1);
    }

    #[test]
    fn an_overloaded_engine_does_not_shed_what_a_deployment_server_relays() {
        use crate::engine::sim::{Sim, ALICE, BOB, INVITE_BOB};
        // alice's requests arrive through an Edge, over its verified connection
        const EDGE: &str = ALICE;
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        sim.engine.set_overloaded(true);
        // the Edge relays a remote user's call, with credentials after the challenge: no user
        // signed in from the Edge's address, yet it is not shed
        sim.arriving_from_peers(true);
        sim.send_authenticated(EDGE, "alice", INVITE_BOB);
        assert_eq!(sim.engine.stats().shed, 0);
        assert_eq!(sim.take_to(BOB).len(), 1, "forwarded under overload");
        assert_eq!(
            sim.engine.poll_trusted(),
            Some(EDGE.parse::<std::net::SocketAddr>().unwrap().ip()),
            "the transports stop limiting the Edge"
        );
    }
}
