//! Where a request goes once it is accepted: along its Route, to the registrar, the presence
//! agent, the server's own OPTIONS answer, or the called user's devices (here and at the other
//! servers of the pool).
use sip_proto::header::NameAddr;
use sip_proto::{Method, Uri};

use sip_transport::Transport;

use super::edge::Origin;
use super::park::Fetch;
use super::voice::{looks_like_number, phone_number};
use super::CoreEvent;
use super::{Ctx, Engine, Now};
use crate::pipeline::Flow;
use crate::routing::{is_our_address, uri_target};

const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, REFER, SUBSCRIBE, NOTIFY, REGISTER";

impl Engine {
    pub(super) fn dispatch(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let method = ctx.msg.method();
        let in_dialog = ctx.in_dialog;
        if let Some(next) = ctx.routes.first() {
            // a deployment server's request follows the route it was given (a Path through a
            // Director and an Edge to a remote user's device)
            if !in_dialog && method != Method::Ack && !self.is_peer_forwarded(ctx) {
                self.respond(
                    now,
                    ctx,
                    403,
                    "Forbidden (relaying denied: Route to a host this server does not serve)",
                    &[],
                );
                return Flow::Stop;
            }
            let target = NameAddr::parse(next, "Route")
                .ok()
                .and_then(|na| na.uri.as_sip().and_then(|u| uri_target(u, Transport::Udp)));
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
        if !in_dialog && ctx.msg.method_str() == "SERVICE" {
            // the Media Relay Authentication Service answers wherever the request lands
            self.relay_service(now, ctx);
            return Flow::Stop;
        }
        let uri_text = ctx.msg.uri_str().to_owned();
        let parsed = Uri::parse(&uri_text);
        if !in_dialog && method != Method::Ack {
            // a number: `tel:`, `user=phone`, or (below) digits that name no user
            if let Some(number) = parsed.as_ref().ok().and_then(phone_number) {
                self.dial(now, ctx, &number);
                return Flow::Stop;
            }
        }
        let Ok(Uri::Sip(uri)) = parsed else {
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
            self.call_hung_up(now, ctx);
        }
        if in_dialog || method == Method::Ack {
            if let Some(no) = self.app_dialog_of(&ctx.msg) {
                let app = self.app_dialogs.get(&no).map(|d| d.app).unwrap_or_default();
                self.app_request(now, ctx, app, Some(no));
                return Flow::Stop;
            }
            match uri_target(&uri, Transport::Udp).filter(|_| !is_our_address(&self.cfg, &uri)) {
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
            match uri_target(&uri, Transport::Udp) {
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
        if !ours && ctx.trunk.is_some() {
            let reason =
                "Forbidden (a gateway's calls reach only this deployment's numbers and users)";
            self.respond(now, ctx, 403, reason, &[]);
            return Flow::Stop;
        }
        if !ours {
            self.forward_to_federation(now, ctx, uri.host);
            return Flow::Stop;
        }
        if method == Method::Register {
            self.register(now, ctx);
            return Flow::Stop;
        }
        // an application's users take subscriptions of their own (a meeting's roster)
        let app = uri.user.and_then(|u| self.app_for(u));
        if matches!(method, Method::Publish) || (method == Method::Subscribe && app.is_none()) {
            // a remote user's publication goes where its device is registered (it names the
            // device by its connection there)
            let own = uri.user.map(|u| {
                format!(
                    "{}@{}",
                    sip_proto::unescape(u),
                    uri.host.to_ascii_lowercase()
                )
            });
            if let Some(target) = own
                .filter(|_| method == Method::Publish)
                .and_then(|aor| self.remote_users_server(ctx, &aor))
            {
                self.forward_single(now, ctx, target);
                return Flow::Stop;
            }
            self.presence_request(now, ctx, &uri);
            return Flow::Stop;
        }
        if let Some(app) = app {
            // a meeting is hosted by the pool owning its directory; the pool's applications
            // run on one of its servers: the others pass calls there
            let host = uri
                .user
                .and_then(|u| self.meeting_host(u))
                .or_else(|| self.application_server());
            match host.filter(|_| !self.is_peer_forwarded(ctx)) {
                Some(owner) => self.forward_single(now, ctx, owner),
                None => self.app_request(now, ctx, app, None),
            }
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
        let user = sip_proto::unescape(user);
        if ctx.dialling || (ctx.trunk.is_some() && looks_like_number(&user)) {
            self.dial(now, ctx, &user);
            return Flow::Stop;
        }
        let domain = if self.cfg.serves_domain(uri.host) {
            uri.host.to_ascii_lowercase()
        } else {
            self.cfg.realm().to_owned()
        };
        let aor = format!("{user}@{domain}");
        if let Some(Some(None)) = looks_like_number(&user).then(|| self.lookup_user(now, ctx, &aor))
        {
            // digits that name no user: a number dialled
            self.dial(now, ctx, &user);
            return Flow::Stop;
        }
        self.deliver_to(now, ctx, &aor, &uri_text, true);
        Flow::Stop
    }

    /// A request for our user `aor` (Request-URI `uri_text`) from one allowed to reach them:
    /// every device (here and at the pool's other servers), and with `forwarding` the user's
    /// call forwarding and simultaneous ring (a forwarded call is not forwarded again).
    /// Answers or parks.
    pub(super) fn deliver_to(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        aor: &str,
        uri_text: &str,
        forwarding: bool,
    ) {
        let user = match self.lookup_user(now, ctx, aor) {
            Some(Some(u))
                if ctx.origin.is_external() && !self.federation_allowed(&ctx.origin, u.access) =>
            {
                let reason =
                    "Forbidden (the user does not take federated communications by policy)";
                return self.respond(now, ctx, 403, reason, &[]);
            }
            Some(Some(u)) => u,
            Some(None) => return self.respond(now, ctx, 404, "Not Found (no such user)", &[]),
            None => return,
        };
        if ctx.origin.is_unverified() && self.sender_is_a_contact(now, ctx, aor) != Some(true) {
            return; // refused, or parked while the list is read
        }
        let forwards = forwarding.then(|| self.forwarding_of(ctx, &user)).flatten();
        if let Some(to) = forwards.as_ref().and_then(|f| f.immediate.as_ref()) {
            return self.forward_now(now, ctx, &user, to, "immediate");
        }
        let Some(found) = self.find_targets(now, ctx, aor, uri_text) else {
            return; // parked
        };
        if let Some(f) = forwards {
            return self.ring_forwarding(now, ctx, &user, &f, found);
        }
        let reason = if found.registered == 0 {
            "Temporarily Unavailable (no device registered)"
        } else if found.targets.is_empty() {
            "Temporarily Unavailable (no reachable device)"
        } else {
            return self.fork(now, ctx, found.targets);
        };
        self.respond(now, ctx, 480, reason, &[]);
    }

    /// A request for another organisation's domain: to an Edge when federation is on and
    /// the user may use it.
    fn forward_to_federation(&mut self, now: Now, ctx: &mut Ctx, domain: &str) {
        let edges = &self.cfg.federation_edges;
        if edges.is_empty() || matches!(ctx.origin, Origin::Federated { .. }) {
            let reason = format!(
                "Forbidden (federation is not enabled: domain {domain} is not served here)"
            );
            self.respond(now, ctx, 403, &reason, &[]);
            return;
        }
        if !ctx
            .access
            .federation
            .unwrap_or(self.cfg.external_access.federation)
        {
            let reason = "Forbidden (federation is not allowed for this user by policy)";
            self.respond(now, ctx, 403, reason, &[]);
            return;
        }
        if let Some(target) = crate::routing::server_for_call(&ctx.msg, edges) {
            self.forward_single(now, ctx, target);
        }
    }

    /// For a request from a partner nobody vouched for: whether `aor` has the sender as a
    /// contact (if not, it is refused here); `None` while the list is read (parked).
    fn sender_is_a_contact(&mut self, now: Now, ctx: &mut Ctx, aor: &str) -> Option<bool> {
        let list = match self.fetch_contacts(ctx, aor) {
            Fetch::Ready(Ok(list)) => list,
            Fetch::Ready(Err(e)) => {
                tracing::warn!(event = "store.error", %aor, error = %e, "cannot read the contact list");
                self.respond(
                    now,
                    ctx,
                    500,
                    "Server Internal Error (cannot read the contact list)",
                    &[],
                );
                return Some(false);
            }
            Fetch::Parked => return None,
        };
        let sender = ctx
            .msg
            .from()
            .ok()
            .and_then(|f| {
                f.uri
                    .as_sip()
                    .map(|u| format!("{}@{}", u.user.unwrap_or(""), u.host))
            })
            .unwrap_or_default()
            .to_ascii_lowercase();
        if list.iter().any(|c| c.aor.eq_ignore_ascii_case(&sender)) {
            return Some(true);
        }
        let reason = format!(
            "Forbidden (an unverified sender: {sender} came through a hosting provider that does not vouch for it, and is not in the user's contacts)"
        );
        self.respond(now, ctx, 403, &reason, &[]);
        Some(false)
    }

    /// Whether a request from a partner may reach a user with `access` (remote users of ours
    /// are not federated).
    fn federation_allowed(&self, origin: &Origin, access: confab_store::Access) -> bool {
        !matches!(origin, Origin::Federated { .. })
            || access
                .federation
                .unwrap_or(self.cfg.external_access.federation)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::sim::Sim;

    /// A MESSAGE from carol at a hosting provider's domain, as a Director or the Edge passes
    /// it on: marked federated, and unverified when `unverified`.
    fn from_provider(seq: u32, unverified: bool) -> String {
        let mark = if unverified { ";unverified" } else { "" };
        format!(
            "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.50:5061;branch=z9hG4bKpv{seq}\r\nMax-Forwards: 70\r\nFrom: <sip:carol@push.example.net>;tag=c{seq}\r\nTo: <sip:bob@example.com>\r\nCall-ID: pv{seq}@push.example.net\r\nCSeq: {seq} MESSAGE\r\nConfab-Origin: federated;domain=push.example.net{mark}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
    }

    #[test]
    fn an_unverified_partner_reaches_only_users_who_have_the_sender_as_a_contact() {
        let mut s = Sim::with_users(&["bob"], &[("bob", "127.0.0.9:5070")]);
        s.arriving_from_peers(true);
        s.send("127.0.0.50:5061", &from_provider(1, true));
        let answers = s.take_to("127.0.0.50:5061");
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert_eq!(answers[0].status(), 403);
        assert!(
            answers[0].reason().contains("carol@push.example.net")
                && answers[0].reason().contains("not in the user's contacts"),
            "{}",
            answers[0].reason()
        );
        assert!(s.take_to("127.0.0.9:5070").is_empty(), "bob got nothing");

        // vouched for: delivered whatever bob's list holds
        s.send("127.0.0.50:5061", &from_provider(2, false));
        assert_eq!(s.take_to("127.0.0.9:5070").len(), 1);

        // unverified, once bob has carol as a contact: delivered
        s.engine
            .store
            .add_contact("bob@example.com", "carol@push.example.net", None)
            .unwrap();
        s.send("127.0.0.50:5061", &from_provider(3, true));
        let to_bob = s.take_to("127.0.0.9:5070");
        assert_eq!(to_bob.len(), 1);
        assert_eq!(to_bob[0].call_id().ok(), Some("pv3@push.example.net"));
    }
}
