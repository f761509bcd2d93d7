//! The registrar's policy over the location table: home-pool redirects, Edge sign-ins, a
//! draining server's sign-ins, and this server's membership of its pool. The table itself is
//! `crate::location`.
use sip_proto::HeaderName;
use sip_transport::{Target, Transport};

use super::park::Op;
use super::CoreEvent;
use super::{Ctx, Engine, Now};
use crate::homing::Place;
use crate::location::{storage_error, Change, Refusal};
use sip_transport::FlowId;

/// Settings naming the servers of the deployment (`server:<ip:port>` = pool) and those being
/// drained (`drain:<ip:port>`).
pub const SERVER_SETTING: &str = "server:";
pub use confab_store::DRAIN_SETTING;

/// Spreads a pool's users over its servers: the same server for the same user.
fn user_hash(aor: &str) -> usize {
    aor.bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
}

impl Engine {
    /// For a remote user's own request (through an Edge) at a server of another pool (a
    /// Director): the server of the user's home pool that takes its sign-ins, where its
    /// device is registered and its publications must go. `None` when the user is at home
    /// here or the request came from inside.
    pub(super) fn remote_users_server(&self, ctx: &Ctx, aor: &str) -> Option<Target> {
        if !ctx.origin.is_external() {
            return None;
        }
        let homing = self.cfg.homing.as_ref()?;
        match homing.place(
            ctx.home_pool.as_deref(),
            ctx.source.transport,
            user_hash(aor),
        ) {
            Place::Elsewhere {
                proxy_to: Some(server),
                ..
            } => Some(Target {
                transport: Transport::Tls,
                addr: server.parse().ok()?,
                flow: None,
            }),
            _ => None,
        }
    }

    pub(super) fn register(&mut self, now: Now, ctx: &mut Ctx) {
        let aor = match ctx.msg.to().map(|to| to.uri.as_sip().map(|u| u.aor())) {
            Ok(Some(aor)) => aor,
            Ok(None) => {
                self.respond(now, ctx, 416, "Unsupported URI Scheme in To", &[]);
                return;
            }
            Err(_) => return,
        };
        if self.cfg.homing.is_some() && ctx.home_pool.is_none() {
            // authenticated by another server (a Director): the user's pool from the store
            match self.lookup_user(now, ctx, &aor) {
                Some(u) => ctx.home_pool = u.and_then(|u| u.pool),
                None => return,
            }
        }
        if let Some(target) = self.remote_users_server(ctx, &aor) {
            // from outside through an Edge: the client cannot reach the pool itself
            tracing::info!(event = "register.proxied", user = %aor, server = %target.addr, "sign-in through an Edge: proxied to the home pool");
            self.forward_single(now, ctx, target);
            return;
        }
        if let Some(homing) = &self.cfg.homing {
            let hash = user_hash(&aor);
            match homing.place(ctx.home_pool.as_deref(), ctx.source.transport, hash) {
                Place::Here => {}
                Place::Elsewhere { pool, contacts, .. } => {
                    tracing::info!(event = "register.redirected", user = %aor, pool = %pool, "user homed on another pool: redirected");
                    let extra: Vec<(&str, String)> =
                        contacts.into_iter().map(|c| ("Contact", c)).collect();
                    let reason = format!("Moved Permanently (home pool {pool})");
                    self.respond(now, ctx, 301, &reason, &extra);
                    return;
                }
                Place::Nowhere(reason) => {
                    tracing::warn!(event = "register.no_home", user = %aor, reason = %reason, "sign-in refused: no usable home pool (see `confab user move`)");
                    self.respond(now, ctx, 404, &reason, &[]);
                    return;
                }
            }
        }
        if self.pool_draining && !self.alternates.is_empty() {
            let hash = user_hash(&aor);
            let alt = self.alternates[hash % self.alternates.len()].clone();
            if let Ok(addr) = alt.parse::<std::net::SocketAddr>() {
                let t = ctx.source.transport;
                let port = if t == Transport::Tls {
                    addr.port().saturating_add(1)
                } else {
                    addr.port()
                };
                let to = std::net::SocketAddr::new(addr.ip(), port);
                let contact = format!("<sip:{to};transport={}>", t.param());
                tracing::info!(event = "register.drained", user = %aor, to = %to, "server draining: sign-in sent to another server of the pool");
                self.respond(
                    now,
                    ctx,
                    302,
                    "Moved Temporarily (server draining)",
                    &[("Contact", contact)],
                );
                return;
            }
        }
        let plan =
            self.shared
                .location
                .of(&aor)
                .plan(&self.cfg, &ctx.msg, &aor, &ctx.source, now.unix);
        let change = match plan {
            Ok(c) => c,
            Err(refusal) => return self.refuse_register(now, ctx, refusal),
        };
        if change.writes_through() && self.park_reads {
            // a new, moved or removed device is stored before the 200, off the engine
            self.park_write(ctx, change);
            return;
        }
        let written = change.write(self.store.as_ref());
        self.finish_register(now, ctx, change, written);
    }

    /// A REGISTER's change was written (or refused by the store): taken into memory and
    /// answered 200 with the user's contacts, or answered 503/500.
    pub(super) fn finish_register(
        &mut self,
        now: Now,
        ctx: &Ctx,
        change: Change,
        written: confab_store::Result<()>,
    ) {
        if let Err(e) = written {
            return self.refuse_register(now, ctx, storage_error(e));
        }
        let aor = change.aor().to_owned();
        let client = ctx
            .msg
            .header_str(HeaderName::UserAgent)
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_owned();
        for (event, address) in change.sign_ins_and_outs() {
            let address = address.unwrap_or_else(|| ctx.source.remote.to_string());
            self.record_registration(now, &aor, event, &client, &address);
        }
        let (devices_before, contacts, devices) = {
            let mut location = self.shared.location.of(&aor);
            let before = location.devices_fingerprint(&aor);
            let contacts = location.apply(change, now.unix);
            (before, contacts, location.devices_fingerprint(&aor))
        };
        let mut extra: Vec<(&str, String)> = contacts.into_iter().map(|c| ("Contact", c)).collect();
        for p in ctx.msg.values(HeaderName::Path).filter_map(Result::ok) {
            extra.push(("Path", p.to_owned()));
        }
        let outbound = ctx.msg.contacts().ok().is_some_and(|cs| {
            cs.iter().any(|c| matches!(c, sip_proto::header::ContactValue::Addr(a) if a.param("reg-id").is_some()))
        });
        if outbound {
            extra.push(("Require", "outbound".into()));
        }
        extra.push(("Supported", "path, outbound".into()));
        // a device arriving or leaving is news (for the log, presence and the other
        // servers of a pool); a refresh, the bulk of the traffic, is not
        self.respond(now, ctx, 200, "OK", &extra);
        if devices == devices_before {
            tracing::debug!(event = "registrar.refreshed", user = %aor, remote = %ctx.source.remote, devices = devices.0);
        } else {
            tracing::info!(event = "registrar.registered", user = %aor, remote = %ctx.source.remote, devices = devices.0);
            self.emit(CoreEvent::DevicesChanged(aor));
        }
    }

    fn refuse_register(&mut self, now: Now, ctx: &Ctx, (code, reason, header): Refusal) {
        let extra: Vec<(&str, String)> = header.into_iter().collect();
        self.respond(now, ctx, code, &reason, &extra);
    }

    /// A user changed in the store (perhaps by another process): when it was removed or moved
    /// to another pool, its registrations here go (their devices are redirected at their next
    /// REGISTER). A database outage drops nothing.
    pub(super) fn recheck_user(&mut self, aor: &str) {
        if self.shared.location.of(aor).lookup(aor).is_empty() {
            return;
        }
        let stays = match self.store.user(aor) {
            Ok(Some(u)) => self
                .cfg
                .homing
                .as_ref()
                .is_none_or(|h| h.local_pool.is_some() && u.pool == h.local_pool),
            Ok(None) => false,
            Err(_) => true,
        };
        if !stays {
            let gone = self.shared.location.of(aor).forget_user(aor);
            tracing::info!(event = "registrar.user_left", user = %aor, bindings = gone.len(), "user removed or moved to another pool: its registrations here are dropped and their connections closed");
            // a device connected here learns at once: it reconnects and signs in again (and
            // is redirected to its new pool)
            self.closes.extend(gone.iter().filter_map(|b| b.flow));
            self.emit(CoreEvent::DevicesChanged(aor.to_owned()));
        }
    }

    /// A connection closed: the outbound (RFC 5626) bindings that lived on it end.
    pub(super) fn connection_closed(&mut self, now: Now, flow: FlowId) {
        for (aor, key) in self.shared.location.flow_closed(flow) {
            tracing::info!(event = "registrar.flow_failed", user = %aor, "outbound flow closed; binding removed");
            self.write_behind(Op::RemoveBinding(aor.clone(), key.clone()));
            self.record_registration(now, &aor, "sign-out", "", &key);
            self.emit(CoreEvent::DevicesChanged(aor));
        }
    }

    /// In a deployment of several servers: this server's place in its pool (announced in the
    /// database at start), whether an operator drains it, and which servers of the pool take
    /// sign-ins instead. A database failure leaves what was known.
    pub(super) fn refresh_membership(&mut self) {
        if self.membership_pool().is_none() {
            return;
        }
        let (Ok(servers), Ok(drains)) = (
            self.store.settings(SERVER_SETTING),
            self.store.settings(DRAIN_SETTING),
        ) else {
            return;
        };
        self.apply_membership(servers, drains);
    }

    /// This server's pool, when it shares it with other servers (membership matters).
    pub(super) fn membership_pool(&self) -> Option<String> {
        let pool = self
            .cfg
            .homing
            .as_ref()
            .and_then(|h| h.local_pool.clone())?;
        (!self.cfg.peers.is_empty()).then_some(pool)
    }

    /// Takes the pool's servers and drains as read from the database (see
    /// `refresh_membership`); announces this server when it is not among them yet.
    pub(super) fn apply_membership(
        &mut self,
        servers: Vec<(String, String)>,
        drains: Vec<(String, String)>,
    ) {
        let Some(pool) = self.membership_pool() else {
            return;
        };
        let me = self.cfg.server_id.clone();
        if !servers.iter().any(|(n, _)| n[SERVER_SETTING.len()..] == me) {
            if let Err(e) = self
                .store
                .set_setting(&format!("{SERVER_SETTING}{me}"), Some(&pool))
            {
                tracing::warn!(event = "store.error", error = %e, "could not announce this server in the database");
            }
        }
        let drained: Vec<&str> = drains
            .iter()
            .map(|(n, _)| &n[DRAIN_SETTING.len()..])
            .collect();
        let draining = drained.contains(&me.as_str());
        let alternates = servers
            .into_iter()
            .filter(|(_, p)| *p == pool)
            .map(|(n, _)| n[SERVER_SETTING.len()..].to_owned())
            .filter(|id| *id != me && !drained.contains(&id.as_str()))
            .collect();
        self.emit(CoreEvent::PoolChanged {
            draining,
            alternates,
        });
    }

    /// Every shard's copy of this server's place in its pool (see `apply_membership`).
    pub(super) fn pool_changed(&mut self, draining: bool, alternates: Vec<String>) {
        if draining != self.pool_draining && self.is_owner() {
            tracing::warn!(
                event = "server.pool_drain",
                draining,
                "{}",
                if draining {
                    "draining: sign-ins are sent to the other servers of the pool"
                } else {
                    "taking sign-ins again"
                }
            );
        }
        self.pool_draining = draining;
        self.alternates = alternates;
    }

    /// Saves the registration refreshes kept in memory only (see `registrar`); housekeeping
    /// does this every period, and the server before it exits.
    pub fn write_back(&mut self) {
        match self.shared.location.write_back(self.store.as_ref()) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(event = "registrar.written_back", bindings = n),
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "could not save registration refreshes; retrying at the next housekeeping");
            }
        }
    }
}
