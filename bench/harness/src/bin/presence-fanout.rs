//! Presence fan-out benchmark (run by `bench/presence-fanout`): USERS users each watching
//! CONTACTS others, all through the real engine (parsing, digest authentication, the presence
//! agent, NOTIFY construction and client transactions, the watchers' 200 OKs), without sockets
//! so that the figure is the server's own cost. Reports NOTIFYs per second when every user
//! changes status once, and memory per subscription and per published document: live heap
//! bytes (a counting allocator), measured once the transactions' timers have run out, with the
//! store in a file as in production (SQLite's page cache is bounded and not counted).
//!
//! Usage: presence_fanout [USERS] [CONTACTS]   (defaults 10000 and 50)

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use confab_core::{Engine, EngineConfig, Now};
use confab_store::{SqliteStore, Store};
use sip_auth::{client_response, ha1, Algorithm};
use sip_proto::{Limits, Message, Writer};
use sip_transport::{Event, Source, Transport};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

struct Bench {
    engine: Engine,
    start: Instant,
    unix0: i64,
    sent: u64,
    /// Simulated time added to the clock, to let transaction timers run out.
    skew: Duration,
}

impl Bench {
    fn now(&self) -> Now {
        let mono = Instant::now() + self.skew;
        Now {
            mono,
            unix: self.unix0 + (mono - self.start).as_secs() as i64,
        }
    }

    /// Jumps the clock past every transaction timer (Timer J, K: 32 s) and fires them.
    fn settle(&mut self) {
        self.skew += Duration::from_secs(40);
        let now = self.now();
        self.engine.handle_timeout(now);
        while self.engine.poll_transmit().is_some() {}
    }

    /// Feeds one request and returns the responses and NOTIFYs it caused.
    fn feed(&mut self, bytes: String, port: u16) -> Vec<Vec<u8>> {
        let now = self.now();
        let source = Source {
            transport: Transport::Udp,
            remote: SocketAddr::from(([127, 0, 0, 2], port)),
            local: SocketAddr::from(([127, 0, 0, 1], 5060)),
            flow: None,
        };
        self.engine.handle_event(
            now,
            Event::Message {
                bytes: bytes.into_bytes(),
                source,
            },
        );
        let mut out = Vec::new();
        while let Some(o) = self.engine.poll_transmit() {
            out.push(o.bytes);
        }
        self.sent += out.len() as u64;
        // the watchers answer their NOTIFYs, as real ones do
        for n in out.iter().filter(|m| m.starts_with(b"NOTIFY ")) {
            let Ok(req) = Message::parse(n.clone(), &Limits::default()) else {
                continue;
            };
            let ok = Writer::response_to(&req, 200, "OK", "").finish(b"");
            let source = Source {
                transport: Transport::Udp,
                remote: SocketAddr::from(([127, 0, 0, 2], 5070)),
                local: SocketAddr::from(([127, 0, 0, 1], 5060)),
                flow: None,
            };
            self.engine
                .handle_event(now, Event::Message { bytes: ok, source });
            while self.engine.poll_transmit().is_some() {}
        }
        out
    }
}

fn user(i: usize) -> String {
    format!("u{i}")
}

fn port(i: usize) -> u16 {
    10_000 + (i % 50_000) as u16
}

fn request(method: &str, uri: &str, from: &str, seq: u32, extra: &str, body: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{p};branch=z9hG4bK{from}x{seq}{method}\r\nFrom: <sip:{from}@example.com>;tag=t{from}{seq}\r\nTo: <{uri}>\r\nCall-ID: {method}-{from}-{seq}\r\nCSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContact: <sip:{from}@127.0.0.2:{p}>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        p = 5070
    )
}

fn nonce_of(resp: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(resp).ok()?;
    let i = text.find("nonce=\"")? + 7;
    Some(text[i..].split('"').next()?.to_owned())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let contacts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let dir = std::env::temp_dir().join(format!("confab-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = SqliteStore::open(&dir.join("bench.db")).expect("sqlite");
    for i in 0..users {
        store
            .add_user(&format!("{}@example.com", user(i)), "pw")
            .expect("add user");
    }
    let cfg = EngineConfig {
        domains: vec!["example.com".into()],
        ..EngineConfig::default()
    };
    let unix0 = 1_800_000_000;
    let start = Instant::now();
    let engine = Engine::new(
        cfg,
        Box::new(store),
        [7; 32],
        Now {
            mono: start,
            unix: unix0,
        },
    )
    .expect("engine");
    let mut b = Bench {
        engine,
        start,
        unix0,
        sent: 0,
        skew: Duration::ZERO,
    };

    // every user publishes Available
    b.settle();
    let heap0 = live();
    let doc = |u: &str, act: &str| {
        format!(
            "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:{u}@example.com\"><tuple id=\"t1\"><status><basic>open</basic></status><note>at my desk</note></tuple><dm:person id=\"p\"><rpid:activities>{act}</rpid:activities></dm:person></presence>"
        )
    };
    let ha1s: Vec<String> = (0..users)
        .map(|i| ha1(Algorithm::Md5, &user(i), "example.com", "pw"))
        .collect();
    let mut nonces: Vec<String> = Vec::with_capacity(users);
    let t = Instant::now();
    for (i, ha1) in ha1s.iter().enumerate() {
        let u = user(i);
        let uri = format!("sip:{u}@example.com");
        let body = doc(&u, "");
        let extra = "Event: presence\r\nExpires: 3600\r\nContent-Type: application/pidf+xml\r\n";
        let first = b.feed(request("PUBLISH", &uri, &u, 1, extra, &body), port(i));
        let nonce = first.first().and_then(|r| nonce_of(r)).expect("challenge");
        let auth = authorization(ha1, &u, "PUBLISH", &uri, &nonce, 1);
        let out = b.feed(
            request("PUBLISH", &uri, &u, 2, &format!("{extra}{auth}"), &body),
            port(i),
        );
        assert!(
            out.iter().any(|r| r.starts_with(b"SIP/2.0 200")),
            "{}",
            String::from_utf8_lossy(&out[0])
        );
        nonces.push(nonce);
    }
    let publish_time = t.elapsed();
    b.settle();
    let heap1 = live();

    // every user subscribes to `contacts` others (the next ones, wrapping)
    let t = Instant::now();
    for i in 0..users {
        let u = user(i);
        for k in 1..=contacts {
            let target = user((i + k * 7) % users);
            let uri = format!("sip:{target}@example.com");
            let nc = 1 + k as u32;
            let auth = authorization(&ha1s[i], &u, "SUBSCRIBE", &uri, &nonces[i], nc);
            let extra = format!("Event: presence\r\nExpires: 3600\r\n{auth}");
            let out = b.feed(request("SUBSCRIBE", &uri, &u, 10 + nc, &extra, ""), port(i));
            assert!(
                out.first().is_some_and(|r| r.starts_with(b"SIP/2.0 200")),
                "{}",
                String::from_utf8_lossy(out.first().map_or(&b""[..], |v| v))
            );
        }
    }
    let subscribe_time = t.elapsed();
    b.settle();
    let heap2 = live();
    let stats = b.engine.presence_stats();

    // fan-out: every user changes status once; each change notifies its watchers
    let before = stats.notices;
    let t = Instant::now();
    for i in 0..users {
        let u = user(i);
        let uri = format!("sip:{u}@example.com");
        let body = doc(&u, "<rpid:busy/>");
        let auth = authorization(
            &ha1s[i],
            &u,
            "PUBLISH",
            &uri,
            &nonces[i],
            2 + contacts as u32,
        );
        let extra = format!(
            "Event: presence\r\nExpires: 3600\r\nContent-Type: application/pidf+xml\r\n{auth}"
        );
        b.feed(request("PUBLISH", &uri, &u, 100, &extra, &body), port(i));
    }
    let fanout_time = t.elapsed();
    let notifies = b.engine.presence_stats().notices - before;

    let per = |bytes: usize, n: usize| bytes as f64 / n.max(1) as f64;
    println!("presence fan-out benchmark (engine only, one core, release build)");
    println!("users                          {users}");
    println!("contacts watched per user      {contacts}");
    println!("subscriptions                  {}", stats.subscriptions);
    println!("published documents            {}", stats.publications);
    println!(
        "initial PUBLISH (auth'd) /s    {:.0}",
        users as f64 / secs(publish_time)
    );
    println!(
        "SUBSCRIBE + first NOTIFY /s    {:.0}",
        stats.subscriptions as f64 / secs(subscribe_time)
    );
    println!("status changes                 {users}");
    println!("NOTIFYs from the changes       {notifies}");
    println!(
        "NOTIFYs per second (fan-out)   {:.0}",
        notifies as f64 / secs(fanout_time)
    );
    println!(
        "heap per published document    {:.0} bytes",
        per(heap1.saturating_sub(heap0), users)
    );
    println!(
        "heap per subscription          {:.0} bytes",
        per(heap2.saturating_sub(heap1), stats.subscriptions)
    );
    println!("resident set size at the end   {} KiB", rss_kib());
    let _ = std::fs::remove_dir_all(&dir);
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

fn authorization(ha1: &str, user: &str, method: &str, uri: &str, nonce: &str, nc: u32) -> String {
    let nc = format!("{nc:08x}");
    let resp = client_response(Algorithm::Md5, ha1, method, uri, nonce, &nc, "bench");
    format!(
        "Proxy-Authorization: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, cnonce=\"bench\", qop=auth, nc={nc}\r\n"
    )
}
