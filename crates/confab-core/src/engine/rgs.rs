//! The engine's side of response groups (`crate::rgs`): the configuration read again by
//! housekeeping (the document, who is signed in, and the stored sounds when the document
//! changed), built into a snapshot and published to every shard.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use confab_rgs::{AUDIO_PREFIX, RGS_SETTING, SIGNED_IN_SETTING};
use confab_store::Store;

use super::Engine;
use crate::rgs::{RgsStats, Snapshot};

/// What housekeeping read of the response-group settings.
#[derive(Debug)]
pub(super) struct RgsRead {
    hash: u64,
    doc: String,
    signed_in: String,
    /// The stored sounds: read only when the document or sign-ins changed.
    audio: Vec<(String, String)>,
}

/// Reads the settings; `None` when they are what `known` (their hash) says.
pub(super) fn rgs_stored(store: &dyn Store, known: u64) -> confab_store::Result<Option<RgsRead>> {
    let mut doc = String::new();
    let mut signed_in = String::new();
    for (name, value) in store.settings(RGS_SETTING)? {
        if name == RGS_SETTING {
            doc = value;
        } else if name == SIGNED_IN_SETTING {
            signed_in = value;
        }
    }
    let hash = hash_of(&doc, &signed_in);
    if hash == known {
        return Ok(None);
    }
    let audio = if doc.trim().is_empty() {
        Vec::new()
    } else {
        store.settings(AUDIO_PREFIX)?
    };
    Ok(Some(RgsRead {
        hash,
        doc,
        signed_in,
        audio,
    }))
}

fn hash_of(doc: &str, signed_in: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (doc, signed_in).hash(&mut h);
    h.finish()
}

impl Engine {
    /// Housekeeping's read with a local database.
    pub(super) fn read_rgs(&mut self) {
        let read = rgs_stored(self.store.as_ref(), self.rgs_seen);
        self.rgs_read(read);
    }

    /// The settings read: a new snapshot published when they changed and are good.
    pub(super) fn rgs_read(&mut self, read: confab_store::Result<Option<RgsRead>>) {
        let read = match read {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "cannot read the response-group configuration; the one in force stays");
                return;
            }
        };
        self.rgs_seen = read.hash;
        let snapshot = if read.doc.trim().is_empty() {
            None
        } else {
            match Snapshot::build(&read.doc, &read.signed_in, &read.audio) {
                Ok(s) => {
                    tracing::info!(
                        event = "rgs.config",
                        workflows = s.workflows(),
                        "response-group configuration in force"
                    );
                    Some(Arc::new(s))
                }
                Err(e) => {
                    tracing::error!(event = "rgs.config_refused", error = %e, "the stored response-group configuration cannot be served; the one in force stays");
                    return;
                }
            }
        };
        *self
            .shared
            .rgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }

    /// The response-group configuration in force, if any.
    pub(super) fn rgs_snapshot(&self) -> Option<Arc<Snapshot>> {
        crate::apps::in_force(&self.shared.rgs)
    }

    /// The SIP address of the application holding `number` (`+14255550100`), if one does: a
    /// workflow's, or the conferencing attendant's for a dial-in access number.
    pub(super) fn application_of_number(&self, number: &str) -> Option<String> {
        let workflow = self.rgs_snapshot().and_then(|snap| {
            let w = snap.workflow_of_number(number)?;
            Some(snap.config.workflows[w].address.clone())
        });
        workflow.or_else(|| self.access_number_target(number))
    }

    /// A workflow placing a call to a number (a queue forwarding to one), as the caller the
    /// voice routing sees: the global dial plan and voice policy, the workflow's number shown.
    pub(super) fn workflow_caller(&self, aor: &str) -> Option<confab_store::User> {
        let snap = self.rgs_snapshot()?;
        let user = aor.split('@').next()?;
        let w = &snap.config.workflows[snap.workflow_of_user(user)?];
        Some(confab_store::User {
            aor: aor.to_owned(),
            realm: String::new(),
            ha1_md5: String::new(),
            ha1_sha256: String::new(),
            pool: None,
            access: confab_store::Access::default(),
            voice: confab_store::Telephony {
                line_uri: w.number.clone(),
                enabled: true,
                ..confab_store::Telephony::default()
            },
        })
    }

    /// A call to a number an application holds: proxied to its address, through this server
    /// again (a spiral under our seal), so that it reaches the owner shard like any call to
    /// the address.
    pub(super) fn call_application(
        &mut self,
        now: super::Now,
        ctx: &mut super::Ctx,
        address: &str,
    ) {
        match self.own_target(address) {
            Some(target) => self.fork(now, ctx, vec![target]),
            None => {
                let reason = "Service Unavailable (applications are reached over UDP at an address: give --bind an IP address)";
                self.respond(now, ctx, 503, reason, &[]);
            }
        }
    }

    /// The branch toward an address this server answers (an application's): this server
    /// itself, over UDP.
    pub(super) fn own_target(&self, address: &str) -> Option<super::targets::ForkTarget> {
        let ip = self
            .cfg
            .advertised_host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .ok()?;
        Some(super::targets::ForkTarget {
            uri: address.to_owned(),
            path: Vec::new(),
            target: sip_transport::Target {
                transport: sip_transport::Transport::Udp,
                addr: std::net::SocketAddr::new(ip, self.cfg.udp_port?),
                flow: None,
            },
            binding: None,
            pstn: None,
        })
    }

    /// In a pool of several servers, the one that runs the pool's applications (its queues
    /// are the pool's): the first by address of those taking calls. `None` when it is this
    /// one (or it is alone).
    pub(super) fn application_server(&self) -> Option<sip_transport::Target> {
        let me = (!self.pool_draining).then_some(self.cfg.server_id.as_str());
        let owner = self.alternates.iter().map(String::as_str).chain(me).min()?;
        if Some(owner) == me {
            return None;
        }
        let addr: std::net::SocketAddr = owner.parse().ok()?;
        // servers talk over mutually authenticated TLS, on the port after their SIP port
        Some(sip_transport::Target {
            transport: sip_transport::Transport::Tls,
            addr: std::net::SocketAddr::new(addr.ip(), addr.port().saturating_add(1)),
            flow: None,
        })
    }

    /// The other servers of the pool, as branches toward `aor` there: each rings its own
    /// devices of the user (an application's call reaches agents signed in anywhere in the
    /// pool).
    pub(super) fn pool_branches(&self, aor: &str) -> Vec<super::targets::ForkTarget> {
        self.alternates
            .iter()
            .filter_map(|s| s.parse::<std::net::SocketAddr>().ok())
            .map(|addr| {
                let tls = std::net::SocketAddr::new(addr.ip(), addr.port().saturating_add(1));
                super::targets::ForkTarget {
                    uri: format!("sip:{aor}"),
                    path: vec![format!("<sip:{tls};transport=tls;lr>")],
                    target: sip_transport::Target {
                        transport: sip_transport::Transport::Tls,
                        addr: tls,
                        flow: None,
                    },
                    binding: None,
                    pstn: None,
                }
            })
            .collect()
    }

    /// What the response-group application holds now.
    pub fn rgs_stats(&self) -> RgsStats {
        *self
            .shared
            .rgs_stats
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
