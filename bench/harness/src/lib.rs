//! What Confab's in-process benchmarks share: the real engine driven without sockets, with a
//! clock that can jump past transaction timers, and the client side of digest authentication.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab_core::{Engine, EngineConfig, Now};
use confab_store::Store;
use sip_auth::{client_response, Algorithm};
use sip_proto::{Limits, Message, Writer};
use sip_transport::{Event, Source, Transport};

/// The engine for domain example.com on a store, and the clock it is fed.
pub struct Bench {
    pub engine: Engine,
    start: Instant,
    unix0: i64,
    /// Messages the engine sent.
    pub sent: u64,
    /// Simulated time added to the clock, to let transaction timers run out.
    skew: Duration,
}

impl Bench {
    pub fn new(store: Box<dyn Store>) -> Self {
        let cfg = EngineConfig {
            domains: vec!["example.com".into()],
            ..EngineConfig::default()
        };
        let unix0 = 1_800_000_000;
        let start = Instant::now();
        let now = Now {
            mono: start,
            unix: unix0,
            unix_ms: unix0 * 1000,
        };
        let engine = Engine::new(cfg, store, [7; 32], now).expect("engine");
        Self {
            engine,
            start,
            unix0,
            sent: 0,
            skew: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        let mono = Instant::now() + self.skew;
        let elapsed = mono - self.start;
        Now {
            mono,
            unix: self.unix0 + elapsed.as_secs() as i64,
            unix_ms: self.unix0 * 1000 + elapsed.as_millis() as i64,
        }
    }

    /// Jumps the clock past every transaction timer (Timer J, K: 32 s) and fires them.
    pub fn settle(&mut self) {
        self.skew += Duration::from_secs(40);
        let now = self.now();
        self.engine.handle_timeout(now);
        while self.engine.poll_transmit().is_some() {}
    }

    /// Feeds one request from 127.0.0.2:`port` and returns what the engine sent because of it.
    /// NOTIFYs it sent are answered 200 OK, as real watchers do.
    pub fn feed(&mut self, bytes: String, port: u16) -> Vec<Vec<u8>> {
        let now = self.now();
        self.engine.handle_event(
            now,
            Event::Message {
                bytes: bytes.into_bytes(),
                source: source(port),
            },
        );
        let mut out = Vec::new();
        // records for the archive's queue: the server's driver writes them; here they go
        while self.engine.poll_archive().is_some() {}
        while let Some(o) = self.engine.poll_transmit() {
            out.push(o.bytes);
        }
        self.sent += out.len() as u64;
        for n in out.iter().filter(|m| m.starts_with(b"NOTIFY ")) {
            let Ok(req) = Message::parse(n.clone(), &Limits::default()) else {
                continue;
            };
            let ok = Writer::response_to(&req, 200, "OK", "").finish(b"");
            self.engine.handle_event(
                now,
                Event::Message {
                    bytes: ok,
                    source: source(5070),
                },
            );
            while self.engine.poll_transmit().is_some() {}
        }
        out
    }
}

fn source(port: u16) -> Source {
    Source {
        transport: Transport::Udp,
        remote: SocketAddr::from(([127, 0, 0, 2], port)),
        local: SocketAddr::from(([127, 0, 0, 1], 5060)),
        flow: None,
        peer_verified: false,
    }
}

/// A request from `from`@example.com at 127.0.0.2:5070, with `extra` header lines.
pub fn request(method: &str, uri: &str, from: &str, seq: u32, extra: &str, body: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{from}x{seq}{method}\r\nFrom: <sip:{from}@example.com>;tag=t{from}{seq}\r\nTo: <{uri}>\r\nCall-ID: {method}-{from}-{seq}\r\nCSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContact: <sip:{from}@127.0.0.2:5070>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len(),
    )
}

/// The nonce of a challenge.
pub fn nonce_of(resp: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(resp).ok()?;
    let i = text.find("nonce=\"")? + 7;
    Some(text[i..].split('"').next()?.to_owned())
}

/// A `header` (Authorization or Proxy-Authorization) line answering a challenge of realm
/// example.com.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    alg: Algorithm,
    header: &str,
    ha1: &str,
    user: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
) -> String {
    let user_in_realm = format!("{user}@example.com");
    authorization_in(alg, header, ha1, &user_in_realm, method, uri, nonce, nc)
}

/// `authorization` for `user_in_realm` (`user@realm`): the realm is the part after the `@`.
#[allow(clippy::too_many_arguments)]
pub fn authorization_in(
    alg: Algorithm,
    header: &str,
    ha1: &str,
    user_in_realm: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
) -> String {
    let (user, realm) = user_in_realm
        .rsplit_once('@')
        .unwrap_or((user_in_realm, ""));
    let nc = format!("{nc:08x}");
    let resp = client_response(alg, ha1, method, uri, nonce, &nc, "bench");
    let alg = alg.name();
    format!(
        "{header}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm={alg}, cnonce=\"bench\", qop=auth, nc={nc}\r\n"
    )
}

/// VmRSS in KiB of process `pid` ("self" for this one); 0 when unreadable.
pub fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of the processes `pids`, in clock ticks; those gone count 0.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            // the fields after the command name, which is in parentheses and may hold spaces
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Proportional set size of the processes `pids` together, in KiB (shared pages counted once
/// across them); those gone count 0.
pub fn pss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// A voice configuration for benchmarks: `plans` dial plans of `rules` rules each (the last
/// normalizes national numbers: `1NXXNXXXXXX` and `NXXNXXXXXX` to `+1...`; the others match
/// dial strings no call uses), and `routes` routes, one per area code from 200, spread over
/// five PSTN usages all in the global policy, each with two trunks of ten (all to `gateway`,
/// `host:port`, UDP).
pub fn voice_config(plans: usize, rules: usize, routes: usize, gateway: &str) -> String {
    use std::fmt::Write as _;
    let mut t = String::from("usages = [\"U0\", \"U1\", \"U2\", \"U3\", \"U4\"]\n");
    for p in 0..plans {
        let _ = write!(t, "[[dial_plan]]\nname = \"plan-{p}\"\nscope = \"user\"\n");
        for r in 0..rules.saturating_sub(1) {
            let _ = write!(
                t,
                "[[dial_plan.rule]]\nname = \"r{r}\"\npattern = '^\\*{p}{r:03}(\\d{{4}})$'\ntranslation = '+1425555$1'\n"
            );
        }
        t.push_str("[[dial_plan.rule]]\nname = \"National\"\npattern = '^1?([2-9]\\d{9})$'\ntranslation = '+1$1'\n");
    }
    t.push_str(
        "[[policy]]\nname = \"Global\"\nusages = [\"U0\", \"U1\", \"U2\", \"U3\", \"U4\"]\n",
    );
    for r in 0..routes {
        let _ = write!(
            t,
            "[[route]]\nname = \"area-{a}\"\npattern = '^\\+1{a}\\d{{7}}$'\nusages = [\"U{u}\"]\ntrunks = [\"t{x}\", \"t{y}\"]\n",
            a = 200 + r,
            u = r % 5,
            x = r % 10,
            y = (r + 1) % 10
        );
    }
    let (host, port) = gateway.rsplit_once(':').unwrap_or((gateway, "5060"));
    for k in 0..10 {
        let _ = write!(
            t,
            "[[trunk]]\nname = \"t{k}\"\ngateway = {{ host = \"{host}\", port = {port}, transport = \"udp\" }}\n[[trunk.called]]\nname = \"ten digits\"\npattern = '^\\+1(\\d{{10}})$'\ntranslation = '$1'\n"
        );
    }
    t
}
