//! Where a request goes once it is accepted: along its Route, to the registrar, the presence
//! agent, the server's own OPTIONS answer, or the called user's devices (here and at the other
//! servers of the pool).
use sip_proto::header::NameAddr;
use sip_proto::{Method, Uri};
use sip_transport::{Target, Transport};

use super::park::Fetch;
use super::CoreEvent;
use super::{Ctx, Engine, Now};
use crate::location::LiveBinding;
use crate::pipeline::Flow;
use crate::routing::{is_our_address, uri_target};

const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, REFER, SUBSCRIBE, NOTIFY, REGISTER";

impl Engine {
    pub(super) fn dispatch(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let method = ctx.msg.method();
        let in_dialog = ctx.in_dialog;
        if let Some(next) = ctx.routes.first() {
            if !in_dialog && method != Method::Ack {
                self.respond(
                    now,
                    ctx,
                    403,
                    "Forbidden (relaying denied: Route to a host this server does not serve)",
                    &[],
                );
                return Flow::Stop;
            }
            let target = NameAddr::parse(next, "Route").ok().and_then(|na| {
                na.uri
                    .as_sip()
                    .and_then(|u| uri_target(u, ctx.source.transport))
            });
            match target {
                Some(t) => self.forward_single(now, ctx, t),
                None => self.respond(
                    now,
                    ctx,
                    503,
                    "Service Unavailable (next hop in Route cannot be resolved)",
                    &[],
                ),
            }
            return Flow::Stop;
        }
        let uri_text = ctx.msg.uri_str().to_owned();
        let Ok(Uri::Sip(uri)) = Uri::parse(&uri_text) else {
            if method != Method::Ack {
                self.respond(now, ctx, 416, "Unsupported URI Scheme", &[]);
            }
            return Flow::Stop;
        };
        let ours = is_our_address(&self.cfg, &uri) || self.cfg.serves_domain(uri.host);
        if in_dialog && method == Method::Subscribe && self.presence_resubscribe(now, ctx) {
            return Flow::Stop;
        }
        if in_dialog && method == Method::Bye {
            if let Ok(call_id) = ctx.msg.call_id() {
                self.emit(CoreEvent::CallEnded(call_id.to_owned()));
            }
        }
        if in_dialog || method == Method::Ack {
            if let Some(no) = self.app_dialog_of(&ctx.msg) {
                let app = self.app_dialogs.get(&no).map(|d| d.app).unwrap_or_default();
                self.app_request(now, ctx, app, Some(no));
                return Flow::Stop;
            }
            match uri_target(&uri, ctx.source.transport)
                .filter(|_| !is_our_address(&self.cfg, &uri))
            {
                Some(t) => self.forward_single(now, ctx, t),
                None if method == Method::Ack => {}
                None => self.respond(
                    now,
                    ctx,
                    481,
                    "Call/Transaction Does Not Exist (request does not follow a known route)",
                    &[],
                ),
            }
            return Flow::Stop;
        }
        if !ours && self.is_peer_forwarded(ctx) {
            // another server of the deployment routed this through us (a Path we added): on
            // to the device
            match uri_target(&uri, ctx.source.transport) {
                Some(t) => self.forward_single(now, ctx, t),
                None => self.respond(
                    now,
                    ctx,
                    503,
                    "Service Unavailable (Request-URI cannot be resolved)",
                    &[],
                ),
            }
            return Flow::Stop;
        }
        if !ours {
            let reason = format!(
                "Forbidden (federation is not enabled: domain {} is not served here)",
                uri.host
            );
            self.respond(now, ctx, 403, &reason, &[]);
            return Flow::Stop;
        }
        if method == Method::Register {
            self.register(now, ctx);
            return Flow::Stop;
        }
        if matches!(method, Method::Publish | Method::Subscribe) {
            self.presence_request(now, ctx, &uri);
            return Flow::Stop;
        }
        if let Some(app) = uri.user.and_then(|u| self.app_for(u)) {
            self.app_request(now, ctx, app, None);
            return Flow::Stop;
        }
        let Some(user) = uri.user else {
            match method {
                Method::Options => {
                    let allow = [
                        ("Allow", ALLOW.to_owned()),
                        ("Accept", "application/sdp".to_owned()),
                        ("Supported", "path, outbound".to_owned()),
                    ];
                    self.respond(now, ctx, 200, "OK", &allow);
                }
                _ => self.respond(
                    now,
                    ctx,
                    405,
                    "Method Not Allowed",
                    &[("Allow", "REGISTER, OPTIONS".to_owned())],
                ),
            }
            return Flow::Stop;
        };
        let domain = if self.cfg.serves_domain(uri.host) {
            uri.host.to_ascii_lowercase()
        } else {
            self.cfg.realm().to_owned()
        };
        let aor = format!("{}@{domain}", sip_proto::unescape(user));
        match self.lookup_user(now, ctx, &aor) {
            Some(Some(_)) => {}
            Some(None) => {
                self.respond(now, ctx, 404, "Not Found (no such user)", &[]);
                return Flow::Stop;
            }
            None => return Flow::Stop,
        }
        let mut bindings: Vec<LiveBinding> = self
            .location
            .lookup(&aor)
            .iter()
            .filter(|b| b.rec.expires_at > now.unix)
            .cloned()
            .collect();
        let others = if self.is_peer_forwarded(ctx) {
            Vec::new() // the forwarding server covered the others
        } else {
            match self.other_servers(now, ctx, &aor, &mut bindings) {
                Some(others) => others,
                None => return Flow::Stop, // parked
            }
        };
        if bindings.is_empty() && others.is_empty() {
            self.respond(
                now,
                ctx,
                480,
                "Temporarily Unavailable (no device registered)",
                &[],
            );
            return Flow::Stop;
        }
        let mut targets = Vec::new();
        for b in &bindings {
            if let Some(t) = self.binding_target(b) {
                targets.push((b.rec.contact.clone(), b.rec.path.clone(), t));
            }
        }
        for addr in others {
            // the Request-URI stays the user's: that server forks to its own devices; servers
            // talk over mutually authenticated TLS, on the port after their SIP port
            let tls = std::net::SocketAddr::new(addr.ip(), addr.port().saturating_add(1));
            let route = format!("<sip:{tls};transport=tls;lr>");
            let target = Target {
                transport: Transport::Tls,
                addr: tls,
                flow: None,
            };
            targets.push((uri_text.clone(), vec![route], target));
        }
        if targets.is_empty() {
            self.respond(
                now,
                ctx,
                480,
                "Temporarily Unavailable (no reachable device)",
                &[],
            );
            return Flow::Stop;
        }
        self.fork(now, ctx, targets);
        Flow::Stop
    }

    /// In a deployment of several servers: the other servers holding `aor`'s registrations
    /// (from the store, by their SIP address), and `local` trimmed of registrations that moved to another server
    /// since this one took them. A database failure leaves `local` as it is.
    pub(super) fn other_servers(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        aor: &str,
        local: &mut Vec<LiveBinding>,
    ) -> Option<Vec<std::net::SocketAddr>> {
        if self.cfg.peers.is_empty() {
            return Some(Vec::new());
        }
        let rows = match self.fetch_bindings(now, ctx, aor) {
            Fetch::Parked => return None,
            Fetch::Ready(Ok(rows)) => rows,
            Fetch::Ready(Err(e)) => {
                tracing::warn!(event = "store.error", error = %e, user = %aor, "registrations at other servers unknown; delivering to this server's only");
                return Some(Vec::new());
            }
        };
        let me = &self.cfg.server_id;
        local.retain(|b| rows.iter().any(|r| r.key == b.rec.key && &r.server == me));
        let mut out: Vec<std::net::SocketAddr> = Vec::new();
        for r in rows {
            if &r.server == me || r.server.is_empty() {
                continue;
            }
            match r.server.parse() {
                Ok(addr) if !out.contains(&addr) => out.push(addr),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(event = "registrar.bad_server", user = %aor, server = %r.server, "registration names a server that is not host:port; skipped")
                }
            }
        }
        Some(out)
    }

    /// Where to reach a registered device: its Path, its open connection, or its contact.
    pub(super) fn binding_target(&self, b: &LiveBinding) -> Option<Target> {
        let transport = Transport::from_name(&b.rec.transport).unwrap_or(Transport::Udp);
        if let Some(first) = b.rec.path.first() {
            let na = NameAddr::parse(first, "Path").ok()?;
            return uri_target(na.uri.as_sip()?, transport);
        }
        if transport.is_reliable() {
            if let (Some(flow), Some(addr)) =
                (b.flow.filter(|f| self.open_flows.contains(f)), b.source())
            {
                return Some(Target {
                    transport,
                    addr,
                    flow: Some(flow),
                });
            }
        }
        let uri = Uri::parse(&b.rec.contact).ok()?;
        uri_target(uri.as_sip()?, transport).or_else(|| {
            b.source().map(|addr| Target {
                transport,
                addr,
                flow: None,
            })
        })
    }
}
