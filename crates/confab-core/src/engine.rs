//! The engine: transaction tables, the processor chain, and proxy bookkeeping, driven by
//! received bytes and time. No sockets, no clock: [`crate::server`] feeds it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use confab_store::Store;
use sip_auth::{DigestServer, Lockout};
use sip_proto::header::{format_via, NameAddr, Via};
use sip_proto::transaction::{
    client_key, server_key, ClientEvent, ClientTransaction, ServerTransaction,
};
use sip_proto::{salvage_response, HeaderName, Message, Method, ParseError, Uri, Writer};
use sip_transport::{Event, FlowId, Source, Target, Transport};

mod presence_io;

use crate::config::EngineConfig;
use crate::homing::Place;
use crate::pipeline::{Flow, Processor, FRONT_END};
use crate::presence::{Presence, PresenceStats};
use crate::proxy::{Branch, ProxyCtx};
use crate::registrar::{LiveBinding, Location};
use crate::routing::{
    is_our_address, is_our_via, loop_hash, our_port, response_target, strip_top_via, uri_target,
    via_target,
};

/// The current time, twice: monotonic for timers, wall-clock (unix seconds) for what is stored.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub unix: i64,
}

/// Bytes to send and where.
#[derive(Debug)]
pub struct Output {
    pub target: Target,
    pub bytes: Vec<u8>,
}

/// Counters of what the engine did with bad or hostile input.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineStats {
    pub requests: u64,
    pub responses: u64,
    pub malformed_answered: u64,
    pub malformed_dropped: u64,
    pub retransmissions_absorbed: u64,
    pub auth_failures: u64,
    pub lockouts: u64,
    /// New requests answered 503 while draining or overloaded.
    pub shed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerOwner {
    Server(String),
    Client(String),
    Housekeeping,
}

struct ServerEntry {
    tx: ServerTransaction,
    target: Target,
    proxy: Option<u64>,
}

enum ClientRole {
    Branch {
        proxy: u64,
        index: usize,
    },
    Cancel,
    /// A NOTIFY of a subscription (`None` for the final one: its outcome changes nothing).
    Notify {
        sub: Option<u64>,
    },
}

struct ClientEntry {
    tx: ClientTransaction,
    target: Target,
    role: ClientRole,
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
    /// To carries a tag: the request belongs to a dialog. Decoded once, as four stages ask.
    in_dialog: bool,
}

const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// Users whose hashes are kept in memory at most (the table starts again when full).
const USER_CACHE: usize = 200_000;

/// Settings naming the servers of the deployment (`server:<ip:port>` = pool) and those being
/// drained (`drain:<ip:port>`).
pub const SERVER_SETTING: &str = "server:";
pub const DRAIN_SETTING: &str = "drain:";

/// The request-processing core of one server.
pub struct Engine {
    cfg: EngineConfig,
    store: Box<dyn Store>,
    pipeline: &'static [Processor],
    digest: HashMap<String, DigestServer>,
    lockout: Lockout,
    location: Location,
    presence: Presence,
    server_tx: HashMap<String, ServerEntry>,
    client_tx: HashMap<String, ClientEntry>,
    proxies: HashMap<u64, ProxyCtx>,
    open_flows: HashSet<FlowId>,
    /// Users already read from the store, dropped when the change log names them (a password
    /// change, a move, a removal); a user unknown here is always read from the store.
    users: HashMap<String, confab_store::User>,
    /// Sources known to be clients that stop at a non-MD5 challenge (see `md5_only_client`).
    md5_only_sources: HashSet<std::net::SocketAddr>,
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
        let digest = cfg
            .domains
            .iter()
            .map(|d| {
                (
                    d.to_ascii_lowercase(),
                    DigestServer::new(d, secret, now.mono, cfg.nonce_ttl),
                )
            })
            .collect();
        let lockout = Lockout::new(
            cfg.lockout_failures,
            cfg.lockout_window,
            cfg.lockout_duration,
            100_000,
        );
        let location = Location::load(bindings);
        let mut presence = Presence::new(
            cfg.presence.clone(),
            u64::from_le_bytes(secret[8..16].try_into().unwrap_or_default()) ^ cfg.instance_seed,
        );
        if !cfg.peers.is_empty() {
            presence.share(&cfg.server_id);
        }
        presence.restore(store.as_ref(), now.unix, location.device_keys());
        let mut e = Self {
            store,
            pipeline: FRONT_END,
            digest,
            lockout,
            location,
            presence,
            server_tx: HashMap::new(),
            client_tx: HashMap::new(),
            proxies: HashMap::new(),
            open_flows: HashSet::new(),
            users: HashMap::new(),
            md5_only_sources: HashSet::new(),
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
            cfg,
        };
        e.timers
            .push(Reverse((now.mono + HOUSEKEEPING, TimerOwner::Housekeeping)));
        e.refresh_membership();
        Ok(e)
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

    /// Registered devices.
    pub fn registrations(&self) -> usize {
        self.location.count()
    }

    /// Publications, subscriptions and NOTIFYs sent.
    pub fn presence_stats(&self) -> PresenceStats {
        self.presence.stats()
    }

    /// Feeds one transport event.
    pub fn handle_event(&mut self, now: Now, ev: Event) {
        match ev {
            Event::Message { bytes, source } => self.handle_bytes(now, bytes, source),
            Event::Unframeable {
                bytes,
                source,
                reason,
            } => self.malformed(&bytes, source, &reason),
            Event::FlowClosed { flow, .. } => {
                self.open_flows.remove(&flow);
                for (aor, key) in self.location.flow_closed(flow) {
                    tracing::info!(event = "registrar.flow_failed", user = %aor, "outbound flow closed; binding removed");
                    if let Err(e) = self.store.remove_binding(&aor, &key) {
                        tracing::error!(event = "store.error", error = %e);
                    }
                    self.devices_changed(now, &aor);
                }
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
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now.mono {
                break;
            }
            let Some(Reverse((_, owner))) = self.timers.pop() else {
                break;
            };
            match owner {
                TimerOwner::Server(k) => {
                    if let Some(s) = self.server_tx.get_mut(&k) {
                        if s.tx.poll_timeout().is_some_and(|t| t <= now.mono) {
                            s.tx.handle_timeout(now.mono);
                            self.flush_server(now, &k);
                        }
                    }
                }
                TimerOwner::Client(k) => {
                    if let Some(c) = self.client_tx.get_mut(&k) {
                        if c.tx.poll_timeout().is_some_and(|t| t <= now.mono) {
                            c.tx.handle_timeout(now.mono);
                            self.flush_client(now, &k);
                        }
                    }
                }
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

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// A user changed in the store (perhaps by another process): when it was removed or moved
    /// to another pool, its registrations here go (their devices are redirected at their next
    /// REGISTER). A database outage drops nothing.
    fn recheck_user(&mut self, now: Now, aor: &str) {
        if self.location.lookup(aor).is_empty() {
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
            let gone = self.location.forget_user(aor);
            tracing::info!(event = "registrar.user_left", user = %aor, bindings = gone.len(), "user removed or moved to another pool: its registrations here are dropped and their connections closed");
            // a device connected here learns at once: it reconnects and signs in again (and
            // is redirected to its new pool)
            self.closes.extend(gone.iter().filter_map(|b| b.flow));
            self.devices_changed(now, aor);
        }
    }

    /// In a deployment of several servers: this server's place in its pool (announced in the
    /// database at start), whether an operator drains it, and which servers of the pool take
    /// sign-ins instead. A database failure leaves what was known.
    fn refresh_membership(&mut self) {
        let Some(pool) = self.cfg.homing.as_ref().and_then(|h| h.local_pool.clone()) else {
            return;
        };
        if self.cfg.peers.is_empty() {
            return;
        }
        let me = self.cfg.server_id.clone();
        let (Ok(servers), Ok(drains)) = (
            self.store.settings(SERVER_SETTING),
            self.store.settings(DRAIN_SETTING),
        ) else {
            return;
        };
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
        if draining != self.pool_draining {
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
        self.alternates = servers
            .into_iter()
            .filter(|(_, p)| *p == pool)
            .map(|(n, _)| n[SERVER_SETTING.len()..].to_owned())
            .filter(|id| *id != me && !drained.contains(&id.as_str()))
            .collect();
    }

    /// Saves the registration refreshes kept in memory only (see `registrar`); housekeeping
    /// does this every period, and the server before it exits.
    pub fn write_back(&mut self) {
        match self.location.write_back(self.store.as_ref()) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(event = "registrar.written_back", bindings = n),
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, "could not save registration refreshes; retrying at the next housekeeping");
            }
        }
    }

    fn housekeeping(&mut self, now: Now) {
        self.write_back();
        let gone = self.location.expire(now.unix);
        if !gone.is_empty() {
            tracing::debug!(event = "registrar.expired", count = gone.len());
        }
        for (aor, _) in gone {
            self.devices_changed(now, &aor);
        }
        self.refresh_membership();
        let changed = self.presence.housekeeping(self.store.as_ref(), now.unix);
        for aor in changed {
            self.users.remove(&aor);
            self.recheck_user(now, &aor);
        }
        self.flush_presence(now);
        if let Err(e) = self.store.purge_expired(now.unix) {
            tracing::error!(event = "store.error", error = %e, "could not purge expired registrations");
        }
        for d in self.digest.values_mut() {
            d.purge(now.mono);
        }
        self.lockout.purge(now.mono);
    }

    fn handle_bytes(&mut self, now: Now, bytes: Vec<u8>, source: Source) {
        if let Some(f) = source.flow {
            self.open_flows.insert(f);
        }
        match Message::try_parse(bytes, &self.cfg.limits) {
            Ok(m) if m.is_request() => {
                self.stats.requests += 1;
                let in_dialog = m.to().ok().and_then(|t| t.tag()).is_some();
                let mut ctx = Ctx {
                    msg: m,
                    source,
                    key: None,
                    routes: Vec::new(),
                    home_pool: None,
                    in_dialog,
                };
                for &p in self.pipeline {
                    if self.process(p, now, &mut ctx) == Flow::Stop {
                        break;
                    }
                }
            }
            Ok(m) => {
                self.stats.responses += 1;
                self.handle_response(now, m);
            }
            Err((e, bytes)) => self.malformed(&bytes, source, &e),
        }
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
        }
    }

    // ---- processors ----

    fn sanity(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let problem = match (ctx.msg.validate(), ctx.msg.check_essentials()) {
            (Err(e), _) => Some((e.status_code(), e.to_string())),
            (Ok(()), Err(m)) => Some((400, m.to_string())),
            (Ok(()), Ok(())) => None,
        };
        // RFC 3261 §16.3 step 2: a Request-URI scheme the proxy does not understand is refused
        // before any policy (authentication, domains) is applied.
        let problem = problem.or_else(|| {
            let scheme = ctx.msg.uri_str().split(':').next().unwrap_or_default();
            let known = ["sip", "sips", "tel"]
                .iter()
                .any(|k| scheme.eq_ignore_ascii_case(k));
            (ctx.msg.is_request() && !known)
                .then(|| (416, format!("Unsupported URI Scheme ({scheme})")))
        });
        match problem {
            Some(_) if ctx.msg.method() == Method::Ack => Flow::Stop,
            Some((code, reason)) => {
                self.stats.malformed_answered += 1;
                self.respond(now, ctx, code, &reason, &[]);
                Flow::Stop
            }
            None => Flow::Continue,
        }
    }

    fn transaction(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let Ok(key) = server_key(&ctx.msg, None) else {
            return Flow::Stop;
        };
        match ctx.msg.method() {
            Method::Ack => {
                if let Some(s) = self.server_tx.get_mut(&key) {
                    s.tx.handle_ack(now.mono);
                    self.flush_server(now, &key);
                    return Flow::Stop;
                }
                return Flow::Continue; // ACK for a 2xx: end to end
            }
            Method::Cancel => {
                if let Some(s) = self.server_tx.get_mut(&key) {
                    s.tx.handle_retransmission();
                    self.stats.retransmissions_absorbed += 1;
                    self.flush_server(now, &key);
                    return Flow::Stop;
                }
                self.create_server_tx(now, ctx, key);
                let invite_key = server_key(&ctx.msg, Some("INVITE")).ok();
                let target = invite_key
                    .as_ref()
                    .and_then(|k| self.server_tx.get(k))
                    .map(|s| (s.proxy, s.tx.is_final()));
                match target {
                    Some((proxy, is_final)) => {
                        self.respond(now, ctx, 200, "OK", &[]);
                        if !is_final {
                            if let Some(p) = proxy {
                                self.cancel_branches(now, p, None);
                            }
                        }
                    }
                    None => self.respond(now, ctx, 481, "Call/Transaction Does Not Exist", &[]),
                }
                return Flow::Stop;
            }
            _ => {}
        }
        if let Some(s) = self.server_tx.get_mut(&key) {
            s.tx.handle_retransmission();
            self.stats.retransmissions_absorbed += 1;
            self.flush_server(now, &key);
            return Flow::Stop;
        }
        self.create_server_tx(now, ctx, key);
        if ctx.msg.method() == Method::Invite {
            self.respond(now, ctx, 100, "Trying", &[]);
        }
        Flow::Continue
    }

    fn admission(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let in_dialog = ctx.in_dialog;
        if in_dialog || matches!(ctx.msg.method(), Method::Ack | Method::Cancel) {
            return Flow::Continue; // finishing what was started is never refused
        }
        let (reason, retry) = if self.draining {
            ("Service Unavailable (server shutting down)", "5")
        } else if self.overloaded {
            ("Service Unavailable (overloaded)", "2")
        } else {
            return Flow::Continue;
        };
        self.stats.shed += 1;
        self.respond(now, ctx, 503, reason, &[("Retry-After", retry.to_owned())]);
        Flow::Stop
    }

    fn route_pop(&mut self, _now: Now, ctx: &mut Ctx) -> Flow {
        if ctx.msg.count(HeaderName::Route) == 0 {
            return Flow::Continue;
        }
        let mut routes: Vec<String> = owned_values(&ctx.msg, HeaderName::Route);
        while let Some(first) = routes.first() {
            let ours = NameAddr::parse(first, "Route").ok().is_some_and(|na| {
                na.uri
                    .as_sip()
                    .is_some_and(|u| is_our_address(&self.cfg, u))
            });
            if !ours {
                break;
            }
            routes.remove(0);
        }
        ctx.routes = routes;
        Flow::Continue
    }

    fn max_forwards(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        if ctx.msg.max_forwards().ok().flatten() == Some(0) && !self.addressed_to_server(ctx) {
            if ctx.msg.method() != Method::Ack {
                self.respond(now, ctx, 483, "Too Many Hops", &[]);
            }
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn loop_detection(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let prefix = format!(
            "{}{}-",
            sip_proto::header::MAGIC_COOKIE,
            loop_hash(&ctx.msg)
        );
        let looped = ctx
            .msg
            .values(HeaderName::Via)
            .filter_map(Result::ok)
            .filter_map(|v| Via::parse(v).ok())
            .any(|v| {
                is_our_via(&self.cfg, &v) && v.branch().is_some_and(|b| b.starts_with(&prefix))
            });
        if looped {
            if ctx.msg.method() != Method::Ack {
                self.respond(now, ctx, 482, "Loop Detected", &[]);
            }
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn extensions(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        if matches!(ctx.msg.method(), Method::Ack | Method::Cancel) {
            return Flow::Continue;
        }
        let mut unknown: Vec<String> = owned_values(&ctx.msg, HeaderName::ProxyRequire);
        if self.addressed_to_server(ctx) || ctx.msg.method() == Method::Register {
            unknown.extend(
                ctx.msg
                    .values(HeaderName::Require)
                    .filter_map(Result::ok)
                    .filter(|t| {
                        !["path", "outbound"]
                            .iter()
                            .any(|s| s.eq_ignore_ascii_case(t))
                    })
                    .map(str::to_owned),
            );
        }
        if unknown.is_empty() {
            return Flow::Continue;
        }
        self.respond(
            now,
            ctx,
            420,
            "Bad Extension",
            &[("Unsupported", unknown.join(", "))],
        );
        Flow::Stop
    }

    fn authenticate(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let method = ctx.msg.method();
        let in_dialog = ctx.in_dialog;
        if in_dialog
            || matches!(method, Method::Ack | Method::Cancel)
            || (method == Method::Options && self.addressed_to_server(ctx))
        {
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
        let user_key = format!("user:{aor}");
        let ip_key = format!("ip:{}", ctx.source.remote.ip());
        if let Some(left) = self
            .lockout
            .locked(&user_key, now.mono)
            .or_else(|| self.lockout.locked(&ip_key, now.mono))
        {
            let reason = format!(
                "Forbidden (too many failed authentications; retry in {} s)",
                left.as_secs().max(1)
            );
            self.respond(now, ctx, 403, &reason, &[]);
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
            if method != Method::Invite {
                // RFC 3261 §8.2.7: a challenge may be sent statelessly. Nonces are stateless
                // too, so a retransmission is simply challenged again; no transaction waits
                // 32 s for it, which was half the transactions of every sign-in. (An INVITE
                // keeps its transaction: the ACK of the 407 must find it.)
                if let Some(key) = ctx.key.take() {
                    self.server_tx.remove(&key);
                }
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
        let Some(digest) = self.digest.get_mut(&host) else {
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
                self.lockout.record_success(&user_key);
                ctx.home_pool = stored.and_then(|u| u.pool);
                Flow::Continue
            }
            sip_auth::Verdict::Stale => {
                self.challenge(now, ctx, &host, true);
                Flow::Stop
            }
            sip_auth::Verdict::BadNonce | sip_auth::Verdict::Replay => {
                self.challenge(now, ctx, &host, false);
                Flow::Stop
            }
            sip_auth::Verdict::BadResponse => {
                self.stats.auth_failures += 1;
                let locked_user = self.lockout.record_failure(&user_key, now.mono);
                let locked_ip = self.lockout.record_failure(&ip_key, now.mono);
                tracing::warn!(event = "auth.failed", user = %aor, remote = %ctx.source.remote, "wrong credentials");
                if locked_user || locked_ip {
                    self.stats.lockouts += 1;
                    tracing::warn!(
                        event = "auth.lockout", user = %aor, remote = %ctx.source.remote,
                        seconds = self.cfg.lockout_duration.as_secs(),
                        "too many failed authentications; further attempts refused for a while (see --lockout-* options)"
                    );
                    let reason = format!(
                        "Forbidden (too many failed authentications; retry in {} s)",
                        self.cfg.lockout_duration.as_secs()
                    );
                    self.respond(now, ctx, 403, &reason, &[]);
                } else {
                    self.challenge(now, ctx, &host, false);
                }
                Flow::Stop
            }
        }
    }

    fn dispatch(&mut self, now: Now, ctx: &mut Ctx) -> Flow {
        let method = ctx.msg.method();
        let in_dialog = ctx.in_dialog;
        if let Some(next) = ctx.routes.first() {
            if !in_dialog && method != Method::Ack {
                self.respond(
                    now,
                    ctx,
                    403,
                    "Forbidden (relaying denied: Route to a host this server does not serve)",
                    &[],
                );
                return Flow::Stop;
            }
            let target = NameAddr::parse(next, "Route").ok().and_then(|na| {
                na.uri
                    .as_sip()
                    .and_then(|u| uri_target(u, ctx.source.transport))
            });
            match target {
                Some(t) => self.forward_single(now, ctx, t),
                None => self.respond(
                    now,
                    ctx,
                    503,
                    "Service Unavailable (next hop in Route cannot be resolved)",
                    &[],
                ),
            }
            return Flow::Stop;
        }
        let uri_text = ctx.msg.uri_str().to_owned();
        let Ok(Uri::Sip(uri)) = Uri::parse(&uri_text) else {
            if method != Method::Ack {
                self.respond(now, ctx, 416, "Unsupported URI Scheme", &[]);
            }
            return Flow::Stop;
        };
        let ours = is_our_address(&self.cfg, &uri) || self.cfg.serves_domain(uri.host);
        if in_dialog && method == Method::Subscribe && self.presence_resubscribe(now, ctx) {
            return Flow::Stop;
        }
        if in_dialog && method == Method::Bye {
            if let Ok(call_id) = ctx.msg.call_id() {
                let call_id = call_id.to_owned();
                self.call_over(now, &call_id);
            }
        }
        if in_dialog || method == Method::Ack {
            match uri_target(&uri, ctx.source.transport)
                .filter(|_| !is_our_address(&self.cfg, &uri))
            {
                Some(t) => self.forward_single(now, ctx, t),
                None if method == Method::Ack => {}
                None => self.respond(
                    now,
                    ctx,
                    481,
                    "Call/Transaction Does Not Exist (request does not follow a known route)",
                    &[],
                ),
            }
            return Flow::Stop;
        }
        if !ours && self.is_peer_forwarded(ctx) {
            // another server of the deployment routed this through us (a Path we added): on
            // to the device
            match uri_target(&uri, ctx.source.transport) {
                Some(t) => self.forward_single(now, ctx, t),
                None => self.respond(
                    now,
                    ctx,
                    503,
                    "Service Unavailable (Request-URI cannot be resolved)",
                    &[],
                ),
            }
            return Flow::Stop;
        }
        if !ours {
            let reason = format!(
                "Forbidden (federation is not enabled: domain {} is not served here)",
                uri.host
            );
            self.respond(now, ctx, 403, &reason, &[]);
            return Flow::Stop;
        }
        if method == Method::Register {
            self.register(now, ctx);
            return Flow::Stop;
        }
        if matches!(method, Method::Publish | Method::Subscribe) {
            self.presence_request(now, ctx, &uri);
            return Flow::Stop;
        }
        let Some(user) = uri.user else {
            match method {
                Method::Options => {
                    let allow = [
                        ("Allow", ALLOW.to_owned()),
                        ("Accept", "application/sdp".to_owned()),
                        ("Supported", "path, outbound".to_owned()),
                    ];
                    self.respond(now, ctx, 200, "OK", &allow);
                }
                _ => self.respond(
                    now,
                    ctx,
                    405,
                    "Method Not Allowed",
                    &[("Allow", "REGISTER, OPTIONS".to_owned())],
                ),
            }
            return Flow::Stop;
        };
        let domain = if self.cfg.serves_domain(uri.host) {
            uri.host.to_ascii_lowercase()
        } else {
            self.cfg.realm().to_owned()
        };
        let aor = format!("{}@{domain}", sip_proto::unescape(user));
        match self.lookup_user(now, ctx, &aor) {
            Some(Some(_)) => {}
            Some(None) => {
                self.respond(now, ctx, 404, "Not Found (no such user)", &[]);
                return Flow::Stop;
            }
            None => return Flow::Stop,
        }
        let mut bindings: Vec<LiveBinding> = self
            .location
            .lookup(&aor)
            .iter()
            .filter(|b| b.rec.expires_at > now.unix)
            .cloned()
            .collect();
        let others = if self.is_peer_forwarded(ctx) {
            Vec::new() // the forwarding server covered the others
        } else {
            self.other_servers(now, &aor, &mut bindings)
        };
        if bindings.is_empty() && others.is_empty() {
            self.respond(
                now,
                ctx,
                480,
                "Temporarily Unavailable (no device registered)",
                &[],
            );
            return Flow::Stop;
        }
        let mut targets = Vec::new();
        for b in &bindings {
            if let Some(t) = self.binding_target(b) {
                targets.push((b.rec.contact.clone(), b.rec.path.clone(), t));
            }
        }
        for addr in others {
            // the Request-URI stays the user's: that server forks to its own devices; servers
            // talk over mutually authenticated TLS, on the port after their SIP port
            let tls = std::net::SocketAddr::new(addr.ip(), addr.port().saturating_add(1));
            let route = format!("<sip:{tls};transport=tls;lr>");
            let target = Target {
                transport: Transport::Tls,
                addr: tls,
                flow: None,
            };
            targets.push((uri_text.clone(), vec![route], target));
        }
        if targets.is_empty() {
            self.respond(
                now,
                ctx,
                480,
                "Temporarily Unavailable (no reachable device)",
                &[],
            );
            return Flow::Stop;
        }
        self.fork(now, ctx, targets);
        Flow::Stop
    }

    /// In a deployment of several servers: the other servers holding `aor`'s registrations
    /// (from the store, by their SIP address), and `local` trimmed of registrations that moved to another server
    /// since this one took them. A database failure leaves `local` as it is.
    fn other_servers(
        &mut self,
        now: Now,
        aor: &str,
        local: &mut Vec<LiveBinding>,
    ) -> Vec<std::net::SocketAddr> {
        if self.cfg.peers.is_empty() {
            return Vec::new();
        }
        let rows = match self.store.bindings(now.unix, Some(aor)) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(event = "store.error", error = %e, user = %aor, "registrations at other servers unknown; delivering to this server's only");
                return Vec::new();
            }
        };
        let me = &self.cfg.server_id;
        local.retain(|b| rows.iter().any(|r| r.key == b.rec.key && &r.server == me));
        let mut out: Vec<std::net::SocketAddr> = Vec::new();
        for r in rows {
            if &r.server == me || r.server.is_empty() {
                continue;
            }
            match r.server.parse() {
                Ok(addr) if !out.contains(&addr) => out.push(addr),
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!(event = "registrar.bad_server", user = %aor, server = %r.server, "registration names a server that is not host:port; skipped")
                }
            }
        }
        out
    }

    /// Looks a user up; a store failure is answered (503 with Retry-After when the database is
    /// unreachable, else 500) and gives `None`.
    fn lookup_user(
        &mut self,
        now: Now,
        ctx: &Ctx,
        aor: &str,
    ) -> Option<Option<confab_store::User>> {
        // where sign-ins are redirected by home pool, a REGISTER reads the user afresh: a move
        // (`confab user move`) redirects the very next sign-in
        let fresh = self.cfg.homing.is_some() && ctx.msg.method() == Method::Register;
        if let Some(u) = self.users.get(aor).filter(|_| !fresh) {
            return Some(Some(u.clone()));
        }
        match self.store.user(aor) {
            Ok(u) => {
                if let Some(u) = &u {
                    if self.users.len() >= USER_CACHE {
                        self.users.clear();
                    }
                    self.users.insert(aor.to_owned(), u.clone());
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

    // ---- services ----

    fn register(&mut self, now: Now, ctx: &mut Ctx) {
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
        if let Some(homing) = &self.cfg.homing {
            let hash = aor
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
            match homing.place(ctx.home_pool.as_deref(), ctx.source.transport, hash) {
                Place::Here => {}
                Place::Elsewhere {
                    pool,
                    proxy_to: Some(server),
                    ..
                } if homing.is_edge(&ctx.source.remote.ip()) => {
                    // from outside through an Edge: the client cannot reach the pool itself
                    let Ok(addr) = server.parse() else { return };
                    tracing::info!(event = "register.proxied", user = %aor, pool = %pool, server = %server, "sign-in through an Edge: proxied to the home pool");
                    let target = Target {
                        transport: Transport::Tls,
                        addr,
                        flow: None,
                    };
                    self.forward_single(now, ctx, target);
                    return;
                }
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
            let hash = aor
                .bytes()
                .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
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
        let devices_before = self.location.lookup(&aor).len();
        let result = self.location.register(
            &self.cfg,
            self.store.as_ref(),
            &ctx.msg,
            &aor,
            &ctx.source,
            now.unix,
        );
        match result {
            Ok(contacts) => {
                let mut extra: Vec<(&str, String)> =
                    contacts.into_iter().map(|c| ("Contact", c)).collect();
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
                // a device arriving or leaving is news; a refresh (the bulk of the traffic) is not
                let devices = self.location.lookup(&aor).len();
                if devices == devices_before {
                    tracing::debug!(event = "registrar.refreshed", user = %aor, remote = %ctx.source.remote, devices);
                } else {
                    tracing::info!(event = "registrar.registered", user = %aor, remote = %ctx.source.remote, devices);
                }
                self.respond(now, ctx, 200, "OK", &extra);
                self.devices_changed(now, &aor);
            }
            Err((code, reason, header)) => {
                let extra: Vec<(&str, String)> = header.into_iter().collect();
                self.respond(now, ctx, code, &reason, &extra);
            }
        }
    }

    /// Where to reach a registered device: its Path, its open connection, or its contact.
    fn binding_target(&self, b: &LiveBinding) -> Option<Target> {
        let transport = Transport::from_name(&b.rec.transport).unwrap_or(Transport::Udp);
        if let Some(first) = b.rec.path.first() {
            let na = NameAddr::parse(first, "Path").ok()?;
            return uri_target(na.uri.as_sip()?, transport);
        }
        if transport.is_reliable() {
            if let (Some(flow), Some(addr)) =
                (b.flow.filter(|f| self.open_flows.contains(f)), b.source())
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

    // ---- proxying ----

    fn forward_single(&mut self, now: Now, ctx: &mut Ctx, target: Target) {
        let uri = ctx.msg.uri_str().to_owned();
        if ctx.msg.method() == Method::Ack {
            // stateless: a deterministic branch so that ACK retransmissions look the same
            let branch = format!(
                "{}{}-ack",
                sip_proto::header::MAGIC_COOKIE,
                loop_hash(&ctx.msg)
            );
            let bytes = self.build_forward(ctx, &uri, &[], &branch, target, false);
            self.out.push_back(Output { target, bytes });
            return;
        }
        self.fork(now, ctx, vec![(uri, Vec::new(), target)]);
    }

    /// Forwards the request statefully to every target in parallel (RFC 3261 §16.6).
    fn fork(&mut self, now: Now, ctx: &mut Ctx, targets: Vec<(String, Vec<String>, Target)>) {
        let Some(server_key) = ctx.key.clone() else {
            return;
        };
        let id = self.next_id();
        let invite = ctx.msg.method() == Method::Invite;
        let in_dialog = ctx.in_dialog;
        let record_route = !in_dialog
            && matches!(
                ctx.msg.method(),
                Method::Invite | Method::Subscribe | Method::Refer
            );
        let lh = loop_hash(&ctx.msg);
        let mut branches = Vec::new();
        let mut starts = Vec::new();
        for (uri, path, target) in targets {
            let seal = self.spiral_seal(&ctx.msg);
            let branch = format!(
                "{}{lh}-{:x}-{seal}",
                sip_proto::header::MAGIC_COOKIE,
                self.next_id()
            );
            let bytes = self.build_forward(ctx, &uri, &path, &branch, target, record_route);
            let Ok(req) = Message::parse(bytes, &self.cfg.limits) else {
                continue;
            };
            let key = client_key(&branch, ctx.msg.method_str());
            let index = branches.len();
            branches.push(Branch {
                key: key.clone(),
                provisional: false,
                finished: false,
                cancel_pending: false,
            });
            starts.push((key, req, target, index));
        }
        if branches.is_empty() {
            self.respond(
                now,
                ctx,
                500,
                "Server Internal Error (could not build the forwarded request)",
                &[],
            );
            return;
        }
        if let Some(s) = self.server_tx.get_mut(&server_key) {
            s.proxy = Some(id);
        }
        self.proxies.insert(
            id,
            ProxyCtx {
                server_key,
                invite,
                request: ctx.msg.clone(),
                branches,
                best: None,
                answered: false,
            },
        );
        for (key, req, target, index) in starts {
            let tx = ClientTransaction::new(
                now.mono,
                req,
                target.transport.is_reliable(),
                self.cfg.timers,
            );
            self.client_tx.insert(
                key.clone(),
                ClientEntry {
                    tx,
                    target,
                    role: ClientRole::Branch { proxy: id, index },
                },
            );
            self.flush_client(now, &key);
        }
    }

    /// The request as sent to one target: our Via on top, Record-Route when asked, the Path or
    /// remaining Route set, Max-Forwards decremented, the rest as received.
    fn build_forward(
        &self,
        ctx: &Ctx,
        uri: &str,
        path: &[String],
        branch: &str,
        target: Target,
        record_route: bool,
    ) -> Vec<u8> {
        let host = self.cfg.host_toward(&target.addr);
        let mut w = self.request_from_us(ctx.msg.method_str(), uri, target, branch);
        if record_route {
            let rr = |host: &str, t: Transport| {
                format!(
                    "<sip:{host}:{};transport={};lr>",
                    our_port(&self.cfg, t),
                    t.param()
                )
            };
            w.header("Record-Route", rr(host, target.transport));
            let back = self.cfg.host_toward(&ctx.source.remote);
            if ctx.source.transport != target.transport || back != host {
                // RFC 5658 double record-routing: each side sees our address on its transport
                // and address family
                w.header("Record-Route", rr(back, ctx.source.transport));
            }
        }
        if ctx.msg.method() == Method::Register {
            // RFC 3327: requests for this registration come back through here
            w.header(
                "Path",
                format!(
                    "<sip:{host}:{};transport={};lr>",
                    our_port(&self.cfg, target.transport),
                    target.transport.param()
                ),
            );
        }
        for r in path.iter().chain(&ctx.routes) {
            w.header("Route", r);
        }
        let mf = ctx
            .msg
            .max_forwards()
            .ok()
            .flatten()
            .map_or(70, |m| m.saturating_sub(1));
        w.header("Max-Forwards", mf.to_string());
        for (name, n, v) in ctx.msg.fields() {
            if !matches!(
                name,
                HeaderName::Route | HeaderName::MaxForwards | HeaderName::ContentLength
            ) {
                w.raw(n, v);
            }
        }
        w.finish(ctx.msg.body())
    }

    /// A request line and our Via for `target`: how every request we send starts.
    fn request_from_us(&self, method: &str, uri: &str, target: Target, branch: &str) -> Writer {
        let mut w = Writer::request(method, uri);
        w.header(
            "Via",
            format_via(
                target.transport.via_name(),
                self.cfg.host_toward(&target.addr),
                our_port(&self.cfg, target.transport),
                branch,
            ),
        );
        w
    }

    fn handle_response(&mut self, now: Now, resp: Message) {
        let Ok(via) = resp.top_via() else { return };
        let Ok(cseq) = resp.cseq() else { return };
        let key = client_key(via.branch().unwrap_or(""), cseq.method);
        let ours = is_our_via(&self.cfg, &via);
        drop(via);
        if let Some(c) = self.client_tx.get_mut(&key) {
            c.tx.handle_response(now.mono, resp);
            self.flush_client(now, &key);
            return;
        }
        // no transaction (a 2xx retransmission, or a fork's late 2xx): forward by Via, if the
        // top one is ours (RFC 3261 §16.11); anything else is not ours to route
        if !ours {
            return;
        }
        let next = resp
            .values(HeaderName::Via)
            .nth(1)
            .and_then(Result::ok)
            .and_then(|v| Via::parse(v).ok())
            .and_then(|v| via_target(&v));
        if let Some(target) = next {
            let bytes = strip_top_via(&resp, false);
            self.out.push_back(Output { target, bytes });
        }
    }

    fn on_branch_event(&mut self, now: Now, proxy_id: u64, index: usize, ev: ClientEvent) {
        let Some(p) = self.proxies.get_mut(&proxy_id) else {
            return;
        };
        let server_key = p.server_key.clone();
        let (code, resp) = match ev {
            ClientEvent::Response(r) => (r.status(), Some(r)),
            ClientEvent::Timeout => (408, None),
        };
        let Some(branch) = p.branches.get_mut(index) else {
            return;
        };
        let mut send_cancel = false;
        match code {
            100 => return,
            101..=199 => {
                branch.provisional = true;
                if branch.cancel_pending {
                    branch.cancel_pending = false;
                    send_cancel = true;
                }
                if !p.answered {
                    if let Some(r) = &resp {
                        self.send_upstream(now, &server_key, code, strip_top_via(r, false));
                    }
                }
            }
            200..=299 => {
                branch.finished = true;
                p.answered = true;
                let invite = p.invite;
                let request = invite.then(|| p.request.clone());
                if let Some(r) = &resp {
                    self.send_upstream(now, &server_key, code, strip_top_via(r, false));
                }
                if let Some(req) = request {
                    self.cancel_branches(now, proxy_id, Some(index));
                    self.call_answered(now, &req);
                }
            }
            _ => {
                branch.finished = true;
                if let Some(r) = resp {
                    p.offer(r);
                }
                if code >= 600 && p.invite {
                    self.cancel_branches(now, proxy_id, Some(index));
                }
            }
        }
        if send_cancel {
            self.send_cancel(now, proxy_id, index);
        }
        self.maybe_finish(now, proxy_id);
    }

    /// When every branch has finished: send the best response if nothing final went up yet.
    fn maybe_finish(&mut self, now: Now, proxy_id: u64) {
        let Some(p) = self.proxies.get(&proxy_id) else {
            return;
        };
        if !p.all_finished() {
            return;
        }
        let Some(p) = self.proxies.remove(&proxy_id) else {
            return;
        };
        if p.answered {
            return;
        }
        match p.best {
            Some((_, r)) => {
                self.send_upstream(now, &p.server_key, r.status(), strip_top_via(&r, true))
            }
            None => {
                // every branch timed out
                let bytes = self.response_bytes(
                    &p.request,
                    408,
                    "Request Timeout (no device answered)",
                    &[],
                );
                self.send_upstream(now, &p.server_key, 408, bytes);
            }
        }
    }

    fn cancel_branches(&mut self, now: Now, proxy_id: u64, except: Option<usize>) {
        let Some(p) = self.proxies.get_mut(&proxy_id) else {
            return;
        };
        if !p.invite {
            return;
        }
        let mut now_cancel = Vec::new();
        for (i, b) in p.branches.iter_mut().enumerate() {
            if Some(i) == except || b.finished {
                continue;
            }
            if b.provisional {
                now_cancel.push(i);
            } else {
                b.cancel_pending = true;
            }
        }
        for i in now_cancel {
            self.send_cancel(now, proxy_id, i);
        }
    }

    /// CANCEL for one branch (RFC 3261 §9.1): same Request-URI, top Via, Call-ID, From, To,
    /// Route and CSeq number as the INVITE, method CANCEL.
    fn send_cancel(&mut self, now: Now, proxy_id: u64, index: usize) {
        let Some(key) = self
            .proxies
            .get(&proxy_id)
            .and_then(|p| p.branches.get(index))
            .map(|b| b.key.clone())
        else {
            return;
        };
        let Some(entry) = self.client_tx.get(&key) else {
            return;
        };
        let inv = entry.tx.request();
        let target = entry.target;
        let mut w = Writer::request("CANCEL", inv.uri_str());
        if let Some(v) = inv.values(HeaderName::Via).next().and_then(Result::ok) {
            w.header("Via", v);
        }
        for (name, n, v) in inv.fields() {
            if matches!(
                name,
                HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::Route
                    | HeaderName::MaxForwards
            ) {
                w.raw(n, v);
            }
        }
        let seq = inv.cseq().map(|c| c.seq).unwrap_or(0);
        w.header("CSeq", format!("{seq} CANCEL"));
        let Ok(req) = Message::parse(w.finish(b""), &self.cfg.limits) else {
            return;
        };
        let branch = req
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_owned))
            .unwrap_or_default();
        let ckey = client_key(&branch, "CANCEL");
        let tx = ClientTransaction::new(
            now.mono,
            req,
            target.transport.is_reliable(),
            self.cfg.timers,
        );
        self.client_tx.insert(
            ckey.clone(),
            ClientEntry {
                tx,
                target,
                role: ClientRole::Cancel,
            },
        );
        self.flush_client(now, &ckey);
    }

    fn send_upstream(&mut self, now: Now, server_key: &str, code: u16, bytes: Vec<u8>) {
        if let Some(s) = self.server_tx.get_mut(server_key) {
            s.tx.send_response(now.mono, code, bytes);
            self.flush_server(now, server_key);
        }
    }

    // ---- transactions and responses ----

    fn create_server_tx(&mut self, _now: Now, ctx: &mut Ctx, key: String) {
        let via = ctx.msg.top_via().ok();
        let target = response_target(via.as_ref(), &ctx.source);
        let tx = ServerTransaction::new(
            ctx.msg.method() == Method::Invite,
            ctx.source.transport.is_reliable(),
            self.cfg.timers,
        );
        self.server_tx.insert(
            key.clone(),
            ServerEntry {
                tx,
                target,
                proxy: None,
            },
        );
        ctx.key = Some(key);
    }

    /// Answers the request: through its server transaction when it has one, else statelessly.
    fn respond(&mut self, now: Now, ctx: &Ctx, code: u16, reason: &str, extra: &[(&str, String)]) {
        let bytes = self.response_bytes(&ctx.msg, code, reason, extra);
        match ctx.key.as_deref() {
            Some(k) if self.server_tx.contains_key(k) => self.send_upstream(now, k, code, bytes),
            _ => {
                let via = ctx.msg.top_via().ok();
                self.out.push_back(Output {
                    target: response_target(via.as_ref(), &ctx.source),
                    bytes,
                });
            }
        }
    }

    fn challenge(&mut self, now: Now, ctx: &Ctx, realm: &str, stale: bool) {
        tracing::debug!(event = "auth.challenge", remote = %ctx.source.remote, top_via = ?ctx.msg.values(HeaderName::Via).next(), stale);
        let Some(d) = self.digest.get(realm) else {
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
        if md5_only_client(ua) && !self.md5_only_sources.contains(&ctx.source.remote) {
            if self.md5_only_sources.len() >= 10_000 {
                self.md5_only_sources.clear();
            }
            self.md5_only_sources.insert(ctx.source.remote);
        }
        let md5_only = (md5_only_client(ua) || self.md5_only_sources.contains(&ctx.source.remote))
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

    fn response_bytes(
        &self,
        req: &Message,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
    ) -> Vec<u8> {
        let mut w = Writer::response_to(req, code, reason, &self.to_tag(req));
        for (n, v) in extra {
            w.header(n, v);
        }
        w.header("Server", &self.cfg.server_name);
        w.finish(b"")
    }

    /// A To tag for our own responses, the same for every retransmission of a request.
    fn to_tag(&self, req: &Message) -> String {
        let mut h = self.tag_seed;
        for b in req.call_id().unwrap_or("").bytes().chain(
            req.raw_header(HeaderName::From)
                .unwrap_or(b"")
                .iter()
                .copied(),
        ) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:x}")
    }

    /// The seal in our branches: proves a request passed through here (and was authenticated)
    /// without keeping state. It covers what a spiral does not change.
    fn spiral_seal(&self, msg: &Message) -> String {
        let from_tag = msg
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let cseq = msg.raw_header(HeaderName::CSeq).unwrap_or(b"");
        let data = [
            msg.call_id().unwrap_or("").as_bytes(),
            b"|",
            from_tag.as_bytes(),
            b"|",
            cseq,
        ]
        .concat();
        sip_auth::seal(&self.secret, &data)
    }

    /// Whether the top Via is one we added to this very request (a spiral back to us).
    fn is_own_spiral(&self, msg: &Message) -> bool {
        let Ok(via) = msg.top_via() else { return false };
        is_our_via(&self.cfg, &via)
            && via
                .branch()
                .is_some_and(|b| b.ends_with(&format!("-{}", self.spiral_seal(msg))))
    }

    /// Whether another server of the deployment forwarded this request: it came over TLS from
    /// a server whose certificate the deployment's CA signed (mutual TLS), with a Via on top
    /// sealed with the deployment's secret.
    fn is_peer_forwarded(&self, ctx: &Ctx) -> bool {
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

    fn addressed_to_server(&self, ctx: &Ctx) -> bool {
        ctx.routes.is_empty()
            && matches!(Uri::parse(ctx.msg.uri_str()), Ok(Uri::Sip(u)) if u.user.is_none() && (is_our_address(&self.cfg, &u) || self.cfg.serves_domain(u.host)))
    }

    fn flush_server(&mut self, now: Now, key: &str) {
        let Some(s) = self.server_tx.get_mut(key) else {
            return;
        };
        while let Some(bytes) = s.tx.poll_transmit() {
            self.out.push_back(Output {
                target: s.target,
                bytes,
            });
        }
        while s.tx.poll_event().is_some() {
            tracing::debug!(event = "transaction.no_ack", "no ACK for a final response");
        }
        if s.tx.is_terminated() {
            self.server_tx.remove(key);
        } else if let Some(t) = s.tx.poll_timeout() {
            self.timers.push(Reverse((
                t.max(now.mono),
                TimerOwner::Server(key.to_owned()),
            )));
        }
    }

    fn flush_client(&mut self, now: Now, key: &str) {
        let Some(c) = self.client_tx.get_mut(key) else {
            return;
        };
        while let Some(bytes) = c.tx.poll_transmit() {
            self.out.push_back(Output {
                target: c.target,
                bytes,
            });
        }
        let mut events = Vec::new();
        while let Some(ev) = c.tx.poll_event() {
            events.push(ev);
        }
        let role = match c.role {
            ClientRole::Branch { proxy, index } => Some((proxy, index)),
            ClientRole::Cancel | ClientRole::Notify { .. } => None,
        };
        // a NOTIFY answered 481 (or never answered) means the watcher is gone (RFC 6665)
        let failed_sub = match c.role {
            ClientRole::Notify { sub: Some(sub) } => events
                .iter()
                .any(|ev| match ev {
                    ClientEvent::Timeout => true,
                    ClientEvent::Response(r) => matches!(r.status(), 404 | 408 | 410 | 481),
                })
                .then_some(sub),
            _ => None,
        };
        if c.tx.is_terminated() {
            self.client_tx.remove(key);
        } else if let Some(t) = c.tx.poll_timeout() {
            self.timers.push(Reverse((
                t.max(now.mono),
                TimerOwner::Client(key.to_owned()),
            )));
        }
        if let Some((proxy, index)) = role {
            for ev in events {
                self.on_branch_event(now, proxy, index, ev);
            }
        }
        if let Some(sub) = failed_sub {
            self.presence
                .notify_failed(self.store.as_ref(), now.unix, sub);
            self.flush_presence(now);
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// Every value of a header as owned strings (undecodable values skipped).
fn owned_values(msg: &Message, name: HeaderName) -> Vec<String> {
    msg.values(name)
        .filter_map(Result::ok)
        .map(str::to_owned)
        .collect()
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

const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, REFER, SUBSCRIBE, NOTIFY, REGISTER";

/// How a failed user lookup is answered: 503 with Retry-After when the database is
/// unreachable (the client tries again; nothing was changed), else 500.
pub(crate) fn lookup_refusal(
    aor: &str,
    e: &confab_store::StoreError,
) -> (u16, &'static str, Vec<(&'static str, String)>) {
    tracing::error!(event = "store.error", error = %e, user = %aor, "user lookup failed");
    if e.is_unavailable() {
        let retry = crate::registrar::RETRY_AFTER_STORE.to_string();
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

    fn engine() -> Engine {
        let store = Box::new(confab_store::SqliteStore::in_memory().unwrap());
        let now = Now {
            mono: Instant::now(),
            unix: 1_800_000_000,
        };
        Engine::new(EngineConfig::default(), store, [7; 32], now).unwrap()
    }

    /// Feeds `req` from 127.0.0.2:5062 over UDP; returns each answer as text.
    fn answer(e: &mut Engine, req: &str) -> Vec<String> {
        let now = Now {
            mono: Instant::now(),
            unix: 1_800_000_000,
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
    fn an_overloaded_engine_sheds_new_requests_with_retry_after_but_not_dialogs() {
        let mut e = engine();
        assert!(answer(&mut e, &register(1, ""))[0].starts_with("SIP/2.0 401"));
        e.set_overloaded(true);
        let shed = answer(&mut e, &register(2, ""));
        assert!(
            shed[0].starts_with("SIP/2.0 503 Service Unavailable (overloaded)")
                && shed[0].contains("\r\nRetry-After: 2\r\n"),
            "{shed:?}"
        );
        // within a dialog: not refused here (it goes on to the later checks)
        let in_dialog = answer(&mut e, &register(3, ";tag=x"));
        assert!(!in_dialog[0].starts_with("SIP/2.0 503"), "{in_dialog:?}");
        e.set_overloaded(false);
        assert!(answer(&mut e, &register(4, ""))[0].starts_with("SIP/2.0 401"));
        assert_eq!(e.stats().shed, 1);
    }

    #[test]
    fn challenges_keep_no_transaction_except_an_invites() {
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

        let invite = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKinv\r\nFrom: <sip:alice@example.com>;tag=fi\r\nTo: <sip:bob@example.com>\r\nCall-ID: ci\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.2:5062>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let challenged = answer(&mut e, invite);
        assert!(
            challenged.iter().any(|r| r.starts_with("SIP/2.0 407")),
            "{challenged:?}"
        );
        assert_eq!(
            e.server_tx.len(),
            1,
            "the ACK of a 407 needs the INVITE's transaction"
        );
        let resent = answer(&mut e, invite);
        assert_eq!(
            resent.last(),
            challenged.last(),
            "the same 407 again, from the transaction"
        );
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
