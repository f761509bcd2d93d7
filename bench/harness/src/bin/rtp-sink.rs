//! The receiving end of bench/queue-music: one UDP port that every queued caller's SDP names.
//! Counts the RTP packets of each stream (by SSRC) for a while and reports, as one JSON line,
//! the packets per second, how evenly each stream was paced (the gap between consecutive
//! packets against the 20 ms a G.711 frame lasts) and how much of the payload was not
//! silence.
//!
//! With `--talk` it also answers every packet with one of its own (a 20 ms frame of a tone,
//! G.711 µ-law, its own sequence numbers per stream) sent back to where the packet came from:
//! each stream's far end then talks as much as it hears, as conference participants do.
//!
//!   rtp-sink PORT SECONDS [--talk]

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(seconds)) = (
        args.next().and_then(|p| p.parse::<u16>().ok()),
        args.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: rtp-sink PORT SECONDS [--talk]");
        std::process::exit(64);
    };
    let talk = args.next().as_deref() == Some("--talk");
    let frame: Vec<u8> = confab_media::tone::sine(440.0, 4000.0, 0)
        .iter()
        .map(|&x| confab_media::g711::ulaw_encode(x))
        .collect();
    let mut sent: HashMap<std::net::SocketAddr, u16> = HashMap::new();
    let mut reply = Vec::with_capacity(172);
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("rtp-sink: cannot bind port {port}: {e}");
        std::process::exit(1);
    });
    sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut last: HashMap<u32, Instant> = HashMap::new();
    let mut gaps_us: Vec<u64> = Vec::new();
    let (mut packets, mut loud) = (0u64, 0u64);
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(seconds) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if n < 12 {
            continue;
        }
        if talk {
            let seq = sent.entry(from).or_insert(0);
            *seq = seq.wrapping_add(1);
            reply.clear();
            reply.extend_from_slice(&[0x80, 0]);
            reply.extend_from_slice(&seq.to_be_bytes());
            reply.extend_from_slice(&(u32::from(*seq) * 160).to_be_bytes());
            reply.extend_from_slice(&u32::from(from.port()).to_be_bytes());
            reply.extend_from_slice(&frame);
            let _ = sock.send_to(&reply, from);
        }
        let now = Instant::now();
        packets += 1;
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if let Some(prev) = last.insert(ssrc, now) {
            gaps_us.push((now - prev).as_micros() as u64);
        }
        // µ-law silence is 0xFF/0x7F: a frame with other bytes carries sound
        if buf[12..n].iter().any(|&b| b != 0xFF && b != 0x7F) {
            loud += 1;
        }
    }
    gaps_us.sort_unstable();
    let pct = |p: f64| {
        gaps_us
            .get(((gaps_us.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"streams\":{},\"packets\":{packets},\"packets_per_s\":{:.0},\"gap_p50_us\":{},\"gap_p99_us\":{},\"gap_max_us\":{},\"audible\":{:.3}}}",
        last.len(),
        packets as f64 / secs,
        pct(0.5),
        pct(0.99),
        gaps_us.last().copied().unwrap_or(0),
        loud as f64 / packets.max(1) as f64
    );
}
