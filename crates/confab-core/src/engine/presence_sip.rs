//! The engine's side of presence: takes PUBLISH and SUBSCRIBE apart for the presence agent,
//! answers them, and turns the agent's notices into NOTIFY client transactions.

use sip_proto::header::NameAddr;
use sip_proto::{HeaderName, Message, Method, SipUri, Uri};
use sip_transport::{Target, Transport};

use super::{ClientRole, Ctx, Engine, Now};
use crate::presence::{
    dialog_key, list_owner_user, Dialog, Notice, PublishRequest, Refusal, Resource, SubState,
};
use crate::routing::{our_port, uri_target};

/// Event packages served here.
const ALLOW_EVENTS: &str = "presence, presence.winfo";

impl Engine {
    /// A PUBLISH or an initial SUBSCRIBE addressed to `uri`, one of our domains. The sender
    /// is authenticated (From).
    pub(super) fn presence_request(&mut self, now: Now, ctx: &mut Ctx, uri: &SipUri<'_>) {
        let Some(user) = uri.user.map(sip_proto::unescape) else {
            self.respond(now, ctx, 404, "Not Found (no user in the Request-URI)", &[]);
            return;
        };
        let domain = uri.host.to_ascii_lowercase();
        let sender = ctx
            .msg
            .from()
            .ok()
            .and_then(|f| f.uri.as_sip().map(SipUri::aor))
            .unwrap_or_default();
        let event = ctx
            .msg
            .header_str(HeaderName::Event)
            .ok()
            .flatten()
            .unwrap_or("")
            .to_owned();
        let package = event.split(';').next().unwrap_or("").trim().to_owned();
        let bad_event = |what: &str| -> Refusal {
            (
                489,
                format!("Bad Event ({what}; this server serves {ALLOW_EVENTS})"),
                vec![("Allow-Events", ALLOW_EVENTS.to_owned())],
            )
        };
        let result = if ctx.msg.method() == Method::Publish {
            if package != "presence" {
                Err(bad_event(&describe_event(&package)))
            } else {
                self.publish(now, ctx, &format!("{user}@{domain}"), &sender)
            }
        } else {
            match package.as_str() {
                "presence" | "presence.winfo" => {
                    self.subscribe(now, ctx, &user, &domain, &sender, &package, &event)
                }
                other => Err(bad_event(&describe_event(other))),
            }
        };
        if let Err((code, reason, extra)) = result {
            if code >= 400 {
                tracing::debug!(event = "presence.refused", code, reason = %reason, user = %sender);
            }
            self.respond(now, ctx, code, &reason, &extra);
        }
        self.flush_presence(now);
    }

    fn publish(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        presentity: &str,
        sender: &str,
    ) -> Result<(), Refusal> {
        if presentity != sender {
            return Err((
                403,
                "Forbidden (a user can publish only its own presence)".into(),
                Vec::new(),
            ));
        }
        self.existing_user(now, ctx, presentity)?;
        let expires = ctx
            .msg
            .expires()
            .map_err(|e| (400, format!("Bad Request ({e})"), Vec::new()))?;
        let etag = ctx.msg.header_named("SIP-If-Match").map(str::trim);
        let content_type = ctx.msg.header_str(HeaderName::ContentType).ok().flatten();
        let device = self.device_of(presentity, ctx);
        let req = PublishRequest {
            etag,
            expires,
            content_type,
            body: ctx.msg.body(),
            device,
        };
        let (etag, granted) =
            self.presence
                .publish(self.store.as_ref(), now.unix, presentity, req)?;
        tracing::debug!(event = "presence.published", user = %presentity, expires = granted);
        let extra = [("SIP-ETag", etag), ("Expires", granted.to_string())];
        self.respond(now, ctx, 200, "OK", &extra);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        user: &str,
        domain: &str,
        watcher: &str,
        package: &str,
        event: &str,
    ) -> Result<(), Refusal> {
        let bad = |what: &str| (400, format!("Bad Request ({what})"), Vec::new());
        let resource = match (package, list_owner_user(user)) {
            ("presence.winfo", _) => {
                let aor = format!("{user}@{domain}");
                if aor != watcher {
                    return Err((
                        403,
                        "Forbidden (watcher information is only for the user itself)".into(),
                        Vec::new(),
                    ));
                }
                Resource::Winfo(aor)
            }
            (_, Some(owner)) => {
                let owner = format!("{owner}@{domain}");
                if owner != watcher {
                    return Err((
                        403,
                        "Forbidden (a contact list is only for its owner)".into(),
                        Vec::new(),
                    ));
                }
                let eventlist = ctx
                    .msg
                    .values(HeaderName::Supported)
                    .chain(ctx.msg.values(HeaderName::Require))
                    .any(|v| v.is_ok_and(|v| v.eq_ignore_ascii_case("eventlist")));
                if !eventlist {
                    return Err((
                        421,
                        "Extension Required (a contact-list subscription needs Supported: eventlist)"
                            .into(),
                        vec![("Require", "eventlist".to_owned())],
                    ));
                }
                Resource::List(owner)
            }
            _ => {
                let aor = format!("{user}@{domain}");
                self.existing_user(now, ctx, &aor)?;
                Resource::User(aor)
            }
        };
        let expires = ctx.msg.expires().map_err(|e| bad(&e.to_string()))?;
        let from = ctx.msg.from().map_err(|e| bad(&e.to_string()))?;
        let remote_tag = from.tag().ok_or_else(|| bad("From has no tag"))?.to_owned();
        let remote_uri = from.uri_text.to_owned();
        let local_uri = ctx
            .msg
            .to()
            .map_err(|e| bad(&e.to_string()))?
            .uri_text
            .to_owned();
        let contacts = ctx.msg.contacts().map_err(|e| bad(&e.to_string()))?;
        let remote_target = contacts
            .iter()
            .find_map(|c| match c {
                sip_proto::header::ContactValue::Addr(a) => Some(a.uri_text.to_owned()),
                sip_proto::header::ContactValue::Star => None,
            })
            .ok_or_else(|| bad("SUBSCRIBE needs a Contact"))?;
        let route_set = ctx
            .msg
            .values(HeaderName::RecordRoute)
            .filter_map(Result::ok)
            .map(str::to_owned)
            .collect();
        let dialog = Dialog {
            call_id: ctx
                .msg
                .call_id()
                .map_err(|e| bad(&e.to_string()))?
                .to_owned(),
            local_tag: self.to_tag(&ctx.msg),
            remote_tag,
            local_uri,
            remote_uri,
            remote_target,
            route_set,
            cseq: 0,
            remote_cseq: ctx.msg.cseq().map(|c| c.seq).unwrap_or(0),
            event: event.trim().to_owned(),
            transport: ctx.source.transport.param().to_owned(),
            source: ctx.source.remote.to_string(),
            flow: ctx.source.flow,
        };
        let list = matches!(resource, Resource::List(_));
        let what = format!("{resource:?}");
        let (_, granted) = self.presence.subscribe(
            self.store.as_ref(),
            now.unix,
            watcher,
            resource,
            dialog,
            expires,
        )?;
        tracing::info!(event = "presence.subscribed", watcher = %watcher, resource = %what, expires = granted);
        let mut extra = vec![
            ("Expires", granted.to_string()),
            ("Contact", self.own_contact(ctx.source.transport)),
        ];
        if list {
            extra.push(("Require", "eventlist".to_owned()));
        }
        // the 200 goes out before the first NOTIFY (flushed by the caller)
        self.respond(now, ctx, 200, "OK", &extra);
        Ok(())
    }

    /// A SUBSCRIBE within a dialog: when it is one of ours, refresh or unsubscribe. Returns
    /// false when the dialog is not a subscription here.
    pub(super) fn presence_resubscribe(&mut self, now: Now, ctx: &mut Ctx) -> bool {
        let (Ok(call_id), Ok(to), Ok(from)) = (ctx.msg.call_id(), ctx.msg.to(), ctx.msg.from())
        else {
            return false;
        };
        let key = dialog_key(call_id, to.tag().unwrap_or(""), from.tag().unwrap_or(""));
        if !self.presence.has_dialog(&key) {
            return false;
        }
        let cseq = ctx.msg.cseq().map(|c| c.seq).unwrap_or(0);
        let contact = ctx.msg.contacts().ok().and_then(|cs| {
            cs.iter().find_map(|c| match c {
                sip_proto::header::ContactValue::Addr(a) => Some(a.uri_text.to_owned()),
                sip_proto::header::ContactValue::Star => None,
            })
        });
        let result = match ctx.msg.expires() {
            Ok(expires) => self.presence.resubscribe(
                self.store.as_ref(),
                now.unix,
                &key,
                cseq,
                expires,
                contact,
            ),
            Err(e) => Err((400, format!("Bad Request ({e})"), Vec::new())),
        };
        match result {
            Ok(granted) => {
                let extra = [
                    ("Expires", granted.to_string()),
                    ("Contact", self.own_contact(ctx.source.transport)),
                ];
                self.respond(now, ctx, 200, "OK", &extra);
            }
            Err((code, reason, extra)) => self.respond(now, ctx, code, &reason, &extra),
        }
        self.flush_presence(now);
        true
    }

    /// Sends every queued notice as a NOTIFY.
    pub(super) fn flush_presence(&mut self, now: Now) {
        while let Some(n) = self.presence.poll_notice() {
            self.send_notify(now, n);
        }
    }

    fn send_notify(&mut self, now: Now, n: Notice) {
        let d = &n.dialog;
        let Some(target) = self.notify_target(d) else {
            tracing::warn!(event = "presence.unreachable", target = %d.remote_target, "watcher's Contact cannot be reached; subscription dropped");
            self.presence
                .notify_failed(self.store.as_ref(), now.unix, n.sub);
            return;
        };
        let branch = format!(
            "{}n{:x}{}",
            sip_proto::header::MAGIC_COOKIE,
            self.next_id(),
            self.mark()
        );
        let mut w = self.request_from_us("NOTIFY", &d.remote_target, target, &branch);
        w.header("Max-Forwards", "70");
        for r in &d.route_set {
            w.header("Route", r);
        }
        w.header("From", format!("<{}>;tag={}", d.local_uri, d.local_tag));
        w.header("To", format!("<{}>;tag={}", d.remote_uri, d.remote_tag));
        w.header("Call-ID", &d.call_id);
        w.header("CSeq", format!("{} NOTIFY", d.cseq));
        w.header("Contact", self.own_contact(target.transport));
        w.header("Event", &d.event);
        w.header(
            "Subscription-State",
            match n.state {
                SubState::Active { expires } => format!("active;expires={expires}"),
                SubState::Terminated(reason) => format!("terminated;reason={reason}"),
            },
        );
        w.header("Content-Type", &*n.content_type);
        w.header("User-Agent", &self.cfg.server_name);
        let req = w.finish_message(n.body.as_bytes());
        let key = sip_proto::transaction::client_key(&branch, "NOTIFY");
        let role = match n.state {
            SubState::Active { .. } => ClientRole::Notify { sub: Some(n.sub) },
            SubState::Terminated(_) => ClientRole::Notify { sub: None },
        };
        self.start_client(now, key, req, target, role);
    }

    /// Where a NOTIFY goes: the first Route, the watcher's open connection, or its Contact.
    fn notify_target(&self, d: &Dialog) -> Option<Target> {
        let transport = Transport::from_name(&d.transport).unwrap_or(Transport::Udp);
        if let Some(first) = d.route_set.first() {
            let na = NameAddr::parse(first, "Record-Route").ok()?;
            return uri_target(na.uri.as_sip()?, transport);
        }
        let source = d.source.parse().ok();
        if transport.is_reliable() {
            if let (Some(flow), Some(addr)) = (d.flow.filter(|f| self.flow_is_open(*f)), source) {
                return Some(Target {
                    transport,
                    addr,
                    flow: Some(flow),
                });
            }
        }
        let uri = Uri::parse(&d.remote_target).ok()?;
        uri_target(uri.as_sip()?, transport).or_else(|| {
            source.map(|addr| Target {
                transport,
                addr,
                flow: None,
            })
        })
    }

    /// Our Contact for dialogs on `transport`.
    fn own_contact(&self, transport: Transport) -> String {
        format!(
            "<sip:{}:{};transport={}>",
            self.cfg.advertised_host,
            our_port(&self.cfg, transport),
            transport.param()
        )
    }

    /// 404 unless `aor` is a user; a store failure is a 503 or 500 (`lookup_refusal`).
    fn existing_user(&mut self, now: Now, ctx: &mut Ctx, aor: &str) -> Result<(), Refusal> {
        match self.store.user(aor) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err((404, "Not Found (no such user)".into(), Vec::new())),
            Err(e) => {
                let _ = (now, ctx);
                let (code, reason, extra) = super::auth::lookup_refusal(aor, &e);
                Err((code, reason.into(), extra))
            }
        }
    }

    /// The registered device a request came from: the binding with the same connection or
    /// source address.
    fn device_of(&self, aor: &str, ctx: &Ctx) -> Option<String> {
        self.shared
            .location
            .of(aor)
            .lookup(aor)
            .iter()
            .find(|b| {
                (ctx.source.flow.is_some() && b.flow == ctx.source.flow)
                    || b.source() == Some(ctx.source.remote)
            })
            .map(|b| b.rec.key.clone())
    }

    /// Tells the presence agent which devices `aor` has now.
    pub(super) fn devices_changed(&mut self, now: Now, aor: &str) {
        let mut keys: Vec<String> = self
            .shared
            .location
            .of(aor)
            .lookup(aor)
            .iter()
            .map(|b| b.rec.key.clone())
            .collect();
        if !self.cfg.peers.is_empty() {
            // devices registered at the other servers count too (a lost database: ours only)
            if let Ok(rows) = self.store.bindings(now.unix, Some(aor)) {
                keys = rows.into_iter().map(|b| b.key).collect();
            }
        }
        self.presence
            .devices_changed(self.store.as_ref(), now.unix, aor, keys);
        self.flush_presence(now);
    }

    /// Our users among the caller and callee of `invite`, with its Call-ID.
    pub(super) fn call_parties(&self, invite: &Message) -> (String, Vec<String>) {
        let mut aors = Vec::new();
        for na in [invite.from(), invite.to()].into_iter().flatten() {
            if let Some(u) = na.uri.as_sip() {
                if u.user.is_some() && self.cfg.serves_domain(u.host) {
                    aors.push(u.aor());
                }
            }
        }
        aors.dedup();
        (invite.call_id().unwrap_or_default().to_owned(), aors)
    }

    /// A proxied INVITE was answered 2xx: its parties are in a call.
    pub(super) fn call_answered(&mut self, now: Now, call_id: &str, parties: Vec<String>) {
        if call_id.is_empty() {
            return;
        }
        self.presence
            .call_started(self.store.as_ref(), now.unix, call_id, parties);
        self.flush_presence(now);
    }

    /// A BYE passed through: the call is over.
    pub(super) fn call_over(&mut self, now: Now, call_id: &str) {
        self.presence
            .call_ended(self.store.as_ref(), now.unix, call_id);
        self.flush_presence(now);
    }
}

/// "Event header missing" or "unknown event package 'x'".
fn describe_event(package: &str) -> String {
    if package.is_empty() {
        "Event header missing".into()
    } else {
        format!(
            "unknown event package '{}'",
            package.chars().take(40).collect::<String>()
        )
    }
}
