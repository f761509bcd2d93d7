//! Target sources (`pipeline::TargetSource`): where a request for one of our users may go.
//! Each source adds branches for the proxy's fork; the role lists its sources in order.

use std::net::SocketAddr;

use sip_proto::header::NameAddr;
use sip_proto::Uri;
use sip_transport::{Target, Transport};

use super::park::Fetch;
use super::{Ctx, Engine, Now};
use crate::location::LiveBinding;
use crate::pipeline::TargetSource;
use crate::routing::uri_target;

/// One branch of a fork: the Request-URI, the Route values ahead of the rest, where to send.
#[derive(Debug)]
pub(super) struct ForkTarget {
    pub(super) uri: String,
    pub(super) path: Vec<String>,
    pub(super) target: Target,
    /// The registration it came from, for a source that learns it is held elsewhere.
    pub(super) binding: Option<String>,
    /// A trunk to the phone network (`voice.rs`): such branches are tried one after another.
    pub(super) pstn: Option<Box<super::voice::PstnLeg>>,
}

/// What the sources found for one user.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub(super) targets: Vec<ForkTarget>,
    /// Registrations known, reachable or not (480 "no device registered" when none).
    pub(super) registered: usize,
}

impl Engine {
    /// Asks the role's sources, in order, where a request for `aor` (Request-URI `uri`) goes;
    /// `None` when one parked the request.
    pub(super) fn find_targets(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        aor: &str,
        uri: &str,
    ) -> Option<Found> {
        let mut found = Found::default();
        for &source in self.target_sources {
            match source {
                TargetSource::Devices => self.device_targets(now, aor, &mut found),
                TargetSource::PoolServers => self.pool_targets(now, ctx, aor, uri, &mut found)?,
            }
        }
        Some(found)
    }

    /// The user's unexpired registrations here.
    pub(super) fn device_targets(&self, now: Now, aor: &str, found: &mut Found) {
        let location = self.shared.location.of(aor);
        for b in location.lookup(aor) {
            if b.rec.expires_at <= now.unix {
                continue;
            }
            found.registered += 1;
            if let Some(target) = self.binding_target(b) {
                found.targets.push(ForkTarget {
                    uri: b.rec.contact.clone(),
                    path: b.rec.path.clone(),
                    target,
                    binding: Some(b.rec.key.clone()),
                    pstn: None,
                });
            }
        }
    }

    /// In a deployment of several servers: one branch to each other server holding some of
    /// `aor`'s registrations (from the store, by their SIP address), and this server's own
    /// dropped where the store gives them to another server now. A database failure leaves
    /// what the devices source found.
    fn pool_targets(
        &mut self,
        now: Now,
        ctx: &mut Ctx,
        aor: &str,
        uri: &str,
        found: &mut Found,
    ) -> Option<()> {
        if self.cfg.peers.is_empty() || self.is_peer_forwarded(ctx) {
            return Some(()); // alone, or the forwarding server covered the others
        }
        let rows = match self.fetch_bindings(now, ctx, aor) {
            Fetch::Parked => return None,
            Fetch::Ready(Ok(rows)) => rows,
            Fetch::Ready(Err(e)) => {
                tracing::warn!(event = "store.error", error = %e, user = %aor, "registrations at other servers unknown; delivering to this server's only");
                return Some(());
            }
        };
        let me = &self.cfg.server_id;
        let before = found.targets.len();
        found.targets.retain(|t| {
            t.binding
                .as_ref()
                .is_none_or(|key| rows.iter().any(|r| &r.key == key && &r.server == me))
        });
        found.registered -= before - found.targets.len();
        let mut servers: Vec<SocketAddr> = Vec::new();
        for r in rows {
            if &r.server == me || r.server.is_empty() {
                continue;
            }
            match r.server.parse() {
                Ok(addr) if !servers.contains(&addr) => servers.push(addr),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(event = "registrar.bad_server", user = %aor, server = %r.server, "registration names a server that is not host:port; skipped")
                }
            }
        }
        for addr in servers {
            // the Request-URI stays the user's: that server forks to its own devices; servers
            // talk over mutually authenticated TLS, on the port after their SIP port
            let tls = SocketAddr::new(addr.ip(), addr.port().saturating_add(1));
            found.registered += 1;
            found.targets.push(ForkTarget {
                uri: uri.to_owned(),
                path: vec![format!("<sip:{tls};transport=tls;lr>")],
                target: Target {
                    transport: Transport::Tls,
                    addr: tls,
                    flow: None,
                },
                binding: None,
                pstn: None,
            });
        }
        Some(())
    }

    /// Where to reach a registered device: its Path, its open connection, or its contact.
    pub(super) fn binding_target(&self, b: &LiveBinding) -> Option<Target> {
        let transport = Transport::from_name(&b.rec.transport).unwrap_or(Transport::Udp);
        if let Some(first) = b.rec.path.first() {
            let na = NameAddr::parse(first, "Path").ok()?;
            return uri_target(na.uri.as_sip()?, transport);
        }
        if transport.is_reliable() {
            if let (Some(flow), Some(addr)) = (b.flow.filter(|f| self.flow_is_open(*f)), b.source())
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

#[cfg(test)]
mod tests {
    use sip_proto::HeaderName;

    use crate::config::EngineConfig;
    use crate::engine::sim::{add_users, Sim, ALICE, BOB, INVITE_BOB, SERVER};

    #[test]
    fn in_a_pool_a_device_that_moved_to_another_server_is_reached_through_that_server() {
        let cfg = EngineConfig {
            server_id: SERVER.into(),
            peers: vec!["127.0.0.9".into()],
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(cfg, |s| {
            add_users(s, &["alice", "bob"], &[("bob", BOB)]);
            let mut b = s.bindings(0, Some("bob@example.com")).unwrap().remove(0);
            b.server = SERVER.into();
            s.save_binding(&b).unwrap();
        });
        assert_eq!(sim.engine.registrations(), 1, "bob's device was held here");
        // bob's device signed in again at the pool's other server
        let mut moved = sim
            .engine
            .store
            .bindings(0, Some("bob@example.com"))
            .unwrap()
            .remove(0);
        moved.server = "127.0.0.9:5060".into();
        sim.engine.store.save_binding(&moved).unwrap();

        sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        assert!(
            sim.take_to(BOB).is_empty(),
            "not to the device directly any more"
        );
        let via_peer = sim.take_to("127.0.0.9:5061");
        assert_eq!(
            via_peer.len(),
            1,
            "one branch, to the server holding the device"
        );
        let invite = &via_peer[0];
        assert_eq!(
            invite.uri_str(),
            "sip:bob@example.com",
            "the user's URI: it forks there"
        );
        let route: Vec<&str> = invite
            .values(HeaderName::Route)
            .map(Result::unwrap)
            .collect();
        assert_eq!(route, ["<sip:127.0.0.9:5061;transport=tls;lr>"]);
    }
}
