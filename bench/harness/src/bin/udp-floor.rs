//! The floor for bench/compare: a UDP responder that does nothing but the system calls and a
//! copy of five header lines. It answers a request without credentials with a canned 401 and
//! one with an Authorization header with 200, which is all SIPp's REGISTER scenario needs, so
//! it is measured exactly as Confab and Kamailio are. No parsing, no state, no digest check:
//! whatever a real server costs above this is its own work.
//!
//!   udp-floor ADDR:PORT [THREADS]

use std::net::UdpSocket;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next() else {
        eprintln!("usage: udp-floor ADDR:PORT [THREADS]");
        std::process::exit(64);
    };
    let threads: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(2);
    let socket = match UdpSocket::bind(&addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-floor: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let s = socket.try_clone().expect("clone UDP socket");
            std::thread::spawn(move || serve(&s))
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}

fn serve(socket: &UdpSocket) {
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(2048);
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        out.clear();
        reply(&buf[..n], &mut out);
        let _ = socket.send_to(&out, peer);
    }
}

/// The canned reply to `req`: its Via, From, To, Call-ID and CSeq lines copied.
fn reply(req: &[u8], out: &mut Vec<u8>) {
    let authorized = contains(req, b"\nAuthorization:");
    out.extend_from_slice(if authorized {
        b"SIP/2.0 200 OK\r\n"
    } else {
        b"SIP/2.0 401 Unauthorized\r\n"
    });
    for line in req.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let copied = [&b"Via:"[..], b"From:", b"Call-ID:", b"CSeq:"]
            .iter()
            .any(|h| line.starts_with(h));
        if copied {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        } else if line.starts_with(b"To:") {
            out.extend_from_slice(line);
            out.extend_from_slice(b";tag=floor\r\n");
        }
    }
    if !authorized {
        out.extend_from_slice(
            b"WWW-Authenticate: Digest realm=\"example.com\", nonce=\"floor\", algorithm=MD5, qop=\"auth\"\r\n",
        );
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
