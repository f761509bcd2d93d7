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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use confab_bench::{authorization, nonce_of, request, rss_kib, Bench};
use confab_store::{SqliteStore, Store};
use sip_auth::{ha1, Algorithm};

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

fn user(i: usize) -> String {
    format!("u{i}")
}

fn port(i: usize) -> u16 {
    10_000 + (i % 50_000) as u16
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
            .add_user(&format!("{}@example.com", user(i)), "pw", None)
            .expect("add user");
    }
    let mut b = Bench::new(Box::new(store));

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
        let auth = authorization(
            Algorithm::Md5,
            "Proxy-Authorization",
            ha1,
            &u,
            "PUBLISH",
            &uri,
            &nonce,
            1,
        );
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
            let auth = authorization(
                Algorithm::Md5,
                "Proxy-Authorization",
                &ha1s[i],
                &u,
                "SUBSCRIBE",
                &uri,
                &nonces[i],
                nc,
            );
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
            Algorithm::Md5,
            "Proxy-Authorization",
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
    println!("resident set size at the end   {} KiB", rss_kib("self"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}
