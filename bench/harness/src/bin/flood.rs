//! A flood of our own, as an attacker would send it (bench/flood): from SOURCES loopback
//! addresses (127.1.x.y), RATE messages a second for SECONDS, in bursts every 5 ms: 40%
//! REGISTER and 30% INVITE without credentials (to a real user and to invented ones), 30% junk
//! (HTTP, binary, a TLS hello); each source sends 32 messages at a time in one sendmmsg(2). It reads what comes back and prints, on one line,
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
            // BATCH consecutive messages from one source, in one system call
            let sock = &socks[((sent / BATCH) % sources as u64) as usize];
            let local = sock.local_addr().expect("bound");
            let n = (BATCH - sent % BATCH).min(due - sent);
            let batch: Vec<Vec<u8>> = (sent..sent + n)
                .map(|i| {
                    let (kind, msg) = message(i, local, target);
                    kinds[kind] += 1;
                    msg
                })
                .collect();
            // a full socket buffer drops them here, as a real flood would lose them
            send_batch(sock, target, &batch);
            sent += n;
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

/// Messages one source sends in one system call.
const BATCH: u64 = 32;

/// Sends `msgs` to `target` (IPv4) with one sendmmsg(2); what does not fit is dropped.
fn send_batch(sock: &UdpSocket, target: SocketAddr, msgs: &[Vec<u8>]) {
    use std::os::fd::AsRawFd;
    let SocketAddr::V4(v4) = target else {
        fail("TARGET must be an IPv4 address");
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut iovs: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = &sin as *const libc::sockaddr_in as *mut libc::c_void;
            h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    // SAFETY: every header points into `sin`, `iovs` and `msgs`, which outlive the call
    unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            0,
        );
    }
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
