//! A user's call forwarding and simultaneous ring (`confab_voice::Forwarding`, kept with the
//! user's voice settings): a call forwarded at once or when no device is signed in; the
//! user's devices ringing along with a second target; the call diverted when unanswered after
//! some seconds or when every device is busy (`proxy.rs`, `Diversions`). A number is reached
//! as the forwarding user would dial it: their dial plan and voice policy. A forwarded call is
//! not forwarded again, so two users forwarding to each other make no loop.

use std::time::Duration;

use confab_store::User;
use confab_voice::{ForwardTo, Forwarding};
use sip_proto::Method;

use super::proxy::Diversions;
use super::targets::{ForkTarget, Found};
use super::voice::Reached;
use super::{Ctx, Engine, Now};

impl Engine {
    /// The forwarding settings of the called `user`, for a call (other requests are not
    /// forwarded); none when unset or unreadable (logged).
    pub(super) fn forwarding_of(&self, ctx: &Ctx, user: &User) -> Option<Forwarding> {
        if ctx.msg.method() != Method::Invite {
            return None;
        }
        let text = user.voice.forwarding.as_deref()?;
        match Forwarding::parse(text) {
            Ok(f) if !f.is_empty() => Some(f),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(event = "forwarding.invalid", user = %user.aor, error = %e, "call forwarding settings unreadable: ignored");
                None
            }
        }
    }

    /// Forwards the call to `to` instead of the user's devices.
    pub(super) fn forward_now(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        user: &User,
        to: &ForwardTo,
        why: &str,
    ) {
        tracing::info!(event = "forwarding.forwarded", user = %user.aor, to = %to, why);
        match to {
            ForwardTo::User(aor) => {
                let uri = format!("sip:{aor}");
                self.deliver_to(now, ctx, aor, &uri, false);
            }
            ForwardTo::Number(n) => {
                let Some(state) = self.voice_state() else {
                    let reason = format!("Not Found ({} forwards to {n}, but numbers are not routed here: no enterprise voice configuration)", user.aor);
                    return self.respond(now, ctx, 404, &reason, &[]);
                };
                let reached = self.reach_number(ctx, &state, user, n);
                self.go(now, ctx, reached, false);
            }
        }
    }

    /// Rings the user's devices with what their settings add: the simultaneous ring target
    /// along with them, and where the call goes unanswered or busy.
    pub(super) fn ring_forwarding(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        user: &User,
        f: &Forwarding,
        found: Found,
    ) {
        if found.targets.is_empty() {
            if let Some(to) = f.offline.as_ref().or(f.no_answer.as_ref()) {
                return self.forward_now(now, ctx, user, to, "no device signed in");
            }
        }
        let mut targets = found.targets;
        let mut diversions = Diversions::default();
        if let Some(to) = &f.simultaneous {
            let Some(more) = self.targets_for(now, ctx, user, to) else {
                return; // parked
            };
            targets.extend(more);
        }
        if let Some(to) = &f.no_answer {
            let Some(later) = self.targets_for(now, ctx, user, to) else {
                return;
            };
            let after = Duration::from_secs(u64::from(f.no_answer_after));
            diversions.no_answer = Some((after, later));
        }
        if let Some(to) = &f.busy {
            let Some(busy) = self.targets_for(now, ctx, user, to) else {
                return;
            };
            diversions.busy = busy;
        }
        if targets.is_empty() {
            let reason = if found.registered == 0 {
                "Temporarily Unavailable (no device registered)"
            } else {
                "Temporarily Unavailable (no reachable device)"
            };
            return self.respond(now, ctx, 480, reason, &[]);
        }
        self.fork_with(now, ctx, targets, diversions);
    }

    /// The branches toward a forwarding target: a user's devices here, or a number's holder's,
    /// or its trunks; none when it leads nowhere (logged). `None` when parked.
    fn targets_for(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        user: &User,
        to: &ForwardTo,
    ) -> Option<Vec<ForkTarget>> {
        let aor = match to {
            ForwardTo::User(aor) => aor.clone(),
            ForwardTo::Number(n) => {
                let Some(state) = self.voice_state() else {
                    return Some(Vec::new());
                };
                match self.reach_number(ctx, &state, user, n) {
                    Reached::User(owner) => owner,
                    Reached::Application(address) => {
                        return Some(self.own_target(&address).into_iter().collect())
                    }
                    Reached::Trunks(t) => return Some(t),
                    Reached::Parked => return None,
                    Reached::Refused(code, reason) => {
                        tracing::info!(event = "forwarding.unreachable", user = %user.aor, to = %to, code, %reason, "forwarding target leads nowhere: left out");
                        return Some(Vec::new());
                    }
                }
            }
        };
        let mut found = Found::default();
        self.device_targets(now, &aor, &mut found);
        Some(found.targets)
    }
}
