//! What the engines of all cores share (see `shards`): the location table, the user cache,
//! digest replay state, lockout counters and which connections are open. Each is cut into
//! [`Parts`] by key, so that two engines wait for each other only when they touch the same
//! part at the same moment: no lock covers a whole table on the request path.

use std::collections::HashSet;

use foldhash::{HashMap, HashMapExt};
use sip_auth::{DigestServer, Guards, Lockout};
use sip_transport::FlowId;

use crate::config::EngineConfig;
use crate::location::Location;
use crate::parts::Parts;

/// The state every engine of the process reads and writes.
pub(crate) struct Shared {
    /// Digest challenges and replay state per realm (each striped inside).
    pub(crate) digest: HashMap<String, DigestServer>,
    /// Failures per source address (keyed by the address), counted once however many engines
    /// see them.
    pub(crate) lockout: Parts<Lockout>,
    /// Per user (keyed by address of record): failures per source, familiar sources, the
    /// ceiling over unfamiliar ones.
    pub(crate) guards: Parts<Guards>,
    pub(crate) location: Parts<Location>,
    /// Users already read from the store, dropped when the change log names them (a password
    /// change, a move, a removal); a user unknown here is always read from the store.
    pub(crate) users: Parts<HashMap<String, confab_store::User>>,
    /// Connections messages arrived on and not yet closed: a binding's connection is used
    /// only while it is here.
    pub(crate) open_flows: Parts<HashSet<FlowId>>,
    /// Sources known to be clients that stop at a non-MD5 challenge (see `md5_only_client`):
    /// their SUBSCRIBEs, which go to the presence owner, name no User-Agent.
    pub(crate) md5_only_sources: Parts<HashSet<std::net::SocketAddr>>,
    /// Addresses users authenticated from: served first under overload.
    pub(crate) trusted_sources: Parts<HashSet<std::net::IpAddr>>,
    /// The voice configuration in force (`crate::voice`), replaced whole when it changes;
    /// engines compare `voice_generation` with theirs to pick a new one up.
    pub(crate) voice: std::sync::RwLock<Option<std::sync::Arc<crate::voice::VoiceState>>>,
    pub(crate) voice_generation: std::sync::atomic::AtomicU64,
    /// The response-group configuration in force (`crate::rgs`), and what the application
    /// holds now.
    pub(crate) rgs: crate::rgs::Handle,
    pub(crate) rgs_stats: std::sync::Arc<std::sync::RwLock<crate::rgs::RgsStats>>,
    /// The meetings in force (`crate::meetings`), and what the focus holds now.
    pub(crate) meetings: crate::meetings::Handle,
    /// The media relay's secrets in force (`crate::media_relay`).
    pub(crate) relay_secrets: super::media_relay::Handle,
    /// The archiving policies in force (`archive.rs`).
    pub(crate) archiving: super::archive::Handle,
    /// Calls whose record is not written yet: shared, as a call's BYE may reach any shard.
    pub(crate) calls: std::sync::Mutex<crate::cdr::CallLog>,
    pub(crate) meeting_stats: std::sync::Arc<std::sync::RwLock<crate::meetings::MeetingStats>>,
}

impl Shared {
    pub(crate) fn new(
        cfg: &EngineConfig,
        location: Parts<Location>,
        secret: [u8; 32],
        epoch: std::time::Instant,
    ) -> Self {
        let digest = cfg
            .domains
            .iter()
            .map(|d| {
                (
                    d.to_ascii_lowercase(),
                    DigestServer::new(d, secret, epoch, cfg.nonce_ttl),
                )
            })
            .collect();
        let p = cfg.lockout;
        let lockout = Parts::new(|| {
            Lockout::new(
                p.failures,
                p.window,
                p.lock_for,
                LOCKOUT_KEYS / crate::parts::PARTS,
            )
        });
        let guards = Parts::new(|| Guards::new(p, LOCKOUT_KEYS / crate::parts::PARTS));
        Self {
            digest,
            lockout,
            guards,
            location,
            users: Parts::new(HashMap::new),
            open_flows: Parts::new(HashSet::new),
            md5_only_sources: Parts::new(HashSet::new),
            trusted_sources: Parts::new(HashSet::new),
            voice: std::sync::RwLock::new(None),
            voice_generation: std::sync::atomic::AtomicU64::new(0),
            rgs: crate::rgs::Handle::default(),
            rgs_stats: std::sync::Arc::default(),
            meetings: crate::meetings::Handle::default(),
            relay_secrets: super::media_relay::Handle::default(),
            archiving: super::archive::Handle::default(),
            calls: std::sync::Mutex::default(),
            meeting_stats: std::sync::Arc::default(),
        }
    }
}

/// Keys (users and sources) the lockout tracks at most, over all parts.
const LOCKOUT_KEYS: usize = 100_000;

/// Trusted addresses kept at most, over all parts (a part starts again when full).
const TRUSTED_SOURCES: usize = 100_000;

impl super::Engine {
    /// A user authenticated from `ip`: under overload its requests are served first, here
    /// and at the transports (told once, through `poll_trusted`).
    pub(super) fn trust_source(&mut self, ip: std::net::IpAddr) {
        let mut part = self.shared.trusted_sources.of(&ip);
        if part.contains(&ip) {
            return;
        }
        if part.len() >= TRUSTED_SOURCES / crate::parts::PARTS {
            part.clear();
        }
        part.insert(ip);
        drop(part);
        self.newly_trusted.push(ip);
    }

    pub(super) fn is_trusted_source(&self, ip: std::net::IpAddr) -> bool {
        self.shared.trusted_sources.of(&ip).contains(&ip)
    }

    /// Whether a connection is still open (a binding's connection is used only while it is).
    pub(super) fn flow_is_open(&self, flow: FlowId) -> bool {
        self.shared.open_flows.of(&flow).contains(&flow)
    }
}
