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

/// The armed deadlines of one transaction. The state machines arm at most two at once (a
/// retransmission timer and a timeout), so three slots, not one per named timer: completed
/// transactions wait by the tens of thousands under load, and this is kept in each.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timers {
    at: [Option<(Timer, Instant)>; 3],
}

impl Timers {
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        let slot = match self.at.iter().position(|s| s.is_some_and(|(x, _)| x == t)) {
            Some(i) => i,
            None => match self.at.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    // unreachable by the state machines (tests run with debug assertions);
                    // were it reached, the latest deadline gives way
                    debug_assert!(false, "more than three transaction timers armed");
                    self.latest()
                }
            },
        };
        self.at[slot] = Some((t, at));
    }
    pub(crate) fn clear(&mut self, t: Timer) {
        for s in &mut self.at {
            if s.is_some_and(|(x, _)| x == t) {
                *s = None;
            }
        }
    }
    pub(crate) fn clear_all(&mut self) {
        self.at = [None; 3];
    }
    pub(crate) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().map(|(_, a)| *a).min()
    }
    /// The earliest timer due at `now`, disarmed.
    pub(crate) fn take_expired(&mut self, now: Instant) -> Option<Timer> {
        let (i, t) = self
            .at
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|(t, a)| (i, t, a)))
            .filter(|(_, _, a)| *a <= now)
            .min_by_key(|(_, _, a)| *a)
            .map(|(i, t, _)| (i, t))?;
        self.at[i] = None;
        Some(t)
    }
    fn latest(&self) -> usize {
        (0..self.at.len())
            .max_by_key(|&i| self.at[i].map(|(_, a)| a))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_rearm_in_place_and_fire_earliest_first() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Timers::default();
        t.set(Timer::E, t0 + s(1));
        t.set(Timer::F, t0 + s(32));
        t.set(Timer::E, t0 + s(2)); // re-armed: still one E
        assert_eq!(t.next(), Some(t0 + s(2)));
        assert_eq!(t.take_expired(t0 + s(1)), None);
        assert_eq!(t.take_expired(t0 + s(40)), Some(Timer::E));
        assert_eq!(t.take_expired(t0 + s(40)), Some(Timer::F));
        assert_eq!(t.take_expired(t0 + s(40)), None);
        t.set(Timer::G, t0 + s(1));
        t.set(Timer::H, t0 + s(32));
        t.clear(Timer::G);
        assert_eq!(t.next(), Some(t0 + s(32)));
        t.clear_all();
        assert_eq!(t.next(), None);
    }
}
