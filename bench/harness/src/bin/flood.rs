//! A flood of our own, as an attacker would send it (bench/flood): from SOURCES loopback
//! addresses (127.1.x.y), RATE messages a second for SECONDS, in bursts every 5 ms: 40%
//! REGISTER and 30% INVITE without credentials (to a real user and to invented ones), 30% junk
//! (HTTP, binary, a TLS hello). It reads what comes back and prints, on one line,
//! `sent=N register=N invite=N junk=N received=N`. Bounded in count and time; run it inside a
//! private network namespace (bench/flood does).
//!
//! usage: flood TARGET RATE SECONDS SOURCES

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 || args.iter().any(|a| a == "--help") {
        eprintln!(
            "usage: flood TARGET RATE SECONDS SOURCES   (e.g. flood 127.0.0.1:5080 28000 10 4)"
        );
        std::process::exit(2);
    }
    let target: SocketAddr = args[1]
        .parse()
        .unwrap_or_else(|e| fail(&format!("TARGET: {e}")));
    let rate: u64 = args[2]
        .parse()
        .unwrap_or_else(|e| fail(&format!("RATE: {e}")));
    let seconds: u64 = args[3]
        .parse()
        .unwrap_or_else(|e| fail(&format!("SECONDS: {e}")));
    let sources: usize = args[4]
        .parse()
        .unwrap_or_else(|e| fail(&format!("SOURCES: {e}")));
    if sources == 0 || sources > 60_000 || seconds > 600 {
        fail("SOURCES must be 1..60000 and SECONDS at most 600");
    }
    let socks: Vec<UdpSocket> = (0..sources)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
            let s = UdpSocket::bind((IpAddr::V4(ip), 0))
                .unwrap_or_else(|e| fail(&format!("bind {ip}: {e}")));
            s.set_nonblocking(true).expect("non-blocking socket");
            s
        })
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut sent, mut kinds, mut received) = (0u64, [0u64; 3], 0u64);
    let mut buf = vec![0u8; 65_536];
    let mut tick = 0u64;
    while Instant::now() < end {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let sock = &socks[(sent % sources as u64) as usize];
            let (kind, msg) = message(sent, sock.local_addr().expect("bound"), target);
            // a full socket buffer drops it here, as a real flood would lose it
            let _ = sock.send_to(&msg, target);
            kinds[kind] += 1;
            sent += 1;
        }
        tick += 1;
        if tick.is_multiple_of(10) {
            received += drain(&socks, &mut buf);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // answers still on their way (and any retransmission of a challenge: T1 = 500 ms)
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        received += drain(&socks, &mut buf);
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "sent={sent} register={} invite={} junk={} received={received}",
        kinds[0], kinds[1], kinds[2]
    );
}

fn drain(socks: &[UdpSocket], buf: &mut [u8]) -> u64 {
    let mut n = 0;
    for s in socks {
        while s.recv_from(buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// Message number `n` from `local`: its kind (0 REGISTER, 1 INVITE, 2 junk) and bytes.
fn message(n: u64, local: SocketAddr, target: SocketAddr) -> (usize, Vec<u8>) {
    let user = if n.is_multiple_of(7) {
        "alice".to_owned()
    } else {
        format!("u{}", n % 100_000)
    };
    let head = |method: &str, uri: &str| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfl{n};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f{n}\r\nTo: <sip:{user}@example.com>\r\nCall-ID: fl{n}-{local}\r\nCSeq: 1 {method}\r\nContact: <sip:{user}@{local}>\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    match n % 10 {
        0..=3 => (0, head("REGISTER", "sip:example.com")),
        4..=6 => (1, head("INVITE", &format!("sip:{user}@{target}"))),
        7 => (2, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        8 => (2, (0..300u64).map(|i| (i * 131 + n) as u8).collect()),
        _ => (
            2,
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 hello".to_vec(),
        ),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("flood: {msg}");
    std::process::exit(2);
}
