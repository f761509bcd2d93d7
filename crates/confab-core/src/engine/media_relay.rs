//! The Media Relay Authentication Service (`crate::media_relay`): a signed-in user's `SERVICE`
//! request answered with TURN credentials and the relay's addresses; an Edge server's request
//! for the secrets its relay accepts; the secrets read again by housekeeping.

use std::sync::Arc;

use sip_proto::HeaderName;

use super::park::{Answer, Op};
use super::{Ctx, Engine, Now};
use crate::media_relay::{self, Secrets, MRAS_TYPE, SECRETS_TYPE};

/// The secrets in force, shared by the shards.
pub(crate) type Handle = Arc<std::sync::RwLock<Option<Arc<Secrets>>>>;

impl Engine {
    /// Whether the request is an Edge server asking for the relay secrets (it has no user to
    /// authenticate: its certificate from the deployment's CA is its proof).
    pub(super) fn is_secrets_request(&self, ctx: &Ctx) -> bool {
        ctx.msg.method_str() == "SERVICE" && content_type(ctx).as_deref() == Some(SECRETS_TYPE)
    }

    /// A `SERVICE` request: relay credentials for the signed-in user, or the secrets for an
    /// Edge.
    pub(super) fn relay_service(&mut self, now: Now, ctx: &mut Ctx) {
        let ctype = content_type(ctx).unwrap_or_default();
        if self.is_secrets_request(ctx) {
            return self.send_secrets(now, ctx);
        }
        if ctype != MRAS_TYPE && !ctx.msg.body().is_empty() {
            let reason = format!("Unsupported Media Type (SERVICE here asks for media relay credentials with {MRAS_TYPE})");
            self.respond(now, ctx, 415, &reason, &[("Accept", MRAS_TYPE.to_owned())]);
            return;
        }
        let req = match media_relay::Request::parse(ctx.msg.body()) {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("Bad Request (credentials request: {e})");
                return self.respond(now, ctx, 400, &reason, &[]);
            }
        };
        let Some((aor, domain)) = self.identity_of(ctx) else {
            let reason = "Forbidden (media relay credentials are for signed-in users)";
            return self.respond(now, ctx, 403, reason, &[]);
        };
        if let Some(asked) = &req.identity {
            let asked = asked.strip_prefix("sip:").unwrap_or(asked);
            if !asked.eq_ignore_ascii_case(&aor) {
                tracing::warn!(event = "relay.refused", user = %aor, asked, "credentials asked for another user");
                let reason = format!("Forbidden (credentials are issued to the signed-in user {aor} only, not {asked})");
                return self.respond(now, ctx, 403, &reason, &[]);
            }
        }
        let access = ctx.access;
        let outside = access
            .remote
            .unwrap_or(self.cfg.external_access.remote_users)
            || access
                .federation
                .unwrap_or(self.cfg.external_access.federation);
        if !outside {
            tracing::info!(event = "relay.refused", user = %aor, "external access policy allows no relay");
            let reason = "Forbidden (media relay: the user's external access policy allows neither remote access nor federation)";
            return self.respond(now, ctx, 403, reason, &[]);
        }
        let Some(relay_at) = self.cfg.media_relays.get(&domain) else {
            let reason = format!("Not Found (no media relay for {domain}: its Edge has no A/V service in the topology)");
            return self.respond(now, ctx, 404, &reason, &[]);
        };
        let secrets = crate::apps::in_force(&self.shared.relay_secrets);
        let Some(secret) = secrets.as_ref().and_then(|s| s.issuing(now.unix)) else {
            let reason =
                "Service Unavailable (no media relay secret yet: run `confab edge rotate-secret`)";
            return self.respond(now, ctx, 503, reason, &[("Retry-After", "10".to_owned())]);
        };
        let lifetime = req
            .duration
            .map_or(self.cfg.relay_lifetime, |m| m.saturating_mul(60))
            .clamp(60, self.cfg.relay_lifetime.max(60));
        let creds = media_relay::credentials(&secret.value, &aor, now.unix, lifetime);
        tracing::info!(event = "relay.credentials", user = %aor, expires = creds.expires, "media relay credentials issued");
        let body =
            media_relay::answer(&req, &format!("sip:{aor}"), &creds, lifetime / 60, relay_at);
        self.respond_with(
            now,
            ctx,
            200,
            "OK",
            &[("Content-Type", MRAS_TYPE.to_owned())],
            body.as_bytes(),
        );
    }

    /// The From of an authenticated request: its user's address and domain.
    fn identity_of(&self, ctx: &Ctx) -> Option<(String, String)> {
        // a gateway is trusted by address for calls, not as a user
        ctx.trunk.is_none().then_some(())?;
        let from = ctx.msg.from().ok()?;
        let sip_proto::Uri::Sip(u) = from.uri else {
            return None;
        };
        let host = u.host.to_ascii_lowercase();
        self.cfg.serves_domain(&host).then_some(())?;
        Some((format!("{}@{host}", sip_proto::unescape(u.user?)), host))
    }

    /// The secrets a relay accepts now, one per line, to an Edge server.
    fn send_secrets(&mut self, now: Now, ctx: &mut Ctx) {
        let edge = self.cfg.edge_servers.contains(&ctx.source.remote.ip());
        if !ctx.source.peer_verified || !edge {
            tracing::warn!(event = "relay.secrets_refused", source = %ctx.source.remote, verified = ctx.source.peer_verified, "relay secrets asked for by what is not an Edge server");
            let reason = "Forbidden (the relay secrets go only to the deployment's Edge servers, over mutual TLS)";
            return self.respond(now, ctx, 403, reason, &[]);
        }
        let Some(secrets) = crate::apps::in_force(&self.shared.relay_secrets) else {
            // not read yet (a server just started): the Edge keeps what it has
            let reason = "Service Unavailable (the relay secrets are not read yet)";
            return self.respond(now, ctx, 503, reason, &[("Retry-After", "2".to_owned())]);
        };
        let body: String = secrets
            .accepted(now.unix)
            .map(|s| format!("{}\n", s.value))
            .collect();
        self.respond_with(
            now,
            ctx,
            200,
            "OK",
            &[("Content-Type", SECRETS_TYPE.to_owned())],
            body.as_bytes(),
        );
    }

    /// Housekeeping's read with a local database.
    pub(super) fn read_relay_secrets(&mut self) {
        let read = setting_changed(
            self.store.as_ref(),
            media_relay::SECRETS_SETTING,
            self.relay_seen,
        );
        self.relay_secrets_read(read);
    }

    /// The secrets read: in force when they changed and can be read.
    pub(super) fn relay_secrets_read(&mut self, read: confab_store::Result<Option<(u64, String)>>) {
        let Some(text) = changed_setting(read, &mut self.relay_seen, media_relay::SECRETS_SETTING)
        else {
            return;
        };
        match Secrets::parse(&text) {
            Ok(s) => {
                tracing::info!(
                    event = "relay.secrets",
                    count = s.0.len(),
                    "media relay secrets in force"
                );
                *self
                    .shared
                    .relay_secrets
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(s));
            }
            Err(e) => {
                tracing::error!(event = "relay.secrets_damaged", error = %e, "the stored relay secrets cannot be read; those in force stay (run `confab edge rotate-secret`)");
            }
        }
    }

    /// Housekeeping's job for the driver, with a database on the network.
    pub(super) fn relay_secrets_op(&self) -> Op {
        Op::Setting(media_relay::SECRETS_SETTING, self.relay_seen)
    }

    /// A setting housekeeping read came back.
    pub(super) fn setting_read(&mut self, answer: Answer) {
        match answer {
            Answer::Setting(media_relay::SECRETS_SETTING, read) => self.relay_secrets_read(read),
            Answer::Setting(confab_archive::policy::SETTING, read) => self.archiving_read(read),
            _ => {}
        }
    }
}

/// What a housekeeping read of setting `name` brought: its text when it changed since `seen`
/// (which then takes its hash); a failed read is logged, and what is in force stays.
pub(super) fn changed_setting(
    read: confab_store::Result<Option<(u64, String)>>,
    seen: &mut u64,
    name: &str,
) -> Option<String> {
    match read {
        Ok(Some((hash, text))) => {
            *seen = hash;
            Some(text)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(event = "store.error", error = %e, setting = name, "cannot read a setting; what is in force stays");
            None
        }
    }
}

/// Setting `name` and its hash; `None` when the hash is `known`.
pub(super) fn setting_changed(
    store: &dyn confab_store::Store,
    name: &str,
    known: u64,
) -> confab_store::Result<Option<(u64, String)>> {
    use std::hash::{Hash, Hasher};
    let value = store.setting(name)?.unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    let hash = h.finish();
    Ok((hash != known).then_some((hash, value)))
}

fn content_type(ctx: &Ctx) -> Option<String> {
    let v = ctx.msg.header_str(HeaderName::ContentType).ok().flatten()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::sim::{add_users, Sim, ALICE};

    /// A credentials request from `from`, the `n`th (a transaction of its own).
    fn service(n: u32, from: &str, body: &str) -> String {
        format!(
            "SERVICE sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKsvc{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}>;tag=a\r\nTo: <sip:example.com>\r\nCall-ID: mras-{n}\r\nCSeq: 1 SERVICE\r\n{{auth}}Content-Type: {MRAS_TYPE}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn ask(identity: &str) -> String {
        format!("<request requestID=\"1\"><credentialsRequest credentialsRequestID=\"2\"><identity>{identity}</identity><duration>60</duration></credentialsRequest></request>")
    }

    fn sim(relay: bool) -> Sim {
        let mut cfg = EngineConfig {
            edge_servers: vec!["127.0.0.20".parse().unwrap()],
            ..EngineConfig::default()
        };
        if relay {
            cfg.media_relays.insert(
                "example.com".into(),
                confab_topology::MediaRelay {
                    host: "av.example.com".into(),
                    address: "203.0.113.11".parse().unwrap(),
                    udp_port: 3478,
                    tcp_port: 3478,
                    tls_port: 443,
                },
            );
        }
        let mut secrets = Secrets::default();
        secrets.rotate("ab".repeat(32), 1_000, Some(60));
        let text = secrets.render();
        Sim::new(cfg, move |s| {
            add_users(s, &["alice", "carol"], &[]);
            let no = confab_store::Access {
                remote: Some(false),
                federation: Some(false),
            };
            s.set_access("carol@example.com", no).unwrap();
            s.set_setting(media_relay::SECRETS_SETTING, Some(&text))
                .unwrap();
        })
    }

    fn final_of(answers: Vec<sip_proto::Message>) -> sip_proto::Message {
        answers
            .into_iter()
            .find(|m| m.status() >= 200)
            .expect("a final answer")
    }

    #[test]
    fn a_signed_in_user_gets_credentials_the_relay_can_check_with_the_secret() {
        let mut sim = sim(true);
        sim.advance(Duration::from_secs(3)); // housekeeping reads the secrets
        let ok = final_of(sim.send_authenticated(
            ALICE,
            "alice",
            &service(1, "alice@example.com", &ask("sip:alice@example.com")),
        ));
        assert_eq!(ok.status(), 200, "{}", ok.reason());
        let body = std::str::from_utf8(ok.body()).unwrap();
        let field = |n: &str| {
            body.split(&format!("<{n}>"))
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        };
        let user = field("username");
        let now = sim.now().unix;
        assert_eq!(
            user,
            format!("{}:alice@example.com", now + 3600),
            "60 minutes, as asked"
        );
        let expect = media_relay::credentials(&"ab".repeat(32), "alice@example.com", now, 3600);
        assert_eq!(field("password"), expect.password);
        assert_eq!(field("hostName"), "av.example.com");
        assert_eq!(field("udpPort"), "3478");
        assert_eq!(field("tlsPort"), "443");
    }

    #[test]
    fn credentials_for_another_user_without_policy_or_without_a_relay_are_refused_with_the_reason()
    {
        let mut sim = sim(true);
        sim.advance(Duration::from_secs(3));
        let r = final_of(sim.send_authenticated(
            ALICE,
            "alice",
            &service(1, "alice@example.com", &ask("sip:bob@example.com")),
        ));
        assert_eq!(r.status(), 403);
        assert!(
            r.reason()
                .contains("signed-in user alice@example.com only, not bob@example.com"),
            "{}",
            r.reason()
        );
        let r =
            final_of(sim.send_authenticated(ALICE, "carol", &service(2, "carol@example.com", "")));
        assert_eq!(r.status(), 403);
        assert!(
            r.reason().contains("external access policy"),
            "{}",
            r.reason()
        );
        let r = final_of(sim.send_authenticated(
            ALICE,
            "alice",
            &service(3, "alice@example.com", "<junk/>"),
        ));
        assert_eq!(r.status(), 400, "{}", r.reason());
        let mut none = self::sim(false);
        none.advance(Duration::from_secs(3));
        let r =
            final_of(none.send_authenticated(ALICE, "alice", &service(4, "alice@example.com", "")));
        assert_eq!(r.status(), 404);
        assert!(r.reason().contains("no A/V service"), "{}", r.reason());
    }

    #[test]
    fn the_secrets_go_to_deployment_servers_only() {
        let mut sim = sim(true);
        sim.advance(Duration::from_secs(3));
        let ask = format!(
            "SERVICE sip:pool.example.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.20:5061;branch=z9hG4bKsec{{n}}\r\nMax-Forwards: 1\r\nFrom: <sip:edge.example.com>;tag=e\r\nTo: <sip:pool.example.com>\r\nCall-ID: sec-{{n}}\r\nCSeq: 1 SERVICE\r\nContent-Type: {SECRETS_TYPE}\r\nContent-Length: 0\r\n\r\n"
        );
        sim.send("127.0.0.20:5061", &ask.replace("{n}", "1"));
        let r = final_of(sim.take_to("127.0.0.20:5061"));
        assert_eq!(
            r.status(),
            403,
            "without the deployment's certificate: {}",
            r.reason()
        );
        assert!(r.body().is_empty());
        sim.arriving_from_peers(true);
        sim.send("127.0.0.20:5061", &ask.replace("{n}", "2"));
        let r = final_of(sim.take_to("127.0.0.20:5061"));
        assert_eq!(r.status(), 200, "{}", r.reason());
        assert_eq!(
            std::str::from_utf8(r.body()).unwrap(),
            format!("{}\n", "ab".repeat(32))
        );
        // another server of the deployment (a Front End) is no Edge
        sim.send("127.0.0.12:5061", &ask.replace("{n}", "3"));
        let r = final_of(sim.take_to("127.0.0.12:5061"));
        assert_eq!(r.status(), 403, "{}", r.reason());
        assert!(r.body().is_empty());
    }
}
