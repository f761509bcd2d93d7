//! The named timers of RFC 3261 §17 (Table 4) and RFC 6026 (L, M), and the T1/T2/T4 they derive from.

use std::time::{Duration, Instant};

/// A transaction timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// INVITE client: request retransmit (UDP).
    A,
    /// INVITE client: transaction timeout.
    B,
    /// Proxy INVITE branch: no final response for 3 minutes after a provisional.
    C,
    /// INVITE client: wait for response retransmits after a non-2xx final.
    D,
    /// Non-INVITE client: request retransmit (UDP).
    E,
    /// Non-INVITE client: transaction timeout.
    F,
    /// INVITE server: final response retransmit (UDP).
    G,
    /// INVITE server: wait for ACK.
    H,
    /// INVITE server: wait for ACK retransmits.
    I,
    /// Non-INVITE server: wait for request retransmits.
    J,
    /// Non-INVITE client: wait for response retransmits.
    K,
    /// INVITE server, RFC 6026: absorb INVITE retransmits after a 2xx.
    L,
}

const ALL: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::C,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
];

/// T1, T2 and T4 (RFC 3261 §17.1.1.1 defaults 500 ms, 4 s, 5 s).
#[derive(Debug, Clone, Copy)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// The armed deadlines of one transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timers {
    at: [Option<Instant>; 12],
}

impl Timers {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = Some(at);
    }
    pub(crate) fn clear(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }
    pub(crate) fn clear_all(&mut self) {
        self.at = [None; 12];
    }
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
    /// The earliest timer due at `now`, disarmed.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .at
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|a| (i, a)))
            .filter(|(_, a)| *a <= now)
            .min_by_key(|(_, a)| *a)?;
        self.at[i] = None;
        Some(ALL[i])
    }
}
