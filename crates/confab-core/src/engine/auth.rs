//! Who sent a request: digest authentication and challenges, lockout, the user cache, and the
//! seals that prove a request was authenticated here (a spiral) or by another server of the
//! deployment.
use std::net::IpAddr;

use sip_auth::Locked;
use sip_proto::{HeaderName, Message, Method, Uri};
use sip_transport::Transport;

use super::edge::Origin;
use super::park::Fetch;
use super::{Ctx, Engine, Now};
use crate::pipeline::Flow;
use crate::routing::is_our_via;

/// Users whose hashes are kept in memory at most (the table starts again when full).
const USER_CACHE: usize = 200_000;

impl Engine {
    pub(super) fn authenticate(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let method = ctx.msg.method();
        let in_dialog = ctx.in_dialog;
        if in_dialog
            || matches!(method, Method::Ack | Method::Cancel)
            || (method == Method::Options && self.addressed_to_server(ctx))
        {
            return Flow::Continue;
        }
        if let Some(trunk) = self.gateway_of(ctx) {
            // a trunk's gateway: trusted by its address (the phone network has no passwords)
            ctx.trunk = Some(trunk);
            return Flow::Continue;
        }
        if ctx.source.peer_verified && self.is_secrets_request(ctx) {
            // an Edge server of the deployment (its certificate says so) asks for the relay
            // secrets: it has no user to sign in as
            return Flow::Continue;
        }
        if self.is_own_spiral(&ctx.msg) || self.is_peer_forwarded(ctx) {
            // we, or another server of the deployment, authenticated this request before
            // forwarding it here
            return Flow::Continue;
        }
        let register = method == Method::Register;
        let identity = if register {
            ctx.msg.to()
        } else {
            ctx.msg.from()
        };
        let Some((user, host)) = identity.ok().and_then(|na| match na.uri {
            Uri::Sip(u) => u.user.map(|us| {
                (
                    sip_proto::unescape(us).into_owned(),
                    u.host.to_ascii_lowercase(),
                )
            }),
            _ => None,
        }) else {
            self.respond(
                now,
                ctx,
                403,
                "Forbidden (identity is not a SIP URI with a user)",
                &[],
            );
            return Flow::Stop;
        };
        if matches!(&ctx.origin, Origin::Federated { domain, .. } if *domain == host) && !register {
            // a partner's user: the Edge checked that the partner's connection proves the
            // domain; the partner authenticated its user
            return Flow::Continue;
        }
        if !self.cfg.serves_domain(&host) {
            let reason = if register {
                format!("Forbidden (domain {host} is not served here)")
            } else {
                format!(
                    "Forbidden (federation is not enabled: requests from {host} are not accepted)"
                )
            };
            self.respond(now, ctx, 403, &reason, &[]);
            return Flow::Stop;
        }
        if !self.cfg.digest_over_plain && ctx.source.transport != Transport::Tls {
            self.respond(
                now,
                ctx,
                403,
                "Forbidden (sign in over TLS: digest over UDP and TCP is switched off here)",
                &[],
            );
            return Flow::Stop;
        }
        let aor = format!("{user}@{host}");
        // behind an Edge, the client's own address: the Edge's is every remote user's
        let ip = ctx.origin.client_ip().unwrap_or(ctx.source.remote.ip());
        if let Some(lock) = self.locked_out(&aor, ip, now) {
            self.stats.refused_locked += 1;
            self.respond(now, ctx, 403, &lock_reason(lock), &[]);
            return Flow::Stop;
        }
        let header = if register {
            HeaderName::Authorization
        } else {
            HeaderName::ProxyAuthorization
        };
        let creds = ctx
            .msg
            .values(header)
            .filter_map(Result::ok)
            .filter_map(sip_auth::Credentials::parse)
            .find(|c| c.realm.eq_ignore_ascii_case(&host));
        let Some(creds) = creds else {
            // RFC 3261 §8.2.7: a challenge may be sent statelessly. Nonces are stateless too,
            // so a retransmission is simply challenged again: no transaction waits 32 s for it
            // (half the transactions of every sign-in), and a flood of requests without
            // credentials leaves nothing behind and gets exactly one answer each, never
            // retransmitted. The ACK of a 407 to an INVITE is recognised by our To tag and
            // absorbed without state (`transaction`).
            if let Some(key) = ctx.key.take() {
                self.server_tx.remove(&key);
            }
            self.challenge(now, ctx, &host, false);
            return Flow::Stop;
        };
        if creds.username != user {
            self.respond(
                now,
                ctx,
                403,
                "Forbidden (authentication user does not match the identity)",
                &[],
            );
            return Flow::Stop;
        }
        let Some(stored) = self.lookup_user(now, ctx, &aor) else {
            return Flow::Stop;
        };
        let Some(digest) = self.shared.digest.get(&host) else {
            return Flow::Stop;
        };
        let enabled = &self.cfg.digest_algorithms;
        let verdict = digest.verify(now.mono, ctx.msg.method_str(), &creds, |alg| {
            if !enabled.contains(&alg) {
                return None;
            }
            stored.as_ref().map(|u| {
                if alg == sip_auth::Algorithm::Md5 {
                    u.ha1_md5.clone()
                } else {
                    u.ha1_sha256.clone()
                }
            })
        });
        match verdict {
            sip_auth::Verdict::Ok => {
                self.shared.guards.of(&aor).success(&aor, ip, now.mono);
                self.trust_source(ip);
                let remote = matches!(ctx.origin, Origin::Remote { .. });
                let access = stored.as_ref().map(|u| u.access).unwrap_or_default();
                if remote
                    && !access
                        .remote
                        .unwrap_or(self.cfg.external_access.remote_users)
                {
                    tracing::info!(event = "auth.remote_refused", user = %aor, "sign-in from outside refused: the user's external access policy does not allow remote access");
                    let reason = "Forbidden (remote access is not allowed for this user by policy)";
                    self.respond(now, ctx, 403, reason, &[]);
                    return Flow::Stop;
                }
                ctx.access = access;
                ctx.home_pool = stored.and_then(|u| u.pool);
                Flow::Continue
            }
            sip_auth::Verdict::Stale => {
                self.challenge(now, ctx, &host, true);
                Flow::Stop
            }
            v @ (sip_auth::Verdict::BadNonce | sip_auth::Verdict::Replay) => {
                tracing::debug!(event = "auth.rechallenged", user = %aor, verdict = ?v, "credentials with a nonce not ours or already used: challenged again");
                self.challenge(now, ctx, &host, false);
                Flow::Stop
            }
            sip_auth::Verdict::BadResponse => {
                self.auth_failed(now, ctx, &aor, &host);
                Flow::Stop
            }
        }
    }

    /// Counts a wrong password of `aor` from the request's source: a lock it starts is
    /// logged, and the request is refused when its user is now locked there; else challenged
    /// again.
    fn auth_failed(&mut self, now: Now, ctx: &Ctx, aor: &str, host: &str) {
        self.stats.auth_failures += 1;
        let remote = ctx.source.remote;
        let ip = ctx.origin.client_ip().unwrap_or(remote.ip());
        tracing::warn!(event = "auth.failed", user = %aor, %remote, client = %ip, "wrong credentials");
        let src = ip.to_string();
        let lock_for = self.cfg.lockout.lock_for;
        let source_lock = (self.shared.lockout.of(&src))
            .record_failure(&src, now.mono)
            .then_some(Locked::Source(lock_for));
        let user_lock = self.shared.guards.of(aor).failure(aor, ip, now.mono);
        if user_lock.is_some() || source_lock.is_some() {
            self.stats.lockouts += 1;
        }
        for lock in [user_lock, source_lock].into_iter().flatten() {
            tracing::warn!(
                event = "auth.lockout", user = %aor, %remote, seconds = lock_for.as_secs(),
                "too many failed authentications {}: further attempts refused for a while (see --lockout-* options; `confab user unlock` ends it)",
                lock.why()
            );
        }
        match self.locked_out(aor, ip, now) {
            Some(lock) => self.respond(now, ctx, 403, &lock_reason(lock), &[]),
            None => self.challenge(now, ctx, host, false),
        }
    }

    /// Whether `aor` is refused from `ip` (smart lockout, `sip_auth::Guards`): that user at
    /// that address, or the user's unfamiliar addresses, or the address for every user to
    /// which it is not familiar.
    fn locked_out(&self, aor: &str, ip: IpAddr, now: Now) -> Option<Locked> {
        {
            let guards = self.shared.guards.of(aor);
            if let Some(lock) = guards.locked(aor, ip, now.mono) {
                return Some(lock);
            }
            if guards.familiar(aor, ip, now.mono) {
                return None;
            }
        }
        let src = ip.to_string();
        (self.shared.lockout.of(&src))
            .locked(&src, now.mono)
            .map(Locked::Source)
    }

    /// An administrator unlocked `aor` (`confab user unlock`, through the change log): its
    /// failures are forgotten, and so are those of the addresses it failed from (the user's
    /// own device may have locked its address).
    pub(super) fn unlock_user(&mut self, now: Now, aor: &str) {
        let addresses = self.shared.guards.of(aor).unlock(aor, now.mono);
        for ip in &addresses {
            let src = ip.to_string();
            self.shared.lockout.of(&src).record_success(&src);
        }
        tracing::info!(event = "auth.unlocked", user = %aor, addresses = ?addresses, "lockout of the user lifted by an administrator");
    }

    pub(super) fn challenge(&mut self, now: Now, ctx: &Ctx, realm: &str, stale: bool) {
        tracing::debug!(event = "auth.challenge", remote = %ctx.source.remote, top_via = ?ctx.msg.values(HeaderName::Via).next(), stale);
        let Some(d) = self.shared.digest.get(realm) else {
            return;
        };
        let (code, reason, header) = if ctx.msg.method() == Method::Register {
            (401, "Unauthorized", "WWW-Authenticate")
        } else {
            (407, "Proxy Authentication Required", "Proxy-Authenticate")
        };
        let ua = ctx
            .msg
            .header_str(HeaderName::UserAgent)
            .ok()
            .flatten()
            .unwrap_or("");
        // libre's event client (SUBSCRIBE) sends no User-Agent: remember the addresses that
        // identified themselves as such a client (bounded), so their other requests get MD5 too
        let md5_only = {
            let remote = ctx.source.remote;
            let mut known = self.shared.md5_only_sources.of(&remote);
            if md5_only_client(ua) && !known.contains(&remote) {
                if known.len() >= 10_000 / crate::parts::PARTS {
                    known.clear();
                }
                known.insert(remote);
            }
            known.contains(&remote)
        };
        let md5_only = md5_only
            && self
                .cfg
                .digest_algorithms
                .contains(&sip_auth::Algorithm::Md5);
        let algorithms = if md5_only {
            &[sip_auth::Algorithm::Md5][..]
        } else {
            &self.cfg.digest_algorithms
        };
        let extra: Vec<(&str, String)> = d
            .challenges(now.mono, stale, algorithms)
            .into_iter()
            .map(|c| (header, c))
            .collect();
        self.respond(now, ctx, code, reason, &extra);
    }

    /// Looks a user up (the cache, else the store); a store failure is answered (503 with
    /// Retry-After when the database is unreachable, else 500) and gives `None`, and so does a
    /// read that parked the request (`ctx.waiting` says which).
    pub(super) fn lookup_user(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        aor: &str,
    ) -> Option<Option<confab_store::User>> {
        // where sign-ins are redirected by home pool, a REGISTER reads the user afresh: a move
        // (`confab user move`) redirects the very next sign-in
        let fresh = self.cfg.homing.is_some() && ctx.msg.method() == Method::Register;
        if !fresh {
            if let Some(u) = self.shared.users.of(aor).get(aor) {
                return Some(Some(u.clone()));
            }
        }
        let result = match self.fetch_user(ctx, aor) {
            Fetch::Ready(r) => r,
            Fetch::Parked => return None,
        };
        match result {
            Ok(u) => {
                if let Some(u) = &u {
                    let mut users = self.shared.users.of(aor);
                    if users.len() >= USER_CACHE / crate::parts::PARTS {
                        users.clear();
                    }
                    users.insert(aor.to_owned(), u.clone());
                }
                Some(u)
            }
            Err(e) => {
                let (code, reason, extra) = lookup_refusal(aor, &e);
                self.respond(now, ctx, code, reason, &extra);
                None
            }
        }
    }

    /// The seal in our branches: proves a request passed through here (and was authenticated)
    /// without keeping state. It covers what a spiral does not change.
    pub(super) fn spiral_seal(&self, msg: &Message) -> String {
        let from_tag = msg
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let cseq = msg.raw_header(HeaderName::CSeq).unwrap_or(b"");
        self.seal_of(msg.call_id().unwrap_or(""), &from_tag, cseq)
    }

    /// The spiral seal of a request with this Call-ID, From tag and CSeq (as written).
    pub(super) fn seal_of(&self, call_id: &str, from_tag: &str, cseq: &[u8]) -> String {
        let data = [call_id.as_bytes(), b"|", from_tag.as_bytes(), b"|", cseq].concat();
        sip_auth::seal(&self.secret, &data)
    }

    /// The seal on our Record-Route (`;seal=`): proves, without state and across restarts and
    /// the servers of a deployment, that we record-routed the dialog of Call-ID `call_id`
    /// whose initiator's tag is `tag` (the From tag of the initial request, so the From tag
    /// of the initiator's in-dialog requests and the To tag of the other side's).
    pub(super) fn dialog_seal(&self, call_id: &str, tag: &str) -> String {
        let data = [b"rr|", call_id.as_bytes(), b"|", tag.as_bytes()].concat();
        sip_auth::seal(&self.secret, &data)
    }

    /// Whether `seal` is the one we put on a Route of this request's dialog.
    pub(super) fn seal_fits(&self, msg: &Message, seal: &str) -> bool {
        let Ok(call_id) = msg.call_id() else {
            return false;
        };
        let tags = [
            msg.from().ok().and_then(|f| f.tag().map(str::to_owned)),
            msg.to().ok().and_then(|t| t.tag().map(str::to_owned)),
        ];
        tags.iter()
            .flatten()
            .any(|tag| same(self.dialog_seal(call_id, tag).as_bytes(), seal.as_bytes()))
    }

    /// Whether the top Via is one we added to this very request (a spiral back to us).
    pub(super) fn is_own_spiral(&self, msg: &Message) -> bool {
        let Ok(via) = msg.top_via() else { return false };
        is_our_via(&self.cfg, &via)
            && via
                .branch()
                .is_some_and(|b| b.ends_with(&format!("-{}", self.spiral_seal(msg))))
    }

    /// Whether another server of the deployment forwarded this request: it came over TLS from
    /// a server whose certificate the deployment's CA signed (mutual TLS), with a Via on top
    /// sealed with the deployment's secret.
    pub(super) fn is_peer_forwarded(&self, ctx: &Ctx) -> bool {
        if self.cfg.peers.is_empty() || !ctx.source.peer_verified {
            return false;
        }
        // the certificate, not the address, says it is a peer: servers added to a running pool
        // are trusted without a restart of the others
        let msg = &ctx.msg;
        let Ok(via) = msg.top_via() else { return false };
        via.branch()
            .is_some_and(|b| b.ends_with(&format!("-{}", self.spiral_seal(msg))))
    }
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn lock_reason(lock: Locked) -> String {
    format!(
        "Forbidden (too many failed authentications {}; retry in {} s)",
        lock.why(),
        lock.remaining().as_secs().max(1)
    )
}

/// Clients known to abort on any non-MD5 digest challenge even when an MD5 one is offered too:
/// baresip before 3.0 (its libre < 2 stops at the first challenge it cannot compute). They are
/// challenged with MD5 alone; everyone else gets every configured algorithm.
fn md5_only_client(user_agent: &str) -> bool {
    user_agent
        .strip_prefix("baresip v")
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major < 3)
}

/// How a failed user lookup is answered: 503 with Retry-After when the database is
/// unreachable (the client tries again; nothing was changed), else 500.
pub(crate) fn lookup_refusal(
    aor: &str,
    e: &confab_store::StoreError,
) -> (u16, &'static str, Vec<(&'static str, String)>) {
    tracing::error!(event = "store.error", error = %e, user = %aor, "user lookup failed");
    if e.is_unavailable() {
        let retry = crate::location::RETRY_AFTER_STORE.to_string();
        (
            503,
            "Service Unavailable (user database unreachable)",
            vec![("Retry-After", retry)],
        )
    } else {
        (
            500,
            "Server Internal Error (user lookup failed)",
            Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_without_credentials_is_challenged_once_and_leaves_nothing() {
        use crate::engine::sim::{ack_for, Sim, ALICE, INVITE_BOB};
        use std::time::Duration;
        let mut sim = Sim::with_users(&["alice", "bob"], &[]);
        sim.send(ALICE, &INVITE_BOB.replace("{auth}", ""));
        let got = sim.take_to(ALICE);
        let codes: Vec<u16> = got.iter().map(Message::status).collect();
        assert_eq!(codes, [407], "one answer, no 100 Trying before it");
        assert_eq!(sim.engine.server_tx.len(), 0, "no transaction kept");
        // its ACK is recognised and absorbed without state
        let invite = Message::parse(
            INVITE_BOB.replace("{auth}", "").into_bytes(),
            &sip_proto::Limits::default(),
        )
        .unwrap();
        sim.send(ALICE, &ack_for(&invite, &got[0]));
        assert_eq!(sim.engine.stats().acks_absorbed, 1);
        assert_eq!(sim.engine.stats().stray_acks, 0);
        // a retransmission is challenged again, once; nothing is ever resent
        sim.send(ALICE, &INVITE_BOB.replace("{auth}", ""));
        assert_eq!(sim.take_to(ALICE).len(), 1);
        sim.advance(Duration::from_secs(40));
        assert!(sim.take_all().is_empty(), "no challenge retransmitted");
    }

    #[test]
    fn an_authenticated_invite_still_gets_100_trying() {
        use crate::engine::sim::{Sim, ALICE, BOB, INVITE_BOB};
        let mut sim = Sim::with_users(&["alice", "bob"], &[("bob", BOB)]);
        let got = sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        assert_eq!(got.iter().map(Message::status).collect::<Vec<_>>(), [100]);
        assert_eq!(sim.take_to(BOB).len(), 1);
    }

    #[test]
    fn only_old_baresip_is_treated_as_md5_only() {
        assert!(md5_only_client("baresip v1.0.0 (x86_64/linux)"));
        assert!(md5_only_client("baresip v2.12.0 (arm/linux)"));
        assert!(!md5_only_client("baresip v3.1.0 (x86_64/linux)"));
        assert!(!md5_only_client("Linphone/5.2"));
        assert!(!md5_only_client(""));
    }
}
