//! The floor for bench/queue-music: a bare RTP sender. STREAMS streams of 160-byte G.711
//! frames every 20 ms, each from a UDP socket of its own (as Confab's media engine sends), all
//! from one thread that sleeps until the next 20 ms tick — no SIP, no task per stream, no
//! commands. Prints the CPU it used per stream (user + system, from getrusage) as JSON.
//!
//!   rtp-floor STREAMS SECONDS ADDR:PORT

use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(streams), Some(seconds), Some(to)) = (
        args.next().and_then(|s| s.parse::<usize>().ok()),
        args.next().and_then(|s| s.parse::<u64>().ok()),
        args.next(),
    ) else {
        eprintln!("usage: rtp-floor STREAMS SECONDS ADDR:PORT");
        std::process::exit(64);
    };
    let sockets: Vec<UdpSocket> = (0..streams)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a sender socket"))
        .collect();
    let mut packet = vec![0u8; 172];
    packet[0] = 0x80;
    for (i, b) in packet[12..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let start = Instant::now();
    let cpu0 = cpu_us();
    let mut tick = start;
    let mut seq = 0u16;
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        for (k, s) in sockets.iter().enumerate() {
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            packet[8..12].copy_from_slice(&(k as u32).to_be_bytes());
            if s.send_to(&packet, &to).is_ok() {
                sent += 1;
            }
        }
        seq = seq.wrapping_add(1);
        tick += Duration::from_millis(20);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let cpu = cpu_us() - cpu0;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"streams\":{streams},\"packets_per_s\":{:.0},\"cpu_percent\":{:.2},\"cpu_us_per_stream_s\":{:.1}}}",
        sent as f64 / secs,
        cpu as f64 / secs / 1e4,
        cpu as f64 / secs / streams as f64
    );
}

/// User and system CPU of this process, in microseconds.
fn cpu_us() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    // USER_HZ is 100 on Linux
    ticks * 10_000
}
