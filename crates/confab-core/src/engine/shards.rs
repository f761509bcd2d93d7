//! Shards: one engine per core, each on its own task with its own UDP socket (the kernel
//! spreads datagrams over them by source, `SO_REUSEPORT`) and its share of the connections.
//! What one engine starts, it finishes: the branches and tags it mints end in its mark
//! (`~` and its number), and a message that reaches another engine — a response to its
//! branch, a request in a dialog it owns — is handed to it ([`Handover`]) before anything
//! else looks at it. Presence and housekeeping have one owner (shard 0): presence requests go
//! there, and the core events presence consumes are sent there. Everything else (location,
//! users, digest, lockout) is shared (`shared.rs`).

use std::fmt;

use sip_proto::{Message, Method};
use sip_transport::Source;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};

use confab_store::Store;
use foldhash::{HashMap, HashMapExt};

use super::events::CoreEvent;
use super::shared::Shared;
use super::txn::TimerOwner;
use super::{Engine, EngineStats, Now, HOUSEKEEPING};
use crate::config::EngineConfig;
use crate::location::Location;
use crate::parts::Parts;
use crate::pipeline::{EDGE, FRONT_END};
use crate::presence::Presence;

/// The shard that owns presence (its requests, its state, its NOTIFYs) and housekeeping.
pub(super) const OWNER: usize = 0;

/// Work for another shard: a message that belongs to it, or a core event it consumes.
#[derive(Debug)]
pub struct Handover(pub(super) Work);

#[derive(Debug)]
pub(super) enum Work {
    Message(Message, Source),
    Event(CoreEvent),
}

/// The mark a shard puts at the end of what it mints: `~` and its number in hex.
pub(super) struct Mark(usize);

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "~{:x}", self.0)
    }
}

/// The shard whose mark `token` (a branch or tag) carries, if any: the hex digits after its
/// last `~`.
pub(super) fn marked(token: &str) -> Option<usize> {
    let (_, rest) = token.rsplit_once('~')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .map_or(rest, |end| &rest[..end]);
    usize::from_str_radix(digits, 16).ok()
}

impl Engine {
    /// One engine per store handle given (`Store::handle`: the same connection), sharing the
    /// state of `shared.rs`; see the module's doc for how work is split between them.
    pub fn sharded(
        cfg: EngineConfig,
        stores: Vec<Box<dyn Store>>,
        secret: [u8; 32],
        now: Now,
    ) -> Result<Vec<Self>, confab_store::StoreError> {
        let Some(store) = stores.first() else {
            return Ok(Vec::new());
        };
        let bindings: Vec<_> = store
            .bindings(now.unix, None)?
            .into_iter()
            .filter(|b| b.server == cfg.server_id || b.server.is_empty())
            .collect();
        store.purge_expired(now.unix)?;
        tracing::info!(
            event = "registrar.restored",
            bindings = bindings.len(),
            "registrations restored from the store"
        );
        let location = Parts::<Location>::load(bindings);
        let shared = std::sync::Arc::new(Shared::new(&cfg, location, secret, now.mono));
        let shards = stores.len();
        let mut engines: Vec<Self> = stores
            .into_iter()
            .enumerate()
            .map(|(shard, store)| {
                Self::one_shard(
                    cfg.clone(),
                    store,
                    shared.clone(),
                    (shard, shards),
                    secret,
                    now,
                )
            })
            .collect();
        if cfg.edge.is_none() {
            // response groups keep their queues in one place: the owner shard
            let rgs = crate::rgs::ResponseGroups::new(
                shared.rgs.clone(),
                cfg.media_ports,
                shared.rgs_stats.clone(),
            );
            engines[OWNER].add_application(Box::new(rgs));
            let focus = crate::meetings::Focus::new(
                shared.meetings.clone(),
                cfg.media_ports,
                shared.meeting_stats.clone(),
            );
            engines[OWNER].add_application(Box::new(focus));
            // what the archive keeps holds from the first message, not the first housekeeping
            engines[OWNER].read_archiving();
        }
        Ok(engines)
    }

    fn one_shard(
        cfg: EngineConfig,
        store: Box<dyn Store>,
        shared: std::sync::Arc<Shared>,
        (shard, shards): (usize, usize),
        secret: [u8; 32],
        now: Now,
    ) -> Self {
        let mut presence = Presence::new(
            crate::presence::PresenceConfig {
                domains: cfg.domains.clone(),
                ..cfg.presence.clone()
            },
            u64::from_le_bytes(secret[8..16].try_into().unwrap_or_default()) ^ cfg.instance_seed,
        );
        if shard == OWNER {
            if !cfg.peers.is_empty() {
                presence.share(&cfg.server_id);
            }
            presence.restore(store.as_ref(), now.unix, shared.location.device_keys());
        }
        let mut e = Self {
            store,
            pipeline: if cfg.edge.is_some() { EDGE } else { FRONT_END },
            target_sources: crate::pipeline::FRONT_END_TARGETS,
            shard,
            shards,
            shared,
            handovers: VecDeque::new(),
            seen_flows: HashSet::new(),
            presence,
            server_tx: HashMap::new(),
            client_tx: HashMap::new(),
            proxies: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            next_id: 1,
            tag_seed: u64::from_le_bytes(secret[..8].try_into().unwrap_or_default())
                ^ cfg.instance_seed.rotate_left(17),
            secret,
            stats: EngineStats::default(),
            draining: false,
            overloaded: false,
            pool_draining: false,
            alternates: Vec::new(),
            closes: Vec::new(),
            newly_trusted: Vec::new(),
            park_reads: false,
            jobs: VecDeque::new(),
            parked: HashMap::new(),
            lookups: VecDeque::new(),
            partner_names: Vec::new(),
            partners: HashMap::new(),
            proven: HashMap::new(),
            core_events: VecDeque::new(),
            apps: Vec::new(),
            app_dialogs: HashMap::new(),
            app_dialog_ids: HashMap::new(),
            app_calls: HashMap::new(),
            app_relays: HashMap::new(),
            media_out: VecDeque::new(),
            upkeep_pending: 0,
            rgs_seen: 0,
            meetings_seen: 0,
            relay_seen: 0,
            archiving_seen: 0,
            archive_out: VecDeque::new(),
            voice: None,
            voice_generation: 0,
            resolves: Vec::new(),
            next_probe: None,
            probes: 0,
            cfg,
        };
        if e.is_owner() {
            e.timers
                .push(Reverse((now.mono + HOUSEKEEPING, TimerOwner::Housekeeping)));
            // the voice configuration in force from the start (later changes: housekeeping)
            let text = crate::voice::stored(e.store.as_ref());
            e.voice_read(text);
        }
        e.refresh_membership();
        e.deliver_events(now);
        e
    }

    /// This shard's mark, for branches and tags it mints.
    pub(super) fn mark(&self) -> Mark {
        Mark(self.shard)
    }

    /// Whether this shard owns presence and housekeeping.
    pub(super) fn is_owner(&self) -> bool {
        self.shard == OWNER
    }

    /// The shard a message belongs to when it is another: a response to a branch another
    /// minted, a request within a dialog another owns, presence's requests. A mark naming no
    /// shard (a peer's tag that happens to hold a `~`) is ours.
    pub(super) fn belongs_elsewhere(&self, m: &Message) -> Option<usize> {
        if self.shards == 1 {
            return None;
        }
        let shard = if m.is_request() {
            match m.method() {
                Method::Publish | Method::Subscribe => OWNER,
                _ => match m.to().ok()?.tag() {
                    Some(tag) => marked(tag)?,
                    None if self.is_application_request(m) => OWNER,
                    None => return None,
                },
            }
        } else {
            marked(m.top_via().ok()?.branch()?)?
        };
        (shard != self.shard && shard < self.shards).then_some(shard)
    }

    /// Whether a request outside a dialog is for an application: a response-group workflow
    /// (whose queues live on the owner shard) or a meeting (whose focus does).
    fn is_application_request(&self, m: &Message) -> bool {
        // a sign-in never is (applications get no REGISTER): the common case costs no lock
        if m.method() == Method::Register {
            return false;
        }
        let uri = m.uri().ok();
        let Some(user) = uri.as_ref().and_then(|u| u.as_sip()).and_then(|s| s.user) else {
            return false;
        };
        confab_meetings::is_meeting_user(user)
            || self
                .rgs_snapshot()
                .is_some_and(|s| s.workflows() > 0 && s.workflow_of_user(user).is_some())
    }

    pub(super) fn hand_over(&mut self, shard: usize, work: Work) {
        self.handovers.push_back((shard, Handover(work)));
    }

    /// Work another shard handed over (see [`Engine::poll_handover`]).
    pub fn handle_handover(&mut self, now: Now, h: Handover) {
        match h.0 {
            Work::Message(m, source) => self.handle_message(now, m, source),
            Work::Event(ev) => self.core_events.push_back((ev, false)),
        }
        self.deliver_events(now);
    }

    /// Work for another shard, to be given to its [`Engine::handle_handover`].
    pub fn poll_handover(&mut self) -> Option<(usize, Handover)> {
        self.handovers.pop_front()
    }

    /// Which shard this engine is, of how many.
    pub fn shard(&self) -> (usize, usize) {
        (self.shard, self.shards)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EngineConfig;
    use crate::engine::sim::{add_users, reply, Sim, ALICE, BOB, INVITE_BOB};
    use std::time::Duration;

    fn register(user: &str, at: &str, n: u32) -> String {
        format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {at};branch=z9hG4bKr{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r{n}\r\nTo: <sip:{user}@example.com>\r\nCall-ID: reg-{user}-{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{at}>\r\n{{auth}}Content-Length: 0\r\n\r\n")
    }

    const MESSAGE_BOB: &str = "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: msg-1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n{auth}Content-Length: 2\r\n\r\nhi";

    /// Two shards; alice's messages reach shard 0, bob's shard 1.
    fn two_shards(cfg: EngineConfig) -> Sim {
        let mut sim = Sim::sharded(2, cfg, |s| add_users(s, &["alice", "bob"], &[]));
        sim.arrive_at(ALICE, 0);
        sim.arrive_at(BOB, 1);
        sim
    }

    #[test]
    fn a_device_registered_on_one_shard_is_reached_from_another_and_its_answer_comes_back() {
        let mut sim = two_shards(EngineConfig::default());
        let ok = sim.send_authenticated(BOB, "bob", &register("bob", BOB, 1));
        assert_eq!(ok[0].status(), 200, "bob signs in through shard 1");
        assert_eq!(sim.engine.registrations(), 1, "shard 0 sees bob's device");
        sim.send_authenticated(ALICE, "alice", MESSAGE_BOB);
        let to_bob = sim.take_to(BOB);
        assert_eq!(to_bob.len(), 1, "shard 0 forwards alice's MESSAGE to bob");
        let branch = to_bob[0].top_via().unwrap().branch().unwrap().to_owned();
        assert_eq!(marked(&branch), Some(0), "{branch}");
        // bob's answer reaches shard 1, which hands it to shard 0's transaction
        sim.send(BOB, &reply(&to_bob[0], 200, "OK", "b1"));
        let up = sim.take_to(ALICE);
        assert_eq!(up.iter().map(Message::status).collect::<Vec<_>>(), [200]);
        assert_eq!(sim.others[0].stats().responses, 0, "handed over untouched");
        assert_eq!(sim.engine.stats().responses, 1);
    }

    #[test]
    fn what_one_shard_hands_another_arrives_in_the_order_it_came() {
        let mut sim = two_shards(EngineConfig::default());
        sim.send_authenticated(BOB, "bob", &register("bob", BOB, 1));
        sim.send_authenticated(ALICE, "alice", INVITE_BOB);
        let invite = sim.take_to(BOB).pop().expect("the INVITE reaches bob");
        sim.take_to(ALICE);
        // bob's 180 and 200 are read in one batch by shard 1 and handed to shard 0 together
        let ringing = reply(&invite, 180, "Ringing", "b1");
        let ok = reply(&invite, 200, "OK", "b1");
        sim.send_batch(BOB, &[&ringing, &ok]);
        let up = sim.take_to(ALICE);
        assert_eq!(
            up.iter().map(Message::status).collect::<Vec<_>>(),
            [180, 200]
        );
    }

    #[test]
    fn a_request_in_a_dialog_another_shard_made_is_handed_to_it() {
        let mut sim = two_shards(EngineConfig::default());
        let bye = "BYE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKb1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=77~1\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
        sim.send(ALICE, bye);
        assert_eq!(sim.engine.stats().requests, 0, "shard 0 only passed it on");
        assert_eq!(
            sim.others[0].stats().requests,
            1,
            "the dialog's shard took it"
        );
        // a tag naming no shard of ours (another program's `~`) stays where it arrived
        sim.send(
            ALICE,
            &bye.replace("tag=77~1", "tag=77~9").replace("bKb1", "bKb2"),
        );
        assert_eq!(sim.engine.stats().requests, 1);
    }

    #[test]
    fn failures_on_different_shards_count_once_toward_a_lockout() {
        let cfg = EngineConfig {
            lockout: sip_auth::Policy {
                failures: 4,
                ..EngineConfig::default().lockout
            },
            ..EngineConfig::default()
        };
        let mut sim = two_shards(cfg);
        // the same address (ALICE's), another port: another shard
        let elsewhere = "127.0.0.2:5066";
        sim.arrive_at(elsewhere, 1);
        let other_address = "127.0.0.4:5066";
        sim.arrive_at(other_address, 1);
        for (n, from) in [(1, ALICE), (2, elsewhere), (3, ALICE), (4, elsewhere)] {
            let r = sim.send_with_password(from, "alice", "wrong", &register("alice", from, n));
            let expected = if n < 4 { 401 } else { 403 };
            assert_eq!(r[0].status(), expected, "attempt {n}: {}", r[0].reason());
        }
        for from in [ALICE, elsewhere] {
            sim.send(from, &register("alice", from, 5).replace("{auth}", ""));
            let r = sim.take_to(from);
            assert_eq!(
                r[0].status(),
                403,
                "locked on every shard: {}",
                r[0].reason()
            );
        }
        // smart lockout: the guesses from one address do not lock alice elsewhere
        sim.send(
            other_address,
            &register("alice", other_address, 6).replace("{auth}", ""),
        );
        assert_eq!(sim.take_to(other_address)[0].status(), 401);
        assert_eq!(
            sim.engine.stats().lockouts + sim.others[0].stats().lockouts,
            1
        );
    }

    #[test]
    fn presence_requests_and_the_news_presence_needs_go_to_the_owner_shard() {
        let mut sim = two_shards(EngineConfig::default());
        let body = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:bob@example.com\"><tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>";
        let publish = format!("PUBLISH sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKp1\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=p1\r\nTo: <sip:bob@example.com>\r\nCall-ID: pub-1\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\n{{auth}}Content-Length: {}\r\n\r\n{body}", body.len());
        let ok = sim.send_authenticated(BOB, "bob", &publish);
        assert_eq!(ok[0].status(), 200, "{}", ok[0].reason());
        assert_eq!(
            sim.engine.presence_stats().publications,
            1,
            "the owner holds it"
        );
        assert_eq!(sim.others[0].presence_stats().publications, 0);
        // alice watches bob through shard 1 too; the owner answers and NOTIFYs
        sim.arrive_at(ALICE, 1);
        let subscribe = format!("SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ALICE};branch=z9hG4bKs1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=s1\r\nTo: <sip:bob@example.com>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nAccept: application/pidf+xml\r\nContact: <sip:alice@{ALICE}>\r\nExpires: 600\r\n{{auth}}Content-Length: 0\r\n\r\n");
        let got = sim.send_authenticated(ALICE, "alice", &subscribe);
        let notify = got
            .iter()
            .find(|m| m.is_request())
            .expect("a NOTIFY")
            .clone();
        assert!(got.iter().any(|m| m.status() / 100 == 2), "{got:?}");
        // alice's 200 to the NOTIFY reaches shard 1 and ends the owner's transaction: no
        // retransmission follows
        sim.send(ALICE, &reply(&notify, 200, "OK", "x"));
        sim.advance(Duration::from_secs(10));
        let again: Vec<_> = sim
            .take_to(ALICE)
            .into_iter()
            .filter(|m| m.is_request())
            .collect();
        assert!(
            again.is_empty(),
            "NOTIFY resent: its 200 was lost: {again:?}"
        );
        // bob's devices change on shard 1 (a REGISTER): the owner hears of it
        let before = sim.engine.presence_stats().notices;
        let ok = sim.send_authenticated(BOB, "bob", &register("bob", BOB, 9));
        assert_eq!(ok[0].status(), 200);
        assert!(
            sim.engine.presence_stats().notices > before,
            "the owner NOTIFYs alice of bob's new device"
        );
    }

    #[test]
    fn a_mark_is_read_back_wherever_it_sits_in_a_token() {
        assert_eq!(marked(&format!("abc{}", Mark(1))), Some(1));
        assert_eq!(marked(&format!("z9hG4bK5-1f{}-seal", Mark(10))), Some(10));
        assert_eq!(marked("z9hG4bKplain"), None);
        assert_eq!(marked("tag~"), None);
        assert_eq!(marked("a~1~2"), Some(2));
    }

    #[test]
    fn a_client_known_to_need_md5_alone_is_known_to_the_presence_owner_too() {
        let mut sim = two_shards(EngineConfig::default());
        let challenges = |sim: &mut Sim| {
            let r = sim.take_to(BOB);
            r[0].values(sip_proto::HeaderName::WwwAuthenticate)
                .chain(r[0].values(sip_proto::HeaderName::ProxyAuthenticate))
                .count()
        };
        let reg = register("bob", BOB, 1)
            .replace("{auth}", "User-Agent: baresip v1.0.0 (x86_64/linux)\r\n");
        sim.send(BOB, &reg);
        assert_eq!(
            challenges(&mut sim),
            1,
            "MD5 alone for baresip 1.0, on shard 1"
        );
        // libre's SUBSCRIBE names no User-Agent, and goes to the owner shard
        let subscribe = format!("SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {BOB};branch=z9hG4bKs1\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=s1\r\nTo: <sip:alice@example.com>\r\nCall-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nEvent: presence\r\nContact: <sip:bob@{BOB}>\r\nContent-Length: 0\r\n\r\n");
        sim.send(BOB, &subscribe);
        assert_eq!(challenges(&mut sim), 1, "MD5 alone from the owner as well");
    }
}
