//! The engine: transaction tables, the processor chain, and proxy bookkeeping, driven by
//! received bytes and time. No sockets, no clock: [`crate::server`] feeds it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};

// SipHash cost 4.5% of a REGISTER's CPU; these keys (branches, users) are hashed every request
use foldhash::HashMap;
use std::time::{Duration, Instant};

use confab_store::Store;
use sip_proto::{salvage_response, Message, ParseError};
use sip_transport::{Event, FlowId, Source, Target};

mod app_calls;
mod apps;
mod archive;
#[cfg(test)]
mod archive_tests;
mod auth;
mod branches;
mod checks;
mod dispatch;
mod edge;
mod events;
mod federation;
mod forwarding;
mod housekeeping;
mod media_relay;
mod meetings;
mod park;
mod presence_sip;
mod proxy;
mod registrar;
#[cfg(test)]
mod relay_tests;
mod reply;
mod rgs;
mod shards;
mod shared;
#[cfg(test)]
pub(crate) mod sim;
mod stats;
mod targets;
mod txn;
mod voice;
#[cfg(test)]
mod voice_tests;

pub(crate) use archive::ArchiveItem;
use events::CoreEvent;
pub use federation::{Lookup, PartnerEdge, PartnerError, PartnerResolver};
pub use housekeeping::UNLOCK_CHANGE;
pub use park::{Fetched, StoreJob};
pub use registrar::{DRAIN_SETTING, SERVER_SETTING};
pub use shards::Handover;
use shared::Shared;
pub use stats::EngineStats;
pub(crate) use stats::METHODS;
use txn::{ClientEntry, ClientRole, ServerEntry, TimerOwner};

use crate::config::EngineConfig;
use crate::pipeline::{Flow, Processor};
use crate::presence::{Presence, PresenceStats};
use crate::routing::response_target;
use branches::{Branch, ProxyCtx};

/// The current time, twice: monotonic for timers, wall-clock (unix seconds) for what is stored,
/// and the same in milliseconds for records kept in order (the archive's).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix: i64,
    pub unix_ms: i64,
}

/// Bytes to send and where.
#[derive(Debug)]
pub struct Output {
    pub target: Target,
    pub bytes: Vec<u8>,
}

/// A request travelling through the processor chain.
struct Ctx {
    msg: Message,
    source: Source,
    /// Its server transaction, once created.
    key: Option<String>,
    /// Route values left after removing ours.
    routes: Vec<String>,
    /// The home pool of the user the request authenticated as (see `homing`).
    home_pool: Option<String>,
    /// That user's external access policy.
    access: confab_store::Access,
    /// Inside, or through an Edge from a remote user or a partner (the `Origin` processor).
    origin: edge::Origin,
    /// At an Edge: the remote user's connection a Route of ours named (Path, Record-Route).
    edge_flow: Option<Target>,
    /// To carries a tag: the request belongs to a dialog. Decoded once, as four stages ask.
    in_dialog: bool,
    /// A processor parked the request for this job, and what then (see `park`).
    waiting: Option<(u64, park::Then)>,
    /// What the job it waited for brought back.
    fetched: Option<park::Answer>,
    /// The trunk whose gateway sent it (trusted by address instead of digest).
    trunk: Option<usize>,
    /// Its Request-URI is a number (`voice.rs`), and the number's holder once known: a
    /// request that parks on the way runs again without asking twice.
    dialling: bool,
    owners: Vec<(String, Option<String>)>,
}

const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// The request-processing core of one server.
pub struct Engine {
    cfg: EngineConfig,
    store: Box<dyn Store>,
    pipeline: &'static [Processor],
    /// Where requests for a user go, in order (the role's target sources).
    target_sources: &'static [crate::pipeline::TargetSource],
    /// This engine's number among the shards, and how many there are (see `shards`).
    shard: usize,
    shards: usize,
    /// What every shard shares: location, users, digest, lockout, open connections.
    shared: std::sync::Arc<Shared>,
    /// Work for other shards (`poll_handover`).
    handovers: VecDeque<(usize, Handover)>,
    /// Connections this shard has seen messages on (it hears of their end, too): they are
    /// added to `shared.open_flows` once, not at every message.
    seen_flows: HashSet<FlowId>,
    /// The presence agent; in use on the owner shard only (see `shards`).
    presence: Presence,
    server_tx: HashMap<String, ServerEntry>,
    client_tx: HashMap<String, ClientEntry>,
    proxies: HashMap<u64, ProxyCtx>,
    timers: BinaryHeap<Reverse<(Instant, TimerOwner)>>,
    out: VecDeque<Output>,
    next_id: u64,
    tag_seed: u64,
    secret: [u8; 32],
    stats: EngineStats,
    /// Shutting down: refuse new work (`drain`).
    draining: bool,
    /// Behind on its queue: refuse new work (`set_overloaded`).
    overloaded: bool,
    /// An operator drains this server (`confab pool drain`): sign-ins go to `alternates`.
    pool_draining: bool,
    /// The other servers of this pool that take sign-ins (`ip:port`), from the database.
    alternates: Vec<String>,
    /// Connections to close (`poll_close`).
    closes: Vec<FlowId>,
    /// Addresses newly trusted (a user authenticated there) for the transports
    /// (`poll_trusted`).
    newly_trusted: Vec<std::net::IpAddr>,
    /// Store reads wait off the engine (`park_store_reads`).
    park_reads: bool,
    /// Reads for the driver to run, and the requests parked on them, by job token.
    jobs: VecDeque<StoreJob>,
    parked: HashMap<u64, park::Parked>,
    /// Partner lookups for the driver, names partners' certificates must carry, partners'
    /// Access Edges found, and what each partner connection proved (`federation.rs`).
    lookups: VecDeque<Lookup>,
    partner_names: Vec<(std::net::SocketAddr, String)>,
    partners: HashMap<String, (Instant, PartnerEdge)>,
    proven: HashMap<FlowId, Vec<(String, PartnerEdge)>>,
    /// Published, not yet delivered (see `events`), and whether published here (else handed
    /// over by another shard).
    core_events: VecDeque<(CoreEvent, bool)>,
    /// User agents inside the server (see `crate::apps`), the dialogs they own by number, and
    /// the numbers by dialog identity.
    apps: Vec<Box<dyn crate::apps::Application>>,
    app_dialogs: HashMap<u64, apps::AppDialog>,
    app_dialog_ids: HashMap<sip_proto::dialog::DialogId, u64>,
    /// Calls applications placed, not yet answered or failed, and requests relayed between
    /// connected dialogs waiting for their answer (see `app_calls`).
    app_calls: HashMap<u64, app_calls::AppCall>,
    app_relays: HashMap<u64, app_calls::Relay>,
    /// Applications' commands for the media engine, with the application's index.
    media_out: VecDeque<(usize, crate::apps::MediaCommand)>,
    /// Housekeeping's database work still running on the driver's thread: none is started
    /// again until it is back (a slow database gets no pile of them).
    upkeep_pending: usize,
    /// The hash of the response-group settings last read (see `rgs.rs`).
    rgs_seen: u64,
    /// The hash of the meetings document last read (see `meetings.rs`).
    meetings_seen: u64,
    /// The hash of the relay secrets last read (see `relay.rs`).
    relay_seen: u64,
    /// The hash of the archiving policies last read; records for the driver (`archive.rs`).
    archiving_seen: u64,
    archive_out: VecDeque<ArchiveItem>,
    /// The voice configuration this engine last picked up, and its generation (see
    /// `voice.rs`); gateway names for the driver to resolve; the next gateway probe (owner
    /// shard) and how many rounds of probes went out.
    voice: Option<std::sync::Arc<crate::voice::VoiceState>>,
    voice_generation: u64,
    resolves: Vec<String>,
    next_probe: Option<Instant>,
    probes: u32,
}

impl Engine {
    /// An engine for `cfg` over `store`, restoring the registrations this server holds.
    /// `secret` (shared by the servers of a deployment) seals digest nonces and branches.
    pub fn new(
        cfg: EngineConfig,
        store: Box<dyn Store>,
        secret: [u8; 32],
        now: Now,
    ) -> Result<Self, confab_store::StoreError> {
        let mut one = Self::sharded(cfg, vec![store], secret, now)?;
        Ok(one.remove(0))
    }

    /// Starts draining for shutdown: new work is refused (see `Processor::Admission`) while
    /// what is in flight finishes.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether work waits in front of the engine beyond what it can take in time: while true,
    /// new out-of-dialog requests are answered 503 with Retry-After at once (cheap, no
    /// authentication or storage), so a backlog drains instead of growing.
    pub fn set_overloaded(&mut self, overloaded: bool) {
        if overloaded != self.overloaded {
            let what = if overloaded {
                "on: new requests get 503"
            } else {
                "off"
            };
            tracing::warn!(
                event = "server.overload",
                overloaded,
                "load shedding {what}"
            );
        }
        self.overloaded = overloaded;
    }

    /// Requests still waiting for their final response (proxied ones included).
    pub fn in_flight(&self) -> usize {
        self.server_tx.values().filter(|s| !s.tx.is_final()).count()
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Registered devices (of all shards).
    pub fn registrations(&self) -> usize {
        self.shared.location.count()
    }

    /// Publications, subscriptions and NOTIFYs sent (by the owner shard; none elsewhere).
    pub fn presence_stats(&self) -> PresenceStats {
        self.presence.stats()
    }

    /// Feeds one transport event.
    pub fn handle_event(&mut self, now: Now, ev: Event) {
        self.transport_event(now, ev);
        self.deliver_events(now);
    }

    fn transport_event(&mut self, now: Now, ev: Event) {
        match ev {
            Event::Message { bytes, source } => self.handle_bytes(now, bytes, source),
            Event::Unframeable {
                bytes,
                source,
                reason,
            } => self.malformed(&bytes, source, &reason),
            Event::FlowClosed { flow, .. } => {
                self.forget_proofs(flow);
                self.emit(CoreEvent::ConnectionClosed(flow));
            }
            Event::ConnectFailed { target } => {
                let keys: Vec<String> = self
                    .client_tx
                    .iter()
                    .filter(|(_, c)| {
                        c.target.addr == target.addr && c.target.transport == target.transport
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in keys {
                    if let Some(c) = self.client_tx.get_mut(&k) {
                        c.tx.handle_transport_error();
                    }
                    self.flush_client(now, &k);
                }
            }
        }
    }

    /// Fires what is due.
    pub fn handle_timeout(&mut self, now: Now) {
        self.fire_timers(now);
        self.deliver_events(now);
    }

    fn fire_timers(&mut self, now: Now) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now.mono {
                break;
            }
            let Some(Reverse((_, owner))) = self.timers.pop() else {
                break;
            };
            match owner {
                TimerOwner::Server(k) => self.server_timer(now, &k),
                TimerOwner::Client(k) => {
                    if let Some(c) = self.client_tx.get_mut(&k) {
                        if c.tx.poll_timeout().is_some_and(|t| t <= now.mono) {
                            c.tx.handle_timeout(now.mono);
                            self.flush_client(now, &k);
                        }
                    }
                }
                TimerOwner::Branch { proxy, index } => self.timer_c_fired(now, proxy, index),
                TimerOwner::App(no) => self.app_timer(now, no),
                TimerOwner::AppTimer { app, token } => {
                    let actions =
                        self.call_app(now, app, |a, env, out| a.on_timer(env, token, out));
                    self.app_actions(now, None, app, None, actions);
                }
                TimerOwner::NoAnswer { proxy } => self.no_answer_fired(now, proxy),
                TimerOwner::Housekeeping => {
                    self.housekeeping(now);
                    self.timers
                        .push(Reverse((now.mono + HOUSEKEEPING, TimerOwner::Housekeeping)));
                }
            }
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// A connection to close (after what was sent on it): a device whose registration here
    /// ended because its user moved or was removed, so that it signs in again at once.
    pub fn poll_close(&mut self) -> Option<FlowId> {
        self.closes.pop()
    }

    /// An address a user authenticated from for the first time: the transports exempt it
    /// from their overload limits.
    pub fn poll_trusted(&mut self) -> Option<std::net::IpAddr> {
        self.newly_trusted.pop()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn handle_bytes(&mut self, now: Now, bytes: Vec<u8>, source: Source) {
        if let Some(f) = source.flow {
            if self.seen_flows.insert(f) {
                self.shared.open_flows.of(&f).insert(f);
            }
        }
        if !sip_proto::looks_like_sip(&bytes) {
            // not answered: junk gets nothing back (no amplification), and costs a glance
            self.stats.not_sip += 1;
            tracing::trace!(event = "sip.not_sip", remote = %source.remote, len = bytes.len(), "dropped before parsing");
            return;
        }
        match Message::try_parse(bytes, &self.cfg.limits) {
            Ok(m) => match self.belongs_elsewhere(&m) {
                Some(shard) => self.hand_over(shard, shards::Work::Message(m, source)),
                None => self.handle_message(now, m, source),
            },
            Err((e, bytes)) => self.malformed(&bytes, source, &e),
        }
    }

    /// A parsed message that is this shard's to handle.
    fn handle_message(&mut self, now: Now, m: Message, source: Source) {
        if m.is_request() {
            self.stats.requests += 1;
            self.stats.requests_by_method[m.method().index()] += 1;
            let in_dialog = m.to().ok().and_then(|t| t.tag()).is_some();
            let ctx = Ctx {
                msg: m,
                source,
                key: None,
                routes: Vec::new(),
                home_pool: None,
                access: confab_store::Access::default(),
                origin: edge::Origin::Inside,
                edge_flow: None,
                in_dialog,
                waiting: None,
                fetched: None,
                trunk: None,
                dialling: false,
                owners: Vec::new(),
            };
            self.run_chain(now, ctx, 0);
        } else {
            self.stats.responses += 1;
            self.handle_response(now, m);
        }
    }

    /// Runs the role's processors on a request from processor `from` on, until one stops it;
    /// a processor that stopped to wait for a read parks it (see `park`).
    fn run_chain(&mut self, now: Now, mut ctx: Ctx, from: usize) {
        for (i, &p) in self.pipeline.iter().enumerate().skip(from) {
            if self.process(p, now, &mut ctx) == Flow::Stop {
                if let Some((token, then)) = ctx.waiting.take() {
                    self.trying(now, &ctx);
                    self.parked.insert(token, park::Parked { ctx, at: i, then });
                    return;
                }
                break;
            }
        }
        self.trying(now, &ctx);
        self.guard(now, &ctx);
    }

    /// Answers an unparseable message with an error when one can be built, else drops it.
    fn malformed(&mut self, bytes: &[u8], source: Source, err: &ParseError) {
        match salvage_response(bytes, err.status_code(), &err.to_string()) {
            Some(resp) => {
                self.stats.malformed_answered += 1;
                tracing::debug!(event = "sip.malformed", remote = %source.remote, reason = %err, "answered");
                self.out.push_back(Output {
                    target: response_target(None, &source),
                    bytes: resp,
                });
            }
            None => {
                self.stats.malformed_dropped += 1;
                tracing::debug!(event = "sip.malformed", remote = %source.remote, reason = %err, "dropped");
            }
        }
    }

    fn process(&mut self, p: Processor, now: Now, ctx: &mut Ctx) -> Flow {
        match p {
            Processor::Sanity => self.sanity(now, ctx),
            Processor::Transaction => self.transaction(now, ctx),
            Processor::Admission => self.admission(now, ctx),
            Processor::RoutePop => self.route_pop(now, ctx),
            Processor::MaxForwards => self.max_forwards(now, ctx),
            Processor::LoopDetection => self.loop_detection(now, ctx),
            Processor::Extensions => self.extensions(now, ctx),
            Processor::Authenticate => self.authenticate(now, ctx),
            Processor::Dispatch => self.dispatch(now, ctx),
            Processor::Archive => self.archive(now, ctx),
            Processor::Origin => self.origin(now, ctx),
            Processor::EdgeRoute => self.edge_route(now, ctx),
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim::Sim;
    use sip_transport::Transport;

    fn engine() -> Engine {
        let store = Box::new(confab_store::SqliteStore::in_memory().unwrap());
        let now = Now {
            mono: Instant::now(),
            unix: 1_800_000_000,
            unix_ms: 1_800_000_000_000,
        };
        Engine::new(EngineConfig::default(), store, [7; 32], now).unwrap()
    }

    /// Feeds `req` from 127.0.0.2:5062 over UDP; returns each answer as text.
    fn answer(e: &mut Engine, req: &str) -> Vec<String> {
        let now = Now {
            mono: Instant::now(),
            unix: 1_800_000_000,
            unix_ms: 1_800_000_000_000,
        };
        let source = Source {
            transport: Transport::Udp,
            remote: ([127, 0, 0, 2], 5062).into(),
            local: ([127, 0, 0, 1], 5060).into(),
            flow: None,
            peer_verified: false,
        };
        e.handle_event(
            now,
            Event::Message {
                bytes: req.as_bytes().to_vec(),
                source,
            },
        );
        std::iter::from_fn(|| e.poll_transmit())
            .map(|o| String::from_utf8_lossy(&o.bytes).into_owned())
            .collect()
    }

    fn register(n: u32, to_tag: &str) -> String {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bK{n}\r\nFrom: <sip:alice@example.com>;tag=f{n}\r\nTo: <sip:alice@example.com>{to_tag}\r\nCall-ID: c{n}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.2:5062>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn a_request_the_chain_leaves_unanswered_is_answered_500_and_leaves_no_transaction() {
        use crate::pipeline::Processor;
        use sim::{Sim, ALICE};
        let mut sim = Sim::with_users(&["alice"], &[]);
        // a role whose chain stops without answering: the defect the guard exists for
        sim.engine.pipeline = &[Processor::Sanity, Processor::Transaction];
        let msg = "MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKm1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
        sim.send(ALICE, msg);
        let up = sim.take_to(ALICE);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].status(), 500);
        assert_eq!(
            up[0].reason(),
            "Server Internal Error (request left unanswered)"
        );
        assert_eq!(sim.engine.in_flight(), 0, "nothing holds up a drain");
        assert_eq!(sim.engine.stats().unanswered, 1);
    }

    #[test]
    fn in_a_pool_a_registration_refresh_logs_no_change_and_wakes_no_peer() {
        let cfg = EngineConfig {
            server_id: sim::SERVER.into(),
            peers: vec!["127.0.0.9".into()],
            ..EngineConfig::default()
        };
        let mut sim = Sim::new(cfg, |s| sim::add_users(s, &["alice"], &[]));
        let register = |n: u32| {
            format!("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKr{n}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=r{n}\r\nTo: <sip:alice@example.com>\r\nCall-ID: reg-1\r\nCSeq: {n}1 REGISTER\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{{auth}}Content-Length: 0\r\n\r\n")
        };
        let rev = |sim: &Sim| sim.engine.store.changes_since(0).unwrap().0;
        let before = rev(&sim);
        let ok = sim.send_authenticated(sim::ALICE, "alice", &register(1));
        assert_eq!(ok[0].status(), 200);
        let after_first = rev(&sim);
        assert!(after_first > before, "a new device is news for the pool");
        sim.advance(Duration::from_secs(30));
        let ok = sim.send_authenticated(sim::ALICE, "alice", &register(2));
        assert_eq!(ok[0].status(), 200);
        sim.advance(Duration::from_secs(5)); // housekeeping writes the refresh back
        assert_eq!(
            rev(&sim),
            after_first,
            "a refresh changes nothing the pool must hear of"
        );
    }

    #[test]
    fn challenges_keep_no_transaction() {
        let mut e = engine();
        let first = answer(&mut e, &register(1, ""));
        assert!(first[0].starts_with("SIP/2.0 401"), "{first:?}");
        assert!(
            e.server_tx.is_empty(),
            "a REGISTER's challenge is stateless"
        );
        let again = answer(&mut e, &register(1, ""));
        assert!(again[0].starts_with("SIP/2.0 401"), "{again:?}");
        assert_ne!(
            first, again,
            "a retransmission is challenged afresh (another nonce)"
        );

        // an INVITE's challenge too: see auth's tests
    }
}
