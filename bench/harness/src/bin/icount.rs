//! Fixed, deterministic workloads for instruction counting (run under callgrind by bench/icount,
//! which compares the counts with bench/baselines/icount.txt). Wall-clock time means nothing
//! here; every run does exactly the same work.
//!
//!   icount parse      parse, validate, decode the common headers of and print 3 messages × 2000
//!   icount register   1000 users sign in: REGISTER, 401, REGISTER with credentials, 200
//!   icount message    1000 MESSAGEs challenged, authorized and relayed to a registered user
//!   icount route      20,000 calls routed with 1,000 normalization rules (10 dial plans) and 500
//!                     routes: dial plan, voice policy, routes, trunk format

use std::hint::black_box;

use confab_bench::{authorization, nonce_of, request, Bench};
use confab_store::{SqliteStore, Store};
use sip_auth::{ha1, Algorithm};
use sip_proto::{Limits, Message};

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\nMax-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:alice@example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 2 REGISTER\r\nContact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\nAuthorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"0123456789abcdef0123456789abcdef\", uri=\"sip:example.com\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\nUser-Agent: bench/1.0\r\nContent-Length: 0\r\n\r\n";
const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\nFrom: Alice <sip:alice@example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@192.0.2.10:5060>\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nSupported: replaces, timer\r\nContent-Type: application/sdp\r\nContent-Length: 131\r\n\r\nv=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
const OK: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport=5060;received=192.0.2.10\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\nTo: Bob <sip:bob@example.com>;tag=a6c85cf\r\nFrom: Alice <sip:alice@example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:bob@192.0.2.20:5060>\r\nContent-Length: 0\r\n\r\n";

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("parse") => parse(),
        Some("register") => register(1000),
        Some("message") => message(1000),
        Some("route") => route(20_000),
        _ => {
            eprintln!("usage: icount parse|register|message|route");
            std::process::exit(64);
        }
    }
}

fn parse() {
    let limits = Limits::default();
    for _ in 0..2000 {
        for text in [REGISTER, INVITE, OK] {
            let m = Message::parse(text.as_bytes().to_vec(), &limits).expect("parses");
            black_box(m.validate().is_ok());
            let _ = black_box((m.top_via(), m.cseq(), m.from(), m.to(), m.contacts()));
            black_box(m.to_bytes());
        }
    }
}

fn users(n: usize) -> Bench {
    let store = SqliteStore::in_memory().expect("sqlite");
    let list: Vec<(String, String)> = (0..n)
        .map(|i| (format!("u{i}@example.com"), "pw".to_owned()))
        .collect();
    store.import_users(&list, None).expect("users");
    Bench::new(Box::new(store))
}

/// Signs in `u{i}`; returns the nonce it was given.
fn sign_in(b: &mut Bench, i: usize) -> String {
    let u = format!("u{i}");
    let uri = "sip:example.com";
    let to = format!("sip:{u}@example.com");
    let reg = |seq, auth: &str| {
        request(
            "REGISTER",
            uri,
            &u,
            seq,
            &format!("Expires: 3600\r\n{auth}"),
            "",
        )
        .replace(&format!("To: <{uri}>"), &format!("To: <{to}>"))
    };
    let first = b.feed(reg(1, ""), 5070);
    let nonce = first.first().and_then(|r| nonce_of(r)).expect("challenge");
    let h = ha1(Algorithm::Md5, &u, "example.com", "pw");
    let auth = authorization(
        Algorithm::Md5,
        "Authorization",
        &h,
        &u,
        "REGISTER",
        uri,
        &nonce,
        1,
    );
    let out = b.feed(reg(2, &auth), 5070);
    assert!(
        out.first().is_some_and(|r| r.starts_with(b"SIP/2.0 200")),
        "REGISTER: {}",
        String::from_utf8_lossy(out.first().map_or(&b""[..], |v| v))
    );
    nonce
}

fn register(n: usize) {
    let mut b = users(n);
    for i in 0..n {
        sign_in(&mut b, i);
    }
    b.settle();
}

fn message(n: usize) {
    let mut b = users(2);
    sign_in(&mut b, 1);
    let h = ha1(Algorithm::Md5, "u0", "example.com", "pw");
    let uri = "sip:u1@example.com";
    for i in 0..n as u32 {
        let first = b.feed(request("MESSAGE", uri, "u0", 2 * i + 1, "", "hello"), 5070);
        let nonce = first.first().and_then(|r| nonce_of(r)).expect("challenge");
        let auth = authorization(
            Algorithm::Md5,
            "Proxy-Authorization",
            &h,
            "u0",
            "MESSAGE",
            uri,
            &nonce,
            1,
        );
        let out = b.feed(
            request("MESSAGE", uri, "u0", 2 * i + 2, &auth, "hello"),
            5070,
        );
        assert!(
            out.iter().any(|m| m.starts_with(b"MESSAGE ")),
            "MESSAGE not relayed: {}",
            String::from_utf8_lossy(out.first().map_or(&b""[..], |v| v))
        );
    }
    b.settle();
}

fn route(n: usize) {
    let voice = confab_voice::Voice::compile(
        confab_voice::VoiceConfig::from_toml(&confab_bench::voice_config(
            10,
            100,
            500,
            "127.0.0.61:5060",
        ))
        .expect("the generated configuration reads"),
    )
    .expect("the generated configuration passes its checks");
    let at = confab_voice::Placement {
        dial_plan: Some("plan-9".into()),
        ..Default::default()
    };
    for i in 0..n {
        // a national number: the plan's last rule; area codes across all the routes
        let dialled = format!("1{}555{:04}", 200 + i % 500, i % 10_000);
        let number = voice.normalize(&at, &dialled).expect("normalizes").number;
        let routing = voice.routes_for(&at, &number).expect("routes");
        let first = &routing.candidates[0];
        black_box(voice.on_trunk(&first.trunks[0], &number, false));
    }
}
