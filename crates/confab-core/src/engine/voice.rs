//! Enterprise voice in the request path (`crate::voice` holds the configuration and the
//! gateways): a Request-URI that is a number (a `tel:` URI, `user=phone`, or digits that name
//! no user) is normalized with the caller's dial plan; a colleague's number reaches the
//! colleague; any other goes out through the routes the caller's voice policy allows, trunk
//! after trunk (`fork` in serial, failing over on 408/503/504 and on silence). Calls from a
//! trunk's gateway (trusted by address) reach the number's owner. The configuration is read
//! again by housekeeping, so a change applies without a restart, and gateways are probed
//! with OPTIONS and skipped while they do not answer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use confab_store::User;
use confab_voice::{NoRoute, Placement, Routing};
use sip_proto::transaction::client_key;
use sip_proto::{Method, Uri};

use super::park::{Answer, Fetch};
use super::targets::ForkTarget;
use super::txn::ClientRole;
use super::{Ctx, Engine, Now};
use crate::voice::{TrunkChoice, VoiceState};

/// Probes between two DNS lookups of gateways named by host name.
const RESOLVE_EVERY_PROBES: u32 = 10;

/// Where a number leads.
pub(super) enum Reached {
    /// A user here holds it.
    User(String),
    /// An application holds it (a response-group workflow, the conferencing attendant): its
    /// SIP address.
    Application(String),
    /// Out through these trunks, in order.
    Trunks(Vec<ForkTarget>),
    /// Nowhere: the status and reason phrase.
    Refused(u16, String),
    /// Waiting for the database.
    Parked,
}

/// How a call goes out on one trunk: the caller's identity as the gateway sees it, and how
/// long the gateway may stay silent before the next trunk is tried.
#[derive(Debug, Clone)]
pub(super) struct PstnLeg {
    /// P-Asserted-Identity (RFC 3325): the caller's number, or the route's replacement.
    pub(super) asserted: Option<String>,
    /// The same in From (the trunk's `caller_in_from`).
    pub(super) from: Option<String>,
    /// The route withholds the caller's identity: `Privacy: id`.
    pub(super) private: bool,
    pub(super) failover_after: Duration,
    /// The voice route and trunk (for the call's record).
    pub(super) route: String,
    pub(super) trunk: String,
}

impl Engine {
    /// The voice configuration in force, if any (a new one published by housekeeping is
    /// picked up here by its generation: one atomic read per call).
    pub(super) fn voice_state(&mut self) -> Option<Arc<VoiceState>> {
        let generation = self.shared.voice_generation.load(Ordering::Acquire);
        if generation != self.voice_generation {
            self.voice = self
                .shared
                .voice
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            self.voice_generation = generation;
        }
        self.voice.clone()
    }

    /// The trunk whose gateway sent `ctx`'s request (trusted by its address instead of
    /// digest), for requests a gateway makes: not sign-ins, publications or subscriptions.
    pub(super) fn gateway_of(&mut self, ctx: &Ctx) -> Option<usize> {
        if matches!(
            ctx.msg.method(),
            Method::Register | Method::Publish | Method::Subscribe
        ) {
            return None;
        }
        let state = self.voice_state()?;
        state.trunk_at(ctx.source.remote.ip())
    }

    /// A Request-URI that is the number `dialled`: to its owner here, or out to the phone
    /// network (from a gateway: only to its owner). Answers or parks.
    pub(super) fn dial(&mut self, now: Now, ctx: &mut Ctx, dialled: &str) {
        ctx.dialling = true;
        let Some(state) = self.voice_state() else {
            let reason = "Not Found (numbers are not routed here: no enterprise voice configuration, see confab voice apply)";
            return self.respond(now, ctx, 404, reason, &[]);
        };
        if let Some(trunk) = ctx.trunk {
            return self.inbound(now, ctx, &state, trunk, dialled);
        }
        let caller_aor = ctx
            .msg
            .from()
            .ok()
            .and_then(|f| f.uri.as_sip().map(|u| u.aor()))
            .unwrap_or_default();
        let workflow = if self.is_own_spiral(&ctx.msg) {
            self.workflow_caller(&caller_aor)
        } else {
            None
        };
        let caller = match workflow {
            Some(w) => w,
            None => match self.lookup_user(now, ctx, &caller_aor) {
                Some(Some(u)) => u,
                Some(None) => {
                    let reason = "Forbidden (only users of this deployment call numbers)";
                    return self.respond(now, ctx, 403, reason, &[]);
                }
                None => return, // parked, or answered
            },
        };
        let reached = self.reach_number(ctx, &state, &caller, dialled);
        self.go(now, ctx, reached, true);
    }

    /// Carries out where a number led: its holder's devices (their own forwarding applies when
    /// `forwarding`), the trunks, or the refusal.
    pub(super) fn go(&mut self, now: Now, ctx: &mut Ctx, reached: Reached, forwarding: bool) {
        match reached {
            Reached::User(owner) => {
                let uri = format!("sip:{owner}");
                self.deliver_to(now, ctx, &owner, &uri, forwarding);
            }
            Reached::Application(address) => self.call_application(now, ctx, &address),
            Reached::Trunks(targets) => self.fork(now, ctx, targets),
            Reached::Refused(503, reason) => {
                self.respond(now, ctx, 503, &reason, &[("Retry-After", "30".into())])
            }
            Reached::Refused(code, reason) => self.respond(now, ctx, code, &reason, &[]),
            Reached::Parked => {}
        }
    }

    /// Where a call from `caller` to `dialled` goes: emergency numbers out for everyone; else
    /// the caller's dial plan, the number's holder here, or the routes the caller's voice
    /// policy allows (a caller enabled for enterprise voice, a call).
    pub(super) fn reach_number(
        &mut self,
        ctx: &mut Ctx,
        state: &VoiceState,
        caller: &User,
        dialled: &str,
    ) -> Reached {
        let at = self.placement(caller);
        if let Some((number, routing)) = state.voice.emergency(&at, dialled) {
            // every user, voice-enabled or not, whatever the policy
            return self.route_out(state, caller, &number, &routing);
        }
        let number = match state.voice.normalize(&at, dialled) {
            Ok(n) => n.number,
            Err(e) => return Reached::Refused(484, format!("Address Incomplete ({e})")),
        };
        if let Some(address) = self.application_of_number(&number) {
            return Reached::Application(address);
        }
        match self.owner_of(ctx, state, &number) {
            Ok(Some(owner)) => return Reached::User(owner),
            Ok(None) => {}
            Err(stop) => return stop,
        }
        if !caller.voice.enabled {
            return Reached::Refused(
                403,
                format!(
                    "Forbidden ({} is not enabled for enterprise voice: {number} is outside)",
                    caller.aor
                ),
            );
        }
        if ctx.msg.method() != Method::Invite {
            let reason = format!("Not Found ({number} is a phone number: only calls go there)");
            return Reached::Refused(404, reason);
        }
        match state.voice.routes_for(&at, &number) {
            Ok(routing) => self.route_out(state, caller, &number, &routing),
            Err(e @ NoRoute::NoMatch { .. }) => Reached::Refused(404, format!("Not Found ({e})")),
            Err(e) => Reached::Refused(403, format!("Forbidden ({e})")),
        }
    }

    /// A call from trunk `trunk`'s gateway to `dialled`: the trunk's inbound rules, then the
    /// number's owner (never out again: no transit between trunks).
    fn inbound(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        state: &VoiceState,
        trunk: usize,
        dialled: &str,
    ) {
        let name = state.voice.config().trunks[trunk].name.clone();
        if self.is_own_spiral(&ctx.msg) {
            let reason = format!("Loop Detected (trunk {name}'s gateway sent our own call back here: it points at this server)");
            return self.respond(now, ctx, 482, &reason, &[]);
        }
        let translated = state.voice.from_trunk(&name, dialled);
        let reached = match state.voice.normalize_with(None, &translated) {
            Err(e) => Reached::Refused(
                404,
                format!("Not Found (from trunk {name}: {e}; add an inbound rule to the trunk)"),
            ),
            Ok(n) if self.application_of_number(&n.number).is_some() => {
                Reached::Application(self.application_of_number(&n.number).unwrap_or_default())
            }
            Ok(n) => match self.owner_of(ctx, state, &n.number) {
                Ok(Some(owner)) => Reached::User(owner),
                Ok(None) => Reached::Refused(
                    404,
                    format!("Not Found ({} is not assigned to anyone)", n.number),
                ),
                Err(stop) => stop,
            },
        };
        self.go(now, ctx, reached, true);
    }

    /// Who answers calls to `number` here: its holder, or for a number in an unassigned
    /// range, the holder of the range's destination. `Err` when parked or refused.
    fn owner_of(
        &mut self,
        ctx: &mut Ctx,
        state: &VoiceState,
        number: &str,
    ) -> Result<Option<String>, Reached> {
        if let Some((_, owner)) = ctx.owners.iter().find(|(n, _)| n == number) {
            return Ok(owner.clone());
        }
        let line = match state.voice.unassigned(number) {
            Some(u) => match &u.destination {
                Some(d) => confab_voice::line_uri(d).unwrap_or_else(|_| d.clone()),
                None => {
                    return Err(Reached::Refused(
                        404,
                        format!(
                            "Not Found ({number} is an unassigned number, range {})",
                            u.name
                        ),
                    ))
                }
            },
            None => format!("tel:{number}"),
        };
        let owner = match self.fetch_number_owner(ctx, &line) {
            Fetch::Parked => return Err(Reached::Parked),
            Fetch::Ready(Ok(owner)) => owner,
            Fetch::Ready(Err(e)) => {
                tracing::warn!(event = "store.error", %number, error = %e, "cannot look up the number's owner");
                let reason = "Server Internal Error (cannot look up the number's owner)";
                return Err(Reached::Refused(500, reason.into()));
            }
        };
        if owner.is_none() && line != format!("tel:{number}") {
            return Err(Reached::Refused(
                404,
                format!(
                    "Not Found ({number} is unassigned and its destination {line} has no holder)"
                ),
            ));
        }
        ctx.owners.push((number.to_owned(), owner.clone()));
        Ok(owner)
    }

    /// Out to the phone network: the routing's trunks in turn, serially.
    fn route_out(
        &mut self,
        state: &VoiceState,
        caller: &User,
        number: &str,
        routing: &Routing,
    ) -> Reached {
        let (trunks, down) = state.trunks_for(routing);
        if trunks.is_empty() {
            let routes: Vec<&str> = routing
                .candidates
                .iter()
                .map(|c| c.route.as_str())
                .collect();
            let reason = if routes.is_empty() {
                format!("Service Unavailable (no route serves {number})")
            } else {
                format!(
                    "Service Unavailable (every gateway of route {} for {number} is down: {down} trunk(s) not answering their probes or not resolved)",
                    routes.join(", ")
                )
            };
            return Reached::Refused(503, reason);
        }
        let names = |t: &TrunkChoice| {
            let c = state.voice.config();
            format!("{}/{}", c.routes[t.route].name, c.trunks[t.trunk].name)
        };
        tracing::info!(
            event = "voice.route_out",
            caller = %caller.aor,
            %number,
            policy = routing.policy.as_deref().unwrap_or("(emergency)"),
            trunks = ?trunks.iter().map(names).collect::<Vec<_>>(),
            "call to the phone network"
        );
        Reached::Trunks(
            trunks
                .iter()
                .map(|t| self.pstn_target(state, caller, number, t))
                .collect(),
        )
    }

    /// The branch toward one trunk's gateway: the number as the trunk writes it, the caller's
    /// identity as the route says.
    fn pstn_target(
        &self,
        state: &VoiceState,
        caller: &User,
        number: &str,
        t: &TrunkChoice,
    ) -> ForkTarget {
        let cfg = state.voice.config();
        let trunk = &cfg.trunks[t.trunk];
        let gateway = &state.gateways[t.trunk];
        let called = state.voice.on_trunk(&trunk.name, number, false);
        let own = caller.voice.line_uri.as_deref().map(bare_number);
        let shown = match &cfg.routes[t.route].caller_id {
            confab_voice::CallerId::Keep => own,
            confab_voice::CallerId::Replace(n) => Some(bare_number(n)),
            confab_voice::CallerId::Suppress => None,
        };
        let asserted = shown.map(|n| {
            let n = state.voice.on_trunk(&trunk.name, n, true);
            format!("<sip:{n}@{};user=phone>", self.cfg.realm())
        });
        let leg = PstnLeg {
            from: asserted.clone().filter(|_| trunk.caller_in_from),
            private: matches!(
                cfg.routes[t.route].caller_id,
                confab_voice::CallerId::Suppress
            ),
            asserted,
            failover_after: gateway.failover_after,
            route: cfg.routes[t.route].name.clone(),
            trunk: trunk.name.clone(),
        };
        ForkTarget {
            uri: format!(
                "sip:{called}@{}:{};user=phone",
                uri_host(&gateway.host),
                gateway.port
            ),
            path: Vec::new(),
            target: t.target,
            binding: None,
            pstn: Some(Box::new(leg)),
        }
    }

    /// Where a user sits, for the dial plan and voice policy that apply.
    fn placement(&self, u: &User) -> Placement {
        let site = u.pool.as_ref().and_then(|p| {
            (self.cfg.pool_sites.iter())
                .find(|(pool, _)| pool.eq_ignore_ascii_case(p))
                .map(|(_, site)| site.clone())
        });
        Placement {
            dial_plan: u.voice.dial_plan.clone(),
            voice_policy: u.voice.voice_policy.clone(),
            pool: u.pool.clone(),
            site,
        }
    }
}

/// Housekeeping's side: the configuration read again, gateways resolved and probed.
impl Engine {
    /// Reads the voice configuration inline (an embedded database; with a remote one it is
    /// housekeeping's `Op::Voice` job).
    pub(super) fn read_voice(&mut self) {
        let text = crate::voice::stored(self.store.as_ref());
        self.voice_read(text);
    }

    /// The stored document: compiled and published to every shard when it changed.
    pub(super) fn voice_read(&mut self, text: confab_store::Result<Option<String>>) {
        let text = match text {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "cannot read the voice configuration; the one in force stays");
                return;
            }
        };
        let current = self.voice_state();
        if current.as_ref().map_or("", |s| s.text.as_str()) == text {
            return;
        }
        if text.trim().is_empty() {
            tracing::info!(
                event = "voice.config",
                "no enterprise voice configuration: numbers are not routed"
            );
            return self.publish_voice(None);
        }
        match VoiceState::load(&text) {
            Ok(state) => {
                tracing::info!(
                    event = "voice.config",
                    trunks = state.gateways.len(),
                    routes = state.voice.config().routes.len(),
                    "voice configuration in force"
                );
                self.resolves.extend(state.names_to_resolve());
                self.publish_voice(Some(state));
            }
            Err(e) => {
                tracing::error!(event = "voice.config_invalid", error = %e, "the stored voice configuration does not pass its checks; the one in force stays (confab voice check)");
            }
        }
    }

    fn publish_voice(&mut self, state: Option<VoiceState>) {
        // a TLS gateway's certificate must name its host (checked by the transports on every
        // connection to it)
        for g in state.iter().flat_map(|s| &s.gateways) {
            if g.transport == sip_transport::Transport::Tls {
                let name = g.host.trim_matches(['[', ']']).to_ascii_lowercase();
                for addr in &g.addrs {
                    self.partner_names.push((*addr, name.clone()));
                }
            }
        }
        *self
            .shared
            .voice
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state.map(Arc::new);
        self.shared.voice_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// A gateway host name for the driver to look up (see [`Engine::gateway_resolved`]).
    pub fn poll_resolve(&mut self) -> Option<String> {
        self.resolves.pop()
    }

    /// What DNS gave for a gateway's host name.
    pub(super) fn gateway_resolved(&mut self, host: &str, found: Result<Vec<SocketAddr>, String>) {
        let Some(state) = self.voice_state() else {
            return;
        };
        match found {
            Ok(addrs) if !addrs.is_empty() => {
                tracing::info!(event = "voice.gateway_resolved", %host, ?addrs);
                if let Some(next) = state.with_addresses(host, &addrs) {
                    self.publish_voice(Some(next));
                }
            }
            Ok(_) | Err(_) => {
                let error = found.err().unwrap_or_else(|| "no address".into());
                tracing::warn!(event = "voice.gateway_unresolved", %host, %error, "a trunk's gateway has no address: its trunk is skipped");
            }
        }
    }

    /// Every `gateway_probe`: an OPTIONS to each gateway (owner shard, from housekeeping).
    pub(super) fn probe_gateways(&mut self, now: Now) {
        let every = self.cfg.gateway_probe;
        if every.is_zero() || self.next_probe.is_some_and(|at| at > now.mono) {
            return;
        }
        self.next_probe = Some(now.mono + every);
        let Some(state) = self.voice_state() else {
            return;
        };
        self.probes += 1;
        if self.probes.is_multiple_of(RESOLVE_EVERY_PROBES) {
            self.resolves.extend(state.names_to_resolve());
        }
        let generation = self.voice_generation;
        for trunk in 0..state.gateways.len() {
            let Some(target) = state.target_of(trunk) else {
                continue;
            };
            let g = &state.gateways[trunk];
            let branch = format!(
                "{}probe-{:x}{}",
                sip_proto::header::MAGIC_COOKIE,
                self.next_id(),
                self.mark()
            );
            let uri = format!("sip:{}:{}", uri_host(&g.host), g.port);
            let mut w = self.request_from_us("OPTIONS", &uri, target, &branch);
            let tag = format!("{:x}", self.next_id() ^ self.tag_seed);
            w.header("Max-Forwards", "70");
            w.header("From", format!("<sip:{}>;tag={tag}", self.cfg.realm()));
            w.header("To", format!("<{uri}>"));
            w.header("Call-ID", format!("{branch}@{}", self.cfg.realm()));
            w.header("CSeq", "1 OPTIONS");
            let req = w.finish_message(b"");
            let key = client_key(&branch, "OPTIONS");
            let role = ClientRole::Probe { trunk, generation };
            self.start_client(now, key, req, target, role);
        }
    }

    /// A probe's outcome: any answer means the gateway is up; none (or a transport error)
    /// means down. A change is logged.
    pub(super) fn probe_answered(&mut self, trunk: usize, generation: u64, answered: bool) {
        let Some(state) = self.voice_state() else {
            return;
        };
        if generation != self.voice_generation {
            return; // for a configuration no longer in force
        }
        let Some(g) = state.gateways.get(trunk) else {
            return;
        };
        if g.mark(answered) {
            let name = &state.voice.config().trunks[trunk].name;
            if answered {
                tracing::info!(event = "voice.gateway_up", trunk = %name, gateway = %g.host, "gateway answers again: calls go to it");
            } else {
                tracing::warn!(event = "voice.gateway_down", trunk = %name, gateway = %g.host, "gateway does not answer its OPTIONS probe: skipped until it does");
            }
        }
    }

    /// Housekeeping's voice work came back from the driver.
    pub(super) fn voice_job_done(&mut self, answer: Answer) {
        match answer {
            Answer::Voice(text) => self.voice_read(text),
            Answer::Resolved(host, found) => self.gateway_resolved(&host, found),
            _ => {}
        }
    }
}

/// A gateway's host as a URI writes it: an IPv6 address in brackets.
fn uri_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

/// The number of a Line URI or `tel:` value: `tel:+14255550101;ext=101` → `+14255550101`.
fn bare_number(line: &str) -> &str {
    let n = line.strip_prefix("tel:").unwrap_or(line);
    n.split(';').next().unwrap_or(n)
}

/// Whether a Request-URI's user part is dialled digits (a number, not a user's name).
pub(super) fn looks_like_number(user: &str) -> bool {
    user.bytes().any(|b| b.is_ascii_digit())
        && user
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+*#-.() ".contains(&b))
}

/// The user part of a SIP Request-URI marked `user=phone`, or a `tel:` URI's number.
pub(super) fn phone_number(uri: &Uri<'_>) -> Option<String> {
    match uri {
        Uri::Tel(t) => Some(t.number.to_owned()),
        Uri::Sip(u) if u.param("user").flatten() == Some("phone") => {
            u.user.map(|n| sip_proto::unescape(n).into_owned())
        }
        _ => None,
    }
}
