//! The cheap checks every request passes before policy: sanity, admission under load or drain,
//! our own Route values, Max-Forwards, loops, and unsupported extensions.
use sip_proto::header::{NameAddr, Via};
use sip_proto::{HeaderName, Message, Method, Uri};

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
        } else if self.overloaded {
            ("Service Unavailable (overloaded)", "2")
        } else {
            return Flow::Continue;
        };
        self.stats.shed += 1;
        self.respond(now, ctx, 503, reason, &[("Retry-After", retry.to_owned())]);
        Flow::Stop
    }

    pub(super) fn route_pop(&mut self, _now: Now, ctx: &mut Ctx) -> Flow {
        if ctx.msg.count(HeaderName::Route) == 0 {
            return Flow::Continue;
        }
        let mut routes: Vec<String> = owned_values(&ctx.msg, HeaderName::Route);
        while let Some(first) = routes.first() {
            let ours = NameAddr::parse(first, "Route").ok().is_some_and(|na| {
                na.uri
                    .as_sip()
                    .is_some_and(|u| is_our_address(&self.cfg, u))
            });
            if !ours {
                break;
            }
            routes.remove(0);
        }
        ctx.routes = routes;
        Flow::Continue
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
                        !["path", "outbound"]
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
