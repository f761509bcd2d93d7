//! A simulated world for engine tests: one engine, or several shards, over an in-memory
//! store, a clock the test advances, and SIP peers that are only addresses whose messages the
//! test writes and reads. Timers (transaction, Timer C, guards, housekeeping) fire as the
//! clock passes them, so a three-minute ringing call is tested in milliseconds. With shards,
//! the test says which shard each peer's messages reach (the kernel's choice, by source, in
//! the real server), and what shards hand each other is delivered at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab_store::Store;
use sip_proto::{HeaderName, Limits, Message, Writer};
use sip_transport::{Event, Source, Transport};

use super::{Engine, Now};
use crate::config::EngineConfig;

/// Every test user's password.
pub(crate) const PASSWORD: &str = "pw";
/// The server's own address.
pub(crate) const SERVER: &str = "127.0.0.1:5060";

/// One engine (or several shards) and the simulated time it runs on.
pub(crate) struct Sim {
    /// The engine, or shard 0 (the owner) when there are several.
    pub(crate) engine: Engine,
    /// Shards 1 and on.
    pub(crate) others: Vec<Engine>,
    /// The shard each peer's messages reach (0 when not listed).
    arrivals: Vec<(SocketAddr, usize)>,
    start: Instant,
    unix0: i64,
    now: Instant,
    /// What the engine sent, in order, not yet taken by the test.
    sent: Vec<(SocketAddr, Message)>,
    /// Messages arrive from a deployment server (see [`Sim::arriving_from_peers`]).
    from_peers: bool,
}

impl Sim {
    /// An engine for `cfg` whose store `setup` filled first (users, bindings).
    pub(crate) fn new(cfg: EngineConfig, setup: impl FnOnce(&dyn Store)) -> Self {
        Self::sharded(1, cfg, setup)
    }

    /// `shards` engines sharing one in-memory store (as `confab up` shares its connection)
    /// and their state.
    pub(crate) fn sharded(
        shards: usize,
        cfg: EngineConfig,
        setup: impl FnOnce(&dyn Store),
    ) -> Self {
        let store = confab_store::SqliteStore::in_memory().expect("in-memory SQLite");
        let mut stores: Vec<Box<dyn Store>> = vec![Box::new(store)];
        for _ in 1..shards {
            stores.push(stores[0].handle().expect("SQLite shares its connection"));
        }
        setup(stores[0].as_ref());
        let start = Instant::now();
        let unix0 = 1_800_000_000;
        let now = Now {
            mono: start,
            unix: unix0,
            unix_ms: unix0 * 1000,
        };
        let mut engines = Engine::sharded(cfg, stores, [7; 32], now).expect("engines start");
        let engine = engines.remove(0);
        Self {
            engine,
            others: engines,
            arrivals: Vec::new(),
            start,
            unix0,
            now: start,
            sent: Vec::new(),
            from_peers: false,
        }
    }

    /// Users `names` in example.com, each with [`PASSWORD`], and for every (user, address) in
    /// `devices` a UDP registration at that address.
    pub(crate) fn with_users(names: &[&str], devices: &[(&str, &str)]) -> Self {
        Self::new(EngineConfig::default(), |s| add_users(s, names, devices))
    }

    pub(crate) fn now(&self) -> Now {
        let elapsed = self.now - self.start;
        Now {
            mono: self.now,
            unix: self.unix0 + elapsed.as_secs() as i64,
            unix_ms: self.unix0 * 1000 + elapsed.as_millis() as i64,
        }
    }

    /// `from`'s messages reach `shard` from now on.
    pub(crate) fn arrive_at(&mut self, from: &str, shard: usize) {
        self.arrivals
            .push((from.parse().expect("an ip:port"), shard));
    }

    /// Shard `k`.
    pub(crate) fn shard(&mut self, k: usize) -> &mut Engine {
        match k {
            0 => &mut self.engine,
            k => &mut self.others[k - 1],
        }
    }

    fn engines(&mut self) -> impl Iterator<Item = &mut Engine> {
        std::iter::once(&mut self.engine).chain(self.others.iter_mut())
    }

    /// `text` arrives over UDP from `from`.
    pub(crate) fn send(&mut self, from: &str, text: &str) {
        self.send_batch(from, &[text]);
    }

    /// `texts` arrive over UDP from `from` and are read in one wake-up of their shard, before
    /// anything it hands over or sends goes out (as `server::run` reads a batch).
    pub(crate) fn send_batch(&mut self, from: &str, texts: &[&str]) {
        let source = Source {
            transport: Transport::Udp,
            remote: from.parse().expect("an ip:port"),
            local: SERVER.parse().expect("an ip:port"),
            flow: None,
            peer_verified: self.from_peers,
        };
        self.arrive(source, texts);
    }

    /// `text` arrives over TLS connection `flow` from `from`, on the listener at `local`.
    pub(crate) fn send_tls(&mut self, from: &str, local: &str, flow: u64, text: &str) {
        let source = Source {
            transport: Transport::Tls,
            remote: from.parse().expect("an ip:port"),
            local: local.parse().expect("an ip:port"),
            flow: Some(flow),
            peer_verified: self.from_peers,
        };
        self.arrive(source, &[text]);
    }

    fn arrive(&mut self, source: Source, texts: &[&str]) {
        let now = self.now();
        let shard = self
            .arrivals
            .iter()
            .rev()
            .find(|(a, _)| *a == source.remote)
            .map_or(0, |(_, k)| *k);
        for text in texts {
            self.shard(shard).handle_event(
                now,
                Event::Message {
                    bytes: text.as_bytes().to_vec(),
                    source,
                },
            );
        }
        self.collect();
    }

    /// What arrives from now on comes (`true`) or not from another server of the deployment,
    /// over a connection whose certificate chains to the deployment's CA.
    pub(crate) fn arriving_from_peers(&mut self, on: bool) {
        self.from_peers = on;
    }

    /// Moves the clock `by` forward, firing every timer that falls due on the way, in order.
    pub(crate) fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some((k, at)) = self
            .engines()
            .enumerate()
            .filter_map(|(k, e)| Some((k, e.poll_timeout()?)))
            .min_by_key(|(_, at)| *at)
            .filter(|(_, at)| *at <= until)
        {
            self.now = self.now.max(at);
            let now = self.now();
            self.shard(k).handle_timeout(now);
            self.collect();
        }
        self.now = until;
    }

    /// What was sent to `to` and not taken yet (what went elsewhere stays).
    pub(crate) fn take_to(&mut self, to: &str) -> Vec<Message> {
        let to: SocketAddr = to.parse().expect("an ip:port");
        let (mine, rest) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|(a, _)| *a == to);
        self.sent = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    /// Everything sent and not taken yet, wherever it went.
    pub(crate) fn take_all(&mut self) -> Vec<(SocketAddr, Message)> {
        std::mem::take(&mut self.sent)
    }

    /// The database answers: every queued read runs, and its request resumes.
    pub(crate) fn run_jobs(&mut self) -> usize {
        let mut n = 0;
        for k in 0..=self.others.len() {
            let jobs: Vec<_> = std::iter::from_fn(|| self.shard(k).poll_job()).collect();
            n += jobs.len();
            for job in jobs {
                let done = job.run(self.shard(k).store.as_ref());
                let now = self.now();
                self.shard(k).job_done(now, done);
                self.collect();
            }
        }
        n
    }

    /// A media stream of application `app` (on the owner) heard `event`.
    pub(crate) fn media(&mut self, app: usize, stream: u64, event: confab_media::MediaEvent) {
        let now = self.now();
        self.engine.handle_media(now, app, stream, event);
        self.collect();
    }

    /// A job's result reaches the engine.
    pub(crate) fn finish_job(&mut self, done: super::Fetched) {
        let now = self.now();
        self.engine.job_done(now, done);
        self.collect();
    }

    /// Delivers what shards handed each other, until none has more; keeps what they sent.
    fn collect(&mut self) {
        let now = self.now();
        loop {
            let mut handed = Vec::new();
            let mut sent = Vec::new();
            for e in self.engines() {
                handed.extend(std::iter::from_fn(|| e.poll_handover()));
                sent.extend(std::iter::from_fn(|| e.poll_transmit()));
            }
            for o in sent {
                let m = Message::parse(o.bytes, &Limits::default()).expect("the engine sends SIP");
                self.sent.push((o.target.addr, m));
            }
            if handed.is_empty() {
                break;
            }
            for (k, h) in handed {
                self.shard(k).handle_handover(now, h);
            }
        }
    }

    /// Sends `request` (text with `{auth}` where credentials go) from `from` as a client would:
    /// first without credentials, then, answered 401/407, again with them (CSeq and branch
    /// suffixed `-2`). Returns what was sent back to `from` for the second attempt.
    pub(crate) fn send_authenticated(
        &mut self,
        from: &str,
        user: &str,
        request: &str,
    ) -> Vec<Message> {
        self.send_with_password(from, user, PASSWORD, request)
    }

    /// [`Sim::send_authenticated`] with `password` (a wrong one, say).
    pub(crate) fn send_with_password(
        &mut self,
        from: &str,
        user: &str,
        password: &str,
        request: &str,
    ) -> Vec<Message> {
        self.send(from, &request.replace("{auth}", ""));
        let challenge = self
            .take_to(from)
            .into_iter()
            .find(|m| matches!(m.status(), 401 | 407))
            .expect("a challenge");
        let first = Message::parse(
            request.replace("{auth}", "").into_bytes(),
            &Limits::default(),
        )
        .expect("the test's request parses");
        if first.method_str() == "INVITE" {
            self.send(from, &ack_for(&first, &challenge));
        }
        let (header, answer) = if challenge.status() == 401 {
            (HeaderName::WwwAuthenticate, "Authorization")
        } else {
            (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
        };
        let offer = challenge
            .values(header)
            .filter_map(Result::ok)
            .find(|v| v.contains("MD5"))
            .expect("an MD5 challenge")
            .to_owned();
        let nonce = param(&offer, "nonce");
        let uri = first.uri_str().to_owned();
        let method = first.method_str().to_owned();
        let alg = sip_auth::Algorithm::Md5;
        let ha1 = sip_auth::ha1(alg, user, "example.com", password);
        let response =
            sip_auth::client_response(alg, &ha1, &method, &uri, &nonce, "00000001", "c0");
        let creds = format!(
            "{answer}: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0\"\r\n"
        );
        let again = request
            .replace("{auth}", &creds)
            .replacen(";branch=z9hG4bK", ";branch=z9hG4bK2-", 1)
            .replacen("CSeq: 1 ", "CSeq: 2 ", 1);
        self.send(from, &again);
        self.take_to(from)
    }
}

/// Adds users and UDP registrations to a store before an engine starts on it.
pub(crate) fn add_users(s: &dyn Store, names: &[&str], devices: &[(&str, &str)]) {
    for n in names {
        s.add_user(&format!("{n}@example.com"), PASSWORD, None)
            .expect("user added");
    }
    for (user, addr) in devices {
        s.save_binding(&confab_store::Binding {
            aor: format!("{user}@example.com"),
            key: format!("sip:{user}@{addr}"),
            contact: format!("sip:{user}@{addr}"),
            params: String::new(),
            expires_at: 1_800_000_000 + 3600,
            call_id: format!("reg-{user}"),
            cseq: 1,
            path: Vec::new(),
            transport: "udp".into(),
            source: (*addr).to_owned(),
            outbound: false,
            server: String::new(),
        })
        .expect("binding saved");
    }
}

/// The ACK a UAC sends for a non-2xx final response to its INVITE `req` (RFC 3261 §17.1.1.3).
pub(crate) fn ack_for(req: &Message, resp: &Message) -> String {
    let mut w = Writer::request("ACK", req.uri_str());
    for (name, n, v) in req.fields() {
        if matches!(
            name,
            HeaderName::Via | HeaderName::From | HeaderName::CallId
        ) {
            w.raw(n, v);
        }
    }
    w.header("To", resp.raw_header(HeaderName::To).unwrap_or_default());
    w.header("Max-Forwards", "70");
    w.header(
        "CSeq",
        format!("{} ACK", req.cseq().map(|c| c.seq).unwrap_or(1)),
    );
    String::from_utf8(w.finish(b"")).expect("UTF-8")
}

/// A device's response to `req`, as a UAS builds it.
pub(crate) fn reply(req: &Message, code: u16, reason: &str, to_tag: &str) -> String {
    let w = Writer::response_to(req, code, reason, to_tag);
    String::from_utf8(w.finish(b"")).expect("UTF-8")
}

/// A quoted or plain parameter of a digest challenge.
fn param(challenge: &str, name: &str) -> String {
    let at = challenge
        .find(&format!("{name}="))
        .expect("parameter present")
        + name.len()
        + 1;
    challenge[at..]
        .trim_start_matches('"')
        .split(['"', ','])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// An INVITE from alice (at 127.0.0.2:5062) to bob, with `{auth}` where credentials go.
pub(crate) const INVITE_BOB: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKinv1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.2:5062>\r\n{auth}Content-Length: 0\r\n\r\n";

/// alice's CANCEL of [`INVITE_BOB`] as [`Sim::send_authenticated`] sent it the second time.
pub(crate) fn cancel_bob() -> String {
    INVITE_BOB
        .replace("INVITE sip", "CANCEL sip")
        .replace("z9hG4bKinv1", "z9hG4bK2-inv1")
        .replace("CSeq: 1 INVITE", "CSeq: 2 CANCEL")
        .replace("{auth}", "")
}

/// Where alice and bob are.
pub(crate) const ALICE: &str = "127.0.0.2:5062";
pub(crate) const BOB: &str = "127.0.0.3:5064";
