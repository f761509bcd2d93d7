//! The Edge role, and where a request comes from as the deployment sees it.
//!
//! An Edge stands between the internet and the inside. Requests from the outside (they arrive
//! on an Access Edge listener) go to the next hop (a Director or pool) only, marked with their
//! [`Origin`]; requests from the inside (over mutual TLS from the deployment's servers) go out
//! along the route the inside gives them — to a remote user's connection named in the Path or
//! Record-Route the Edge added. The Edge holds no users and authenticates nobody: the next hop
//! does.
//!
//! The mark travels as the `Confab-Origin` header, written only by us: every server removes
//! it from what it forwards and writes its own from what it decided, and believes it only from
//! a deployment server (a connection whose certificate chains to the deployment's CA), so a
//! client cannot claim to be inside or outside.

use std::net::{IpAddr, SocketAddr};

use confab_topology::Verification;
use sip_proto::header::NameAddr;
use sip_proto::{HeaderName, Method, Uri};
use sip_transport::{FlowId, Target, Transport};

use super::federation::{partner_target, Partner};
use super::{Ctx, Engine, Now};
use crate::pipeline::Flow;
use crate::routing::uri_target;

/// The header that carries a request's [`Origin`] between the deployment's servers.
pub(crate) const ORIGIN_HEADER: &str = "Confab-Origin";

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Origin {
    /// From inside the organisation's network.
    #[default]
    Inside,
    /// From one of our users outside, through an Edge; `addr` is the client's own address.
    Remote { addr: Option<IpAddr> },
    /// From a partner organisation through an Edge: the domain its connection proved;
    /// `verified` unless it came through a hosting provider that does not vouch for the
    /// sender (`verification`): then only a user who has the sender as a contact takes it.
    Federated {
        domain: String,
        addr: Option<IpAddr>,
        verified: bool,
    },
}

impl Origin {
    /// The header value; `None` for requests from inside (no header).
    pub(crate) fn header_value(&self) -> Option<String> {
        let addr = |a: &Option<IpAddr>| a.map(|a| format!(";addr={a}")).unwrap_or_default();
        match self {
            Self::Inside => None,
            Self::Remote { addr: a } => Some(format!("remote{}", addr(a))),
            Self::Federated {
                domain,
                addr: a,
                verified,
            } => {
                let unverified = if *verified { "" } else { ";unverified" };
                Some(format!("federated;domain={domain}{unverified}{}", addr(a)))
            }
        }
    }

    /// Reads a header value; `None` when it is not one we write.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';').map(str::trim);
        let kind = parts.next()?;
        let (mut domain, mut addr, mut verified) = (None, None, true);
        for p in parts {
            match p.split_once('=') {
                Some(("domain", d)) if !d.is_empty() => domain = Some(d.to_ascii_lowercase()),
                Some(("addr", a)) => addr = a.parse().ok(),
                None if p == "unverified" => verified = false,
                _ => {}
            }
        }
        match kind {
            "remote" => Some(Self::Remote { addr }),
            "federated" => Some(Self::Federated {
                domain: domain?,
                addr,
                verified,
            }),
            _ => None,
        }
    }

    pub(crate) fn is_external(&self) -> bool {
        *self != Self::Inside
    }

    /// From a partner whose sender nobody vouched for.
    pub(crate) fn is_unverified(&self) -> bool {
        matches!(
            self,
            Self::Federated {
                verified: false,
                ..
            }
        )
    }

    /// The address of the client behind the Edge, when there is one.
    pub(crate) fn client_ip(&self) -> Option<IpAddr> {
        match self {
            Self::Inside => None,
            Self::Remote { addr } | Self::Federated { addr, .. } => *addr,
        }
    }
}

/// A connection named in a Route we added: `flow=<id>_<ip>_<port>`.
pub(crate) fn flow_param(flow: FlowId, remote: SocketAddr) -> String {
    format!(";flow={flow}_{}_{}", remote.ip(), remote.port())
}

/// Reads back what [`flow_param`] wrote: the connection, and the address it went to.
pub(crate) fn parse_flow(value: &str) -> Option<Target> {
    let mut it = value.splitn(3, '_');
    let flow = it.next()?.parse().ok()?;
    let ip: IpAddr = it.next()?.parse().ok()?;
    let port = it.next()?.parse().ok()?;
    Some(Target {
        transport: Transport::Tls,
        addr: SocketAddr::new(ip, port),
        flow: Some(flow),
    })
}

impl Engine {
    /// Processor: decides where the request comes from (`ctx.origin`). At an Edge by the
    /// listener it arrived on and the domain of its From; elsewhere by the mark of the
    /// deployment server that passed it on.
    pub(super) fn origin(&mut self, _now: Now, ctx: &mut Ctx) -> Flow {
        if ctx.source.peer_verified {
            // a server of the deployment (an Edge relaying its users, a Director, a peer):
            // never limited or shed as a stranger when this server is overloaded
            self.trust_source(ctx.source.remote.ip());
        }
        ctx.origin = match &self.cfg.edge {
            Some(edge) if edge.access.contains(&ctx.source.local) => {
                let addr = Some(ctx.source.remote.ip());
                let domain = ctx
                    .msg
                    .from()
                    .ok()
                    .and_then(|f| f.uri.as_sip().map(|u| u.host.to_ascii_lowercase()));
                match domain {
                    Some(d) if !self.cfg.serves_domain(&d) => Origin::Federated {
                        domain: d,
                        addr,
                        verified: true,
                    },
                    _ => Origin::Remote { addr },
                }
            }
            _ if ctx.source.peer_verified => marked_origin(ctx),
            _ => Origin::Inside,
        };
        Flow::Continue
    }

    /// Processor of the Edge role, in place of authentication and dispatch: inbound requests
    /// to the next hop, outbound ones along the route the inside gave them.
    pub(super) fn edge_route(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        if ctx.origin.is_external() {
            self.edge_inbound(now, ctx);
        } else {
            self.edge_outbound(now, ctx);
        }
        Flow::Stop
    }

    fn edge_inbound(&mut self, now: Now, ctx: &mut Ctx) {
        let ack = ctx.msg.method() == Method::Ack;
        if ctx.source.transport != Transport::Tls {
            if !ack {
                self.refuse(now, ctx, "the Access Edge takes TLS only");
            }
            return;
        }
        if ctx.in_dialog || ack {
            // a dialog we are on (RoutePop checked its seal): along its route, to the inside
            match self.next_along_route(ctx) {
                Some(t) if self.cfg.is_inside_server(t.addr.ip()) => {
                    self.forward_single(now, ctx, t)
                }
                _ if ack => {}
                _ => self.refuse(
                    now,
                    ctx,
                    "relaying denied: the route leaves the organisation",
                ),
            }
            return;
        }
        if !ctx.routes.is_empty() {
            return self.refuse(
                now,
                ctx,
                "relaying denied: Route to a host this server does not serve",
            );
        }
        let domain = match Uri::parse(ctx.msg.uri_str()) {
            Ok(Uri::Sip(u)) => u.host.to_ascii_lowercase(),
            _ => {
                self.respond(now, ctx, 416, "Unsupported URI Scheme", &[]);
                return;
            }
        };
        if !self.cfg.serves_domain(&domain) {
            let why = format!("relaying denied: {domain} is not a domain of this organisation");
            return self.refuse(now, ctx, &why);
        }
        if let Origin::Federated { domain: from, .. } = ctx.origin.clone() {
            if ctx.msg.method() == Method::Register {
                return self.refuse(now, ctx, "a partner's users cannot sign in here");
            }
            let (hint, verification) = match self.federation_decision(&from) {
                Ok(allowed) => allowed,
                Err(why) => return self.refuse_partner(now, ctx, &from, &why),
            };
            match self.partner_proof(ctx, &from, hint.as_deref()) {
                Partner::Ready(_) => {
                    if let Origin::Federated { verified, .. } = &mut ctx.origin {
                        *verified = vouched_for(verification, &ctx.msg);
                    }
                }
                Partner::Waiting => return,
                Partner::Refused(e) => {
                    let why = format!("the connection does not prove {from}: {}", e.reason);
                    return self.refuse_partner(now, ctx, &from, &why);
                }
            }
        }
        let Some(target) = self.next_hop(ctx) else {
            self.respond(
                now,
                ctx,
                503,
                "Service Unavailable (the Edge has no next hop)",
                &[],
            );
            return;
        };
        self.forward_single(now, ctx, target);
    }

    fn edge_outbound(&mut self, now: Now, ctx: &mut Ctx) {
        let ack = ctx.msg.method() == Method::Ack;
        if !ctx.source.peer_verified {
            if !ack {
                self.refuse(
                    now,
                    ctx,
                    "the Edge's inside takes requests from the deployment's servers only",
                );
            }
            return;
        }
        // a Path or Record-Route of ours named the remote user's connection
        let target = ctx.edge_flow.or_else(|| {
            (ctx.in_dialog || ack || !ctx.routes.is_empty())
                .then(|| self.next_along_route(ctx))
                .flatten()
        });
        match target {
            Some(t) => self.forward_single(now, ctx, t),
            None if ack => {}
            None => self.forward_to_partner(now, ctx),
        }
    }

    /// A request of ours to another organisation: to its Access Edge, found by DNS.
    fn forward_to_partner(&mut self, now: Now, ctx: &mut Ctx) {
        let domain = match Uri::parse(ctx.msg.uri_str()) {
            Ok(Uri::Sip(u)) => u.host.to_ascii_lowercase(),
            _ => {
                self.respond(now, ctx, 416, "Unsupported URI Scheme", &[]);
                return;
            }
        };
        if self.cfg.serves_domain(&domain) {
            return self.refuse(
                now,
                ctx,
                "the Edge relays our own domains only to remote users",
            );
        }
        let hint = match self.federation_decision(&domain) {
            Ok((hint, _)) => hint,
            Err(why) => return self.refuse_partner(now, ctx, &domain, &why),
        };
        match self.partner_edge(ctx, &domain, hint.as_deref(), now.mono) {
            Partner::Ready(found) => {
                tracing::debug!(event = "edge.to_partner", partner = %domain, edge = %found.fqdn, addr = %found.addr);
                self.forward_single(now, ctx, partner_target(&found));
            }
            Partner::Waiting => {}
            Partner::Refused(e) => {
                tracing::warn!(event = "edge.partner_not_found", partner = %domain, reason = %e.reason, "cannot reach the partner's Access Edge");
                let phrase = match e.status {
                    403 => "Forbidden",
                    404 => "Not Found",
                    _ => "Server Time-out",
                };
                let reason = format!("{phrase} (cannot reach {domain}: {})", e.reason);
                self.respond(now, ctx, e.status, &reason, &[]);
            }
        }
    }

    /// What the federation policy says of `domain`: its Access Edge when the topology names
    /// one and how far its hosting provider vouches for its users, or why it is refused.
    fn federation_decision(
        &self,
        domain: &str,
    ) -> Result<(Option<String>, Option<Verification>), String> {
        let Some(edge) = &self.cfg.edge else {
            return Err("federation is not enabled".into());
        };
        match edge.federation.decide(domain) {
            confab_topology::Decision::Allowed { edge, provider } => {
                Ok((edge.map(str::to_owned), provider.map(|p| p.verification)))
            }
            confab_topology::Decision::Refused(why) => Err(format!("{why}: {domain}")),
        }
    }

    fn refuse_partner(&mut self, now: Now, ctx: &Ctx, partner: &str, why: &str) {
        tracing::info!(event = "edge.federation_refused", %partner, remote = %ctx.source.remote, reason = %why, "federated request refused");
        self.refuse(now, ctx, why);
    }

    /// 403 with `why` in the reason phrase, counted and logged.
    fn refuse(&mut self, now: Now, ctx: &Ctx, why: &str) {
        self.stats.relay_refused += 1;
        tracing::info!(event = "edge.refused", remote = %ctx.source.remote, method = ctx.msg.method_str(), uri = ctx.msg.uri_str(), reason = %why, "request refused at the Edge");
        self.respond(now, ctx, 403, &format!("Forbidden ({why})"), &[]);
    }

    /// The first remaining Route, else the Request-URI, as a next hop.
    fn next_along_route(&self, ctx: &Ctx) -> Option<Target> {
        match ctx.routes.first() {
            Some(r) => NameAddr::parse(r, "Route")
                .ok()
                .and_then(|na| na.uri.as_sip().and_then(|u| uri_target(u, Transport::Tls))),
            None => match Uri::parse(ctx.msg.uri_str()).ok()? {
                Uri::Sip(u) => uri_target(&u, Transport::Tls),
                _ => None,
            },
        }
    }

    /// One of the next hop's servers, the same for the same Call-ID.
    fn next_hop(&self, ctx: &Ctx) -> Option<Target> {
        crate::routing::server_for_call(&ctx.msg, &self.cfg.edge.as_ref()?.next_hop)
    }
}

/// Whether a partner's request counts as verified: always from a partner federating
/// directly (its connection proved the domain); through a hosting provider, as its
/// verification level says: with `use-source-verification`, when the provider asserted the
/// sender (RFC 3325 P-Asserted-Identity naming the From address).
fn vouched_for(provider: Option<Verification>, msg: &sip_proto::Message) -> bool {
    match provider {
        None | Some(Verification::AlwaysVerifiable) => true,
        Some(Verification::AlwaysUnverifiable) => false,
        Some(Verification::UseSourceVerification) => {
            let address = |na: &NameAddr| na.uri.as_sip().map(|u| sip_address(u.user, u.host));
            let Some(from) = msg.from().ok().and_then(|f| address(&f)) else {
                return false;
            };
            msg.fields()
                .filter(|(n, name, _)| {
                    *n == HeaderName::Other && name.eq_ignore_ascii_case(b"P-Asserted-Identity")
                })
                .filter_map(|(_, _, v)| std::str::from_utf8(v).ok())
                .flat_map(|v| v.split(','))
                .filter_map(|v| NameAddr::parse(v.trim(), "P-Asserted-Identity").ok())
                .any(|na| address(&na).as_ref() == Some(&from))
        }
    }
}

/// `user@host`, the host lower-case.
fn sip_address(user: Option<&str>, host: &str) -> String {
    format!("{}@{}", user.unwrap_or(""), host.to_ascii_lowercase())
}

/// The origin a deployment server wrote (`Confab-Origin`), or inside.
fn marked_origin(ctx: &Ctx) -> Origin {
    ctx.msg
        .fields()
        .find(|(n, name, _)| {
            *n == HeaderName::Other && name.eq_ignore_ascii_case(ORIGIN_HEADER.as_bytes())
        })
        .and_then(|(_, _, v)| std::str::from_utf8(v).ok())
        .and_then(Origin::parse)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_reads_back_what_it_writes_and_nothing_else() {
        for o in [
            Origin::Remote {
                addr: Some("198.51.100.7".parse().unwrap()),
            },
            Origin::Remote { addr: None },
            Origin::Federated {
                domain: "fabrikam.com".into(),
                addr: Some("2001:db8::1".parse().unwrap()),
                verified: true,
            },
            Origin::Federated {
                domain: "push.example.net".into(),
                addr: None,
                verified: false,
            },
        ] {
            let v = o.header_value().unwrap();
            assert_eq!(Origin::parse(&v), Some(o), "{v}");
        }
        assert_eq!(Origin::Inside.header_value(), None);
        assert_eq!(Origin::parse("inside"), None);
        assert_eq!(Origin::parse("federated"), None, "a domain is required");
    }

    #[test]
    fn a_flow_param_names_the_connection_and_its_address() {
        let p = flow_param(42, "[2001:db8::7]:5061".parse().unwrap());
        let t = parse_flow(p.trim_start_matches(";flow=")).unwrap();
        assert_eq!(t.flow, Some(42));
        assert_eq!(t.addr, "[2001:db8::7]:5061".parse().unwrap());
        assert_eq!(parse_flow("x_1.2.3.4_5"), None);
    }

    #[test]
    fn a_hosting_provider_vouches_as_its_verification_level_says() {
        let msg = |pai: &str| {
            let text = format!("MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TLS 192.0.2.9:5061;branch=z9hG4bKv\r\nFrom: \"Carol\" <sip:carol@Push.example.net>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: v\r\nCSeq: 1 MESSAGE\r\n{pai}Content-Length: 0\r\n\r\n");
            sip_proto::Message::parse(text.into_bytes(), &sip_proto::Limits::default()).unwrap()
        };
        let asserted =
            msg("P-Asserted-Identity: <tel:+14255550100>, <sip:carol@push.example.net>\r\n");
        let other = msg("P-Asserted-Identity: <sip:mallory@push.example.net>\r\n");
        let none = msg("");
        use Verification::*;
        for m in [&asserted, &other, &none] {
            assert!(vouched_for(None, m), "a partner federating directly");
            assert!(vouched_for(Some(AlwaysVerifiable), m));
            assert!(!vouched_for(Some(AlwaysUnverifiable), m));
        }
        assert!(vouched_for(Some(UseSourceVerification), &asserted));
        assert!(
            !vouched_for(Some(UseSourceVerification), &other),
            "another user asserted"
        );
        assert!(
            !vouched_for(Some(UseSourceVerification), &none),
            "nothing asserted"
        );
    }
}
