//! Fills an archive database with generated messages for the search benchmark (bench/archive):
//! USERS users (`u0@example.com` ...) writing to each other over DAYS days, ending now, each
//! message a few words; inserted through the archive's own code in transactions of 10,000.
//!
//!   archive-gen DATABASE MESSAGES [USERS=10000] [DAYS=60]
//!
//! DATABASE: an SQLite file (created) or a postgres:// URL.

use confab_archive::{Db, Direction, Message, Record};

const WORDS: &[&str] = &[
    "meeting", "budget", "review", "lunch", "deploy", "contract", "invoice", "call", "draft",
    "release", "customer", "weekly", "report", "travel", "design", "hiring", "server", "quarter",
    "approve", "schedule", "urgent", "thanks", "tomorrow", "friday", "numbers", "slides",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(spec), Some(n)) = (
        args.first(),
        args.get(1).and_then(|a| a.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: archive-gen DATABASE MESSAGES [USERS=10000] [DAYS=60]");
        std::process::exit(64);
    };
    let users: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let days: i64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(60);
    let mut db = Db::open(spec).unwrap_or_else(|e| {
        eprintln!("archive-gen: {e}");
        std::process::exit(1)
    });
    let end = confab_archive::time::now_ms();
    let span = days * 86_400_000;
    let step = (span / n.max(1) as i64).max(1);
    // a fixed xorshift: the same archive every run
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let from = rand() % users;
        let to = (from + 1 + rand() % (users - 1)) % users;
        let words: Vec<&str> = (0..6)
            .map(|_| WORDS[(rand() % WORDS.len() as u64) as usize])
            .collect();
        let (a, b) = (format!("u{from}@example.com"), format!("u{to}@example.com"));
        let conversation = if a < b {
            format!("pair:{a} {b}")
        } else {
            format!("pair:{b} {a}")
        };
        batch.push(Record::Message(Message {
            id: format!("gen-{i:012}"),
            at_ms: end - span + i as i64 * step,
            sender: a,
            recipients: vec![b],
            conversation,
            direction: Direction::Internal,
            content_type: "text/plain;charset=UTF-8".into(),
            body: words.join(" ").into_bytes(),
            server: "fe01.example.com".into(),
            keep_until: end / 1000 + 86_400 * 60,
        }));
        if batch.len() == 10_000 || i + 1 == n {
            if let Err(e) = db.insert(&batch) {
                eprintln!("archive-gen: {e}");
                std::process::exit(1);
            }
            batch.clear();
            if (i + 1) % 1_000_000 == 0 {
                eprintln!(
                    "archive-gen: {} messages, {:.0} s",
                    i + 1,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    println!(
        "archive-gen: {n} messages among {users} users over {days} days in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
